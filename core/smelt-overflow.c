/* smelt-overflow.c: finite float32 values a narrower type cannot hold
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/* The smallest magnitude that rounds (to nearest, ties to even) to
 * infinity: 65520 for F16 (halfway between 65504 and 65536) and, for BF16,
 * halfway between its largest value 0x7F7F and 0x7F80 (= inf), which ties
 * to the even 0x7F80. Infinities and NaNs in the input are not counted:
 * they are not overflows, and merges reject them separately. */
static float
threshold_for (SmeltDType dtype)
{
  guint32 bits = 0x7F7F8000u;
  float f;

  if (dtype == SMELT_DTYPE_F16)
    return 65520.0f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

static gssize
first_at_or_above (const float *values,
                   gsize        n,
                   float        limit)
{
  for (gsize i = 0; i < n; i++)
    {
      float a = values[i] < 0 ? -values[i] : values[i];

      if (a >= limit && a <= __FLT_MAX__)
        return (gssize) i;
    }
  return -1;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

/* Overflow is rare: test 16 lanes at a time, OR the lane masks without
 * branching per block, and only look for the index once something hit. */
__attribute__ ((target ("avx512f")))
static gboolean
any_at_or_above_avx512 (const float *values,
                        gsize        n,
                        float        limit)
{
  const __m512 lim = _mm512_set1_ps (limit);
  const __m512 max = _mm512_set1_ps (__FLT_MAX__);
  __mmask16 acc = 0;
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      __m512 a = _mm512_abs_ps (_mm512_loadu_ps (values + i));
      acc |= _mm512_cmp_ps_mask (a, lim, _CMP_GE_OQ) & _mm512_cmp_ps_mask (a, max, _CMP_LE_OQ);
    }
  return acc != 0 || first_at_or_above (values + i, n - i, limit) >= 0;
}

__attribute__ ((target ("avx2")))
static gboolean
any_at_or_above_avx2 (const float *values,
                      gsize        n,
                      float        limit)
{
  const __m256 lim = _mm256_set1_ps (limit);
  const __m256 max = _mm256_set1_ps (__FLT_MAX__);
  const __m256 sign = _mm256_set1_ps (-0.0f);
  __m256 acc = _mm256_setzero_ps ();
  gsize i = 0;

  for (; i + 8 <= n; i += 8)
    {
      __m256 a = _mm256_andnot_ps (sign, _mm256_loadu_ps (values + i));
      acc = _mm256_or_ps (acc, _mm256_and_ps (_mm256_cmp_ps (a, lim, _CMP_GE_OQ),
                                              _mm256_cmp_ps (a, max, _CMP_LE_OQ)));
    }
  return _mm256_movemask_ps (acc) != 0 || first_at_or_above (values + i, n - i, limit) >= 0;
}
#endif

static gssize
find_at_or_above (const float *values,
                  gsize        n,
                  float        limit)
{
#if defined(__x86_64__) || defined(__i386__)
  SmeltSimdLevel level = _smelt_simd_level ();

  if (level >= SMELT_SIMD_AVX512 && !any_at_or_above_avx512 (values, n, limit))
    return -1;
  if (level == SMELT_SIMD_AVX2 && !any_at_or_above_avx2 (values, n, limit))
    return -1;
#endif
  return first_at_or_above (values, n, limit);
}

/**
 * smelt_find_overflow:
 * @values: (array length=n): float32 values
 * @n: number of values
 * @dtype: %SMELT_DTYPE_F16 or %SMELT_DTYPE_BF16
 *
 * Finds the first finite value that would become ±infinity when rounded
 * to @dtype, so that exports can refuse instead of writing a silent inf.
 *
 * Returns: its index, or -1 if every value fits (or @dtype cannot overflow)
 */
gssize
smelt_find_overflow (const float *values,
                     gsize        n,
                     SmeltDType   dtype)
{
  if (dtype != SMELT_DTYPE_F16 && dtype != SMELT_DTYPE_BF16)
    return -1;
  return find_at_or_above (values, n, threshold_for (dtype));
}

/**
 * smelt_check_rows_fit:
 * @name: the tensor's name, for the message
 * @rows: (array length=n): float32 rows
 * @n: how many values
 * @row_len: values per row
 * @first_row: the tensor row @rows starts at
 * @dtype: the 16-bit type the rows are about to become
 * @error: return location for a #GError
 *
 * Checks that every value of @rows fits @dtype (see smelt_find_overflow());
 * the error names the tensor, the value, its row and column, and suggests
 * `DType=bf16` for float16.
 *
 * Returns: %TRUE if they all fit
 */
gboolean
smelt_check_rows_fit (const char   *name,
                      const float  *rows,
                      gsize         n,
                      guint64       row_len,
                      guint64       first_row,
                      SmeltDType    dtype,
                      GError      **error)
{
  gssize i = smelt_find_overflow (rows, n, dtype);

  if (i < 0)
    return TRUE;
  row_len = MAX (row_len, 1);
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
               "%s: value %g at row %" G_GUINT64_FORMAT ", column %" G_GUINT64_FORMAT
               " does not fit in %s%s", name, rows[i],
               first_row + i / row_len, (guint64) (i % row_len),
               dtype == SMELT_DTYPE_F16 ? "float16 (largest 65504)" : "bfloat16",
               dtype == SMELT_DTYPE_F16 ? "; use DType=bf16" : "");
  return FALSE;
}
