/* smelt-ggml-type.c: ggml tensor types: sizes, names and row encoders
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
# include <immintrin.h>
# define HAVE_X86 1
#endif

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
 * Tells whether @type is a ggml type whose size smelt knows.
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
 * Gets ggml's name of @type ("f16", "q8_0", "q4_K", …), or "?" for a type
 * smelt does not know.
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
 * Gets the number of elements in one block of @type (1 for plain types), or
 * 0 for an unknown type.
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
 * Gets the size in bytes of one block of @type, or 0 for an unknown type.
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
 * Gets the bytes of one row, or 0 if @n_per_row is not a multiple of the
 * block size or @type is unknown.
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
 * Tells whether smelt_ggml_encode_rows() can produce @type.
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
    case SMELT_GGML_TYPE_Q4_0:
    case SMELT_GGML_TYPE_Q4_1:
    case SMELT_GGML_TYPE_Q5_0:
    case SMELT_GGML_TYPE_Q5_1:
    case SMELT_GGML_TYPE_Q2_K:
    case SMELT_GGML_TYPE_Q3_K:
    case SMELT_GGML_TYPE_Q4_K:
    case SMELT_GGML_TYPE_Q5_K:
    case SMELT_GGML_TYPE_Q6_K:
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

/* fp32 → fp16 with round-to-nearest-even, for one finite non-negative
 * scale per block: the same bits as ggml's GGML_FP32_TO_FP16 (and as
 * smelt_convert_f32_to_f16), inline so that a block costs no call. */
guint16
_smelt_ggml_fp16 (float f)
{
  guint32 x;
  guint32 exp, mant;

  memcpy (&x, &f, 4);
  exp = (x >> 23) & 0xff;
  mant = x & 0x7fffff;
  if (exp == 0xff)
    return 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 143)                      /* ≥ 65536: inf (65520 up rounds below) */
    return 0x7c00;
  if (exp >= 113)                      /* normal half */
    {
      guint32 h = ((exp - 112) << 10) | (mant >> 13);
      guint32 rest = mant & 0x1fff;

      if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;
      return (guint16) h;
    }
  if (exp >= 102)                      /* subnormal half */
    {
      guint32 m = mant | 0x800000;
      guint32 shift = 126 - exp;
      guint32 h = m >> shift;
      guint32 rest = m & ((1u << shift) - 1);
      guint32 half = 1u << (shift - 1);

      if (rest > half || (rest == half && (h & 1)))
        h++;
      return (guint16) h;
    }
  return 0;
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
  d16 = _smelt_ggml_fp16 (d);
  out[0] = d16 & 0xff;
  out[1] = d16 >> 8;
  for (int j = 0; j < 32; j++)
    out[2 + j] = (guint8) (gint8) round_half_away (x[j] * id);
}

static void
encode_q8_0_portable (const float *src,
                      guint64      n,
                      guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    encode_q8_0_block (src + b * 32, dst + b * 34);
}

#ifdef HAVE_X86
/* roundf(v · id) for eight lanes, as the low byte of the int32 ggml's
 * conversion gives, stored to @out[0..7]. */
