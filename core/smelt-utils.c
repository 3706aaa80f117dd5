/* smelt-utils.c: small helpers shared by the core and plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "smelt-private.h"

/* ---- sizes ---- */

#define SIZE_FORMS "a positive number of bytes, or a number followed by KB, MB, GB or TB " \
                   "(powers of 1000) or KiB, MiB, GiB or TiB (powers of 1024), such as “5GB”"

static const struct
{
  const char *unit;
  double multiplier;
} size_units[] = {
  { "KB", 1e3 }, { "MB", 1e6 }, { "GB", 1e9 }, { "TB", 1e12 },
  { "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 },
  { "TiB", 1099511627776.0 },
};

static gboolean
bad_size (const char  *text,
          GError     **error)
{
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
               "“%s” is not a valid size: expected " SIZE_FORMS, text);
  return FALSE;
}

/* Length of a `digits[.digits]` or `.digits` prefix of @s, 0 if none. */
static gsize
scan_decimal (const char *s,
              gboolean   *has_point)
{
  gsize i = 0, digits = 0;

  *has_point = FALSE;
  for (; g_ascii_isdigit (s[i]); i++)
    digits++;
  if (s[i] == '.')
    {
      *has_point = TRUE;
      for (i++; g_ascii_isdigit (s[i]); i++)
        digits++;
    }
  return digits > 0 ? i : 0;
}

/**
 * smelt_parse_size:
 * @text: a size such as "5GB", "1.5 GB", "500MB", "2GiB" or "1048576"
 * @out_bytes: (out): the size in bytes
 * @error: return location for a #GError
 *
 * Parses a size the way huggingface_hub's `parse_size_to_int` parses
 * `max_shard_size`: a number, possibly fractional, then a decimal unit
 * (KB, MB, GB, TB: powers of 1000), case-insensitive, spaces allowed
 * around; the result is `int(number * multiplier)` computed in double
 * precision, exactly as Python computes it, so shard boundaries match.
 *
 * As extensions, the binary units KiB, MiB, GiB and TiB (powers of 1024),
 * the unit B and a plain integer byte count are accepted too.
 *
 * Zero, negative, empty, malformed and too-large sizes are refused with
 * %SMELT_RECIPE_ERROR_BAD_VALUE.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_parse_size (const char  *text,
                  guint64     *out_bytes,
                  GError     **error)
{
  g_autofree char *copy = NULL;
  g_autofree char *number = NULL;
  const char *unit;
  gboolean has_point;
  gsize length;
  double value, bytes;

  g_return_val_if_fail (text != NULL, FALSE);
  g_return_val_if_fail (out_bytes != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  copy = g_strstrip (g_strdup (text));
  length = scan_decimal (copy, &has_point);
  if (length == 0)
    return bad_size (text, error);
  number = g_strndup (copy, length);
  unit = copy + length;
  while (*unit == ' ' || *unit == '\t')
    unit++;

  if (*unit == '\0' || g_ascii_strcasecmp (unit, "B") == 0)
    {
      guint64 n;

      /* A count of bytes must be whole. */
      if (has_point ||
          !g_ascii_string_to_unsigned (number, 10, 1, G_MAXUINT64, &n, NULL))
        return bad_size (text, error);
      *out_bytes = n;
      return TRUE;
    }

  value = g_ascii_strtod (number, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (size_units); i++)
    {
      if (g_ascii_strcasecmp (unit, size_units[i].unit) != 0)
        continue;
      bytes = value * size_units[i].multiplier;
      /* 2^64 as a double: anything at or above it does not fit. */
      if (!(bytes >= 1.0) || bytes >= 18446744073709551616.0)
        return bad_size (text, error);
      *out_bytes = (guint64) bytes;
      return TRUE;
    }
  return bad_size (text, error);
}

/**
 * smelt_format_size:
 * @bytes: a size in bytes
 *
 * Formats a size for people, in decimal units with one decimal:
 * "512 B", "3.4 MB", "1.2 GB".
 *
 * Returns: (transfer full): the formatted size
 */
