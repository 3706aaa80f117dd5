/* smelt-safetensors-file.c: validating safetensors reader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "smelt-private.h"

/**
 * SmeltSafetensorsFile:
 *
 * A memory-mapped safetensors file whose header has been validated.
 *
 * [ctor@Smelt.SafetensorsFile.new] checks everything the reference reader
 * checks, and a little more, before any tensor is exposed: the header
 * length, UTF-8, strict JSON syntax, the schema of every entry, that every
 * dtype is known, that every span matches its shape, and that the spans
 * tile the data section exactly. The tensors are then zero-copy views of
 * the mapping, listed in the order of their data.
 *
 * The header JSON is parsed by a small strict parser rather than by
 * json-glib: json-glib accepts comments, single quotes, trailing data and
 * silently wraps integers beyond 64 bits, any of which would let a corrupt
 * shape through. The parser follows the fixed schema and never recurses.
 */

/* The deepest nesting a header may use. A valid header needs 3 (the
 * top-level object, an entry, its shape array); anything deeper is either
 * garbage or an attack on a recursive parser. */
#define MAX_HEADER_DEPTH 8

/* As many dimensions as any framework uses. */
#define MAX_DIMS 8

struct _SmeltSafetensorsFile
{
  GObject parent_instance;

  char *path;
  GMappedFile *mapping;
  guint64 header_size;    /* 8 + N */
  GPtrArray *tensors;     /* SmeltTensor*, in data order */
  GHashTable *by_name;    /* name → SmeltTensor* (borrowed from @tensors) */
  GHashTable *metadata;   /* key → value */
};

G_DEFINE_FINAL_TYPE (SmeltSafetensorsFile, smelt_safetensors_file, G_TYPE_OBJECT)

/* ---- header entries ---- */

typedef struct
{
  char *name;
  SmeltDType dtype;
  guint64 shape[MAX_DIMS];
  guint n_dims;
  guint64 begin;
  guint64 end;
  guint index;            /* position in the header, to keep sorting stable */
} Entry;

static void
entry_free (Entry *entry)
{
  g_free (entry->name);
  g_free (entry);
}

/* ---- the strict header parser ---- */

typedef struct
{
  const char *path;
  const char *start;      /* first byte of the header JSON */
  const char *p;
  const char *end;
  guint64 file_offset;    /* file offset of @start, for messages */
  GError **error;

  /* Decoded strings go into these two buffers, reused for every string
   * so that a header of 100 000 tensors does not cost a million small
   * allocations. @key holds the current member name, @value the current
   * string value. */
  GString *key;
  GString *value;

  GPtrArray *entries;     /* Entry*, in header order */
  GHashTable *names;      /* name → Entry*, to find duplicate names */
  GHashTable *metadata;   /* key → value */
  gboolean have_metadata;
} Parser;

