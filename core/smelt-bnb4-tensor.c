/* smelt-bnb4-tensor.c: a bitsandbytes 4-bit weight seen as 16-bit rows
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "smelt-private.h"

/**
 * SmeltBnb4Tensor:
 *
 * One `Linear4bit` weight of a bitsandbytes 4-bit checkpoint (the
 * `*-bnb-4bit` models QLoRA users train on), made of the stored pieces
 * `X.weight` (packed codes), `X.weight.absmax`, `X.weight.quant_map`,
 * with double quantization `X.weight.nested_absmax` and
 * `X.weight.nested_quant_map`, and the JSON `X.weight.quant_state.bitsandbytes__nf4`
 * (or `__fp4`) that says how to read them.
 *
 * As a #SmeltTensor it is `X.weight` with the original `[out, in]` shape
 * and the quant state's 16-bit dtype, and its rows are what bitsandbytes
 * dequantizes: the absmax values (decoded from 8 bits when nested), table
 * value × absmax in float32, rounded to the quant state's dtype. Those are
 * the weights a QLoRA adapter was trained against, so merging into them
 * reproduces what the adapter saw.
 *
 * The object is immutable after construction and reads only the rows it
 * is asked for (and the absmax values of their blocks), so several
 * workers can read different row ranges at once.
 */

struct _SmeltBnb4Tensor
{
  GObject        parent_instance;

  char          *name;
  char          *file_path;   /* the quant state's file, for messages */
  SmeltTensor   *parts[SMELT_BNB4_PART_QUANT_STATE + 1];  /* NULL when absent */
  GBytes        *bytes[SMELT_BNB4_PART_QUANT_STATE + 1];
  SmeltBnb4Type  quant_type;
  guint          blocksize;
  gboolean       nested;
  float          offset;
  SmeltDType     dtype;
  guint64        shape[2];
  guint64        n_blocks;
};

#define N_PARTS (SMELT_BNB4_PART_QUANT_STATE + 1)

/* Elements decoded per step: the float32 and 16-bit buffers stay in the
 * cache, and a call never allocates more than a few hundred KiB whatever
 * the number of rows asked for. */
#define CHUNK 16384

static void smelt_bnb4_tensor_iface_init (SmeltTensorInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltBnb4Tensor, smelt_bnb4_tensor, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SMELT_TYPE_TENSOR,
                                                      smelt_bnb4_tensor_iface_init))

static const char * const part_suffix[N_PARTS] = {
  "",
  ".absmax",
  ".quant_map",
  ".nested_absmax",
  ".nested_quant_map",
  ".quant_state.bitsandbytes__",
};

/* ---- the SmeltTensor interface ---------------------------------------- */

static const char *
smelt_bnb4_tensor_get_name (SmeltTensor *tensor)
{
  return SMELT_BNB4_TENSOR (tensor)->name;
}

static SmeltDType
smelt_bnb4_tensor_get_dtype (SmeltTensor *tensor)
{
  return SMELT_BNB4_TENSOR (tensor)->dtype;
}

static const guint64 *
smelt_bnb4_tensor_get_shape (SmeltTensor *tensor,
                             guint       *n_dims)
{
  *n_dims = 2;
  return SMELT_BNB4_TENSOR (tensor)->shape;
}

static GBytes *
smelt_bnb4_tensor_get_bytes (SmeltTensor *tensor)
{
  /* the rows are computed: there are no stored 16-bit bytes to hand out */
  return NULL;
}

/* The largest number of absmax values one chunk needs: its blocks, plus
 * up to 255 before them when nested, since the 8-bit codes are decoded
 * from the start of their group of 256. */
static gsize
max_chunk_blocks (SmeltBnb4Tensor *self)
{
  return (CHUNK + self->blocksize - 1) / self->blocksize + 1 +
         (self->nested ? SMELT_BNB4_NESTED_BLOCKSIZE - 1 : 0);
}

/* absmax[0 … b1 - b0) for blocks [b0, b1). When nested, @b0 is a multiple
 * of 256, so smelt_bnb4_dequantize_nested() pairs each code with its
 * group's scale. The stored pieces are copied, never read in place: a
 * third-party file may leave them misaligned for float loads. */
