/* smelt-dtype.c: element types and F32/F16/BF16 conversions
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

#include <string.h>

/* The SIMD back ends are compiled with per-function target attributes, so
 * the file itself needs no -m flags and the library still runs on any
 * x86-64; __builtin_cpu_supports picks the back end at run time. */
#if defined(__x86_64__) && defined(__GNUC__)
# define SMELT_HAVE_X86_SIMD 1
# include <cpuid.h>
# include <immintrin.h>
#endif

/* SmeltDType names element types the way safetensors does. F32, F16 and
 * BF16 can be converted into one another; every conversion rounds to
 * nearest, ties to even, and gives the same bits whichever back end
 * (portable C, AVX2, AVX-512) runs it, so output files do not depend on
 * the machine that wrote them. */

/* ------------------------------------------------------------------------
 * Names and sizes
 * ------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  guint       bits;
  gboolean    is_float;
} DTypeInfo;

static const DTypeInfo dtype_info[] = {
  [SMELT_DTYPE_INVALID]     = { "INVALID",      0, FALSE },
  [SMELT_DTYPE_F32]         = { "F32",         32, TRUE },
  [SMELT_DTYPE_F16]         = { "F16",         16, TRUE },
  [SMELT_DTYPE_BF16]        = { "BF16",        16, TRUE },
  [SMELT_DTYPE_F64]         = { "F64",         64, TRUE },
  [SMELT_DTYPE_I64]         = { "I64",         64, FALSE },
  [SMELT_DTYPE_I32]         = { "I32",         32, FALSE },
  [SMELT_DTYPE_I16]         = { "I16",         16, FALSE },
  [SMELT_DTYPE_I8]          = { "I8",           8, FALSE },
  [SMELT_DTYPE_U64]         = { "U64",         64, FALSE },
  [SMELT_DTYPE_U32]         = { "U32",         32, FALSE },
  [SMELT_DTYPE_U16]         = { "U16",         16, FALSE },
  [SMELT_DTYPE_U8]          = { "U8",           8, FALSE },
  [SMELT_DTYPE_BOOL]        = { "BOOL",         8, FALSE },
  [SMELT_DTYPE_F8_E4M3]     = { "F8_E4M3",      8, TRUE },
  [SMELT_DTYPE_F8_E5M2]     = { "F8_E5M2",      8, TRUE },
  [SMELT_DTYPE_F8_E8M0]     = { "F8_E8M0",      8, TRUE },
  [SMELT_DTYPE_F8_E4M3FNUZ] = { "F8_E4M3FNUZ",  8, TRUE },
  [SMELT_DTYPE_F8_E5M2FNUZ] = { "F8_E5M2FNUZ",  8, TRUE },
  [SMELT_DTYPE_F6_E2M3]     = { "F6_E2M3",      6, TRUE },
  [SMELT_DTYPE_F6_E3M2]     = { "F6_E3M2",      6, TRUE },
  [SMELT_DTYPE_F4]          = { "F4",           4, TRUE },
  [SMELT_DTYPE_C64]         = { "C64",         64, FALSE },
};

static inline const DTypeInfo *
dtype_lookup (SmeltDType dtype)
{
  /* An out-of-range value (a cast integer, a newer enum) reads as INVALID
   * instead of indexing past the table. */
  if ((guint) dtype >= G_N_ELEMENTS (dtype_info))
    return &dtype_info[SMELT_DTYPE_INVALID];
  return &dtype_info[dtype];
}

/**
 * smelt_dtype_to_string:
 * @dtype: a #SmeltDType
 *
 * Gets the name safetensors uses for @dtype in its header ("F32", "BF16",
 * "F8_E4M3", ...).
 *
 * Returns: (transfer none): the name, or "INVALID" for
 *   %SMELT_DTYPE_INVALID and values outside the enumeration
 */
const char *
smelt_dtype_to_string (SmeltDType dtype)
{
  return dtype_lookup (dtype)->name;
}

/**
 * smelt_dtype_from_string:
 * @name: (nullable): a safetensors dtype name
 *
 * Parses a safetensors dtype name. The match is exact and case-sensitive,
 * as it is in safetensors itself: "f32" or "FP16" are not dtypes.
 *
 * Returns: the dtype, or %SMELT_DTYPE_INVALID if @name is %NULL or not a
 *   known dtype name
 */
SmeltDType
smelt_dtype_from_string (const char *name)
{
  if (name == NULL)
    return SMELT_DTYPE_INVALID;

  /* Start after INVALID so that its placeholder name does not parse as a
   * type someone could have meant. It maps to INVALID all the same. */
  for (guint i = SMELT_DTYPE_INVALID + 1; i < G_N_ELEMENTS (dtype_info); i++)
    if (strcmp (name, dtype_info[i].name) == 0)
      return (SmeltDType) i;
  return SMELT_DTYPE_INVALID;
}

/**
 * smelt_dtype_get_bits:
 * @dtype: a #SmeltDType
 *
 * Gets the size of one element in bits. Sub-byte types (F4, F6_E2M3,
 * F6_E3M2) are not a whole number of bytes; C64 counts both halves.
 *
 * Returns: the element size in bits, or 0 for %SMELT_DTYPE_INVALID
 */
guint
smelt_dtype_get_bits (SmeltDType dtype)
{
  return dtype_lookup (dtype)->bits;
}

/**
 * smelt_dtype_is_float:
 * @dtype: a #SmeltDType
 *
 * Tells whether @dtype is a real floating-point type: F64, F32, F16, BF16
 * and the F8, F6 and F4 kinds. C64 (complex) and the integer types are not.
 *
 * Returns: %TRUE for floating-point types
 */
gboolean
smelt_dtype_is_float (SmeltDType dtype)
{
  return dtype_lookup (dtype)->is_float;
}

