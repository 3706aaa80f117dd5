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

typedef float SmeltOvV16 __attribute__ ((vector_size (64), aligned (4)));
typedef gint32 SmeltOvI16 __attribute__ ((vector_size (64)));

/* Scans 16 lanes at a time for |x| >= limit among finite x, then finds the
 * exact index in the first hit block; cloned per ISA. */
__attribute__ ((target_clones ("avx512f", "avx2", "default")))
static gssize
find_at_or_above (const float *values,
                  gsize        n,
                  float        limit)
{
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      SmeltOvV16 v;
      SmeltOvI16 bits, hit;
      gboolean any = FALSE;

      /* |x| by clearing the sign bit; NaN compares false, inf > FLT_MAX */
      memcpy (&bits, values + i, sizeof bits);
      bits &= 0x7fffffff;
      memcpy (&v, &bits, sizeof v);
      hit = (v >= limit) & (v <= __FLT_MAX__);
      for (int k = 0; k < 16; k++)
        any |= hit[k] != 0;
      if (any)
        break;
    }
  for (; i < n; i++)
    {
      float a = values[i] < 0 ? -values[i] : values[i];

      if (a >= limit && a <= __FLT_MAX__)
        return (gssize) i;
    }
  return -1;
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