static void
decode_absmax (SmeltBnb4Tensor *self,
               guint64          b0,
               guint64          b1,
               const float     *nested_map,
               float           *nested_scales,
               float           *absmax)
{
  const guint8 *stored = g_bytes_get_data (self->bytes[SMELT_BNB4_PART_ABSMAX], NULL);
  const guint8 *scales;
  guint64 k0, k1;

  if (!self->nested)
    {
      memcpy (absmax, stored + b0 * sizeof (float), (b1 - b0) * sizeof (float));
      return;
    }
  k0 = b0 / SMELT_BNB4_NESTED_BLOCKSIZE;
  k1 = (b1 - 1) / SMELT_BNB4_NESTED_BLOCKSIZE + 1;
  scales = g_bytes_get_data (self->bytes[SMELT_BNB4_PART_NESTED_ABSMAX], NULL);
  memcpy (nested_scales, scales + k0 * sizeof (float), (k1 - k0) * sizeof (float));
  smelt_bnb4_dequantize_nested (stored + b0, b1 - b0, nested_scales, nested_map,
                                self->offset, absmax);
}

static gboolean
smelt_bnb4_tensor_read_rows (SmeltTensor *tensor,
                             guint64      first_row,
                             guint64      n_rows,
                             SmeltDType   want,
                             gpointer     dest,
                             GError     **error)
{
  SmeltBnb4Tensor *self = SMELT_BNB4_TENSOR (tensor);
  const guint8 *packed = g_bytes_get_data (self->bytes[SMELT_BNB4_PART_WEIGHT], NULL);
  gsize want_size = smelt_dtype_get_bits (want) / 8;
  guint64 first = first_row * self->shape[1];
  guint64 n = n_rows * self->shape[1];
  guint64 bs = self->blocksize;
  gsize max_blocks = max_chunk_blocks (self);
  g_autofree float *values = NULL;
  g_autofree guint16 *rounded = NULL;
  g_autofree float *absmax = NULL;
  g_autofree float *nested_scales = NULL;
  float nested_map[256];

  if (n == 0)
    return TRUE;
  values = g_new (float, MIN (n, CHUNK));
  absmax = g_new (float, max_blocks);
  if (self->dtype != SMELT_DTYPE_F32)
    rounded = g_new (guint16, MIN (n, CHUNK));
  if (self->nested)
    {
      nested_scales = g_new (float, max_blocks / SMELT_BNB4_NESTED_BLOCKSIZE + 2);
      memcpy (nested_map, g_bytes_get_data (self->bytes[SMELT_BNB4_PART_NESTED_QUANT_MAP], NULL),
              sizeof nested_map);
    }

  for (guint64 done = 0; done < n; done += CHUNK)
    {
      guint64 len = MIN ((guint64) CHUNK, n - done);
      guint64 j0 = first + done;
      guint64 b0 = j0 / bs;
      guint64 b1 = (j0 + len - 1) / bs + 1;
      guint8 *out = (guint8 *) dest + done * want_size;

      if (self->nested)
        b0 -= b0 % SMELT_BNB4_NESTED_BLOCKSIZE;
      decode_absmax (self, b0, b1, nested_map, nested_scales, absmax);
      /* element j0 of the weight is element j0 - b0·bs of the slice that
       * starts at block b0 (bs is even, so the nibble order is kept) */
      smelt_bnb4_dequantize (self->quant_type, packed + b0 * bs / 2, absmax,
                             j0 - b0 * bs, len, self->blocksize, values);

      /* bitsandbytes hands out the weight in the quant state's dtype: that
       * rounding is part of the values the adapter was trained against */
      if (self->dtype == SMELT_DTYPE_F32)
        smelt_convert (SMELT_DTYPE_F32, values, want, out, len, NULL);
      else
        {
          smelt_convert (SMELT_DTYPE_F32, values, self->dtype, rounded, len, NULL);
          smelt_convert (self->dtype, rounded, want, out, len, NULL);
        }
    }
  return TRUE;
}

static gboolean
smelt_bnb4_tensor_is_modified (SmeltTensor *tensor)
{
  return FALSE;
}

static void
smelt_bnb4_tensor_release (SmeltTensor *tensor)
{
  SmeltBnb4Tensor *self = SMELT_BNB4_TENSOR (tensor);

  for (guint i = 0; i < N_PARTS; i++)
    if (self->parts[i] != NULL)
      smelt_tensor_release (self->parts[i]);
}

/* Rows map onto a byte range of the packed codes; only the stored rows
 * wholly inside it are released (the piece's rows are bytes, or
 * quant_storage elements). The absmax pieces are a thirty-second of the
 * weight or less and go with release(). */