/* ------------------------------------------------------------------------
 * Scalar conversions (portable back end)
 *
 * The results must not depend on the rounding mode or on the DAZ/FTZ
 * state some other library may have left in MXCSR, and they must match the
 * SIMD back ends bit for bit, NaNs included. So the rounding is integer
 * arithmetic (the one float multiplication below is exact on normal
 * numbers), and floats are moved as bits (memcpy), never as float values,
 * so that an x87 load cannot quieten a signalling NaN on the way.
 *
 * The helpers are branch-free and the loops run in fixed blocks of
 * PORTABLE_BLOCK so that the compiler can vectorise them at -O2 (its
 * "very cheap" cost model wants a known trip count) on CPUs without a
 * dedicated back end.
 * ------------------------------------------------------------------------ */

#define PORTABLE_BLOCK      16

#define F32_ABS_MASK        0x7FFFFFFFu
#define F32_INF             0x7F800000u
/* |x| >= 65520 (halfway between 65504, the largest F16, and 2^16) rounds to
 * infinity in F16: 65504's last mantissa bit is odd, so the tie goes up. */
#define F32_F16_OVERFLOW    0x477FF000u
#define F32_F16_MIN_NORMAL  0x38800000u  /* 2^-14 */

static inline guint32
load_f32_bits (const float *p)
{
  guint32 u;

  memcpy (&u, p, sizeof u);
  return u;
}

static inline void
store_f32_bits (float   *p,
                guint32  u)
{
  memcpy (p, &u, sizeof u);
}

static inline guint16
f32_bits_to_bf16 (guint32 x)
{
  /* Round to nearest even on the low 16 bits. Finite values at the top of
   * the range carry into the exponent and correctly become infinity. */
  guint32 rounded = (x + 0x7FFF + ((x >> 16) & 1)) >> 16;
  /* Rounding a NaN like a number can carry into the exponent or drop every
   * payload bit and produce infinity. Keep the sign and the top payload
   * bits and set the quiet bit instead. */
  guint32 quiet = (x >> 16) | 0x0040;

  return (guint16) ((x & F32_ABS_MASK) > F32_INF ? quiet : rounded);
}

static inline guint32
f16_to_f32_bits (guint16 h)
{
  guint32 sign = ((guint32) h & 0x8000) << 16;
  guint32 em = h & 0x7FFF;
  guint32 mant = em & 0x03FF;
  guint32 normal = (em << 13) + 0x38000000;  /* rebias 15 -> 127 */
  /* Inf, or NaN: the payload moves to the top of the F32 mantissa, and a
   * NaN gets the quiet bit (bit 10 of mant + 0x3FF is mant != 0), which
   * is what VCVTPH2PS does with signalling NaNs; doing the same keeps every
   * back end identical. */
  guint32 special = F32_INF | (mant << 13) | (((mant + 0x03FF) & 0x0400) << 12);
  /* Zero or subnormal, em * 2^-24: a normal float. The conversion and the
   * multiplication are exact, so no rounding mode or DAZ/FTZ applies. */
  float tiny_f = (float) em * 0x1p-24f;
  guint32 tiny;
  /* Masks rather than branches, which the vectoriser can use. */
  guint32 is_special = 0u - (guint32) (em >= 0x7C00);
  guint32 is_normal = 0u - (guint32) (em >= 0x0400);

  memcpy (&tiny, &tiny_f, sizeof tiny);
  return sign | (special & is_special) | (normal & is_normal & ~is_special) | (tiny & ~is_normal);
}

static inline guint16
f32_bits_to_f16 (guint32 x)
{
  guint32 sign = (x >> 16) & 0x8000;
  guint32 a = x & F32_ABS_MASK;
  guint32 e = a >> 23;
  /* Normal result: rebias the exponent, then round the mantissa to 10
   * bits; a carry out of the mantissa bumps the exponent as it should
   * (and 65504 < |x| < 65520 stays at 65504). */
  guint32 r = a - 0x38000000;
  guint32 normal = (r + 0x0FFF + ((r >> 13) & 1)) >> 13;
  /* Subnormal result, in units of 2^-24: the 24-bit significand shifted
   * right by 14 (|x| just under 2^-14) .. 25 (below 2^-25, giving 0),
   * rounded to nearest even. Rounding up from the largest subnormal gives
   * 0x0400, the smallest normal, as it should. */
  guint32 shift = CLAMP (126 - (gint32) e, 14, 25);
  guint32 m = (a & 0x007FFFFF) | 0x00800000;
  guint32 subnormal = (m + (1u << (shift - 1)) - 1 + ((m >> shift) & 1)) >> shift;
  /* NaN. VCVTPS2PH keeps the top 10 payload bits and sets the quiet bit;
   * matching it exactly lets the hardware path be used. The quiet bit also
   * keeps a NaN from ever turning into infinity. */
  guint32 nan = 0x7E00 | ((a >> 13) & 0x03FF);
  guint32 result = a > F32_INF ? nan :
                   a >= F32_F16_OVERFLOW ? 0x7C00 :  /* overflow, or inf */
                   a >= F32_F16_MIN_NORMAL ? normal : subnormal;

  return (guint16) (sign | result);
}

static inline guint32
f32_bits_overflow_f16 (guint32 x)
{
  guint32 a = x & F32_ABS_MASK;

  return a >= F32_F16_OVERFLOW && a < F32_INF;
}

static void
bf16_to_f32_portable (const guint16 *restrict src,
                      float         *restrict dst,
                      gsize          n)
{
  gsize i = 0;

  for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK)
    for (guint j = 0; j < PORTABLE_BLOCK; j++)
      store_f32_bits (&dst[i + j], (guint32) src[i + j] << 16);
  for (; i < n; i++)
    store_f32_bits (&dst[i], (guint32) src[i] << 16);
}

static void
f16_to_f32_portable (const guint16 *restrict src,
                     float         *restrict dst,
                     gsize          n)
{
  gsize i = 0;

  for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK)
    for (guint j = 0; j < PORTABLE_BLOCK; j++)
      store_f32_bits (&dst[i + j], f16_to_f32_bits (src[i + j]));
  for (; i < n; i++)
    store_f32_bits (&dst[i], f16_to_f32_bits (src[i]));
}