static gboolean G_GNUC_PRINTF (2, 3)
parser_fail (Parser     *ps,
             const char *format,
             ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (ps->error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: %s", ps->path, message);
  return FALSE;
}

static guint64
parser_offset (Parser *ps)
{
  return ps->file_offset + (guint64) (ps->p - ps->start);
}

static gboolean
syntax_error (Parser     *ps,
              const char *expected)
{
  if (ps->p >= ps->end)
    return parser_fail (ps, "header JSON ends early at byte %" G_GUINT64_FORMAT
                        ": expected %s", parser_offset (ps), expected);
  return parser_fail (ps, "header JSON is invalid at byte %" G_GUINT64_FORMAT
                      ": expected %s, found “%c”", parser_offset (ps), expected,
                      g_ascii_isprint (*ps->p) ? *ps->p : '?');
}

static void
skip_ws (Parser *ps)
{
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

/* Whether the next token starts with @c, after white space. */
static gboolean
next_is (Parser *ps,
         char    c)
{
  skip_ws (ps);
  return ps->p < ps->end && *ps->p == c;
}

static gboolean
expect_char (Parser     *ps,
             char        c,
             const char *expected)
{
  if (!next_is (ps, c))
    return syntax_error (ps, expected);
  ps->p++;
  return TRUE;
}

/* What kind of value starts at the cursor, for "found …" messages. */
static const char *
describe_value (Parser *ps)
{
  skip_ws (ps);
  if (ps->p >= ps->end)
    return "the end of the header";
  switch (*ps->p)
    {
    case '{': return "an object";
    case '[': return "an array";
    case '"': return "a string";
    case 't': case 'f': return "a boolean";
    case 'n': return "null";
    default:
      return *ps->p == '-' || g_ascii_isdigit (*ps->p) ? "a number"
                                                      : "something that is not JSON";
    }
}

static gboolean
parse_hex4 (Parser   *ps,
            gunichar *out)
{
  gunichar value = 0;

  if (ps->end - ps->p < 4)
    return syntax_error (ps, "four hexadecimal digits after \\u");
  for (int i = 0; i < 4; i++)
    {
      int digit = g_ascii_xdigit_value (ps->p[i]);

      if (digit < 0)
        {
          ps->p += i;
          return syntax_error (ps, "four hexadecimal digits after \\u");
        }
      value = value * 16 + (gunichar) digit;
    }
  ps->p += 4;
  *out = value;
  return TRUE;
}

static gboolean
unpaired_surrogate (Parser   *ps,
                    gunichar  c,
                    guint     back)
{
  return parser_fail (ps, "header JSON has an unpaired surrogate \\u%04x at byte %"
                      G_GUINT64_FORMAT, c, parser_offset (ps) - back);
}

/* Decodes a \u escape (the cursor is after the "u"), joining surrogate
 * pairs. Lone surrogates are refused as serde_json refuses them: they are
 * not characters and cannot be written back as UTF-8. */
static gboolean
parse_unicode_escape (Parser   *ps,
                      gunichar *out)
{
  gunichar high, low;

  if (!parse_hex4 (ps, &high))
    return FALSE;
  if (high >= 0xdc00 && high <= 0xdfff)
    return unpaired_surrogate (ps, high, 6);
  if (high < 0xd800 || high > 0xdbff)
    {
      *out = high;
      return TRUE;
    }
  if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
    return unpaired_surrogate (ps, high, 6);
  ps->p += 2;
  if (!parse_hex4 (ps, &low))
    return FALSE;
  if (low < 0xdc00 || low > 0xdfff)
    return unpaired_surrogate (ps, high, 12);
  *out = 0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00);
  return TRUE;
}

static gboolean
parse_escape (Parser  *ps,
              GString *out)
{
  gunichar c = 0;

  if (ps->p >= ps->end)
    return syntax_error (ps, "an escape sequence");
  switch (*ps->p++)
    {
    case '"': g_string_append_c (out, '"'); return TRUE;
    case '\\': g_string_append_c (out, '\\'); return TRUE;
    case '/': g_string_append_c (out, '/'); return TRUE;
    case 'b': g_string_append_c (out, '\b'); return TRUE;
    case 'f': g_string_append_c (out, '\f'); return TRUE;
    case 'n': g_string_append_c (out, '\n'); return TRUE;
    case 'r': g_string_append_c (out, '\r'); return TRUE;
    case 't': g_string_append_c (out, '\t'); return TRUE;
    case 'u':
      if (!parse_unicode_escape (ps, &c))
        return FALSE;
      /* Names and values become C strings: a NUL would silently cut
       * them short and could make two names equal. */
      if (c == 0)
        return parser_fail (ps, "header JSON has a NUL character (\\u0000) in a string "
                            "at byte %" G_GUINT64_FORMAT, parser_offset (ps) - 6);
      g_string_append_unichar (out, c);
      return TRUE;
    default:
      ps->p--;
      return syntax_error (ps, "one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u");
    }
}

/* Decodes the JSON string at the cursor into @out, replacing its
 * contents. The header is known to be valid UTF-8 without NUL bytes. */
static gboolean
parse_string (Parser  *ps,
              GString *out)
{
  if (!expect_char (ps, '"', "a string"))
    return FALSE;
  g_string_truncate (out, 0);
  for (;;)
    {
      const char *run = ps->p;

      while (ps->p < ps->end && *ps->p != '"' && *ps->p != '\\' &&
             (guchar) *ps->p >= 0x20)
        ps->p++;
      g_string_append_len (out, run, ps->p - run);
      if (ps->p >= ps->end)
        return parser_fail (ps, "header JSON ends inside a string");
      if (*ps->p == '"')
        break;
      if (*ps->p != '\\')
        return parser_fail (ps, "header JSON has a raw control character 0x%02x in a "
                            "string at byte %" G_GUINT64_FORMAT,
                            (guchar) *ps->p, parser_offset (ps));
      ps->p++;
      if (!parse_escape (ps, out))
        return FALSE;
    }
  ps->p++;
  return TRUE;
}

typedef enum {
  NUMBER_OK,
  NUMBER_NEGATIVE,
  NUMBER_FRACTIONAL,
  NUMBER_TOO_LARGE,
} NumberKind;

static gboolean
skip_digits (Parser *ps)
{
  const char *first = ps->p;

  while (ps->p < ps->end && g_ascii_isdigit (*ps->p))
    ps->p++;
  return ps->p > first;
}

/* Parses a JSON number by the RFC 8259 grammar and classifies it: only
 * non-negative integers that fit 64 bits are sizes. */
static gboolean
parse_number (Parser      *ps,
              guint64     *out,
              NumberKind  *kind,
              const char **text,
              int         *text_len)
{
  gboolean negative = FALSE, fractional = FALSE, too_large = FALSE;
  guint64 value = 0;

  skip_ws (ps);
  *text = ps->p;
  if (ps->p < ps->end && *ps->p == '-')
    {
      negative = TRUE;
      ps->p++;
    }
  if (ps->p >= ps->end || !g_ascii_isdigit (*ps->p))
    return syntax_error (ps, "a number");
  if (*ps->p == '0')
    ps->p++;
  else
    for (; ps->p < ps->end && g_ascii_isdigit (*ps->p); ps->p++)
      if (!g_uint64_checked_mul (&value, value, 10) ||
          !g_uint64_checked_add (&value, value, (guint64) (*ps->p - '0')))
        too_large = TRUE;
  if (ps->p < ps->end && *ps->p == '.')
    {
      ps->p++;
      fractional = TRUE;
      if (!skip_digits (ps))
        return syntax_error (ps, "a digit after the decimal point");
    }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E'))
    {
      ps->p++;
      fractional = TRUE;
      if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
        ps->p++;
      if (!skip_digits (ps))
        return syntax_error (ps, "a digit in the exponent");
    }
  *text_len = (int) MIN (ps->p - *text, 40);

  if (fractional)
    *kind = NUMBER_FRACTIONAL;
  else if (negative && value != 0)
    *kind = NUMBER_NEGATIVE;
  else if (too_large)
    *kind = NUMBER_TOO_LARGE;
  else
    *kind = NUMBER_OK;
  *out = value;
  return TRUE;
}

/* Parses a size (a non-negative integer that fits 64 bits) in the field
 * @field of tensor @name. */
static gboolean
parse_size (Parser     *ps,
            const char *name,
            const char *field,
            guint64    *value)
{
  const char *text = NULL;
  int text_len = 0;
  NumberKind kind = NUMBER_OK;

  skip_ws (ps);
  if (ps->p >= ps->end || (*ps->p != '-' && !g_ascii_isdigit (*ps->p)))
    return parser_fail (ps, "tensor “%s”: “%s” must hold integers, found %s",
                        name, field, describe_value (ps));
  if (!parse_number (ps, value, &kind, &text, &text_len))
    return FALSE;
  switch (kind)
    {
    case NUMBER_NEGATIVE:
      return parser_fail (ps, "tensor “%s”: “%s” holds the negative number %.*s",
                          name, field, text_len, text);
    case NUMBER_FRACTIONAL:
      return parser_fail (ps, "tensor “%s”: “%s” holds %.*s, which is not an integer",
                          name, field, text_len, text);
    case NUMBER_TOO_LARGE:
      return parser_fail (ps, "tensor “%s”: “%s” holds %.*s, which does not fit 64 bits",
                          name, field, text_len, text);
    case NUMBER_OK:
    default:
      return TRUE;
    }
}

/* Parses `[n, n, …]` of at most @max sizes for the field @field of tensor
 * @name. */
static gboolean
parse_size_array (Parser     *ps,
                  const char *name,
                  const char *field,
                  guint64    *values,
                  guint       max,
                  guint      *n_values)
{
  guint n = 0;

  if (!next_is (ps, '['))
    return parser_fail (ps, "tensor “%s”: “%s” must be an array of integers, found %s",
                        name, field, describe_value (ps));
  ps->p++;
  if (next_is (ps, ']'))
    {
      ps->p++;
      *n_values = 0;
      return TRUE;
    }
  for (;;)
    {
      guint64 value = 0;

      if (!parse_size (ps, name, field, &value))
        return FALSE;
      if (n == max)
        return parser_fail (ps, "tensor “%s”: “%s” has more than %u elements",
                            name, field, max);
      values[n++] = value;
      if (next_is (ps, ','))
        {
          ps->p++;
          continue;
        }
      if (!expect_char (ps, ']', "“,” or “]”"))
        return FALSE;
      break;
    }
  *n_values = n;
  return TRUE;
}

/* Parses the `{` … `}` members of an object, calling @member for each
 * one with the decoded key in ps->key and the cursor on the value. The
 * callback checks for duplicate keys: each kind of object knows best
 * where it keeps the keys it has seen. */
typedef gboolean (*MemberFunc) (Parser   *ps,
                                gpointer  user_data);

static gboolean
parse_members (Parser     *ps,
               MemberFunc  member,
               gpointer    user_data)
{
  if (!expect_char (ps, '{', "“{”"))
    return FALSE;
  if (next_is (ps, '}'))
    {
      ps->p++;
      return TRUE;
    }
  for (;;)
    {
      if (!next_is (ps, '"'))
        return syntax_error (ps, "a string key");
      if (!parse_string (ps, ps->key) ||
          !expect_char (ps, ':', "“:”") ||
          !member (ps, user_data))
        return FALSE;
      if (next_is (ps, ','))
        {
          ps->p++;
          continue;
        }
      return expect_char (ps, '}', "“,” or “}”");
    }
}

static gboolean
metadata_member (Parser   *ps,
                 gpointer  user_data)
{
  const char *key = ps->key->str;

  if (g_hash_table_contains (ps->metadata, key))
    return parser_fail (ps, "__metadata__ has the key “%s” twice", key);
  if (!next_is (ps, '"'))
    return parser_fail (ps, "__metadata__ value of “%s” must be a string, found %s",
                        key, describe_value (ps));
  /* The key stays put: a string value holds no keys. */
  if (!parse_string (ps, ps->value))
    return FALSE;
  g_hash_table_insert (ps->metadata, g_strdup (key), g_strdup (ps->value->str));
  return TRUE;
}

static gboolean
parse_metadata (Parser *ps)
{
  if (ps->have_metadata)
    return parser_fail (ps, "the header lists “__metadata__” twice");
  ps->have_metadata = TRUE;
  if (!next_is (ps, '{'))
    return parser_fail (ps, "__metadata__ must be an object of strings, found %s",
                        describe_value (ps));
  return parse_members (ps, metadata_member, NULL);
}

enum {
  FIELD_DTYPE = 1 << 0,
  FIELD_SHAPE = 1 << 1,
  FIELD_DATA_OFFSETS = 1 << 2,
};

typedef struct
{
  Entry *entry;
  guint seen;             /* FIELD_* */
  guint64 offsets[2];
  guint n_offsets;
} EntryFields;

static gboolean
parse_dtype (Parser *ps,
             Entry  *entry)
{
  if (!next_is (ps, '"'))
    return parser_fail (ps, "tensor “%s”: “dtype” must be a string, found %s",
                        entry->name, describe_value (ps));
  if (!parse_string (ps, ps->value))
    return FALSE;
  /* Names are case-sensitive in the reference reader. */
  entry->dtype = smelt_dtype_from_string (ps->value->str);
  if (entry->dtype == SMELT_DTYPE_INVALID ||
      strcmp (smelt_dtype_to_string (entry->dtype), ps->value->str) != 0)
    return parser_fail (ps, "tensor “%s” has the unknown dtype “%s”",
                        entry->name, ps->value->str);
  return TRUE;
}

static gboolean
entry_member (Parser   *ps,
              gpointer  user_data)
{
  EntryFields *fields = user_data;
  Entry *entry = fields->entry;
  const char *key = ps->key->str;
  guint field;

  if (strcmp (key, "dtype") == 0)
    field = FIELD_DTYPE;
  else if (strcmp (key, "shape") == 0)
    field = FIELD_SHAPE;
  else if (strcmp (key, "data_offsets") == 0)
    field = FIELD_DATA_OFFSETS;
  else
    return parser_fail (ps, "tensor “%s” has an unknown field “%s” (expected dtype, "
                        "shape and data_offsets)", entry->name, key);
  if (fields->seen & field)
    return parser_fail (ps, "tensor “%s” has the field “%s” twice", entry->name, key);
  fields->seen |= field;

  switch (field)
    {
    case FIELD_DTYPE:
      return parse_dtype (ps, entry);
    case FIELD_SHAPE:
      return parse_size_array (ps, entry->name, "shape", entry->shape, MAX_DIMS,
                               &entry->n_dims);
    case FIELD_DATA_OFFSETS:
    default:
      return parse_size_array (ps, entry->name, "data_offsets", fields->offsets, 2,
                               &fields->n_offsets);
    }
}

typedef enum {
  SIZE_TOO_LARGE,
  SIZE_NOT_WHOLE_BYTES,
  SIZE_MISMATCH,
} SizeProblem;

/* Reports a shape that does not fit its span; the shape is formatted only
 * here, as valid entries never need it. */
static gboolean
size_error (Parser      *ps,
            const Entry *entry,
            SizeProblem  problem,
            guint64      needed)
{
  g_autofree char *shape = _smelt_shape_to_string (entry->shape, entry->n_dims);
  const char *dtype = smelt_dtype_to_string (entry->dtype);

  if (problem == SIZE_TOO_LARGE)
    return parser_fail (ps, "tensor “%s”: shape %s is too large", entry->name, shape);
  if (problem == SIZE_NOT_WHOLE_BYTES)
    return parser_fail (ps, "tensor “%s”: shape %s of %s is not a whole number of bytes",
                        entry->name, shape, dtype);
  return parser_fail (ps, "tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %"
                      G_GUINT64_FORMAT "] span %" G_GUINT64_FORMAT " bytes but shape "
                      "%s of %s needs %" G_GUINT64_FORMAT,
                      entry->name, entry->begin, entry->end, entry->end - entry->begin,
                      shape, dtype, needed);
}

/* Checks what the syntax cannot: that every field is there, that the span
 * is well-formed and exactly as long as the shape needs. */
static gboolean
check_entry (Parser      *ps,
             EntryFields *fields)
{
  static const struct { guint field; const char *name; } required[] = {
    { FIELD_DTYPE, "dtype" },
    { FIELD_SHAPE, "shape" },
    { FIELD_DATA_OFFSETS, "data_offsets" },
  };
  Entry *entry = fields->entry;
  guint64 n_elements, n_bits;

  for (guint i = 0; i < G_N_ELEMENTS (required); i++)
    if (!(fields->seen & required[i].field))
      return parser_fail (ps, "tensor “%s” has no “%s” field", entry->name, required[i].name);

  if (fields->n_offsets != 2)
    return parser_fail (ps, "tensor “%s”: “data_offsets” must hold exactly 2 integers, "
                        "not %u", entry->name, fields->n_offsets);
  entry->begin = fields->offsets[0];
  entry->end = fields->offsets[1];
  if (entry->begin > entry->end)
    return parser_fail (ps, "tensor “%s”: data_offsets [%" G_GUINT64_FORMAT ", %"
                        G_GUINT64_FORMAT "] end before they begin",
                        entry->name, entry->begin, entry->end);

  if (!_smelt_shape_n_elements (entry->shape, entry->n_dims, &n_elements) ||
      !g_uint64_checked_mul (&n_bits, n_elements, smelt_dtype_get_bits (entry->dtype)))
    return size_error (ps, entry, SIZE_TOO_LARGE, 0);
  if (n_bits % 8 != 0)
    return size_error (ps, entry, SIZE_NOT_WHOLE_BYTES, 0);
  if (n_bits / 8 != entry->end - entry->begin)
    return size_error (ps, entry, SIZE_MISMATCH, n_bits / 8);
  return TRUE;
}

static gboolean
parse_entry (Parser *ps)
{
  const char *name = ps->key->str;
  EntryFields fields = { 0, };
  Entry *entry;

  if (g_hash_table_contains (ps->names, name))
    return parser_fail (ps, "the header lists “%s” twice", name);
  if (!next_is (ps, '{'))
    return parser_fail (ps, "tensor “%s” must be an object, found %s",
                        name, describe_value (ps));

  entry = g_new0 (Entry, 1);
  entry->name = g_strdup (name);
  entry->index = ps->entries->len;
  g_ptr_array_add (ps->entries, entry);
  g_hash_table_add (ps->names, entry->name);

  fields.entry = entry;
  return parse_members (ps, entry_member, &fields) && check_entry (ps, &fields);
}

static gboolean
top_member (Parser   *ps,
            gpointer  user_data)
{
  if (strcmp (ps->key->str, "__metadata__") == 0)
    return parse_metadata (ps);
  return parse_entry (ps);
}

static gboolean
parse_header (Parser *ps)
{
  if (!parse_members (ps, top_member, NULL))
    return FALSE;
  skip_ws (ps);
  if (ps->p < ps->end)
    return parser_fail (ps, "header JSON has unexpected data after the top-level object "
                        "at byte %" G_GUINT64_FORMAT, parser_offset (ps));
  return TRUE;
}

/* A quick scan of the nesting depth, before anything parses the JSON, so
 * that `[[[[…` a million levels deep is refused with a clear message. */
static gboolean
check_depth (Parser *ps)
{
  gboolean in_string = FALSE;
  guint depth = 0;

  for (const char *p = ps->start; p < ps->end; p++)
    {
      if (in_string)
        {
          if (*p == '\\')
            p++;
          else if (*p == '"')
            in_string = FALSE;
          continue;
        }
      switch (*p)
        {
        case '"':
          in_string = TRUE;
          break;
        case '{':
        case '[':
          if (++depth > MAX_HEADER_DEPTH)
            {
              ps->p = p;
              return parser_fail (ps, "header JSON nests deeper than %d levels at byte %"
                                  G_GUINT64_FORMAT, MAX_HEADER_DEPTH, parser_offset (ps));
            }
          break;
        case '}':
        case ']':
          if (depth > 0)
            depth--;
          break;
        default:
          break;
        }
    }
  return TRUE;
}

/* ---- the data section ---- */

static int
compare_entries_by_offset (gconstpointer a,
                           gconstpointer b)
{
  const Entry *x = *(const Entry * const *) a;
  const Entry *y = *(const Entry * const *) b;

  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* Sorts @entries by offset and checks that they tile the data section of
 * @data_size bytes exactly: no hole, no overlap, nothing after the end. */
static gboolean
check_spans (Parser    *ps,
             GPtrArray *entries,
             guint64    data_size)
{
  const Entry *prev = NULL;
  guint64 prev_end = 0;

  g_ptr_array_sort (entries, compare_entries_by_offset);
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *entry = entries->pdata[i];

      if (entry->begin < prev_end)
        return parser_fail (ps, "tensor “%s” [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                            ") overlaps tensor “%s” [%" G_GUINT64_FORMAT ", %"
                            G_GUINT64_FORMAT ")", entry->name, entry->begin, entry->end,
                            prev->name, prev->begin, prev->end);
      if (entry->begin > prev_end && prev == NULL)
        return parser_fail (ps, "the data section has a hole: bytes [0, %" G_GUINT64_FORMAT
                            ") before tensor “%s” belong to no tensor",
                            entry->begin, entry->name);
      if (entry->begin > prev_end)
        return parser_fail (ps, "the data section has a hole: bytes [%" G_GUINT64_FORMAT
                            ", %" G_GUINT64_FORMAT ") between tensors “%s” and “%s” "
                            "belong to no tensor", prev_end, entry->begin,
                            prev->name, entry->name);
      if (entry->end > data_size)
        return parser_fail (ps, "tensor “%s” [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                            ") runs past the end of the %" G_GUINT64_FORMAT "-byte data "
                            "section (is the file truncated?)", entry->name,
                            entry->begin, entry->end, data_size);
      prev = entry;
      prev_end = entry->end;
    }
  if (prev_end != data_size)
    return parser_fail (ps, "%" G_GUINT64_FORMAT " byte%s of trailing data after the "
                        "last tensor (the data section has %" G_GUINT64_FORMAT " bytes, "
                        "the tensors use %" G_GUINT64_FORMAT ")",
                        data_size - prev_end, data_size - prev_end == 1 ? "" : "s",
                        data_size, prev_end);
  return TRUE;
}