static void
smelt_bnb4_tensor_release_rows (SmeltTensor *tensor,
                                guint64      first_row,
                                guint64      n_rows)
{
  SmeltBnb4Tensor *self = SMELT_BNB4_TENSOR (tensor);
  SmeltTensor *weight = self->parts[SMELT_BNB4_PART_WEIGHT];
  guint64 stored_rows = smelt_tensor_get_n_rows (weight);
  guint64 size = g_bytes_get_size (self->bytes[SMELT_BNB4_PART_WEIGHT]);
  guint64 row_bytes = stored_rows ? size / stored_rows : 0;
  guint64 begin, end, r0, r1;

  if (row_bytes == 0 || first_row >= self->shape[0])
    return;
  n_rows = MIN (n_rows, self->shape[0] - first_row);
  begin = first_row * self->shape[1] / 2;
  end = MIN ((first_row + n_rows) * self->shape[1] / 2, size);
  r0 = (begin + row_bytes - 1) / row_bytes;
  r1 = end / row_bytes;
  if (r1 > r0)
    smelt_tensor_release_rows (weight, r0, r1 - r0);
}

static void
smelt_bnb4_tensor_iface_init (SmeltTensorInterface *iface)
{
  iface->get_name = smelt_bnb4_tensor_get_name;
  iface->get_dtype = smelt_bnb4_tensor_get_dtype;
  iface->get_shape = smelt_bnb4_tensor_get_shape;
  iface->get_bytes = smelt_bnb4_tensor_get_bytes;
  iface->read_rows = smelt_bnb4_tensor_read_rows;
  iface->is_modified = smelt_bnb4_tensor_is_modified;
  iface->release = smelt_bnb4_tensor_release;
  iface->release_rows = smelt_bnb4_tensor_release_rows;
}

/* ---- GObject ---------------------------------------------------------- */

static void
smelt_bnb4_tensor_finalize (GObject *object)
{
  SmeltBnb4Tensor *self = SMELT_BNB4_TENSOR (object);

  for (guint i = 0; i < N_PARTS; i++)
    {
      g_clear_object (&self->parts[i]);
      g_clear_pointer (&self->bytes[i], g_bytes_unref);
    }
  g_free (self->name);
  g_free (self->file_path);

  G_OBJECT_CLASS (smelt_bnb4_tensor_parent_class)->finalize (object);
}

static void
smelt_bnb4_tensor_class_init (SmeltBnb4TensorClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_bnb4_tensor_finalize;
}

static void
smelt_bnb4_tensor_init (SmeltBnb4Tensor *self)
{
}

/* ---- construction and validation -------------------------------------- */

static const char *
file_of (SmeltTensor *t)
{
  return SMELT_IS_STORED_TENSOR (t) ? _smelt_stored_tensor_get_file_path (SMELT_STORED_TENSOR (t)) : "(model)";
}

static gboolean
invalid (SmeltBnb4Tensor  *self,
         SmeltBnb4Part     part,
         GError          **error,
         const char       *fmt,
         ...) G_GNUC_PRINTF (4, 5);

/* An error naming the file and the piece: "FILE: tensor “X.weight.absmax”
 * (4-bit weight X.weight): …". */
static gboolean
invalid (SmeltBnb4Tensor  *self,
         SmeltBnb4Part     part,
         GError          **error,
         const char       *fmt,
         ...)
{
  SmeltTensor *t = self->parts[part] ? self->parts[part] : self->parts[SMELT_BNB4_PART_QUANT_STATE];
  g_autofree char *msg = NULL;
  va_list args;

  va_start (args, fmt);
  msg = g_strdup_vprintf (fmt, args);
  va_end (args);
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: tensor “%s” (bitsandbytes 4-bit weight %s): %s",
               file_of (t), smelt_tensor_get_name (t), self->name, msg);
  return FALSE;
}

static SmeltDType
dtype_from_torch_name (const char *name)
{
  if (g_strcmp0 (name, "bfloat16") == 0)
    return SMELT_DTYPE_BF16;
  if (g_strcmp0 (name, "float16") == 0)
    return SMELT_DTYPE_F16;
  if (g_strcmp0 (name, "float32") == 0)
    return SMELT_DTYPE_F32;
  return SMELT_DTYPE_INVALID;
}

