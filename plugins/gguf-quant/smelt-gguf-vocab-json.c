/* smelt-gguf-vocab-json.c: a fast read-only JSON tree for tokenizer files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smelt-gguf-vocab-private.h"

/* Everything lives in a few large arena blocks, freed at once. Children
 * are collected on one shared stack while their container is parsed and
 * then copied into the arena, so a 260k-member vocabulary costs two
 * memcpy()s rather than a quarter million small allocations. */

#define ARENA_BLOCK (1u << 20)
#define MAX_DEPTH 512

typedef struct {
  GPtrArray *blocks;
  char      *pos;
  gsize      left;
} Arena;

struct _SmeltJsonDoc {
  Arena      arena;
  SmeltJson *root;
};

typedef struct {
  const char *p;
  const char *start;
  const char *end;
  const char *name;
  Arena      *arena;
  GArray     *items;     /* SmeltJson *, the open arrays' children */
  GArray     *members;   /* SmeltJsonMember, the open objects' members */
  int         depth;
  GError    **error;
} Parser;

static gpointer
arena_alloc (Arena *a,
             gsize  size)
{
  gpointer mem;

  size = (size + 7) & ~(gsize) 7;
  if (size > a->left)
    {
      gsize block = MAX (size, ARENA_BLOCK);

      a->pos = g_malloc (block);
      a->left = block;
      g_ptr_array_add (a->blocks, a->pos);
    }
  mem = a->pos;
  a->pos += size;
  a->left -= size;
  return mem;
}

static gboolean
fail (Parser     *ps,
      const char *what)
{
  int line = 1, column = 1;

  for (const char *q = ps->start; q < ps->p && q < ps->end; q++)
    {
      if (*q == '\n')
        {
          line++;
          column = 1;
        }
      else if (((guchar) *q & 0xc0) != 0x80)
        column++;
    }
  g_set_error (ps->error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: not valid JSON: %s at line %d, column %d",
               ps->name, what, line, column);
  return FALSE;
}

static void
skip_ws (Parser *ps)
{
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
    ps->p++;
}

static int
hex4 (const char *p)
{
  int v = 0;

  for (int i = 0; i < 4; i++)
    {
      int d = g_ascii_xdigit_value (p[i]);

      if (d < 0)
        return -1;
      v = v * 16 + d;
    }
  return v;
}

/* Parses the string at ps->p (on the opening quote) into the arena. */
static gboolean
parse_string (Parser      *ps,
              const char **out,
              gsize       *out_len)
{
  const char *q = ++ps->p;
  gboolean escaped = FALSE;
  char *buf, *w;

  /* first pass: find the end; plain strings are copied in one go */
  while (q < ps->end && *q != '"')
    {
      if ((guchar) *q < 0x20)
        {
          ps->p = q;
          return fail (ps, "control character in a string");
        }
      if (*q == '\\')
        {
          escaped = TRUE;
          q++;
        }
      q++;
    }
  if (q >= ps->end)
    return fail (ps, "unterminated string");

  buf = arena_alloc (ps->arena, (q - ps->p) + 1);
  if (!escaped)
    {
      memcpy (buf, ps->p, q - ps->p);
      buf[q - ps->p] = '\0';
      *out = buf;
      *out_len = q - ps->p;
      ps->p = q + 1;
      return TRUE;
    }

  /* escapes never make a string longer than its source */
  w = buf;
  while (ps->p < q)
    {
      char c = *ps->p;

      if (c != '\\')
        {
          *w++ = c;
          ps->p++;
          continue;
        }
      c = ps->p[1];
      ps->p += 2;
      switch (c)
        {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
          {
            int cp = ps->p + 4 <= q ? hex4 (ps->p) : -1;

            if (cp < 0)
              return fail (ps, "bad \\u escape");
            ps->p += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && ps->p + 6 <= q &&
                ps->p[0] == '\\' && ps->p[1] == 'u')
              {
                int lo = hex4 (ps->p + 2);

                if (lo >= 0xdc00 && lo < 0xe000)
                  {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    ps->p += 6;
                  }
              }
            /* a lone surrogate has no UTF-8 form */
            if (cp >= 0xd800 && cp < 0xe000)
              cp = 0xfffd;
            w += g_unichar_to_utf8 (cp, w);
            break;
          }
        default:
          ps->p -= 1;
          return fail (ps, "bad escape");
        }
    }
  *w = '\0';
  *out = buf;
  *out_len = w - buf;
  ps->p = q + 1;
  return TRUE;
}