/* ---- loading ---- */

static gboolean
map_file (SmeltSafetensorsFile *self,
          GError              **error)
{
  g_autoptr(GError) local_error = NULL;
  struct stat st;
  int fd;

  fd = g_open (self->path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int saved_errno = errno;

      g_set_error (error, SMELT_MODEL_ERROR,
                   saved_errno == ENOENT ? SMELT_MODEL_ERROR_NOT_FOUND
                                         : SMELT_MODEL_ERROR_INVALID,
                   "%s: cannot open: %s", self->path, g_strerror (saved_errno));
      return FALSE;
    }
  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a regular file", self->path);
      close (fd);
      return FALSE;
    }
  /* The mapping survives closing the descriptor. */
  self->mapping = g_mapped_file_new_from_fd (fd, FALSE, &local_error);
  close (fd);
  if (self->mapping == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: cannot map: %s", self->path, local_error->message);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_header_length (SmeltSafetensorsFile *self,
                     guint64              *header_length,
                     GError              **error)
{
  gsize length = g_mapped_file_get_length (self->mapping);
  const guint8 *data = (const guint8 *) g_mapped_file_get_contents (self->mapping);
  guint64 n = 0;

  if (length < 8)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: the file is %" G_GSIZE_FORMAT " bytes long, too short for the "
                   "8-byte header length", self->path, length);
      return FALSE;
    }
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | data[i];
  if (n == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: header length is 0", self->path);
      return FALSE;
    }
  if (n > SMELT_SAFETENSORS_MAX_HEADER)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: header length %" G_GUINT64_FORMAT " exceeds the limit of %d bytes",
                   self->path, n, SMELT_SAFETENSORS_MAX_HEADER);
      return FALSE;
    }
  if (n > length - 8)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: header length %" G_GUINT64_FORMAT " runs past the end of the %"
                   G_GSIZE_FORMAT "-byte file", self->path, n, length);
      return FALSE;
    }
  *header_length = n;
  return TRUE;
}