static const char *
json_string (JsonObject *obj,
             const char *key)
{
  JsonNode *n = json_object_get_member (obj, key);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

static gboolean
json_int (JsonObject *obj,
          const char *key,
          gint64     *value)
{
  JsonNode *n = json_object_get_member (obj, key);

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *value = json_node_get_int (n);
  return TRUE;
}

static gboolean
parse_shape (SmeltBnb4Tensor  *self,
             JsonObject       *state,
             GError          **error)
{
  JsonNode *node = json_object_get_member (state, "shape");
  JsonArray *dims;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node) ||
      json_array_get_length ((dims = json_node_get_array (node))) != 2)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "“shape” must be the weight's [out, in] (two positive integers)");
  for (guint i = 0; i < 2; i++)
    {
      JsonNode *d = json_array_get_element (dims, i);

      if (!JSON_NODE_HOLDS_VALUE (d) || json_node_get_value_type (d) != G_TYPE_INT64 ||
          json_node_get_int (d) <= 0)
        return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                        "“shape” must be the weight's [out, in] (two positive integers)");
      self->shape[i] = (guint64) json_node_get_int (d);
    }
  return TRUE;
}

/* The nested keys of the quant state: all or none, and the pieces must
 * agree (bitsandbytes decides from the nested_absmax tensor, then reads
 * the JSON keys). */
static gboolean
parse_nested (SmeltBnb4Tensor  *self,
              JsonObject       *state,
              GError          **error)
{
  gboolean in_json = json_object_has_member (state, "nested_blocksize") ||
                     json_object_has_member (state, "nested_offset") ||
                     json_object_has_member (state, "nested_dtype");
  gboolean has_pieces = self->parts[SMELT_BNB4_PART_NESTED_ABSMAX] != NULL ||
                        self->parts[SMELT_BNB4_PART_NESTED_QUANT_MAP] != NULL;
  JsonNode *offset;
  const char *dtype;
  gint64 nested_bs;
  double v;

  self->nested = in_json || has_pieces;
  if (!self->nested)
    return TRUE;
  for (SmeltBnb4Part p = SMELT_BNB4_PART_NESTED_ABSMAX; p <= SMELT_BNB4_PART_NESTED_QUANT_MAP; p++)
    if (self->parts[p] == NULL)
      return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                      "the weight is double-quantized but %s%s is missing",
                      self->name, part_suffix[p]);
  if (!json_int (state, "nested_blocksize", &nested_bs) || nested_bs != SMELT_BNB4_NESTED_BLOCKSIZE)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "“nested_blocksize” must be %d (bitsandbytes' double quantization)",
                    SMELT_BNB4_NESTED_BLOCKSIZE);
  dtype = json_string (state, "nested_dtype");
  if (json_object_has_member (state, "nested_dtype") && g_strcmp0 (dtype, "float32") != 0)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "“nested_dtype” must be \"float32\"");
  offset = json_object_get_member (state, "nested_offset");
  if (offset == NULL || !JSON_NODE_HOLDS_VALUE (offset) ||
      (json_node_get_value_type (offset) != G_TYPE_DOUBLE &&
       json_node_get_value_type (offset) != G_TYPE_INT64) ||
      !isfinite ((v = json_node_get_double (offset))))
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "the weight is double-quantized but “nested_offset” is missing or not a number");
  /* written as the repr of a float32 widened to double: reads back exactly */
  self->offset = (float) v;
  return TRUE;
}

static gboolean
parse_quant_state (SmeltBnb4Tensor  *self,
                   const char       *key_type,
                   GError          **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  GBytes *bytes = self->bytes[SMELT_BNB4_PART_QUANT_STATE];
  SmeltTensor *t = self->parts[SMELT_BNB4_PART_QUANT_STATE];
  g_autoptr(GError) local = NULL;
  JsonObject *state;
  const char *s;
  gint64 bs;

  if (smelt_tensor_get_dtype (t) != SMELT_DTYPE_U8 ||
      !json_parser_load_from_data (parser, g_bytes_get_data (bytes, NULL),
                                   (gssize) g_bytes_get_size (bytes), &local) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "not the UTF-8 bytes of a JSON object%s%s",
                    local ? ": " : "", local ? local->message : "");
  state = json_node_get_object (json_parser_get_root (parser));

  /* Keys this reader does not know are left alone: they cannot change how
   * the known ones decode. */
  s = json_string (state, "quant_type");
  if (!smelt_bnb4_type_from_string (s, &self->quant_type) ||
      g_strcmp0 (s, smelt_bnb4_type_to_string (self->quant_type)) != 0)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "unknown “quant_type” %s%s%s (bitsandbytes 4-bit weights are \"nf4\" or \"fp4\")",
                    s ? "\"" : "", s ? s : "(missing)", s ? "\"" : "");
  if (g_strcmp0 (key_type, s) != 0)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "“quant_type” is \"%s\" but the key says %s", s, key_type);
  if (!json_int (state, "blocksize", &bs) || bs < 0 || bs > G_MAXUINT ||
      !smelt_bnb4_blocksize_is_valid ((guint) bs))
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "“blocksize” must be a power of two from 32 to 4096");
  self->blocksize = (guint) bs;
  s = json_string (state, "dtype");
  self->dtype = dtype_from_torch_name (s);
  if (self->dtype == SMELT_DTYPE_INVALID)
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error,
                    "unknown “dtype” %s%s%s (expected \"bfloat16\", \"float16\" or \"float32\")",
                    s ? "\"" : "", s ? s : "(missing)", s ? "\"" : "");
  return parse_shape (self, state, error) && parse_nested (self, state, error);
}

