/* smelt-ggml-type.c: ggml tensor types: sizes, names and row encoders
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "smelt-private.h"

typedef struct {
  guint32     type;
  const char *name;      /* ggml_type_name() spelling */
  guint       block;
  gsize       block_bytes;
} TypeInfo;

/* Sizes from ggml's type traits; every type a reader may meet, so that
 * `smelt inspect` can describe any file even where smelt cannot write it. */
static const TypeInfo types[] = {
  { SMELT_GGML_TYPE_F32,     "f32",     1,   4 },
  { SMELT_GGML_TYPE_F16,     "f16",     1,   2 },
  { SMELT_GGML_TYPE_Q4_0,    "q4_0",    32,  18 },
  { SMELT_GGML_TYPE_Q4_1,    "q4_1",    32,  20 },
  { SMELT_GGML_TYPE_Q5_0,    "q5_0",    32,  22 },
  { SMELT_GGML_TYPE_Q5_1,    "q5_1",    32,  24 },
  { SMELT_GGML_TYPE_Q8_0,    "q8_0",    32,  34 },
  { SMELT_GGML_TYPE_Q8_1,    "q8_1",    32,  36 },
  { SMELT_GGML_TYPE_Q2_K,    "q2_K",    256, 84 },
  { SMELT_GGML_TYPE_Q3_K,    "q3_K",    256, 110 },
  { SMELT_GGML_TYPE_Q4_K,    "q4_K",    256, 144 },
  { SMELT_GGML_TYPE_Q5_K,    "q5_K",    256, 176 },
  { SMELT_GGML_TYPE_Q6_K,    "q6_K",    256, 210 },
  { SMELT_GGML_TYPE_Q8_K,    "q8_K",    256, 292 },
  { SMELT_GGML_TYPE_IQ2_XXS, "iq2_xxs", 256, 66 },
  { SMELT_GGML_TYPE_IQ2_XS,  "iq2_xs",  256, 74 },
  { SMELT_GGML_TYPE_IQ3_XXS, "iq3_xxs", 256, 98 },
  { SMELT_GGML_TYPE_IQ1_S,   "iq1_s",   256, 50 },
  { SMELT_GGML_TYPE_IQ4_NL,  "iq4_nl",  32,  18 },
  { SMELT_GGML_TYPE_IQ3_S,   "iq3_s",   256, 110 },
  { SMELT_GGML_TYPE_IQ2_S,   "iq2_s",   256, 82 },
  { SMELT_GGML_TYPE_IQ4_XS,  "iq4_xs",  256, 136 },
  { SMELT_GGML_TYPE_I8,      "i8",      1,   1 },
  { SMELT_GGML_TYPE_I16,     "i16",     1,   2 },
  { SMELT_GGML_TYPE_I32,     "i32",     1,   4 },
  { SMELT_GGML_TYPE_I64,     "i64",     1,   8 },
  { SMELT_GGML_TYPE_F64,     "f64",     1,   8 },
  { SMELT_GGML_TYPE_IQ1_M,   "iq1_m",   256, 56 },
  { SMELT_GGML_TYPE_BF16,    "bf16",    1,   2 },
  { SMELT_GGML_TYPE_TQ1_0,   "tq1_0",   256, 54 },
  { SMELT_GGML_TYPE_TQ2_0,   "tq2_0",   256, 66 },
  { SMELT_GGML_TYPE_MXFP4,   "mxfp4",   32,  17 },
};

static const TypeInfo *
lookup (guint32 type)
{
  for (gsize i = 0; i < G_N_ELEMENTS (types); i++)
    if (types[i].type == type)
      return &types[i];
  return NULL;
}

/**
 * smelt_ggml_type_is_known:
 * @type: a type number read from a file
 *
 * Returns: whether @type is a ggml type whose size smelt knows
 */
gboolean
smelt_ggml_type_is_known (guint32 type)
{
  return lookup (type) != NULL;
}

/**
 * smelt_ggml_type_get_name:
 * @type: a ggml type
 *
 * Returns: ggml's name of @type ("f16", "q8_0", "q4_K", …), or "?" for a
 *   type smelt does not know
 */
const char *
smelt_ggml_type_get_name (SmeltGgmlType type)
{
  const TypeInfo *info = lookup (type);

  return info ? info->name : "?";
}

/**
 * smelt_ggml_type_get_block_size:
 * @type: a ggml type
 *
 * Returns: the number of elements in one block of @type (1 for plain
 *   types), or 0 for an unknown type
 */
guint
smelt_ggml_type_get_block_size (SmeltGgmlType type)
{
  const TypeInfo *info = lookup (type);

  return info ? info->block : 0;
}