static void
f32_to_bf16_portable (const float *restrict src,
                      guint16     *restrict dst,
                      gsize        n)
{
  gsize i = 0;

  for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK)
    for (guint j = 0; j < PORTABLE_BLOCK; j++)
      dst[i + j] = f32_bits_to_bf16 (load_f32_bits (&src[i + j]));
  for (; i < n; i++)
    dst[i] = f32_bits_to_bf16 (load_f32_bits (&src[i]));
}

static gsize
f32_to_f16_portable (const float *restrict src,
                     guint16     *restrict dst,
                     gsize        n)
{
  gsize n_overflow = 0;
  gsize i = 0;

  for (; i + PORTABLE_BLOCK <= n; i += PORTABLE_BLOCK)
    {
      guint32 block_overflow = 0;

      for (guint j = 0; j < PORTABLE_BLOCK; j++)
        {
          guint32 x = load_f32_bits (&src[i + j]);

          dst[i + j] = f32_bits_to_f16 (x);
          block_overflow += f32_bits_overflow_f16 (x);
        }
      n_overflow += block_overflow;
    }
  for (; i < n; i++)
    {
      guint32 x = load_f32_bits (&src[i]);

      dst[i] = f32_bits_to_f16 (x);
      n_overflow += f32_bits_overflow_f16 (x);
    }
  return n_overflow;
}

static gssize
find_non_finite_portable (const float *values,
                          gsize        n)
{
  gsize i = 0;

  /* Blocks without an early exit inside, for the common case of a block
   * with nothing to report. Adding 2^23 to a magnitude sets the top bit
   * exactly for Inf and NaN, so a block needs only ANDs, adds and ORs. */
  for (; i + 4 * PORTABLE_BLOCK <= n; i += 4 * PORTABLE_BLOCK)
    {
      guint32 any = 0;

      for (guint j = 0; j < 4 * PORTABLE_BLOCK; j++)
        any |= (load_f32_bits (&values[i + j]) & F32_ABS_MASK) + 0x00800000;
      if (any & 0x80000000)
        break;
    }
  for (; i < n; i++)
    if ((load_f32_bits (&values[i]) & F32_ABS_MASK) >= F32_INF)
      return (gssize) i;
  return -1;
}

#ifdef SMELT_HAVE_X86_SIMD

/* How many elements to handle before @p reaches an @align-byte boundary,
 * so that the main loop's full-width stores never straddle two cache
 * lines, as they do at malloc's 16-byte alignment. Measured on L2-sized
 * blocks, that is worth 15% on the widening conversions and 25-40% on the
 * AVX-512 narrowing ones. 0 if @p is not even aligned to its element size
 * (then nothing helps). */
static inline gsize
head_to_align (const void *p,
               gsize       elem_size,
               gsize       align,
               gsize       n)
{
  gsize misalign = (gsize) ((guintptr) p & (align - 1));

  if (misalign % elem_size != 0)
    return 0;
  return MIN (n, ((align - misalign) & (align - 1)) / elem_size);
}

/* ------------------------------------------------------------------------
 * AVX2 + F16C back end
 *
 * Main loops do 16 elements per iteration on a 32-byte aligned
 * destination; the few elements before and after go through the scalar
 * code above, which gives the same bits.
 * ------------------------------------------------------------------------ */

#define SMELT_TARGET_AVX2 __attribute__ ((target ("avx2,f16c,popcnt")))

SMELT_TARGET_AVX2 static void
bf16_to_f32_avx2 (const guint16 *src,
                  float         *dst,
                  gsize          n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);

  bf16_to_f32_portable (src, dst, i);
  for (; i + 16 <= n; i += 16)
    {
      __m256i a = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (src + i)));
      __m256i b = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (src + i + 8)));

      _mm256_storeu_si256 ((__m256i *) (dst + i), _mm256_slli_epi32 (a, 16));
      _mm256_storeu_si256 ((__m256i *) (dst + i + 8), _mm256_slli_epi32 (b, 16));
    }
  bf16_to_f32_portable (src + i, dst + i, n - i);
}

SMELT_TARGET_AVX2 static void
f16_to_f32_avx2 (const guint16 *src,
                 float         *dst,
                 gsize          n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);

  f16_to_f32_portable (src, dst, i);
  for (; i + 16 <= n; i += 16)
    {
      __m256 a = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (src + i)));
      __m256 b = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (src + i + 8)));

      _mm256_storeu_ps (dst + i, a);
      _mm256_storeu_ps (dst + i + 8, b);
    }
  f16_to_f32_portable (src + i, dst + i, n - i);
}

/* f32_bits_to_bf16() on eight lanes, leaving each result in the low half of
 * its 32-bit lane. */
SMELT_TARGET_AVX2 static inline __m256i
bf16_round_avx2 (__m256i x)
{
  const __m256i abs_mask = _mm256_set1_epi32 (F32_ABS_MASK);
  const __m256i inf = _mm256_set1_epi32 (F32_INF);
  __m256i hi = _mm256_srli_epi32 (x, 16);
  __m256i lsb = _mm256_and_si256 (hi, _mm256_set1_epi32 (1));
  __m256i bias = _mm256_add_epi32 (lsb, _mm256_set1_epi32 (0x7FFF));
  __m256i rounded = _mm256_srli_epi32 (_mm256_add_epi32 (x, bias), 16);
  __m256i quiet = _mm256_or_si256 (hi, _mm256_set1_epi32 (0x0040));
  /* Signed compare is safe: both sides have the sign bit clear. */
  __m256i is_nan = _mm256_cmpgt_epi32 (_mm256_and_si256 (x, abs_mask), inf);

  return _mm256_blendv_epi8 (rounded, quiet, is_nan);
}