/* Whether piece @part holds @count elements of @dtype. */
static gboolean
check_piece (SmeltBnb4Tensor  *self,
             SmeltBnb4Part     part,
             SmeltDType        dtype,
             guint64           count,
             const char       *what,
             GError          **error)
{
  SmeltTensor *t = self->parts[part];
  guint64 have = smelt_tensor_get_n_elements (t);
  SmeltDType d = smelt_tensor_get_dtype (t);

  if (d != dtype || have != count)
    return invalid (self, part, error,
                    "holds %" G_GUINT64_FORMAT " %s values; %s needs %" G_GUINT64_FORMAT " %s",
                    have, smelt_dtype_to_string (d), what, count, smelt_dtype_to_string (dtype));
  return TRUE;
}

static gboolean
check_sizes (SmeltBnb4Tensor  *self,
             GError          **error)
{
  guint64 n, packed;
  g_autofree char *what = NULL;

  if (!g_uint64_checked_mul (&n, self->shape[0], self->shape[1]))
    return invalid (self, SMELT_BNB4_PART_QUANT_STATE, error, "“shape” is too large");
  packed = n / 2 + n % 2;
  self->n_blocks = n / self->blocksize + (n % self->blocksize != 0);
  if (g_bytes_get_size (self->bytes[SMELT_BNB4_PART_WEIGHT]) != packed)
    return invalid (self, SMELT_BNB4_PART_WEIGHT, error,
                    "holds %zu bytes of codes; the quant state's shape [%" G_GUINT64_FORMAT
                    ", %" G_GUINT64_FORMAT "] needs %" G_GUINT64_FORMAT,
                    g_bytes_get_size (self->bytes[SMELT_BNB4_PART_WEIGHT]),
                    self->shape[0], self->shape[1], packed);

  what = g_strdup_printf ("blocksize %u over %" G_GUINT64_FORMAT " elements", self->blocksize, n);
  if (!check_piece (self, SMELT_BNB4_PART_ABSMAX, self->nested ? SMELT_DTYPE_U8 : SMELT_DTYPE_F32,
                    self->n_blocks, what, error) ||
      !check_piece (self, SMELT_BNB4_PART_QUANT_MAP, SMELT_DTYPE_F32, 16,
                    "a 4-bit code table", error))
    return FALSE;
  if (!self->nested)
    return TRUE;
  return check_piece (self, SMELT_BNB4_PART_NESTED_ABSMAX, SMELT_DTYPE_F32,
                      (self->n_blocks + SMELT_BNB4_NESTED_BLOCKSIZE - 1) / SMELT_BNB4_NESTED_BLOCKSIZE,
                      "one scale per 256 absmax codes", error) &&
         check_piece (self, SMELT_BNB4_PART_NESTED_QUANT_MAP, SMELT_DTYPE_F32, 256,
                      "the 8-bit dynamic map", error);
}

/* Creates the view of one 4-bit weight from its stored pieces (indexed by
 * SmeltBnb4Part, NULL where absent; the quant state is required), after
 * checking the quant state's JSON and every piece's type and size against
 * it. Takes references on the pieces. */