char *
smelt_format_size (guint64 bytes)
{
  static const char *units[] = { "kB", "MB", "GB", "TB", "PB", "EB" };
  double value = (double) bytes;

  if (bytes < 1000)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
  for (guint i = 0; i < G_N_ELEMENTS (units); i++)
    {
      value /= 1000.0;
      /* 999.96 would print as "1000.0": move on to the next unit. */
      if (value < 999.95 || i == G_N_ELEMENTS (units) - 1)
        {
          char buffer[G_ASCII_DTOSTR_BUF_SIZE];

          g_ascii_formatd (buffer, sizeof buffer, "%.1f", value);
          return g_strdup_printf ("%s %s", buffer, units[i]);
        }
    }
  g_assert_not_reached ();
}

/* ---- JSON files ---- */

#define MAX_JSON_FILE_SIZE (64 * 1024 * 1024)
#define MAX_JSON_DEPTH 64

/* json-glib parses recursively: refuse deep nesting before it sees it.
 * Returns the offset of the first bracket past @max_depth, or -1. */
static gssize
find_excess_depth (const char *text,
                   gsize       length,
                   guint       max_depth)
{
  gboolean in_string = FALSE;
  guint depth = 0;

  for (gsize i = 0; i < length; i++)
    {
      char c = text[i];

      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
        }
      else if (c == '"')
        in_string = TRUE;
      else if (c == '{' || c == '[')
        {
          if (++depth > max_depth)
            return (gssize) i;
        }
      else if ((c == '}' || c == ']') && depth > 0)
        depth--;
    }
  return -1;
}

static gboolean
read_json_text (const char  *path,
                char       **text,
                gsize       *length,
                GError     **error)
{
  g_autoptr(GError) local_error = NULL;
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, SMELT_MODEL_ERROR,
                   saved_errno == ENOENT ? SMELT_MODEL_ERROR_NOT_FOUND
                                         : SMELT_MODEL_ERROR_INVALID,
                   "%s: %s", path, g_strerror (saved_errno));
      return FALSE;
    }
  if (st.st_size > MAX_JSON_FILE_SIZE)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: %" G_GINT64_FORMAT " bytes is too large for a JSON file "
                   "(the limit is %d MiB)", path, (gint64) st.st_size,
                   MAX_JSON_FILE_SIZE / (1024 * 1024));
      return FALSE;
    }
  if (!g_file_get_contents (path, text, length, &local_error))
    {
      g_set_error (error, SMELT_MODEL_ERROR,
                   g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT)
                     ? SMELT_MODEL_ERROR_NOT_FOUND : SMELT_MODEL_ERROR_INVALID,
                   "%s: %s", path, local_error->message);
      return FALSE;
    }
  /* The file may have grown between the stat and the read. */
  if (*length > MAX_JSON_FILE_SIZE)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: too large for a JSON file (the limit is %d MiB)", path,
                   MAX_JSON_FILE_SIZE / (1024 * 1024));
      g_clear_pointer (text, g_free);
      return FALSE;
    }
  return TRUE;
}

/**
 * smelt_json_load_file:
 * @path: (type filename): a JSON file such as config.json
 * @error: return location for a #GError
 *
 * Reads and parses a JSON file. Files over 64 MiB, text that is not UTF-8,
 * nesting deeper than 64 levels, empty files and syntax errors fail with
 * %SMELT_MODEL_ERROR_INVALID, a missing file with
 * %SMELT_MODEL_ERROR_NOT_FOUND; the message starts with @path.
 *
 * Returns: (transfer full) (nullable): the root node, or %NULL on error
 */