SMELT_TARGET_AVX2 static void
f32_to_bf16_avx2 (const float *src,
                  guint16     *dst,
                  gsize        n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);

  f32_to_bf16_portable (src, dst, i);
  for (; i + 16 <= n; i += 16)
    {
      __m256i a = bf16_round_avx2 (_mm256_loadu_si256 ((const __m256i *) (src + i)));
      __m256i b = bf16_round_avx2 (_mm256_loadu_si256 ((const __m256i *) (src + i + 8)));
      /* Lanes hold 0..0xFFFF, so unsigned saturation is exact. The pack
       * works per 128-bit half; the permute puts the quads back in order. */
      __m256i packed = _mm256_packus_epi32 (a, b);

      _mm256_storeu_si256 ((__m256i *) (dst + i),
                           _mm256_permute4x64_epi64 (packed, _MM_SHUFFLE (3, 1, 2, 0)));
    }
  f32_to_bf16_portable (src + i, dst + i, n - i);
}

/* Lanes whose input is finite but at least 65520 in magnitude. */
SMELT_TARGET_AVX2 static inline int
f16_overflow_mask_avx2 (__m256 v)
{
  __m256i a = _mm256_and_si256 (_mm256_castps_si256 (v), _mm256_set1_epi32 (F32_ABS_MASK));
  __m256i big = _mm256_cmpgt_epi32 (a, _mm256_set1_epi32 (F32_F16_OVERFLOW - 1));
  __m256i finite = _mm256_cmpgt_epi32 (_mm256_set1_epi32 (F32_INF), a);

  return _mm256_movemask_ps (_mm256_castsi256_ps (_mm256_and_si256 (big, finite)));
}

SMELT_TARGET_AVX2 static gsize
f32_to_f16_avx2 (const float *src,
                 guint16     *dst,
                 gsize        n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);
  gsize n_overflow = f32_to_f16_portable (src, dst, i);

  for (; i + 16 <= n; i += 16)
    {
      __m256 a = _mm256_loadu_ps (src + i);
      __m256 b = _mm256_loadu_ps (src + i + 8);
      __m256i either;

      /* The immediate rounding mode overrides MXCSR; DAZ/FTZ do not change
       * any result (F32 subnormals become ±0 in F16 either way). */
      _mm_storeu_si128 ((__m128i *) (dst + i), _mm256_cvtps_ph (a, _MM_FROUND_TO_NEAREST_INT));
      _mm_storeu_si128 ((__m128i *) (dst + i + 8), _mm256_cvtps_ph (b, _MM_FROUND_TO_NEAREST_INT));

      /* Overflow is rare, so first a cheap test that may give false
       * positives: the OR of two magnitudes is at least as large as either
       * (and stays below 2.0 when both are), so nothing can overflow if
       * it is below 65520. Only then count exactly. */
      either = _mm256_and_si256 (_mm256_or_si256 (_mm256_castps_si256 (a), _mm256_castps_si256 (b)),
                                 _mm256_set1_epi32 (F32_ABS_MASK));
      either = _mm256_cmpgt_epi32 (either, _mm256_set1_epi32 (F32_F16_OVERFLOW - 1));
      if (G_UNLIKELY (!_mm256_testz_si256 (either, either)))
        {
          int ov = f16_overflow_mask_avx2 (a) | (f16_overflow_mask_avx2 (b) << 8);

          n_overflow += (gsize) __builtin_popcount ((unsigned) ov);
        }
    }
  return n_overflow + f32_to_f16_portable (src + i, dst + i, n - i);
}

SMELT_TARGET_AVX2 static inline __m256i
non_finite_mask_avx2 (const float *p)
{
  __m256i x = _mm256_loadu_si256 ((const __m256i *) p);

  return _mm256_cmpgt_epi32 (_mm256_and_si256 (x, _mm256_set1_epi32 (F32_ABS_MASK)),
                             _mm256_set1_epi32 (F32_INF - 1));
}

SMELT_TARGET_AVX2 static gssize
find_non_finite_avx2 (const float *values,
                      gsize        n)
{
  gssize found;
  gsize i = 0;

  for (; i + 32 <= n; i += 32)
    {
      __m256i m = _mm256_or_si256 (_mm256_or_si256 (non_finite_mask_avx2 (values + i),
                                                    non_finite_mask_avx2 (values + i + 8)),
                                   _mm256_or_si256 (non_finite_mask_avx2 (values + i + 16),
                                                    non_finite_mask_avx2 (values + i + 24)));
      if (!_mm256_testz_si256 (m, m))
        break;  /* the scalar scan below finds which one */
    }
  found = find_non_finite_portable (values + i, n - i);
  return found < 0 ? -1 : (gssize) i + found;
}

/* ------------------------------------------------------------------------
 * AVX-512 back end (F, BW, VL, DQ)
 *
 * Narrowing main loops do 32 elements per iteration in 512-bit vectors on
 * a 64-byte aligned destination; widening ones use 256-bit vectors (see
 * below). The elements before and after use masked loads and stores,
 * which never touch memory outside the mask, so nothing is read or
 * written past either end.
 * ------------------------------------------------------------------------ */

#define SMELT_TARGET_AVX512 \
  __attribute__ ((target ("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,popcnt")))

/* VFPCLASSPS categories: QNaN, +Inf, -Inf, SNaN */
#define FPCLASS_NAN      0x81
#define FPCLASS_NAN_INF  0x99

static inline __mmask16
tail_mask16 (gsize remaining)
{
  return remaining >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << remaining) - 1);
}

/* The widening conversions use 256-bit vectors even here: they are bound
 * by stores, and on a Cascade Lake Xeon the 512-bit versions measured
 * 5-15% slower in cache and up to 20% slower streaming from DRAM (likely
 * the lower clock that 512-bit instructions bring, for no gain).
 * AVX-512VL still lets heads and tails use masks instead of scalar code. */