static gboolean
check_header_text (Parser *ps)
{
  const char *bad = NULL;

  if (!g_utf8_validate_len (ps->start, (gsize) (ps->end - ps->start), &bad))
    {
      ps->p = bad;
      if (*bad == '\0')
        return parser_fail (ps, "header has a NUL byte at byte %" G_GUINT64_FORMAT,
                            parser_offset (ps));
      return parser_fail (ps, "header is not valid UTF-8 at byte %" G_GUINT64_FORMAT,
                          parser_offset (ps));
    }
  if (*ps->start != '{')
    return parser_fail (ps, "header does not start with “{” (it starts with byte 0x%02x)",
                        (guchar) *ps->start);
  return TRUE;
}

static void
expose_tensors (SmeltSafetensorsFile *self,
                GPtrArray            *entries)
{
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *entry = entries->pdata[i];
      SmeltTensor *tensor;

      tensor = _smelt_stored_tensor_new (self->mapping, self->path, entry->name,
                                         entry->dtype, entry->shape, entry->n_dims,
                                         self->header_size + entry->begin,
                                         entry->end - entry->begin);
      g_ptr_array_add (self->tensors, tensor);
      g_hash_table_insert (self->by_name, (gpointer) smelt_tensor_get_name (tensor), tensor);
    }
}