JsonNode *
smelt_json_load_file (const char  *path,
                      GError     **error)
{
  g_autofree char *text = NULL;
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local_error = NULL;
  const char *bad;
  gsize length;
  gssize deep;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!read_json_text (path, &text, &length, error))
    return NULL;
  if (!g_utf8_validate_len (text, length, &bad))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not valid UTF-8 at byte %" G_GSIZE_FORMAT, path,
                   (gsize) (bad - text));
      return NULL;
    }
  deep = find_excess_depth (text, length, MAX_JSON_DEPTH);
  if (deep >= 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: JSON nests deeper than %d levels at byte %" G_GSSIZE_FORMAT,
                   path, MAX_JSON_DEPTH, deep);
      return NULL;
    }

  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, (gssize) length, &local_error))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: invalid JSON: %s", path, local_error->message);
      return NULL;
    }
  /* json-glib accepts an empty document and returns no root. */
  if (json_parser_get_root (parser) == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: the file holds no JSON value", path);
      return NULL;
    }
  return json_parser_steal_root (parser);
}

/* ---- JSON output, as Python's json.dumps writes it ---- */

/* Appends @s as json.dumps(ensure_ascii=True) does: printable ASCII as
 * is, `"` `\` and \b \f \n \r \t escaped, everything else (control
 * characters, DEL, non-ASCII) as \uXXXX in lower-case hex, with surrogate
 * pairs above U+FFFF. */