static gboolean
parse_number (Parser    *ps,
              SmeltJson *v)
{
  const char *q = ps->p;
  gboolean is_int = TRUE;
  char tmp[64];
  char *copy;
  gsize len;

  if (q < ps->end && *q == '-')
    q++;
  if (q >= ps->end || !g_ascii_isdigit (*q))
    return fail (ps, "bad number");
  if (*q == '0')
    q++;
  else
    while (q < ps->end && g_ascii_isdigit (*q))
      q++;
  if (q < ps->end && *q == '.')
    {
      is_int = FALSE;
      q++;
      if (q >= ps->end || !g_ascii_isdigit (*q))
        return fail (ps, "bad number");
      while (q < ps->end && g_ascii_isdigit (*q))
        q++;
    }
  if (q < ps->end && (*q == 'e' || *q == 'E'))
    {
      is_int = FALSE;
      q++;
      if (q < ps->end && (*q == '+' || *q == '-'))
        q++;
      if (q >= ps->end || !g_ascii_isdigit (*q))
        return fail (ps, "bad number");
      while (q < ps->end && g_ascii_isdigit (*q))
        q++;
    }

  len = q - ps->p;
  copy = len < sizeof tmp ? tmp : g_malloc (len + 1);
  memcpy (copy, ps->p, len);
  copy[len] = '\0';
  if (is_int)
    {
      errno = 0;
      v->u.i = g_ascii_strtoll (copy, NULL, 10);
      /* Python keeps big integers exact; nothing here needs them, so
       * they become floats rather than errors */
      if (errno == ERANGE)
        is_int = FALSE;
    }
  if (!is_int)
    v->u.f = g_ascii_strtod (copy, NULL);
  v->type = is_int ? SMELT_JSON_INT : SMELT_JSON_FLOAT;
  if (copy != tmp)
    g_free (copy);
  ps->p = q;
  return TRUE;
}

static gboolean
literal (Parser     *ps,
         const char *word)
{
  gsize n = strlen (word);

  if ((gsize) (ps->end - ps->p) < n || memcmp (ps->p, word, n) != 0)
    return fail (ps, "unexpected character");
  ps->p += n;
  return TRUE;
}

static gboolean parse_value (Parser *ps, SmeltJson *v);

static gboolean
parse_array (Parser    *ps,
             SmeltJson *v)
{
  guint base = ps->items->len;

  ps->p++;
  skip_ws (ps);
  if (ps->p < ps->end && *ps->p == ']')
    ps->p++;
  else
    for (;;)
      {
        SmeltJson *child = arena_alloc (ps->arena, sizeof *child);

        if (!parse_value (ps, child))
          return FALSE;
        g_array_append_val (ps->items, child);
        skip_ws (ps);
        if (ps->p < ps->end && *ps->p == ',')
          {
            ps->p++;
            continue;
          }
        if (ps->p < ps->end && *ps->p == ']')
          {
            ps->p++;
            break;
          }
        return fail (ps, "expected ',' or ']'");
      }

  v->type = SMELT_JSON_ARRAY;
  v->n = ps->items->len - base;
  v->u.items = arena_alloc (ps->arena, MAX (v->n, 1) * sizeof (SmeltJson *));
  if (v->n > 0)   /* an empty GArray may have no storage at all */
    memcpy (v->u.items, &g_array_index (ps->items, SmeltJson *, base), v->n * sizeof (SmeltJson *));
  g_array_set_size (ps->items, base);
  return TRUE;
}

static gboolean
parse_object (Parser    *ps,
              SmeltJson *v)
{
  guint base = ps->members->len;

  ps->p++;
  skip_ws (ps);
  if (ps->p < ps->end && *ps->p == '}')
    ps->p++;
  else
    for (;;)
      {
        SmeltJsonMember m;

        skip_ws (ps);
        if (ps->p >= ps->end || *ps->p != '"')
          return fail (ps, "expected a string key");
        if (!parse_string (ps, &m.key, &m.key_len))
          return FALSE;
        skip_ws (ps);
        if (ps->p >= ps->end || *ps->p != ':')
          return fail (ps, "expected ':'");
        ps->p++;
        m.value = arena_alloc (ps->arena, sizeof *m.value);
        if (!parse_value (ps, m.value))
          return FALSE;
        g_array_append_val (ps->members, m);
        skip_ws (ps);
        if (ps->p < ps->end && *ps->p == ',')
          {
            ps->p++;
            continue;
          }
        if (ps->p < ps->end && *ps->p == '}')
          {
            ps->p++;
            break;
          }
        return fail (ps, "expected ',' or '}'");
      }

  v->type = SMELT_JSON_OBJECT;
  v->n = ps->members->len - base;
  v->u.members = arena_alloc (ps->arena, MAX (v->n, 1) * sizeof (SmeltJsonMember));
  if (v->n > 0)
    memcpy (v->u.members, &g_array_index (ps->members, SmeltJsonMember, base),
          v->n * sizeof (SmeltJsonMember));
  g_array_set_size (ps->members, base);
  return TRUE;
}

static gboolean
parse_value (Parser    *ps,
             SmeltJson *v)
{
  gboolean ok;

  memset (v, 0, sizeof *v);
  skip_ws (ps);
  if (ps->p >= ps->end)
    return fail (ps, "unexpected end of input");
  if (++ps->depth > MAX_DEPTH)
    return fail (ps, "nested too deeply");

  switch (*ps->p)
    {
    case '{':
      ok = parse_object (ps, v);
      break;
    case '[':
      ok = parse_array (ps, v);
      break;
    case '"':
      v->type = SMELT_JSON_STRING;
      ok = parse_string (ps, &v->u.s, &v->n);
      break;
    case 't':
      v->type = SMELT_JSON_TRUE;
      ok = literal (ps, "true");
      break;
    case 'f':
      v->type = SMELT_JSON_FALSE;
      ok = literal (ps, "false");
      break;
    case 'n':
      v->type = SMELT_JSON_NULL;
      ok = literal (ps, "null");
      break;
    default:
      ok = parse_number (ps, v);
      break;
    }
  ps->depth--;
  return ok;
}

