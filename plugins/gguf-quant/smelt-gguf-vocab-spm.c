/* smelt-gguf-vocab-spm.c: the pieces of a SentencePiece tokenizer.model
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "smelt-gguf-vocab-private.h"

/* tokenizer.model is a serialized sentencepiece ModelProto. The converter
 * reads only the pieces (field 1: repeated SentencePiece { 1: piece,
 * 2: score (float), 3: type }); the trainer and normalizer specs are
 * skipped like any unknown field. Protobuf wire format: each field is a
 * varint key (number << 3 | wire type) followed by a varint (0), 8 bytes
 * (1), a varint length and bytes (2) or 4 bytes (5). */

typedef struct {
  const guint8 *p;
  const guint8 *end;
} Reader;

static gboolean
read_varint (Reader  *r,
             guint64 *out)
{
  guint64 v = 0;

  for (int shift = 0; shift < 64; shift += 7)
    {
      guint8 b;

      if (r->p >= r->end)
        return FALSE;
      b = *r->p++;
      v |= (guint64) (b & 0x7f) << shift;
      if (!(b & 0x80))
        {
          *out = v;
          return TRUE;
        }
    }
  return FALSE;
}

/* Skips a field's value; FALSE on truncation or an unknown wire type
 * (3 and 4 are the deprecated groups, which sentencepiece never writes). */
static gboolean
skip_field (Reader *r,
            guint   wire)
{
  guint64 n;

  switch (wire)
    {
    case 0:
      return read_varint (r, &n);
    case 1:
      n = 8;
      break;
    case 2:
      if (!read_varint (r, &n))
        return FALSE;
      break;
    case 5:
      n = 4;
      break;
    default:
      return FALSE;
    }
  if (n > (guint64) (r->end - r->p))
    return FALSE;
  r->p += n;
  return TRUE;
}

static gboolean
parse_piece (Reader        *r,
             GStringChunk  *strings,
             SmeltSpmPiece *piece)
{
  piece->piece = NULL;
  piece->score = 0.0f;
  piece->type = SMELT_SPM_NORMAL;   /* the proto's default */

  while (r->p < r->end)
    {
      guint64 key, v;
      guint field, wire;

      if (!read_varint (r, &key))
        return FALSE;
      field = key >> 3;
      wire = key & 7;
      if (field == 1 && wire == 2)
        {
          if (!read_varint (r, &v) || v > (guint64) (r->end - r->p))
            return FALSE;
          piece->piece = g_string_chunk_insert_len (strings, (const char *) r->p, v);
          r->p += v;
        }
      else if (field == 2 && wire == 5)
        {
          guint32 bits;

          if (r->end - r->p < 4)
            return FALSE;
          bits = (guint32) r->p[0] | (guint32) r->p[1] << 8 |
                 (guint32) r->p[2] << 16 | (guint32) r->p[3] << 24;
          memcpy (&piece->score, &bits, 4);
          r->p += 4;
        }
      else if (field == 3 && wire == 0)
        {
          if (!read_varint (r, &v))
            return FALSE;
          piece->type = (int) v;
        }
      else if (!skip_field (r, wire))
        return FALSE;
    }
  if (!piece->piece)
    piece->piece = g_string_chunk_insert_const (strings, "");
  return TRUE;
}

static void
set_invalid (GError    **error,
             const char *name,
             const char *what)
{
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: not a SentencePiece model: %s", name, what);
}

/**
 * smelt_spm_model_parse:
 * @data: the bytes of a tokenizer.model
 * @len: their length
 * @name: the file name for errors
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the pieces in id order, or %NULL with @error set
 */
SmeltSpmModel *
smelt_spm_model_parse (const guint8  *data,
                       gsize          len,
                       const char    *name,
                       GError       **error)
{
  g_autoptr(SmeltSpmModel) model = g_new0 (SmeltSpmModel, 1);
  g_autoptr(GArray) pieces = g_array_new (FALSE, FALSE, sizeof (SmeltSpmPiece));
  Reader r = { data, data + len };

  model->strings = g_string_chunk_new (64 * 1024);
  while (r.p < r.end)
    {
      guint64 key, n;
      guint field, wire;

      if (!read_varint (&r, &key))
        {
          set_invalid (error, name, "truncated field");
          return NULL;
        }
      field = key >> 3;
      wire = key & 7;
      if (field == 0)
        {
          set_invalid (error, name, "field number 0");
          return NULL;
        }
      if (field == 1 && wire == 2)
        {
          Reader sub;
          SmeltSpmPiece piece;

          if (!read_varint (&r, &n) || n > (guint64) (r.end - r.p))
            {
              set_invalid (error, name, "truncated piece");
              return NULL;
            }
          sub.p = r.p;
          sub.end = r.p + n;
          if (!parse_piece (&sub, model->strings, &piece))
            {
              g_autofree char *what = g_strdup_printf ("piece %u is malformed", pieces->len);

              set_invalid (error, name, what);
              return NULL;
            }
          g_array_append_val (pieces, piece);
          r.p += n;
        }
      else if (!skip_field (&r, wire))
        {
          set_invalid (error, name, "malformed field");
          return NULL;
        }
    }
  if (pieces->len == 0)
    {
      set_invalid (error, name, "no pieces");
      return NULL;
    }
  model->n_pieces = pieces->len;
  model->pieces = (SmeltSpmPiece *) g_array_free (g_steal_pointer (&pieces), FALSE);
  return g_steal_pointer (&model);
}

/**
 * smelt_spm_model_load:
 * @path: a tokenizer.model
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the pieces, or %NULL with @error set
 */
SmeltSpmModel *
smelt_spm_model_load (const char  *path,
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
  return smelt_spm_model_parse ((const guint8 *) g_mapped_file_get_contents (file),
                                g_mapped_file_get_length (file), path, error);
}

void
smelt_spm_model_free (SmeltSpmModel *model)
{
  if (!model)
    return;
  g_free (model->pieces);
  if (model->strings)
    g_string_chunk_free (model->strings);
  g_free (model);
}