static inline __mmask8
tail_mask8 (gsize remaining)
{
  return remaining >= 8 ? (__mmask8) 0xFF : (__mmask8) ((1u << remaining) - 1);
}

SMELT_TARGET_AVX512 static void
bf16_to_f32_avx512_masked (const guint16 *src,
                           float         *dst,
                           gsize          n)
{
  for (gsize i = 0; i < n; i += 8)
    {
      __mmask8 k = tail_mask8 (n - i);
      __m256i a = _mm256_cvtepu16_epi32 (_mm_maskz_loadu_epi16 (k, src + i));

      _mm256_mask_storeu_epi32 (dst + i, k, _mm256_slli_epi32 (a, 16));
    }
}

SMELT_TARGET_AVX512 static void
bf16_to_f32_avx512 (const guint16 *src,
                    float         *dst,
                    gsize          n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);

  bf16_to_f32_avx512_masked (src, dst, i);
  for (; i + 16 <= n; i += 16)
    {
      __m256i a = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (src + i)));
      __m256i b = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (src + i + 8)));

      _mm256_storeu_si256 ((__m256i *) (dst + i), _mm256_slli_epi32 (a, 16));
      _mm256_storeu_si256 ((__m256i *) (dst + i + 8), _mm256_slli_epi32 (b, 16));
    }
  bf16_to_f32_avx512_masked (src + i, dst + i, n - i);
}

SMELT_TARGET_AVX512 static void
f16_to_f32_avx512_masked (const guint16 *src,
                          float         *dst,
                          gsize          n)
{
  for (gsize i = 0; i < n; i += 8)
    {
      __mmask8 k = tail_mask8 (n - i);

      _mm256_mask_storeu_ps (dst + i, k, _mm256_cvtph_ps (_mm_maskz_loadu_epi16 (k, src + i)));
    }
}

SMELT_TARGET_AVX512 static void
f16_to_f32_avx512 (const guint16 *src,
                   float         *dst,
                   gsize          n)
{
  gsize i = head_to_align (dst, sizeof *dst, 32, n);

  f16_to_f32_avx512_masked (src, dst, i);
  for (; i + 16 <= n; i += 16)
    {
      __m256 a = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (src + i)));
      __m256 b = _mm256_cvtph_ps (_mm_loadu_si128 ((const __m128i *) (src + i + 8)));

      _mm256_storeu_ps (dst + i, a);
      _mm256_storeu_ps (dst + i + 8, b);
    }
  f16_to_f32_avx512_masked (src + i, dst + i, n - i);
}

/* f32_bits_to_bf16() on sixteen lanes, results in the low halves. */
SMELT_TARGET_AVX512 static inline __m512i
bf16_round_avx512 (__m512i x)
{
  __m512i hi = _mm512_srli_epi32 (x, 16);
  __m512i lsb = _mm512_and_si512 (hi, _mm512_set1_epi32 (1));
  __m512i bias = _mm512_add_epi32 (lsb, _mm512_set1_epi32 (0x7FFF));
  __m512i rounded = _mm512_srli_epi32 (_mm512_add_epi32 (x, bias), 16);
  __mmask16 is_nan = _mm512_fpclass_ps_mask (_mm512_castsi512_ps (x), FPCLASS_NAN);

  return _mm512_mask_or_epi32 (rounded, is_nan, hi, _mm512_set1_epi32 (0x0040));
}

SMELT_TARGET_AVX512 static void
f32_to_bf16_avx512_masked (const float *src,
                           guint16     *dst,
                           gsize        n)
{
  for (gsize i = 0; i < n; i += 16)
    {
      __mmask16 k = tail_mask16 (n - i);
      __m512i a = bf16_round_avx512 (_mm512_maskz_loadu_epi32 (k, src + i));

      _mm512_mask_cvtepi32_storeu_epi16 (dst + i, k, a);
    }
}

SMELT_TARGET_AVX512 static void
f32_to_bf16_avx512 (const float *src,
                    guint16     *dst,
                    gsize        n)
{
  /* Undo the per-128-bit-lane interleave of VPACKUSDW. */
  const __m512i order = _mm512_set_epi64 (7, 5, 3, 1, 6, 4, 2, 0);
  gsize i = head_to_align (dst, sizeof *dst, 64, n);

  f32_to_bf16_avx512_masked (src, dst, i);
  for (; i + 32 <= n; i += 32)
    {
      __m512i a = bf16_round_avx512 (_mm512_loadu_si512 (src + i));
      __m512i b = bf16_round_avx512 (_mm512_loadu_si512 (src + i + 16));

      /* One pack and one permute for 32 results is cheaper than two
       * VPMOVDW; lanes hold 0..0xFFFF so the saturation is exact. */
      _mm512_storeu_si512 (dst + i, _mm512_permutexvar_epi64 (order, _mm512_packus_epi32 (a, b)));
    }
  f32_to_bf16_avx512_masked (src + i, dst + i, n - i);
}

SMELT_TARGET_AVX512 static inline __mmask16
f16_overflow_mask_avx512 (__m512 v)
{
  /* finite and >= 65520  <=>  (|x| - 65520) < (inf - 65520), unsigned */
  __m512i a = _mm512_and_si512 (_mm512_castps_si512 (v), _mm512_set1_epi32 (F32_ABS_MASK));

  return _mm512_cmplt_epu32_mask (_mm512_sub_epi32 (a, _mm512_set1_epi32 (F32_F16_OVERFLOW)),
                                  _mm512_set1_epi32 (F32_INF - F32_F16_OVERFLOW));
}

/* Explicit rounding with SAE: MXCSR's rounding mode and exception masks
 * play no part, as in the scalar code. */
#define CVTPS_PH_RNE(v) _mm512_cvtps_ph ((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

