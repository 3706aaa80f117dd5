/* smelt-hf-token.c: where the Hugging Face token comes from
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <smelt/smelt.h>

#include "smelt-hf-token.h"

/* The same places, in the same order, as huggingface_hub's get_token():
 * HF_TOKEN, then the legacy HUGGING_FACE_HUB_TOKEN, then one token file:
 * $HF_TOKEN_PATH, else $HF_HOME/token, else
 * ${XDG_CACHE_HOME:-~/.cache}/huggingface/token. A token never comes from
 * a recipe, and nothing here ever prints it: errors name where it came
 * from instead. */

/* huggingface_hub's truthy values: 1, ON, YES, TRUE, any case */
gboolean
smelt_hf_env_is_true (const char *name)
{
  static const char * const yes[] = { "1", "on", "yes", "true" };
  g_autofree char *v = g_strdup (g_getenv (name));

  if (v == NULL)
    return FALSE;
  g_strstrip (v);
  for (guint i = 0; i < G_N_ELEMENTS (yes); i++)
    if (g_ascii_strcasecmp (v, yes[i]) == 0)
      return TRUE;
  return FALSE;
}

/* HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE, which huggingface_hub also
 * honours) forbids every request. */
gboolean
smelt_hf_offline (const char **which)
{
  static const char * const names[] = { "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (smelt_hf_env_is_true (names[i]))
      {
        if (which)
          *which = names[i];
        return TRUE;
      }
  return FALSE;
}

static char *
expand_home (const char *path)
{
  if (path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
    return g_build_filename (g_get_home_dir (), path + 1, NULL);
  return g_strdup (path);
}

static const char *
nonempty_env (const char *name)
{
  const char *v = g_getenv (name);

  return v && *v ? v : NULL;
}

/**
 * smelt_hf_token_file_path:
 *
 * Returns: (transfer full): the token file huggingface_hub would read
 */
char *
smelt_hf_token_file_path (void)
{
  const char *v;
  g_autofree char *home = NULL;

  if ((v = nonempty_env ("HF_TOKEN_PATH")))
    return expand_home (v);
  if ((v = nonempty_env ("HF_HOME")))
    home = expand_home (v);
  else if ((v = nonempty_env ("XDG_CACHE_HOME")))
    home = g_build_filename (v, "huggingface", NULL);
  else
    home = g_build_filename (g_get_home_dir (), ".cache", "huggingface", NULL);
  return g_build_filename (home, "token", NULL);
}

/* huggingface_hub's _clean_token(): drop every CR and LF, strip the
 * surrounding white space; empty means "no token". */
static char *
clean_token (const char *raw)
{
  GString *s = g_string_new (NULL);

  for (const char *p = raw; *p; p++)
    if (*p != '\r' && *p != '\n')
      g_string_append_c (s, *p);
  g_strstrip (s->str);
  s->len = strlen (s->str);
  if (s->len == 0)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  return g_string_free (s, FALSE);
}

/* A token goes into an HTTP header: printable ASCII without spaces, or a
 * header could be forged. */
static gboolean
token_is_sane (const char *token)
{
  for (const guchar *p = (const guchar *) token; *p; p++)
    if (*p <= 0x20 || *p >= 0x7f)
      return FALSE;
  return TRUE;
}

/**
 * smelt_hf_find_token:
 * @token: (out): the token
 * @source: (out): where it came from, for messages (an environment
 *   variable's name or a file's path; never the token)
 * @error: return location for a #GError
 *
 * Returns: %TRUE if a usable token was found
 */
gboolean
smelt_hf_find_token (char   **token,
                     char   **source,
                     GError **error)
{
  static const char * const vars[] = { "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN" };
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  g_autofree char *found = NULL;
  g_autoptr(GError) local = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (vars); i++)
    {
      const char *v = g_getenv (vars[i]);

      if (v && (found = clean_token (v)))
        {
          if (!token_is_sane (found))
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the token in %s has spaces or control characters; it cannot be "
                           "a Hugging Face token", vars[i]);
              return FALSE;
            }
          *token = g_steal_pointer (&found);
          *source = g_strdup (vars[i]);
          return TRUE;
        }
    }
  path = smelt_hf_token_file_path ();
  if (!g_file_get_contents (path, &text, NULL, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                     "no Hugging Face token: set HF_TOKEN, or log in with “hf auth login” "
                     "(which writes %s); tokens never go in recipes", path);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                     "cannot read the Hugging Face token file %s: %s", path, local->message);
      return FALSE;
    }
  found = clean_token (text);
  if (found == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   "the Hugging Face token file %s is empty: set HF_TOKEN or log in again "
                   "with “hf auth login”", path);
      return FALSE;
    }
  if (!token_is_sane (found))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "the token in %s has spaces or control characters; it cannot be a "
                   "Hugging Face token", path);
      return FALSE;
    }
  *token = g_steal_pointer (&found);
  *source = g_steal_pointer (&path);
  return TRUE;
}
