/* smelt-modelfile-text.c: the text of an Ollama Modelfile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "smelt-modelfile-text.h"

#include <string.h>

#include <smelt/smelt.h>

/* Ollama's parser (parser/parser.go) has no escapes: an argument runs to
 * the first line end at which the text read so far, trimmed, is complete:
 * a bare word (which may hold inner blanks), "…" or """…""", whose outer
 * quotes are removed and nothing else. So a value may hold quotes, but
 * in """…""" no line of it may end with """, and in "…" none may end
 * with a quote. */

static gboolean
has_line_ending_with (const char *value,
                      const char *end)
{
  g_auto(GStrv) lines = g_strsplit (value, "\n", -1);

  /* the last line is followed by the closing quotes, not by a line end */
  for (guint i = 0; lines[i] && lines[i + 1]; i++)
    {
      g_autofree char *t = g_strstrip (g_strdup (lines[i]));

      if (g_str_has_suffix (t, end))
        return TRUE;
    }
  return FALSE;
}

static gboolean
needs_quotes (const char *value)
{
  gsize len = strlen (value);

  return len == 0 || strpbrk (value, "\r\n") != NULL || g_ascii_isspace (value[0]) ||
         g_ascii_isspace (value[len - 1]) || value[0] == '"';
}

/**
 * smelt_modelfile_append:
 * @out: the Modelfile so far
 * @instruction: FROM, TEMPLATE, PARAMETER stop, …
 * @value: its argument, as Ollama should read it
 * @block: write it between """ even when it does not need quotes
 *   (TEMPLATE, SYSTEM, LICENSE: texts people read as blocks)
 * @error: return location for a #GError
 *
 * Appends one instruction, quoted so that Ollama reads back @value.
 *
 * Returns: %FALSE if no quoting Ollama understands can hold @value
 */
gboolean
smelt_modelfile_append (GString     *out,
                        const char  *instruction,
                        const char  *value,
                        gboolean     block,
                        GError     **error)
{
  if (!block && !needs_quotes (value))
    {
      g_string_append_printf (out, "%s %s\n", instruction, value);
      return TRUE;
    }
  if (!has_line_ending_with (value, "\"\"\""))
    {
      g_string_append_printf (out, "%s \"\"\"%s\"\"\"\n", instruction, value);
      return TRUE;
    }
  if (!has_line_ending_with (value, "\""))
    {
      g_string_append_printf (out, "%s \"%s\"\n", instruction, value);
      return TRUE;
    }
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
               "%s: the text has a line ending with \"\"\", which a Modelfile cannot quote",
               instruction);
  return FALSE;
}