static gboolean
load (SmeltSafetensorsFile *self,
      GError              **error)
{
  g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func ((GDestroyNotify) entry_free);
  g_autoptr(GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GString) key = g_string_sized_new (256);
  g_autoptr(GString) value = g_string_sized_new (64);
  guint64 n;
  const char *header;
  Parser ps = { 0, };

  if (!map_file (self, error) || !check_header_length (self, &n, error))
    return FALSE;

  header = g_mapped_file_get_contents (self->mapping) + 8;
  ps.path = self->path;
  ps.start = ps.p = header;
  ps.end = header + n;
  ps.file_offset = 8;
  ps.error = error;
  ps.entries = entries;
  ps.names = names;
  ps.key = key;
  ps.value = value;
  ps.metadata = self->metadata;

  if (!check_header_text (&ps) || !check_depth (&ps) || !parse_header (&ps))
    return FALSE;

  self->header_size = 8 + n;
  if (!check_spans (&ps, entries, g_mapped_file_get_length (self->mapping) - self->header_size))
    return FALSE;

  expose_tensors (self, entries);
  return TRUE;
}

/* ---- GObject ---- */

static void
smelt_safetensors_file_finalize (GObject *object)
{
  SmeltSafetensorsFile *self = SMELT_SAFETENSORS_FILE (object);

  g_clear_pointer (&self->by_name, g_hash_table_unref);
  g_clear_pointer (&self->tensors, g_ptr_array_unref);
  g_clear_pointer (&self->metadata, g_hash_table_unref);
  g_clear_pointer (&self->mapping, g_mapped_file_unref);
  g_free (self->path);

  G_OBJECT_CLASS (smelt_safetensors_file_parent_class)->finalize (object);
}