static void
append_python_string (GString    *out,
                      const char *s)
{
  g_string_append_c (out, '"');
  for (const char *p = s; *p; )
    {
      gunichar c = g_utf8_get_char_validated (p, -1);

      /* json-glib only holds valid UTF-8, so this is defensive: a bad
       * byte becomes U+FFFD, as Python's "replace" handler would. */
      if (c == (gunichar) -1 || c == (gunichar) -2)
        {
          g_string_append (out, "\\ufffd");
          p++;
          continue;
        }
      p = g_utf8_next_char (p);
      switch (c)
        {
        case '"': g_string_append (out, "\\\""); continue;
        case '\\': g_string_append (out, "\\\\"); continue;
        case '\b': g_string_append (out, "\\b"); continue;
        case '\f': g_string_append (out, "\\f"); continue;
        case '\n': g_string_append (out, "\\n"); continue;
        case '\r': g_string_append (out, "\\r"); continue;
        case '\t': g_string_append (out, "\\t"); continue;
        default: break;
        }
      if (c >= 0x20 && c <= 0x7e)
        g_string_append_c (out, (char) c);
      else if (c > 0xffff)
        {
          c -= 0x10000;
          g_string_append_printf (out, "\\u%04x\\u%04x", 0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
        }
      else
        g_string_append_printf (out, "\\u%04x", c);
    }
  g_string_append_c (out, '"');
}

/* Appends @value as Python's float.__repr__ writes it: the shortest
 * digits that read back to the same double, in positional notation when
 * the decimal exponent is in [-4, 16), scientific otherwise ("1e-05",
 * "1.5e+300"), with ".0" on whole numbers; json.dumps spells the
 * non-finite values NaN, Infinity and -Infinity. */
void
_smelt_append_python_float (GString *out,
                            double   value)
{
  char buffer[64];
  char digits[32];
  int n_digits = 0, exponent, decpt;
  const char *p;

  if (isnan (value))
    {
      g_string_append (out, "NaN");
      return;
    }
  if (isinf (value))
    {
      g_string_append (out, value > 0 ? "Infinity" : "-Infinity");
      return;
    }

  /* The shortest precision that round-trips gives the same digits as
   * Python's shortest repr: among strings of that length the correctly
   * rounded one is the closest, and printf rounds correctly. */
  for (int precision = 0; precision <= 16; precision++)
    {
      g_snprintf (buffer, sizeof buffer, "%.*e", precision, value);
      if (g_ascii_strtod (buffer, NULL) == value)
        break;
    }

  p = buffer;
  if (*p == '-')
    {
      g_string_append_c (out, '-');
      p++;
    }
  for (; *p != 'e'; p++)
    if (g_ascii_isdigit (*p))
      digits[n_digits++] = *p;
  exponent = atoi (p + 1);
  while (n_digits > 1 && digits[n_digits - 1] == '0')
    n_digits--;
  decpt = exponent + 1;   /* value = 0.DIGITS × 10^decpt */

  if (decpt <= -4 || decpt > 16)
    {
      g_string_append_c (out, digits[0]);
      if (n_digits > 1)
        {
          g_string_append_c (out, '.');
          g_string_append_len (out, digits + 1, n_digits - 1);
        }
      g_string_append_printf (out, "e%c%02d", exponent < 0 ? '-' : '+', ABS (exponent));
    }
  else if (decpt <= 0)
    {
      g_string_append (out, "0.");
      for (int i = decpt; i < 0; i++)
        g_string_append_c (out, '0');
      g_string_append_len (out, digits, n_digits);
    }
  else if (decpt < n_digits)
    {
      g_string_append_len (out, digits, decpt);
      g_string_append_c (out, '.');
      g_string_append_len (out, digits + decpt, n_digits - decpt);
    }
  else
    {
      g_string_append_len (out, digits, n_digits);
      for (int i = n_digits; i < decpt; i++)
        g_string_append_c (out, '0');
      g_string_append (out, ".0");
    }
}

typedef struct
{
  GString *out;
  gboolean pretty;
  gboolean sort_keys;
} JsonWriter;

static void write_node (JsonWriter *w, JsonNode *node, guint depth);

static void
write_newline (JsonWriter *w,
               guint       depth)
{
  g_string_append_c (w->out, '\n');
  for (guint i = 0; i < depth; i++)
    g_string_append (w->out, "  ");
}

/* Python's separators: ", " between items when compact, "," and a new
 * line when indented; ": " between a key and its value in both. */
static void
write_separator (JsonWriter *w,
                 gboolean    first,
                 guint       depth)
{
  if (!first)
    g_string_append (w->out, w->pretty ? "," : ", ");
  if (w->pretty)
    write_newline (w, depth);
}

static int
compare_keys (gconstpointer a,
              gconstpointer b)
{
  /* Byte order of UTF-8 is code point order, which is Python's. */
  return strcmp (a, b);
}

static void
write_object (JsonWriter *w,
              JsonObject *object,
              guint       depth)
{
  GList *members = json_object_get_members (object);

  if (members == NULL)
    {
      g_string_append (w->out, "{}");
      return;
    }
  if (w->sort_keys)
    members = g_list_sort (members, compare_keys);

  g_string_append_c (w->out, '{');
  for (GList *l = members; l; l = l->next)
    {
      write_separator (w, l == members, depth + 1);
      append_python_string (w->out, l->data);
      g_string_append (w->out, ": ");
      write_node (w, json_object_get_member (object, l->data), depth + 1);
    }
  if (w->pretty)
    write_newline (w, depth);
  g_string_append_c (w->out, '}');
  g_list_free (members);
}

static void
write_array (JsonWriter *w,
             JsonArray  *array,
             guint       depth)
{
  guint n = json_array_get_length (array);

  if (n == 0)
    {
      g_string_append (w->out, "[]");
      return;
    }
  g_string_append_c (w->out, '[');
  for (guint i = 0; i < n; i++)
    {
      write_separator (w, i == 0, depth + 1);
      write_node (w, json_array_get_element (array, i), depth + 1);
    }
  if (w->pretty)
    write_newline (w, depth);
  g_string_append_c (w->out, ']');
}

static void
write_value (JsonWriter *w,
             JsonNode   *node)
{
  GType type = json_node_get_value_type (node);

  if (type == G_TYPE_INT64)
    g_string_append_printf (w->out, "%" G_GINT64_FORMAT, json_node_get_int (node));
  else if (type == G_TYPE_DOUBLE)
    _smelt_append_python_float (w->out, json_node_get_double (node));
  else if (type == G_TYPE_BOOLEAN)
    g_string_append (w->out, json_node_get_boolean (node) ? "true" : "false");
  else if (type == G_TYPE_STRING)
    append_python_string (w->out, json_node_get_string (node));
  else
    g_string_append (w->out, "null");
}

static void
write_node (JsonWriter *w,
            JsonNode   *node,
            guint       depth)
{
  if (node == NULL)
    {
      g_string_append (w->out, "null");
      return;
    }
  switch (json_node_get_node_type (node))
    {
    case JSON_NODE_OBJECT:
      write_object (w, json_node_get_object (node), depth);
      break;
    case JSON_NODE_ARRAY:
      write_array (w, json_node_get_array (node), depth);
      break;
    case JSON_NODE_VALUE:
      write_value (w, node);
      break;
    case JSON_NODE_NULL:
    default:
      g_string_append (w->out, "null");
      break;
    }
}

/**
 * smelt_json_to_string:
 * @node: (nullable): a JSON node
 * @pretty: whether to indent
 * @sort_keys: whether to sort object members by key
 *
 * Serializes @node byte for byte as Python's `json.dumps(obj,
 * indent=2 if pretty else None, sort_keys=sort_keys)` does, so that the
 * config.json, adapter_config.json and index files smelt writes look like
 * the ones transformers and PEFT write: ASCII-only output with \uXXXX
 * escapes, floats as Python's repr prints them, ", " and ": " separators
 * when compact, two-space indentation when pretty. No trailing newline is
 * added.
 *
 * Returns: (transfer full): the JSON text
 */
char *
smelt_json_to_string (JsonNode *node,
                      gboolean  pretty,
                      gboolean  sort_keys)
{
  JsonWriter w = { g_string_new (NULL), pretty, sort_keys };

  write_node (&w, node, 0);
  return g_string_free (w.out, FALSE);
}

/* ---- suggestions ---- */

/* The case-folded characters of @s; bytes of invalid UTF-8 count as one
 * character each, lower-cased if ASCII. */
static gunichar *
folded_chars (const char *s,
              glong      *n_chars)
{
  g_autofree char *folded = NULL;
  gunichar *chars;
  glong n;

  if (g_utf8_validate (s, -1, NULL))
    {
      folded = g_utf8_casefold (s, -1);
      return g_utf8_to_ucs4_fast (folded, -1, n_chars);
    }
  n = (glong) strlen (s);
  chars = g_new (gunichar, n + 1);
  for (glong i = 0; i < n; i++)
    chars[i] = (guchar) g_ascii_tolower (s[i]);
  chars[n] = 0;
  *n_chars = n;
  return chars;
}

/**
 * smelt_levenshtein:
 * @a: a UTF-8 string
 * @b: another UTF-8 string
 *
 * Computes the edit distance between @a and @b, ignoring case, counting
 * characters rather than bytes. Used for "did you mean" suggestions.
 *
 * Returns: the number of single-character insertions, deletions and
 *   substitutions that turn @a into @b
 */
guint
smelt_levenshtein (const char *a,
                   const char *b)
{
  g_autofree gunichar *ua = NULL, *ub = NULL;
  g_autofree guint *row = NULL;
  glong la, lb;

  g_return_val_if_fail (a != NULL, 0);
  g_return_val_if_fail (b != NULL, 0);

  ua = folded_chars (a, &la);
  ub = folded_chars (b, &lb);

  /* One row of the dynamic programme: row[j] is the distance between the
   * current prefix of a and the first j characters of b. */
  row = g_new (guint, lb + 1);
  for (glong j = 0; j <= lb; j++)
    row[j] = (guint) j;
  for (glong i = 1; i <= la; i++)
    {
      guint diagonal = row[0];

      row[0] = (guint) i;
      for (glong j = 1; j <= lb; j++)
        {
          guint above = row[j];
          guint cost = ua[i - 1] == ub[j - 1] ? 0 : 1;

          row[j] = MIN (MIN (above + 1, row[j - 1] + 1), diagonal + cost);
          diagonal = above;
        }
    }
  return row[lb];
}