/**
 * smelt_ggml_type_get_block_bytes:
 * @type: a ggml type
 *
 * Returns: the size in bytes of one block of @type, or 0 for an unknown
 *   type
 */
gsize
smelt_ggml_type_get_block_bytes (SmeltGgmlType type)
{
  const TypeInfo *info = lookup (type);

  return info ? info->block_bytes : 0;
}

/**
 * smelt_ggml_type_row_size:
 * @type: a ggml type
 * @n_per_row: elements in a row; a multiple of the block size
 *
 * Returns: the bytes of one row, or 0 if @n_per_row is not a multiple of
 *   the block size or @type is unknown
 */
guint64
smelt_ggml_type_row_size (SmeltGgmlType type,
                          guint64       n_per_row)
{
  const TypeInfo *info = lookup (type);

  if (info == NULL || n_per_row % info->block != 0)
    return 0;
  return n_per_row / info->block * info->block_bytes;
}

/**
 * smelt_ggml_type_can_encode:
 * @type: a ggml type
 *
 * Returns: whether smelt_ggml_encode_rows() can produce @type
 */
gboolean
smelt_ggml_type_can_encode (SmeltGgmlType type)
{
  switch (type)
    {
    case SMELT_GGML_TYPE_F32:
    case SMELT_GGML_TYPE_F16:
    case SMELT_GGML_TYPE_BF16:
    case SMELT_GGML_TYPE_Q8_0:
      return TRUE;
    default:
      return FALSE;
    }
}

/* C's roundf (half away from zero) then ggml's conversion to int8,
 * without the libm call: the quantizer rounds every element of every
 * weight through it. For finite scales |x| ≤ 128, so the int conversion
 * and x - trunc(x) are exact. A subnormal block maximum makes 1/d
 * infinite: ggml then converts ±inf or NaN, which x86 turns into
 * INT_MIN (stored byte 0); do the same, defined. */
static inline int
round_half_away (float x)
{
  int i;
  float frac;

  if (!(fabsf (x) < 2147483648.0f))
    return G_MININT32;
  i = (int) x;
  frac = x - (float) i;

  if (frac >= 0.5f)
    i++;
  else if (frac <= -0.5f)
    i--;
  return i;
}

/* Block of 32: fp16 scale d = amax/127, then roundf(x/d) stored as int8,
 * exactly as ggml's quantize_row_q8_0_ref (same float operations, in the
 * same order, no contraction). */
static void
encode_q8_0_block (const float *x,
                   guint8      *out)
{
  float amax = 0.0f;
  float d, id;
  guint16 d16;

  for (int j = 0; j < 32; j++)
    amax = MAX (amax, fabsf (x[j]));
  d = amax / 127;
  id = d != 0.0f ? 1.0f / d : 0.0f;
  smelt_convert_f32_to_f16 (&d, &d16, 1);
  out[0] = d16 & 0xff;
  out[1] = d16 >> 8;
  for (int j = 0; j < 32; j++)
    out[2 + j] = (guint8) (gint8) round_half_away (x[j] * id);
}

static void
encode_q8_0 (const float *src,
             guint64      n,
             guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    encode_q8_0_block (src + b * 32, dst + b * 34);
}

/**
 * smelt_ggml_encode_rows:
 * @type: a type for which smelt_ggml_type_can_encode() is true
 * @src: (array): @n_rows × @n_per_row floats
 * @n_rows: rows
 * @n_per_row: elements per row, a multiple of the block size of @type
 * @dst: room for @n_rows × smelt_ggml_type_row_size() bytes
 *
 * Encodes float32 rows as @type, byte for byte as ggml's reference
 * routines do (ggml_quantize_chunk() without an importance matrix; ggml's
 * fp16 and bf16 conversions). Values must be finite.
 *
 * Returns: %FALSE if @type cannot be encoded or the rows do not split into
 *   blocks
 */
gboolean
smelt_ggml_encode_rows (SmeltGgmlType type,
                        const float  *src,
                        guint64       n_rows,
                        guint64       n_per_row,
                        void         *dst)
{
  guint64 n = n_rows * n_per_row;

  if (!smelt_ggml_type_can_encode (type) || smelt_ggml_type_row_size (type, n_per_row) == 0)
    return FALSE;
  switch (type)
    {
    case SMELT_GGML_TYPE_F32:
      memcpy (dst, src, n * sizeof (float));
      break;
    case SMELT_GGML_TYPE_F16:
      smelt_convert_f32_to_f16 (src, dst, n);
      break;
    case SMELT_GGML_TYPE_BF16:
      smelt_convert_f32_to_bf16 (src, dst, n);
      break;
    case SMELT_GGML_TYPE_Q8_0:
      encode_q8_0 (src, n, dst);
      break;
    default:
      g_assert_not_reached ();
    }
  return TRUE;
}