static void
smelt_safetensors_file_class_init (SmeltSafetensorsFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_safetensors_file_finalize;
}

static void
smelt_safetensors_file_init (SmeltSafetensorsFile *self)
{
  self->tensors = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  self->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

/**
 * smelt_safetensors_file_new:
 * @path: (type filename): the file to open
 * @error: return location for a #GError
 *
 * Maps @path read-only and validates its header and the layout of its
 * data. On failure the error is in the %SMELT_MODEL_ERROR domain
 * (%SMELT_MODEL_ERROR_NOT_FOUND if @path does not exist,
 * %SMELT_MODEL_ERROR_INVALID otherwise) and its message starts with @path
 * and names the first offending tensor.
 *
 * Returns: (transfer full) (nullable): the file, or %NULL on error
 */
SmeltSafetensorsFile *
smelt_safetensors_file_new (const char  *path,
                            GError     **error)
{
  g_autoptr(SmeltSafetensorsFile) self = NULL;

  g_return_val_if_fail (path != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  self = g_object_new (SMELT_TYPE_SAFETENSORS_FILE, NULL);
  self->path = g_strdup (path);
  if (!load (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

/**
 * smelt_safetensors_file_get_path:
 * @self: a #SmeltSafetensorsFile
 *
 * Gets the path the file was opened with.
 *
 * Returns: (type filename) (transfer none): the path the file was opened with
 */
const char *
smelt_safetensors_file_get_path (SmeltSafetensorsFile *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), NULL);
  return self->path;
}

/**
 * smelt_safetensors_file_get_n_tensors:
 * @self: a #SmeltSafetensorsFile
 *
 * Gets the number of tensors in the file.
 *
 * Returns: the number of tensors in the file
 */
guint
smelt_safetensors_file_get_n_tensors (SmeltSafetensorsFile *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), 0);
  return self->tensors->len;
}

/**
 * smelt_safetensors_file_get_tensor:
 * @self: a #SmeltSafetensorsFile
 * @index: a position, less than [method@Smelt.SafetensorsFile.get_n_tensors]
 *
 * Gets a tensor by position. Tensors are listed in the order of their
 * data in the file, which is the order to read them in.
 *
 * Returns: (transfer none): the tensor at @index
 */
SmeltTensor *
smelt_safetensors_file_get_tensor (SmeltSafetensorsFile *self,
                                   guint                 index)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), NULL);
  g_return_val_if_fail (index < self->tensors->len, NULL);
  return self->tensors->pdata[index];
}