SmeltTensor *
_smelt_bnb4_tensor_new (const char   *name,
                        SmeltTensor **parts,
                        GError      **error)
{
  g_autoptr(SmeltBnb4Tensor) self = NULL;
  const char *state_name, *key_type;

  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (parts[SMELT_BNB4_PART_QUANT_STATE] != NULL, NULL);

  self = g_object_new (SMELT_TYPE_BNB4_TENSOR, NULL);
  self->name = g_strdup (name);
  for (guint i = 0; i < N_PARTS; i++)
    if (parts[i] != NULL)
      {
        self->parts[i] = g_object_ref (parts[i]);
        self->bytes[i] = smelt_tensor_get_bytes (parts[i]);
      }
  self->file_path = g_strdup (file_of (parts[SMELT_BNB4_PART_QUANT_STATE]));
  state_name = smelt_tensor_get_name (parts[SMELT_BNB4_PART_QUANT_STATE]);
  key_type = strstr (state_name, part_suffix[SMELT_BNB4_PART_QUANT_STATE]);
  key_type = key_type ? key_type + strlen (part_suffix[SMELT_BNB4_PART_QUANT_STATE]) : "";

  for (SmeltBnb4Part p = SMELT_BNB4_PART_WEIGHT; p <= SMELT_BNB4_PART_QUANT_MAP; p++)
    if (self->parts[p] == NULL)
      {
        invalid (self, SMELT_BNB4_PART_QUANT_STATE, error, "%s%s is missing",
                 name, part_suffix[p]);
        return NULL;
      }
  for (guint i = 0; i < N_PARTS; i++)
    if (self->parts[i] != NULL && self->bytes[i] == NULL)
      {
        invalid (self, i, error, "has no stored bytes");
        return NULL;
      }
  if (!parse_quant_state (self, key_type, error) || !check_sizes (self, error))
    return NULL;
  return SMELT_TENSOR (g_steal_pointer (&self));
}

/* ---- public getters ---------------------------------------------------- */

/**
 * smelt_bnb4_tensor_get_quant_type:
 * @self: a #SmeltBnb4Tensor
 *
 * Gets the 4-bit data type of the weight's codes.
 *
 * Returns: the 4-bit data type of the weight's codes
 */
SmeltBnb4Type
smelt_bnb4_tensor_get_quant_type (SmeltBnb4Tensor *self)
{
  g_return_val_if_fail (SMELT_IS_BNB4_TENSOR (self), SMELT_BNB4_NF4);
  return self->quant_type;
}

/**
 * smelt_bnb4_tensor_get_blocksize:
 * @self: a #SmeltBnb4Tensor
 *
 * Gets how many consecutive elements share one absmax.
 *
 * Returns: how many consecutive elements share one absmax
 */
guint
smelt_bnb4_tensor_get_blocksize (SmeltBnb4Tensor *self)
{
  g_return_val_if_fail (SMELT_IS_BNB4_TENSOR (self), 0);
  return self->blocksize;
}

/**
 * smelt_bnb4_tensor_is_nested:
 * @self: a #SmeltBnb4Tensor
 *
 * Tells whether the absmax values are double-quantized (8-bit codes in
 * blocks of %SMELT_BNB4_NESTED_BLOCKSIZE, `bnb_4bit_use_double_quant`).
 *
 * Returns: whether the absmax values are double-quantized (8-bit codes in
 *   blocks of %SMELT_BNB4_NESTED_BLOCKSIZE, `bnb_4bit_use_double_quant`)
 */
gboolean
smelt_bnb4_tensor_is_nested (SmeltBnb4Tensor *self)
{
  g_return_val_if_fail (SMELT_IS_BNB4_TENSOR (self), FALSE);
  return self->nested;
}

/**
 * smelt_bnb4_tensor_get_offset:
 * @self: a #SmeltBnb4Tensor
 *
 * Gets the quant state's `nested_offset` (the mean subtracted from the
 * absmax values before they were quantized), or 0 when not nested.
 *
 * Returns: the quant state's `nested_offset` (the mean subtracted from the
 *   absmax values before they were quantized), or 0 when not nested
 */
float
smelt_bnb4_tensor_get_offset (SmeltBnb4Tensor *self)
{
  g_return_val_if_fail (SMELT_IS_BNB4_TENSOR (self), 0.0f);
  return self->offset;
}

/**
 * smelt_bnb4_tensor_get_part:
 * @self: a #SmeltBnb4Tensor
 * @part: which piece
 *
 * Gets the bytes of one stored piece as the checkpoint holds them (zero
 * copy), e.g. to write an unchanged weight again.
 *
 * Returns: (transfer full) (nullable): the piece's bytes, or %NULL for the
 *   nested pieces of a weight that is not nested
 */
GBytes *
smelt_bnb4_tensor_get_part (SmeltBnb4Tensor *self,
                            SmeltBnb4Part    part)
{
  g_return_val_if_fail (SMELT_IS_BNB4_TENSOR (self), NULL);
  g_return_val_if_fail (part <= SMELT_BNB4_PART_QUANT_STATE, NULL);
  return self->bytes[part] ? g_bytes_ref (self->bytes[part]) : NULL;
}