SMELT_TARGET_AVX512 static gsize
f32_to_f16_avx512_masked (const float *src,
                          guint16     *dst,
                          gsize        n)
{
  gsize n_overflow = 0;

  for (gsize i = 0; i < n; i += 16)
    {
      __mmask16 k = tail_mask16 (n - i);
      __m512 a = _mm512_maskz_loadu_ps (k, src + i);  /* masked-off lanes are +0 */

      _mm256_mask_storeu_epi16 (dst + i, k, CVTPS_PH_RNE (a));
      n_overflow += (gsize) __builtin_popcount (f16_overflow_mask_avx512 (a));
    }
  return n_overflow;
}

SMELT_TARGET_AVX512 static gsize
f32_to_f16_avx512 (const float *src,
                   guint16     *dst,
                   gsize        n)
{
  gsize i = head_to_align (dst, sizeof *dst, 64, n);
  gsize n_overflow = f32_to_f16_avx512_masked (src, dst, i);

  for (; i + 32 <= n; i += 32)
    {
      __m512 a = _mm512_loadu_ps (src + i);
      __m512 b = _mm512_loadu_ps (src + i + 16);
      __mmask16 ova, ovb;

      _mm256_storeu_si256 ((__m256i *) (dst + i), CVTPS_PH_RNE (a));
      _mm256_storeu_si256 ((__m256i *) (dst + i + 16), CVTPS_PH_RNE (b));

      /* Overflow is rare: one predictable branch per 32 elements. */
      ova = f16_overflow_mask_avx512 (a);
      ovb = f16_overflow_mask_avx512 (b);
      if (G_UNLIKELY ((ova | ovb) != 0))
        n_overflow += (gsize) __builtin_popcount (((unsigned) ova << 16) | ovb);
    }
  return n_overflow + f32_to_f16_avx512_masked (src + i, dst + i, n - i);
}

SMELT_TARGET_AVX512 static gssize
find_non_finite_avx512 (const float *values,
                        gsize        n)
{
  gsize i = 0;

  for (; i + 64 <= n; i += 64)
    {
      __mmask16 m = _mm512_fpclass_ps_mask (_mm512_loadu_ps (values + i), FPCLASS_NAN_INF)
                  | _mm512_fpclass_ps_mask (_mm512_loadu_ps (values + i + 16), FPCLASS_NAN_INF)
                  | _mm512_fpclass_ps_mask (_mm512_loadu_ps (values + i + 32), FPCLASS_NAN_INF)
                  | _mm512_fpclass_ps_mask (_mm512_loadu_ps (values + i + 48), FPCLASS_NAN_INF);
      if (m != 0)
        break;  /* the loop below finds the first one in this block */
    }
  for (; i < n; i += 16)
    {
      __mmask16 k = tail_mask16 (n - i);
      __mmask16 m = _mm512_mask_fpclass_ps_mask (k, _mm512_maskz_loadu_ps (k, values + i),
                                                 FPCLASS_NAN_INF);

      if (m != 0)
        return (gssize) (i + (gsize) __builtin_ctz (m));
    }
  return -1;
}

#endif /* SMELT_HAVE_X86_SIMD */

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

static const char * const simd_level_names[SMELT_SIMD_N_LEVELS] = {
  [SMELT_SIMD_PORTABLE] = "portable",
  [SMELT_SIMD_AVX2]     = "avx2",
  [SMELT_SIMD_AVX512]   = "avx512",
};

#ifdef SMELT_HAVE_X86_SIMD
/* CPUID directly: older compilers (clang 14) do not know "f16c" in
 * __builtin_cpu_supports. F16C uses the YMM state the AVX2 check has
 * already found the OS saves. */