/**
 * smelt_json_doc_parse:
 * @data: UTF-8 JSON text
 * @len: its length
 * @name: the file name for errors
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the tree, or %NULL with @error set
 */
SmeltJsonDoc *
smelt_json_doc_parse (const char  *data,
                      gsize        len,
                      const char  *name,
                      GError     **error)
{
  g_autoptr(SmeltJsonDoc) doc = g_new0 (SmeltJsonDoc, 1);
  const char *bad;
  Parser ps = { 0 };
  gboolean ok;

  doc->arena.blocks = g_ptr_array_new_with_free_func (g_free);
  /* Python reads these files as UTF-8 and fails on anything else (a byte
   * order mark survives that and then fails as JSON, here as well) */
  if (!g_utf8_validate_len (data, len, &bad))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not valid UTF-8 at byte %" G_GSIZE_FORMAT, name, (gsize) (bad - data));
      return NULL;
    }

  ps.p = ps.start = data;
  ps.end = data + len;
  ps.name = name;
  ps.arena = &doc->arena;
  ps.items = g_array_new (FALSE, FALSE, sizeof (SmeltJson *));
  ps.members = g_array_new (FALSE, FALSE, sizeof (SmeltJsonMember));
  ps.error = error;

  doc->root = arena_alloc (&doc->arena, sizeof (SmeltJson));
  ok = parse_value (&ps, doc->root);
  if (ok)
    {
      skip_ws (&ps);
      if (ps.p != ps.end)
        ok = fail (&ps, "extra data after the value");
    }
  g_array_unref (ps.items);
  g_array_unref (ps.members);
  return ok ? g_steal_pointer (&doc) : NULL;
}

/**
 * smelt_json_doc_load:
 * @path: a JSON file
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the tree, or %NULL with @error set
 */
SmeltJsonDoc *
smelt_json_doc_load (const char  *path,
                     GError     **error)
{
  g_autoptr(GMappedFile) file = NULL;
  g_autoptr(GError) local = NULL;

  file = g_mapped_file_new (path, FALSE, &local);
  if (!file)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: %s", path, local->message);
      return NULL;
    }
  /* an empty file maps to NULL contents */
  return smelt_json_doc_parse (g_mapped_file_get_contents (file) ? g_mapped_file_get_contents (file) : "",
                               g_mapped_file_get_length (file), path, error);
}

SmeltJson *
smelt_json_doc_get_root (SmeltJsonDoc *doc)
{
  return doc->root;
}

SmeltJson *
smelt_json_doc_new_string (SmeltJsonDoc *doc,
                           const char   *s)
{
  SmeltJson *v = arena_alloc (&doc->arena, sizeof *v);
  gsize n = strlen (s);
  char *copy = arena_alloc (&doc->arena, n + 1);

  memcpy (copy, s, n + 1);
  v->type = SMELT_JSON_STRING;
  v->n = n;
  v->u.s = copy;
  return v;
}

void
smelt_json_doc_free (SmeltJsonDoc *doc)
{
  if (!doc)
    return;
  g_ptr_array_unref (doc->arena.blocks);
  g_free (doc);
}

SmeltJson *
smelt_json_get (const SmeltJson *object,
                const char      *key)
{
  gsize len;

  if (!object || object->type != SMELT_JSON_OBJECT)
    return NULL;
  len = strlen (key);
  /* the last duplicate wins, as in Python */
  for (gsize i = object->n; i-- > 0;)
    if (object->u.members[i].key_len == len && memcmp (object->u.members[i].key, key, len) == 0)
      return object->u.members[i].value;
  return NULL;
}

const char *
smelt_json_get_string (const SmeltJson *object,
                       const char      *key)
{
  SmeltJson *v = smelt_json_get (object, key);

  return v && v->type == SMELT_JSON_STRING ? v->u.s : NULL;
}

gboolean
smelt_json_truthy (const SmeltJson *v)
{
  if (!v)
    return FALSE;
  switch (v->type)
    {
    case SMELT_JSON_NULL:
    case SMELT_JSON_FALSE:
      return FALSE;
    case SMELT_JSON_TRUE:
      return TRUE;
    case SMELT_JSON_INT:
      return v->u.i != 0;
    case SMELT_JSON_FLOAT:
      return v->u.f != 0.0;
    case SMELT_JSON_STRING:
    case SMELT_JSON_ARRAY:
    case SMELT_JSON_OBJECT:
      return v->n > 0;
    }
  return FALSE;
}

gboolean
smelt_json_is_string (const SmeltJson *v,
                      const char      *s)
{
  return v && s && v->type == SMELT_JSON_STRING &&
         v->n == strlen (s) && memcmp (v->u.s, s, v->n) == 0;
}