__attribute__ ((target ("avx2"))) static inline void
q8_0_lanes (__m256   v,
            __m256   id,
            guint8  *out)
{
  const __m256 one = _mm256_set1_ps (1.0f);
  /* byte 0 of each 32-bit lane, in lane order, into the low 4 bytes of
   * each 128-bit half, then the two halves side by side */
  const __m256i pick = _mm256_setr_epi8 (0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                         0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i gather = _mm256_setr_epi32 (0, 4, 1, 5, 2, 6, 3, 7);
  __m256 p = _mm256_mul_ps (v, id);
  __m256 t = _mm256_round_ps (p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256 f = _mm256_sub_ps (p, t);
  __m256i q;

  t = _mm256_add_ps (t, _mm256_and_ps (_mm256_cmp_ps (f, _mm256_set1_ps (0.5f), _CMP_GE_OQ), one));
  t = _mm256_sub_ps (t, _mm256_and_ps (_mm256_cmp_ps (f, _mm256_set1_ps (-0.5f), _CMP_LE_OQ), one));
  /* NaN, ±inf and |t| ≥ 2^31 become INT_MIN, whose low byte is 0, as
   * the scalar conversion does */
  q = _mm256_cvttps_epi32 (t);
  q = _mm256_permutevar8x32_epi32 (_mm256_shuffle_epi8 (q, pick), gather);
  _mm_storel_epi64 ((__m128i *) out, _mm256_castsi256_si128 (q));
}

/* The same arithmetic eight lanes at a time: the maximum is exact in any
 * order, each product is the same single multiply, and roundf is
 * trunc + a half-away step, so every byte equals the portable path's
 * (tests/test-gguf.c compares them). Named registers, not an array: an
 * array of vectors is spilled and reloaded across halves, which stalls
 * store forwarding on every block. */
__attribute__ ((target ("avx2")))
static void
encode_q8_0_avx2 (const float *src,
                  guint64      n,
                  guint8      *dst)
{
  const __m256 sign = _mm256_set1_ps (-0.0f);

  for (guint64 b = 0; b < n / 32; b++)
    {
      const float *x = src + b * 32;
      guint8 *out = dst + b * 34;
      __m256 v0 = _mm256_loadu_ps (x);
      __m256 v1 = _mm256_loadu_ps (x + 8);
      __m256 v2 = _mm256_loadu_ps (x + 16);
      __m256 v3 = _mm256_loadu_ps (x + 24);
      __m256 m, idv;
      __m128 m4;
      float amax, d, id;
      guint16 d16;

      m = _mm256_max_ps (_mm256_max_ps (_mm256_andnot_ps (sign, v0), _mm256_andnot_ps (sign, v1)),
                         _mm256_max_ps (_mm256_andnot_ps (sign, v2), _mm256_andnot_ps (sign, v3)));
      m4 = _mm_max_ps (_mm256_castps256_ps128 (m), _mm256_extractf128_ps (m, 1));
      m4 = _mm_max_ps (m4, _mm_movehl_ps (m4, m4));
      m4 = _mm_max_ss (m4, _mm_shuffle_ps (m4, m4, 1));
      amax = _mm_cvtss_f32 (m4);
      d = amax / 127;
      id = d != 0.0f ? 1.0f / d : 0.0f;
      d16 = _smelt_ggml_fp16 (d);
      out[0] = d16 & 0xff;
      out[1] = d16 >> 8;
      idv = _mm256_set1_ps (id);
      q8_0_lanes (v0, idv, out + 2);
      q8_0_lanes (v1, idv, out + 10);
      q8_0_lanes (v2, idv, out + 18);
      q8_0_lanes (v3, idv, out + 26);
    }
}
#endif

void
_smelt_ggml_encode_q8_0_at (SmeltSimdLevel level,
                            const float   *src,
                            guint64        n,
                            guint8        *dst)
{
#ifdef HAVE_X86
  if (level >= SMELT_SIMD_AVX2 && _smelt_simd_supported (SMELT_SIMD_AVX2))
    {
      encode_q8_0_avx2 (src, n, dst);
      return;
    }
#endif
  encode_q8_0_portable (src, n, dst);
}

static void
encode_q8_0 (const float *src,
             guint64      n,
             guint8      *dst)
{
  _smelt_ggml_encode_q8_0_at (_smelt_simd_level (), src, n, dst);
}

/**
 * smelt_ggml_encode_rows:
 * @type: a type for which smelt_ggml_type_can_encode() is true
 * @src: (type gpointer) (not nullable): @n_rows × @n_per_row floats
 * @n_rows: rows
 * @n_per_row: elements per row, a multiple of the block size of @type
 * @dst: (type gpointer) (not nullable): room for @n_rows × smelt_ggml_type_row_size() bytes
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
    case SMELT_GGML_TYPE_Q4_0:
    case SMELT_GGML_TYPE_Q4_1:
    case SMELT_GGML_TYPE_Q5_0:
    case SMELT_GGML_TYPE_Q5_1:
    case SMELT_GGML_TYPE_Q2_K:
    case SMELT_GGML_TYPE_Q3_K:
    case SMELT_GGML_TYPE_Q4_K:
    case SMELT_GGML_TYPE_Q5_K:
    case SMELT_GGML_TYPE_Q6_K:
      _smelt_ggml_quantize (type, src, n, dst);   /* smelt-ggml-quants.c */
      break;
    default:
      g_assert_not_reached ();
    }
  return TRUE;
}