/**
 * smelt_safetensors_file_lookup:
 * @self: a #SmeltSafetensorsFile
 * @name: a tensor name
 *
 * Gets the tensor called @name, or %NULL.
 *
 * Returns: (transfer none) (nullable): the tensor called @name, or %NULL
 */
SmeltTensor *
smelt_safetensors_file_lookup (SmeltSafetensorsFile *self,
                               const char           *name)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  return g_hash_table_lookup (self->by_name, name);
}

/**
 * smelt_safetensors_file_get_metadata:
 * @self: a #SmeltSafetensorsFile
 * @key: a `__metadata__` key, such as "format"
 *
 * Gets the value of @key, or %NULL.
 *
 * Returns: (transfer none) (nullable): the value of @key, or %NULL
 */
const char *
smelt_safetensors_file_get_metadata (SmeltSafetensorsFile *self,
                                     const char           *key)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), NULL);
  g_return_val_if_fail (key != NULL, NULL);
  return g_hash_table_lookup (self->metadata, key);
}

/**
 * smelt_safetensors_file_list_metadata:
 * @self: a #SmeltSafetensorsFile
 *
 * Gets the `__metadata__` keys, sorted byte-wise; empty if the file has
 * none.
 *
 * Returns: (transfer full) (array zero-terminated=1): the `__metadata__`
 *   keys, sorted byte-wise; empty if the file has none
 */
char **
smelt_safetensors_file_list_metadata (SmeltSafetensorsFile *self)
{
  g_autofree gpointer *keys = NULL;
  guint n_keys;
  GPtrArray *list;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), NULL);

  keys = g_hash_table_get_keys_as_array (self->metadata, &n_keys);
  list = g_ptr_array_new_full (n_keys + 1, NULL);
  for (guint i = 0; i < n_keys; i++)
    g_ptr_array_add (list, g_strdup (keys[i]));
  g_ptr_array_sort (list, _smelt_compare_strv_items);
  g_ptr_array_add (list, NULL);
  return (char **) g_ptr_array_free (list, FALSE);
}

/**
 * smelt_safetensors_file_get_header_size:
 * @self: a #SmeltSafetensorsFile
 *
 * Gets the size of the file's prefix before the data section: the 8-byte
 * length plus the header JSON and its padding.
 *
 * Returns: the size of the file's prefix before the data section: the
 *   8-byte length plus the header JSON and its padding
 */
guint64
smelt_safetensors_file_get_header_size (SmeltSafetensorsFile *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_FILE (self), 0);
  return self->header_size;
}