static gboolean
cpu_has_f16c (void)
{
  unsigned int eax, ebx, ecx, edx;

  return __get_cpuid (1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}
#endif

/* A bit per level the CPU (and the OS, which must save the wider
 * registers) can run; computed once. */
static guint
simd_supported_mask (void)
{
  static gsize mask = 0;

  if (g_once_init_enter (&mask))
    {
      gsize m = 1u << SMELT_SIMD_PORTABLE;

#ifdef SMELT_HAVE_X86_SIMD
      /* We may run before libgcc's constructor that fills in the CPU
       * model (from another constructor, say); initialising twice is fine. */
      __builtin_cpu_init ();
      if (__builtin_cpu_supports ("avx2") &&
          cpu_has_f16c () &&
          __builtin_cpu_supports ("popcnt"))
        {
          m |= 1u << SMELT_SIMD_AVX2;
          if (__builtin_cpu_supports ("avx512f") &&
              __builtin_cpu_supports ("avx512bw") &&
              __builtin_cpu_supports ("avx512vl") &&
              __builtin_cpu_supports ("avx512dq"))
            m |= 1u << SMELT_SIMD_AVX512;
        }
#endif
      /* Bit 8 keeps the stored value non-zero, as g_once requires. */
      g_once_init_leave (&mask, m | 0x100);
    }
  return (guint) mask & 0xFF;
}

/*
 * _smelt_simd_supported:
 * @level: a #SmeltSimdLevel
 *
 * Returns: %TRUE if this CPU can run the @level back end, whatever
 *   $SMELT_SIMD says
 */
gboolean
_smelt_simd_supported (SmeltSimdLevel level)
{
  if ((guint) level >= SMELT_SIMD_N_LEVELS)
    return FALSE;
  return (simd_supported_mask () & (1u << level)) != 0;
}

/*
 * _smelt_simd_level_name:
 * @level: a #SmeltSimdLevel
 *
 * Returns: the name $SMELT_SIMD uses for @level, or %NULL
 */
const char *
_smelt_simd_level_name (SmeltSimdLevel level)
{
  if ((guint) level >= SMELT_SIMD_N_LEVELS)
    return NULL;
  return simd_level_names[level];
}

/* The best supported level at or below @level, so that asking for a back
 * end this CPU lacks degrades instead of crashing with SIGILL. */
static SmeltSimdLevel
usable_level (SmeltSimdLevel level)
{
  guint l = MIN ((guint) level, (guint) SMELT_SIMD_N_LEVELS - 1);

  while (l > SMELT_SIMD_PORTABLE && !_smelt_simd_supported ((SmeltSimdLevel) l))
    l--;
  return (SmeltSimdLevel) l;
}

/*
 * _smelt_simd_level:
 *
 * Picks the back end the public converters use: the best the CPU supports,
 * lowered (never raised) by $SMELT_SIMD=portable|avx2|avx512. Read once
 * per process.
 *
 * Returns: the level in use
 */
SmeltSimdLevel
_smelt_simd_level (void)
{
  static gsize level = 0;

  if (g_once_init_enter (&level))
    {
      SmeltSimdLevel chosen = usable_level (SMELT_SIMD_N_LEVELS - 1);
      const char *env = g_getenv ("SMELT_SIMD");

      if (env != NULL && *env != '\0')
        {
          guint l;

          for (l = 0; l < SMELT_SIMD_N_LEVELS; l++)
            if (g_ascii_strcasecmp (env, simd_level_names[l]) == 0)
              break;
          if (l < SMELT_SIMD_N_LEVELS)
            chosen = usable_level (MIN ((SmeltSimdLevel) l, chosen));
          else
            g_warning ("Ignoring SMELT_SIMD=%s: expected portable, avx2 or avx512", env);
        }
      /* Stored plus one: g_once needs a non-zero value. */
      g_once_init_leave (&level, (gsize) chosen + 1);
    }
  return (SmeltSimdLevel) (level - 1);
}

/* The converters of one back end, for the tests and benchmarks that
 * compare them; a level the CPU lacks falls back to the best it has. */
void
_smelt_convert_bf16_to_f32_at (SmeltSimdLevel  level,
                               const guint16  *src,
                               float          *dst,
                               gsize           n)
{
  switch (usable_level (level))
    {
#ifdef SMELT_HAVE_X86_SIMD
    case SMELT_SIMD_AVX512:
      bf16_to_f32_avx512 (src, dst, n);
      return;
    case SMELT_SIMD_AVX2:
      bf16_to_f32_avx2 (src, dst, n);
      return;
#endif
    default:
      bf16_to_f32_portable (src, dst, n);
      return;
    }
}

void
_smelt_convert_f16_to_f32_at (SmeltSimdLevel  level,
                              const guint16  *src,
                              float          *dst,
                              gsize           n)
{
  switch (usable_level (level))
    {
#ifdef SMELT_HAVE_X86_SIMD
    case SMELT_SIMD_AVX512:
      f16_to_f32_avx512 (src, dst, n);
      return;
    case SMELT_SIMD_AVX2:
      f16_to_f32_avx2 (src, dst, n);
      return;
#endif
    default:
      f16_to_f32_portable (src, dst, n);
      return;
    }
}

void
_smelt_convert_f32_to_bf16_at (SmeltSimdLevel  level,
                               const float    *src,
                               guint16        *dst,
                               gsize           n)
{
  switch (usable_level (level))
    {
#ifdef SMELT_HAVE_X86_SIMD
    case SMELT_SIMD_AVX512:
      f32_to_bf16_avx512 (src, dst, n);
      return;
    case SMELT_SIMD_AVX2:
      f32_to_bf16_avx2 (src, dst, n);
      return;
#endif
    default:
      f32_to_bf16_portable (src, dst, n);
      return;
    }
}

gsize
_smelt_convert_f32_to_f16_at (SmeltSimdLevel  level,
                              const float    *src,
                              guint16        *dst,
                              gsize           n)
{
  switch (usable_level (level))
    {
#ifdef SMELT_HAVE_X86_SIMD
    case SMELT_SIMD_AVX512:
      return f32_to_f16_avx512 (src, dst, n);
    case SMELT_SIMD_AVX2:
      return f32_to_f16_avx2 (src, dst, n);
#endif
    default:
      return f32_to_f16_portable (src, dst, n);
    }
}

static gssize
find_non_finite_at (SmeltSimdLevel  level,
                    const float    *values,
                    gsize           n)
{
  switch (usable_level (level))
    {
#ifdef SMELT_HAVE_X86_SIMD
    case SMELT_SIMD_AVX512:
      return find_non_finite_avx512 (values, n);
    case SMELT_SIMD_AVX2:
      return find_non_finite_avx2 (values, n);
#endif
    default:
      return find_non_finite_portable (values, n);
    }
}

/* ------------------------------------------------------------------------
 * Public converters
 * ------------------------------------------------------------------------ */

/**
 * smelt_convert_bf16_to_f32:
 * @src: (array length=n): bfloat16 values
 * @dst: (out caller-allocates) (array length=n): room for @n floats
 * @n: (in): number of elements
 *
 * Widens bfloat16 to float. Exact: every bfloat16 is the top half of a
 * float, NaN payloads included. @src and @dst must not overlap.
 */
void
smelt_convert_bf16_to_f32 (const guint16 *src,
                           float         *dst,
                           gsize          n)
{
  g_return_if_fail ((src != NULL && dst != NULL) || n == 0);

  _smelt_convert_bf16_to_f32_at (_smelt_simd_level (), src, dst, n);
}

/**
 * smelt_convert_f16_to_f32:
 * @src: (array length=n): IEEE binary16 values
 * @dst: (out caller-allocates) (array length=n): room for @n floats
 * @n: (in): number of elements
 *
 * Widens half precision to float. Exact for every number, subnormals
 * included; infinities stay infinite and NaNs keep their sign and payload
 * and come out quiet (the quiet bit is set). @src and @dst must not
 * overlap.
 */
void
smelt_convert_f16_to_f32 (const guint16 *src,
                          float         *dst,
                          gsize          n)
{
  g_return_if_fail ((src != NULL && dst != NULL) || n == 0);

  _smelt_convert_f16_to_f32_at (_smelt_simd_level (), src, dst, n);
}

/**
 * smelt_convert_f32_to_bf16:
 * @src: (array length=n): floats
 * @dst: (out caller-allocates) (array length=n): room for @n bfloat16 values
 * @n: (in): number of elements
 *
 * Narrows float to bfloat16, rounding to nearest with ties to even, as
 * PyTorch does. Values beyond the largest bfloat16 become ±infinity; a NaN
 * becomes a quiet NaN with the same sign and the top of its payload, never
 * an infinity. @src and @dst must not overlap.
 */
void
smelt_convert_f32_to_bf16 (const float *src,
                           guint16     *dst,
                           gsize        n)
{
  g_return_if_fail ((src != NULL && dst != NULL) || n == 0);

  _smelt_convert_f32_to_bf16_at (_smelt_simd_level (), src, dst, n);
}

/**
 * smelt_convert_f32_to_f16:
 * @src: (array length=n): floats
 * @dst: (out caller-allocates) (array length=n): room for @n half-precision
 *   values
 * @n: (in): number of elements
 *
 * Narrows float to IEEE half precision, rounding to nearest with ties to
 * even: small values become subnormals or ±0, values of magnitude 65520 or
 * more become ±infinity, and a NaN becomes a quiet NaN with the same sign
 * and the top of its payload. @src and @dst must not overlap.
 *
 * Weights trained in bfloat16 can exceed the half-precision range; the
 * return value lets a caller refuse such a silent overflow.
 *
 * Returns: how many elements were finite in @src but became infinite
 */
gsize
smelt_convert_f32_to_f16 (const float *src,
                          guint16     *dst,
                          gsize        n)
{
  g_return_val_if_fail ((src != NULL && dst != NULL) || n == 0, 0);

  return _smelt_convert_f32_to_f16_at (_smelt_simd_level (), src, dst, n);
}

static gboolean
is_convertible (SmeltDType dtype)
{
  return dtype == SMELT_DTYPE_F32 || dtype == SMELT_DTYPE_F16 || dtype == SMELT_DTYPE_BF16;
}

/* Big enough to amortise the calls, small enough to stay in L1 next to the
 * data streaming through it. */
#define CONVERT_CHUNK 1024

/**
 * smelt_convert:
 * @src_dtype: the type of @src: %SMELT_DTYPE_F32, %SMELT_DTYPE_F16 or
 *   %SMELT_DTYPE_BF16
 * @src: (not nullable): @n elements of @src_dtype
 * @dst_dtype: the type to convert to, one of the same three
 * @dst: (not nullable): room for @n elements of @dst_dtype
 * @n: number of elements
 * @n_overflow: (out) (optional): where to store how many finite values
 *   became infinite (only a conversion to F16 can overflow), or %NULL
 *
 * Converts between any two of F32, F16 and BF16 with the rounding of the
 * smelt_convert_*() functions. F16 and BF16 convert through float, which is
 * exact on the way in, so there is a single rounding. Identical types are
 * copied. @src and @dst must not overlap unless they are the same buffer
 * and the types are identical.
 *
 * Returns: %TRUE on success, %FALSE if either type cannot be converted
 */
gboolean
smelt_convert (SmeltDType     src_dtype,
               gconstpointer  src,
               SmeltDType     dst_dtype,
               gpointer       dst,
               gsize          n,
               gsize         *n_overflow)
{
  _Alignas (64) float buf[CONVERT_CHUNK];
  SmeltSimdLevel level;
  gsize overflow = 0;

  if (n_overflow != NULL)
    *n_overflow = 0;
  if (!is_convertible (src_dtype) || !is_convertible (dst_dtype))
    return FALSE;
  g_return_val_if_fail ((src != NULL && dst != NULL) || n == 0, FALSE);

  if (src_dtype == dst_dtype)
    {
      if (n > 0 && src != dst)
        memmove (dst, src, n * (smelt_dtype_get_bits (src_dtype) / 8));
      return TRUE;
    }

  level = _smelt_simd_level ();

  if (src_dtype == SMELT_DTYPE_F32)
    {
      if (dst_dtype == SMELT_DTYPE_F16)
        overflow = _smelt_convert_f32_to_f16_at (level, src, dst, n);
      else
        _smelt_convert_f32_to_bf16_at (level, src, dst, n);
    }
  else if (dst_dtype == SMELT_DTYPE_F32)
    {
      if (src_dtype == SMELT_DTYPE_F16)
        _smelt_convert_f16_to_f32_at (level, src, dst, n);
      else
        _smelt_convert_bf16_to_f32_at (level, src, dst, n);
    }
  else
    {
      /* F16 <-> BF16 through a float buffer on the stack: no allocation
       * per call, and the widening half is exact. */
      const guint16 *s = src;
      guint16 *d = dst;

      for (gsize done = 0; done < n; done += CONVERT_CHUNK)
        {
          gsize len = MIN (n - done, (gsize) CONVERT_CHUNK);

          if (src_dtype == SMELT_DTYPE_F16)
            {
              _smelt_convert_f16_to_f32_at (level, s + done, buf, len);
              _smelt_convert_f32_to_bf16_at (level, buf, d + done, len);
            }
          else
            {
              _smelt_convert_bf16_to_f32_at (level, s + done, buf, len);
              overflow += _smelt_convert_f32_to_f16_at (level, buf, d + done, len);
            }
        }
    }

  if (n_overflow != NULL)
    *n_overflow = overflow;
  return TRUE;
}

/**
 * smelt_find_non_finite:
 * @values: (array length=n): floats
 * @n: number of elements
 *
 * Looks for the first NaN or infinity, to report a tensor that cannot be
 * exported faithfully.
 *
 * Returns: the index of the first NaN or ±infinity, or -1 if every value
 *   is finite
 */
gssize
smelt_find_non_finite (const float *values,
                       gsize        n)
{
  g_return_val_if_fail (values != NULL || n == 0, -1);

  return find_non_finite_at (_smelt_simd_level (), values, n);
}
