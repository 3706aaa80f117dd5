/* smelt-quality.c: how much a quantized export lost, and how much of the
 * fine-tune survived
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>

#if defined(__x86_64__) || defined(__i386__)
# include <immintrin.h>
# define HAVE_X86 1
#endif

#include "smelt-private.h"

/* The quality report's arithmetic, shared by the formats that quantize
 * (gguf-quant, bnb4): each measures its own round trip, and the figures
 * and their JSON are the same everywhere (doc/gguf.md, "Quality report"). */

/**
 * smelt_quality_stats_add:
 * @acc: the running totals
 * @stats: sums to add
 *
 * Adds @stats to @acc.
 */
void
smelt_quality_stats_add (SmeltQualityStats       *acc,
                         const SmeltQualityStats *stats)
{
  acc->err2 += stats->err2;
  acc->x2 += stats->x2;
  acc->delta2 += stats->delta2;
  acc->diff2 += stats->diff2;
  acc->cross += stats->cross;
  acc->resid2 += stats->resid2;
  acc->delta_n += stats->delta_n;
}

#ifdef HAVE_X86
/* The report measures millions of values per export: eight double lanes
 * at a time, converted exactly from float32. The sums' order differs
 * from the portable loop's (the report is an estimate, not bytes). */
#define TARGET_AVX512 __attribute__ ((target ("avx512f")))

TARGET_AVX512 static double
hsum (__m512d v)
{
  return _mm512_reduce_add_pd (v);
}

TARGET_AVX512 static gsize
measure_avx512 (SmeltQualityStats *stats,
                const float       *x,
                const float       *xq,
                gsize              n)
{
  __m512d err = _mm512_setzero_pd (), sq = _mm512_setzero_pd ();
  gsize i = 0;

  for (; i + 8 <= n; i += 8)
    {
      __m512d v = _mm512_cvtps_pd (_mm256_loadu_ps (x + i));
      __m512d e = _mm512_sub_pd (v, _mm512_cvtps_pd (_mm256_loadu_ps (xq + i)));

      err = _mm512_add_pd (err, _mm512_mul_pd (e, e));
      sq = _mm512_add_pd (sq, _mm512_mul_pd (v, v));
    }
  stats->err2 += hsum (err);
  stats->x2 += hsum (sq);
  return i;
}

TARGET_AVX512 static gsize
measure_delta_avx512 (SmeltQualityStats *stats,
                      const float       *x,
                      const float       *xq,
                      const float       *w,
                      const float       *wq,
                      gsize              n)
{
  __m512d d2 = _mm512_setzero_pd (), f2 = _mm512_setzero_pd ();
  __m512d cr = _mm512_setzero_pd (), r2 = _mm512_setzero_pd ();
  gsize i = 0;

  for (; i + 8 <= n; i += 8)
    {
      __m512d delta = _mm512_sub_pd (_mm512_cvtps_pd (_mm256_loadu_ps (x + i)),
                                     _mm512_cvtps_pd (_mm256_loadu_ps (w + i)));
      __m512d diff = _mm512_sub_pd (_mm512_cvtps_pd (_mm256_loadu_ps (xq + i)),
                                    _mm512_cvtps_pd (_mm256_loadu_ps (wq + i)));
      __m512d r = _mm512_sub_pd (diff, delta);

      d2 = _mm512_add_pd (d2, _mm512_mul_pd (delta, delta));
      f2 = _mm512_add_pd (f2, _mm512_mul_pd (diff, diff));
      cr = _mm512_add_pd (cr, _mm512_mul_pd (diff, delta));
      r2 = _mm512_add_pd (r2, _mm512_mul_pd (r, r));
    }
  stats->delta2 += hsum (d2);
  stats->diff2 += hsum (f2);
  stats->cross += hsum (cr);
  stats->resid2 += hsum (r2);
  stats->delta_n += i;
  return i;
}
#endif

static gboolean
use_avx512 (void)
{
#ifdef HAVE_X86
  return _smelt_simd_level () >= SMELT_SIMD_AVX512 && _smelt_simd_supported (SMELT_SIMD_AVX512);
#else
  return FALSE;
#endif
}

/**
 * smelt_quality_measure:
 * @stats: sums to add to
 * @x: (array length=n): the merged values
 * @xq: (array length=n): the same after quantization and dequantization
 * @n: how many
 *
 * Adds the error sums of @n values.
 */
void
smelt_quality_measure (SmeltQualityStats *stats,
                       const float       *x,
                       const float       *xq,
                       gsize              n)
{
  /* local sums in four lanes: the stats cannot alias the inputs for the
   * compiler (the core builds with -fno-strict-aliasing), and one chain of
   * additions would serialize the loop */
  double err[4] = { 0, }, sq[4] = { 0, };
  gsize i = 0;

#ifdef HAVE_X86
  if (use_avx512 ())
    {
      gsize done = measure_avx512 (stats, x, xq, n);

      x += done, xq += done, n -= done;
    }
#endif
  for (; i + 4 <= n; i += 4)
    for (guint k = 0; k < 4; k++)
      {
        double v = x[i + k], e = v - xq[i + k];

        err[k] += e * e;
        sq[k] += v * v;
      }
  for (; i < n; i++)
    {
      double v = x[i], e = v - xq[i];

      err[0] += e * e;
      sq[0] += v * v;
    }
  stats->err2 += (err[0] + err[1]) + (err[2] + err[3]);
  stats->x2 += (sq[0] + sq[1]) + (sq[2] + sq[3]);
}

/**
 * smelt_quality_measure_delta:
 * @stats: sums to add to
 * @x: (array length=n): the merged values
 * @xq: (array length=n): @x after quantization and dequantization
 * @w: (array length=n): the base's values (before the adapters)
 * @wq: (array length=n): @w after quantization and dequantization
 * @n: how many
 *
 * Adds the sums that compare the change that reached the file,
 * @xq − @wq, with the adapters' change, @x − @w.
 */
void
smelt_quality_measure_delta (SmeltQualityStats *stats,
                             const float       *x,
                             const float       *xq,
                             const float       *w,
                             const float       *wq,
                             gsize              n)
{
  double d2[4] = { 0, }, f2[4] = { 0, }, cr[4] = { 0, }, r2[4] = { 0, };
  gsize i = 0;

#ifdef HAVE_X86
  if (use_avx512 ())
    {
      gsize done = measure_delta_avx512 (stats, x, xq, w, wq, n);

      x += done, xq += done, w += done, wq += done, n -= done;
    }
#endif
  for (; i < n; i++)
    {
      guint k = i % 4;
      double delta = (double) x[i] - w[i];
      double diff = (double) xq[i] - wq[i];

      d2[k] += delta * delta;
      f2[k] += diff * diff;
      cr[k] += diff * delta;
      r2[k] += (diff - delta) * (diff - delta);
    }
  stats->delta2 += (d2[0] + d2[1]) + (d2[2] + d2[3]);
  stats->diff2 += (f2[0] + f2[1]) + (f2[2] + f2[3]);
  stats->cross += (cr[0] + cr[1]) + (cr[2] + cr[3]);
  stats->resid2 += (r2[0] + r2[1]) + (r2[2] + r2[3]);
  stats->delta_n += n;
}

/**
 * smelt_quality_get_figures:
 * @stats: sums
 * @figures: (out caller-allocates): what they say
 *
 * Computes the report's figures.
 */
void
smelt_quality_get_figures (const SmeltQualityStats *stats,
                           SmeltQualityFigures     *figures)
{
  SmeltQualityFigures f = { 0 };

  f.rel_rms_error = stats->x2 > 0 ? sqrt (stats->err2 / stats->x2)
                                  : (stats->err2 > 0 ? INFINITY : 0);
  f.delta_rms = stats->delta_n > 0 ? sqrt (stats->delta2 / stats->delta_n) : 0;
  if (stats->delta2 > 0)
    {
      f.delta_ratio = sqrt (stats->diff2 / stats->delta2);
      f.delta_cosine = stats->diff2 > 0 ? stats->cross / sqrt (stats->diff2 * stats->delta2) : 0;
      f.delta_error = sqrt (stats->resid2 / stats->delta2);
      f.delta_surviving = MAX (0.0, 1.0 - stats->resid2 / stats->delta2);
    }
  *figures = f;
}

static void
add_number (JsonBuilder *b,
            const char  *name,
            double       value)
{
  json_builder_set_member_name (b, name);
  if (isfinite (value))
    json_builder_add_double_value (b, value);
  else
    json_builder_add_null_value (b);
}

/**
 * smelt_quality_add_json:
 * @builder: a builder inside an object
 * @stats: sums
 * @with_error: whether to add the error figure
 * @with_delta: whether to add the delta figures
 *
 * Adds, with @with_error, `rel_rms_error` and, with @with_delta, `delta_rms`,
 * `delta_surviving`, `delta_cosine`, `delta_ratio` and `delta_error`
 * (null where a figure is not finite).
 */
void
smelt_quality_add_json (JsonBuilder             *builder,
                        const SmeltQualityStats *stats,
                        gboolean                 with_error,
                        gboolean                 with_delta)
{
  SmeltQualityFigures f;

  smelt_quality_get_figures (stats, &f);
  if (with_error)
    add_number (builder, "rel_rms_error", f.rel_rms_error);
  if (!with_delta)
    return;
  add_number (builder, "delta_rms", f.delta_rms);
  add_number (builder, "delta_surviving", f.delta_surviving);
  add_number (builder, "delta_cosine", f.delta_cosine);
  add_number (builder, "delta_ratio", f.delta_ratio);
  add_number (builder, "delta_error", f.delta_error);
}
