/* smelt-ggml-quants.c: ggml's block quantizers Q4_0 … Q6_K, bit for bit
 *
 * Each encoder produces the bytes ggml_quantize_chunk() writes without an
 * importance matrix, that is, those of ggml's reference routines
 * (quantize_row_*_ref in ggml-quants.c). Matching them to the bit fixes
 * more than the algorithm:
 *
 * - every intermediate is a float, and every sum is accumulated in index
 *   order, one rounding per operation (the project builds with
 *   -ffp-contract=off; ggml-base is built without FMA);
 * - the K-quants round with ggml's nearest_int (the 1.5·2^23 trick: half to
 *   even, and garbage, but the same garbage, beyond ±2^22), the 32-element
 *   types truncate with a cast and keep the low byte;
 * - fp16 scales round to nearest even, and are decoded again before the
 *   values are requantized with them;
 * - when a decoded sub-block scale is 0 the levels found by the search are
 *   kept, and the all-zero Q6_K super-block is written as zeros.
 *
 * Huge inputs (|x| ≳ 1e19, whose squares overflow) make infinities and NaNs
 * inside the searches; comparisons with NaN are false and nearest_int of
 * ggml's NaN is 0, and this code takes the same branches because it does the
 * same operations. No state outside the stack: the encoders may run on any
 * number of threads at once.
 *
 * The searches of the K-quants (nearly all of their time) also come as
 * AVX2 and AVX-512 code that runs the independent sub-blocks of a
 * super-block side by side, one per lane, each lane doing the scalar
 * operations in the scalar order; _smelt_ggml_quantize() picks the best
 * the CPU has, _smelt_ggml_quantize_at() any level, and every level writes
 * the same bytes (tests/test-gguf.c compares them on adversarial blocks).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
# include <immintrin.h>
# define HAVE_X86 1
#endif

#include "smelt-private.h"

#define QK_K 256
/* ggml's GROUP_MAX_EPS: a sub-block whose largest |x| is below it is zero */
#define GROUP_MAX_EPS 1e-15f

/* ------------------------------------------------------------------ */
/* numeric primitives */

/* ggml's nearest_int: adding 1.5·2^23 leaves round(f) (ties to even) in the
 * low mantissa bits for |f| ≤ 2^22. Outside that range (ggml only asserts,
 * in debug builds) the result is whatever the bits say; reproduce that. */
static inline int
nearest_int (float f)
{
  float v = f + 12582912.0f;
  gint32 i;

  memcpy (&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

/* The low byte of C's float → integer cast as x86 performs it
 * (cvttss2si/cvttps2dq): truncation toward zero, and INT_MIN, whose low
 * byte is 0, for NaN and out-of-range values (an infinite 1/d makes
 * those). ggml then narrows to (u)int8_t, keeping that byte. */
static inline guint8
trunc_low_byte (float v)
{
  if (!(fabsf (v) < 2147483648.0f))
    return 0;
  return (guint8) (guint32) (gint32) v;
}

/* The byte as int8_t, without an implementation-defined conversion */
static inline int
as_int8 (guint8 b)
{
  return b < 128 ? b : (int) b - 256;
}

/* ggml's GGML_FP32_TO_FP16 for any float: the sign, then the magnitude
 * rounded to nearest even (overflow to inf), NaN → 0x7e00. */
static inline guint16
fp16_bits (float f)
{
  guint32 x;
  guint16 sign;

  memcpy (&x, &f, sizeof x);
  sign = (x >> 16) & 0x8000;
  if ((x & 0x7f800000) == 0x7f800000)
    return sign | ((x & 0x007fffff) ? 0x7e00 : 0x7c00);
  return sign | _smelt_ggml_fp16 (fabsf (f));
}

/* ggml's GGML_FP16_TO_FP32: exact; a NaN keeps its payload bits. */
static inline float
fp16_value (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000) << 16;
  guint32 exp = (h >> 10) & 0x1f;
  guint32 mant = h & 0x3ff;
  guint32 bits;
  float f;

  if (exp == 0)
    {
      f = (float) mant * 0x1p-24f;   /* subnormal or zero: exact */
      return sign ? -f : f;
    }
  if (exp == 31)
    bits = sign | 0x7f800000 | (mant << 13);
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  memcpy (&f, &bits, sizeof f);
  return f;
}

static inline void
put_fp16 (guint8  *out,
          guint16  h)
{
  out[0] = h & 0xff;
  out[1] = h >> 8;
}

static inline guint16
get_fp16 (const guint8 *in)
{
  return (guint16) (in[0] | in[1] << 8);
}

/* ------------------------------------------------------------------ */
/* 32-element blocks */

/* The element of largest magnitude, with its sign; the first one wins
 * ties (strict <), as in ggml. */
static inline float
signed_absmax (const float *x,
               int          n)
{
  float amax = 0.0f, max = 0.0f;

  for (int j = 0; j < n; j++)
    if (amax < fabsf (x[j]))
      {
        amax = fabsf (x[j]);
        max = x[j];
      }
  return max;
}

static inline void
min_max (const float *x,
         int          n,
         float       *min_out,
         float       *max_out)
{
  float min = FLT_MAX, max = -FLT_MAX;

  /* the first of equal values is kept: it decides the sign of a zero min */
  for (int j = 0; j < n; j++)
    {
      if (x[j] < min)
        min = x[j];
      if (x[j] > max)
        max = x[j];
    }
  *min_out = min;
  *max_out = max;
}

/* Q4_0: 18 bytes, fp16 d, then 16 bytes of nibbles (j | j+16 << 4) */
void
_smelt_ggml_quantize_q4_0 (const float *src,
                           guint64      n,
                           guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    {
      const float *x = src + b * 32;
      guint8 *out = dst + b * 18;
      float d = signed_absmax (x, 32) / -8;
      float id = d != 0.0f ? 1.0f / d : 0.0f;

      put_fp16 (out, fp16_bits (d));
      for (int j = 0; j < 16; j++)
        {
          int q0 = as_int8 (trunc_low_byte (x[j] * id + 8.5f));
          int q1 = as_int8 (trunc_low_byte (x[j + 16] * id + 8.5f));
          guint8 xi0 = (guint8) MIN (15, q0);
          guint8 xi1 = (guint8) MIN (15, q1);

          out[2 + j] = xi0 | (guint8) (xi1 << 4);
        }
    }
}

/* Q4_1: 20 bytes, fp16 d and min, then nibbles as Q4_0 */
void
_smelt_ggml_quantize_q4_1 (const float *src,
                           guint64      n,
                           guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    {
      const float *x = src + b * 32;
      guint8 *out = dst + b * 20;
      float min, max, d, id;

      min_max (x, 32, &min, &max);
      d = (max - min) / 15;
      id = d != 0.0f ? 1.0f / d : 0.0f;
      put_fp16 (out, fp16_bits (d));
      put_fp16 (out + 2, fp16_bits (min));
      for (int j = 0; j < 16; j++)
        {
          int q0 = as_int8 (trunc_low_byte ((x[j] - min) * id + 0.5f));
          int q1 = as_int8 (trunc_low_byte ((x[j + 16] - min) * id + 0.5f));
          guint8 xi0 = (guint8) MIN (15, q0);
          guint8 xi1 = (guint8) MIN (15, q1);

          out[4 + j] = xi0 | (guint8) (xi1 << 4);
        }
    }
}

/* The fifth bits of a Q5 block as ggml's little-endian uint32 qh */
static inline void
put_u32 (guint8  *out,
         guint32  v)
{
  out[0] = v & 0xff;
  out[1] = (v >> 8) & 0xff;
  out[2] = (v >> 16) & 0xff;
  out[3] = v >> 24;
}

/* Q5_0: 22 bytes, fp16 d, qh (u32: bit j = bit 4 of q[j]), low nibbles */
void
_smelt_ggml_quantize_q5_0 (const float *src,
                           guint64      n,
                           guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    {
      const float *x = src + b * 32;
      guint8 *out = dst + b * 22;
      float d = signed_absmax (x, 32) / -16;
      float id = d != 0.0f ? 1.0f / d : 0.0f;
      guint32 qh = 0;

      put_fp16 (out, fp16_bits (d));
      for (int j = 0; j < 16; j++)
        {
          int q0 = as_int8 (trunc_low_byte (x[j] * id + 16.5f));
          int q1 = as_int8 (trunc_low_byte (x[j + 16] * id + 16.5f));
          guint8 xi0 = (guint8) MIN (31, q0);
          guint8 xi1 = (guint8) MIN (31, q1);

          out[6 + j] = (xi0 & 0x0f) | (guint8) ((xi1 & 0x0f) << 4);
          qh |= ((xi0 & 0x10u) >> 4) << j;
          qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
      put_u32 (out + 2, qh);
    }
}

/* Q5_1: 24 bytes, fp16 d and min, qh, low nibbles; no clamp on q */
void
_smelt_ggml_quantize_q5_1 (const float *src,
                           guint64      n,
                           guint8      *dst)
{
  for (guint64 b = 0; b < n / 32; b++)
    {
      const float *x = src + b * 32;
      guint8 *out = dst + b * 24;
      float min, max, d, id;
      guint32 qh = 0;

      min_max (x, 32, &min, &max);
      d = (max - min) / 31;
      id = d != 0.0f ? 1.0f / d : 0.0f;
      put_fp16 (out, fp16_bits (d));
      put_fp16 (out + 2, fp16_bits (min));
      for (int j = 0; j < 16; j++)
        {
          guint8 xi0 = trunc_low_byte ((x[j] - min) * id + 0.5f);
          guint8 xi1 = trunc_low_byte ((x[j + 16] - min) * id + 0.5f);

          out[8 + j] = (xi0 & 0x0f) | (guint8) ((xi1 & 0x0f) << 4);
          qh |= ((xi0 & 0x10u) >> 4) << j;
          qh |= ((xi1 & 0x10u) >> 4) << (j + 16);
        }
      put_u32 (out + 4, qh);
    }
}

/* ------------------------------------------------------------------ */
/* K-quant searches (ggml's make_qx_quants, make_q3_quants,
 * make_qkx2_quants), for the arguments the reference routines pass */

/* make_qx_quants with rmse_type 1 and no importance weights (Q6_K), for
 * 16 elements: weights x², the least-squares scale of the first rounding,
 * then 18 other reciprocal scales, keeping a candidate only when it is
 * strictly better. Levels in L are offset by nmax; the all-zero case
 * leaves 0. Each trial rounds all elements first and then sums in index
 * order with ggml's products ((w·x)·l and (w·l)·l), so the compiler may
 * vectorize the rounding while every sum stays ggml's. */
static void
round_signed (const float *x,
              float        iscale,
              int          nmax,
              int         *l)
{
  for (int i = 0; i < 16; i++)
    {
      int v = nearest_int (iscale * x[i]);

      l[i] = MAX (-nmax, MIN (nmax - 1, v));
    }
}

static float
make_qx_quants (int          nmax,
                const float *x,
                gint8       *L)
{
  float w[16], wx[16];
  int l[16];
  float max = 0.0f, amax = 0.0f;
  float iscale, sumlx = 0.0f, suml2 = 0.0f, scale, best;

  for (int i = 0; i < 16; i++)
    {
      float ax = fabsf (x[i]);

      if (ax > amax)
        {
          amax = ax;
          max = x[i];
        }
    }
  if (amax < GROUP_MAX_EPS)
    {
      memset (L, 0, 16);
      return 0.0f;
    }
  for (int i = 0; i < 16; i++)
    {
      w[i] = x[i] * x[i];
      wx[i] = w[i] * x[i];
    }
  iscale = -nmax / max;
  round_signed (x, iscale, nmax, l);
  for (int i = 0; i < 16; i++)
    {
      L[i] = (gint8) (l[i] + nmax);
      sumlx += wx[i] * l[i];
      suml2 += w[i] * l[i] * l[i];
    }
  scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  best = scale * sumlx;
  for (int is = -9; is <= 9; is++)
    {
      if (is == 0)
        continue;
      iscale = -(nmax + 0.1f * is) / max;
      round_signed (x, iscale, nmax, l);
      sumlx = suml2 = 0.0f;
      for (int i = 0; i < 16; i++)
        {
          sumlx += wx[i] * l[i];
          suml2 += w[i] * l[i] * l[i];
        }
      if (suml2 > 0.0f && sumlx * sumlx > best * suml2)
        {
          for (int i = 0; i < 16; i++)
            L[i] = (gint8) (l[i] + nmax);
          scale = sumlx / suml2;
          best = scale * sumlx;
        }
    }
  return scale;
}

/* make_q3_quants with do_rmse (Q3_K): the first rounding, then up to five
 * sweeps of one-level-at-a-time improvement. Levels offset by nmax. */
static float
make_q3_quants (int          n,
                int          nmax,
                const float *x,
                gint8       *L)
{
  float max = 0.0f, amax = 0.0f;
  float iscale, sumlx = 0.0f, suml2 = 0.0f;

  for (int i = 0; i < n; i++)
    {
      float ax = fabsf (x[i]);

      if (ax > amax)
        {
          amax = ax;
          max = x[i];
        }
    }
  if (amax < GROUP_MAX_EPS)
    {
      memset (L, 0, (gsize) n);
      return 0.0f;
    }
  iscale = -nmax / max;
  for (int i = 0; i < n; i++)
    {
      int l = nearest_int (iscale * x[i]);
      float w = x[i] * x[i];

      l = MAX (-nmax, MIN (nmax - 1, l));
      L[i] = (gint8) l;
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  for (int itry = 0; itry < 5; itry++)
    {
      int n_changed = 0;

      for (int i = 0; i < n; i++)
        {
          float w = x[i] * x[i];
          float slx = sumlx - w * x[i] * L[i];
          float sl2;
          int new_l;

          if (!(slx > 0.0f))
            continue;
          sl2 = suml2 - w * L[i] * L[i];
          new_l = nearest_int (x[i] * sl2 / slx);
          new_l = MAX (-nmax, MIN (nmax - 1, new_l));
          if (new_l == L[i])
            continue;
          slx += w * x[i] * new_l;
          sl2 += w * new_l * new_l;
          if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2)
            {
              L[i] = (gint8) new_l;
              sumlx = slx;
              suml2 = sl2;
              n_changed++;
            }
        }
      if (n_changed == 0)
        break;
    }
  for (int i = 0; i < n; i++)
    L[i] = (gint8) (L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* make_qkx2_quants: an affine grid (scale, min ≤ 0) for levels 0..nmax,
 * fitted by weighted least squares for nstep + 1 trial reciprocal scales;
 * a trial replaces the best only with a strictly smaller error (absolute
 * with use_mad, else squared). Returns the scale, *the_min = -min.
 * The trials are not independent: an accepted trial replaces min by its
 * fitted min, and the later trials round x - min and divide by max - min
 * with that new min, as ggml's do. */
static float
make_qkx2_quants (int          n,
                  int          nmax,
                  const float *x,
                  const float *weights,
                  guint8      *L,
                  float       *the_min,
                  float        rmin,
                  float        rdelta,
                  int          nstep,
                  gboolean     use_mad)
{
  guint8 Laux[32];
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  float iscale, scale, best_error = 0.0f;

  for (int i = 1; i < n; i++)
    {
      float w = weights[i];

      if (x[i] < min)
        min = x[i];
      if (x[i] > max)
        max = x[i];
      sum_w += w;
      sum_x += w * x[i];
    }
  if (min > 0.0f)
    min = 0.0f;
  if (max == min)
    {
      memset (L, 0, (gsize) n);
      *the_min = -min;
      return 0.0f;
    }
  iscale = nmax / (max - min);
  scale = 1 / iscale;
  for (int i = 0; i < n; i++)
    {
      int l = nearest_int (iscale * (x[i] - min));
      float diff;

      L[i] = (guint8) MAX (0, MIN (nmax, l));
      diff = scale * L[i] + min - x[i];
      diff = use_mad ? fabsf (diff) : diff * diff;
      best_error += weights[i] * diff;
    }
  for (int is = 0; is <= nstep; is++)
    {
      float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f, D;

      iscale = (rmin + rdelta * is + nmax) / (max - min);
      for (int i = 0; i < n; i++)
        {
          int l = nearest_int (iscale * (x[i] - min));
          float w = weights[i];

          l = MAX (0, MIN (nmax, l));
          Laux[i] = (guint8) l;
          sum_l += w * l;
          sum_l2 += w * l * l;
          sum_xl += w * l * x[i];
        }
      D = sum_w * sum_l2 - sum_l * sum_l;
      if (D > 0.0f)
        {
          float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
          float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
          float cur_error = 0.0f;

          if (this_min > 0.0f)
            {
              this_min = 0.0f;
              this_scale = sum_xl / sum_l2;
            }
          for (int i = 0; i < n; i++)
            {
              float diff = this_scale * Laux[i] + this_min - x[i];

              diff = use_mad ? fabsf (diff) : diff * diff;
              cur_error += weights[i] * diff;
            }
          if (cur_error < best_error)
            {
              memcpy (L, Laux, (gsize) n);
              best_error = cur_error;
              scale = this_scale;
              min = this_min;
            }
        }
    }
  *the_min = -min;
  return scale;
}

/* ------------------------------------------------------------------ */
/* The same searches, eight sub-blocks at a time (AVX2)
 *
 * The sub-blocks of a super-block are independent, so each 32-bit lane
 * runs one sub-block's search: lane k of vector i holds element i of
 * sub-block k, and every lane performs exactly the scalar sequence of
 * float operations above (the same products, sums in index order, the
 * same comparisons, nearest_int's 1.5·2^23 addition). A branch becomes a
 * mask: a trial is computed in every lane and kept, by blending, only in
 * the lanes where the scalar code would take it. No FMA (target "avx2"
 * only, and the project builds with -ffp-contract=off), and IEEE add, mul,
 * div and sqrt round the same in a lane as in a scalar register, so every
 * lane's result is the scalar result (tests/test-gguf.c compares them). */

#ifdef HAVE_X86

__attribute__ ((target ("avx2")))
static inline __m256i
nearest_int_x8 (__m256 f)
{
  __m256i i = _mm256_castps_si256 (_mm256_add_ps (f, _mm256_set1_ps (12582912.0f)));

  return _mm256_sub_epi32 (_mm256_and_si256 (i, _mm256_set1_epi32 (0x007fffff)),
                           _mm256_set1_epi32 (0x00400000));
}

__attribute__ ((target ("avx2")))
static inline __m256i
clamp_x8 (__m256i v,
          int     lo,
          int     hi)
{
  return _mm256_max_epi32 (_mm256_set1_epi32 (lo), _mm256_min_epi32 (_mm256_set1_epi32 (hi), v));
}

__attribute__ ((target ("avx2")))
static inline __m256
blend_x8 (__m256 a,
          __m256 b,
          __m256 take_b)
{
  return _mm256_blendv_ps (a, b, take_b);
}

/* Element i of eight sub-blocks that start @stride floats apart */
__attribute__ ((target ("avx2")))
static inline __m256
gather_x8 (const float *x,
           int          stride)
{
  const __m256i idx = _mm256_mullo_epi32 (_mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32 (stride));

  return _mm256_i32gather_ps (x, idx, 4);
}

/* make_qkx2_quants for eight groups of n ≤ 32 elements: xt[i], wt[i] hold
 * element i (and its weight) of every group; the levels come back in
 * Lt[i], the scales and -mins in scales[8], the_mins[8]. */
__attribute__ ((target ("avx2")))
static void
make_qkx2_quants_x8 (int           n,
                     int           nmax,
                     const __m256 *xt,
                     const __m256 *wt,
                     __m256i      *Lt,
                     float        *scales,
                     float        *the_mins,
                     float         rmin,
                     float         rdelta,
                     int           nstep,
                     gboolean      use_mad)
{
  const __m256 zero = _mm256_setzero_ps ();
  const __m256 abs_mask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));
  const __m256 neg_zero = _mm256_set1_ps (-0.0f);
  __m256i Laux[32];
  __m256 min = xt[0], max = xt[0];
  __m256 sum_w = wt[0];
  __m256 sum_x = _mm256_mul_ps (sum_w, xt[0]);
  __m256 flat, iscale, scale, best_error = zero;

  for (int i = 1; i < n; i++)
    {
      /* "if (x < min) min = x", "if (x > max) max = x" as masks */
      min = blend_x8 (min, xt[i], _mm256_cmp_ps (xt[i], min, _CMP_LT_OQ));
      max = blend_x8 (max, xt[i], _mm256_cmp_ps (xt[i], max, _CMP_GT_OQ));
      sum_w = _mm256_add_ps (sum_w, wt[i]);
      sum_x = _mm256_add_ps (sum_x, _mm256_mul_ps (wt[i], xt[i]));
    }
  min = _mm256_andnot_ps (_mm256_cmp_ps (min, zero, _CMP_GT_OQ), min);
  flat = _mm256_cmp_ps (max, min, _CMP_EQ_OQ);

  iscale = _mm256_div_ps (_mm256_set1_ps ((float) nmax), _mm256_sub_ps (max, min));
  scale = _mm256_div_ps (_mm256_set1_ps (1.0f), iscale);
  for (int i = 0; i < n; i++)
    {
      __m256i l = clamp_x8 (nearest_int_x8 (_mm256_mul_ps (iscale, _mm256_sub_ps (xt[i], min))), 0, nmax);
      __m256 diff;

      Lt[i] = l;
      diff = _mm256_sub_ps (_mm256_add_ps (_mm256_mul_ps (scale, _mm256_cvtepi32_ps (l)), min), xt[i]);
      diff = use_mad ? _mm256_and_ps (diff, abs_mask) : _mm256_mul_ps (diff, diff);
      best_error = _mm256_add_ps (best_error, _mm256_mul_ps (wt[i], diff));
    }

  for (int is = 0; is <= nstep; is++)
    {
      /* the scalar numerator, evaluated as the scalar code does */
      float num = rmin + rdelta * (float) is + (float) nmax;
      __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero, cur_error = zero;
      __m256 D, this_scale, this_min, pos, take;
      int take_bits;

      iscale = _mm256_div_ps (_mm256_set1_ps (num), _mm256_sub_ps (max, min));
      for (int i = 0; i < n; i++)
        {
          __m256i l = clamp_x8 (nearest_int_x8 (_mm256_mul_ps (iscale, _mm256_sub_ps (xt[i], min))), 0, nmax);
          __m256 lf = _mm256_cvtepi32_ps (l);
          __m256 wl = _mm256_mul_ps (wt[i], lf);

          Laux[i] = l;
          sum_l = _mm256_add_ps (sum_l, wl);
          sum_l2 = _mm256_add_ps (sum_l2, _mm256_mul_ps (wl, lf));
          sum_xl = _mm256_add_ps (sum_xl, _mm256_mul_ps (wl, xt[i]));
        }
      D = _mm256_sub_ps (_mm256_mul_ps (sum_w, sum_l2), _mm256_mul_ps (sum_l, sum_l));
      /* the lanes where the scalar code enters "if (D > 0)", not flat */
      take = _mm256_andnot_ps (flat, _mm256_cmp_ps (D, zero, _CMP_GT_OQ));
      if (_mm256_movemask_ps (take) == 0)
        continue;
      this_scale = _mm256_div_ps (_mm256_sub_ps (_mm256_mul_ps (sum_w, sum_xl), _mm256_mul_ps (sum_x, sum_l)), D);
      this_min = _mm256_div_ps (_mm256_sub_ps (_mm256_mul_ps (sum_l2, sum_x), _mm256_mul_ps (sum_l, sum_xl)), D);
      pos = _mm256_cmp_ps (this_min, zero, _CMP_GT_OQ);
      this_min = _mm256_andnot_ps (pos, this_min);
      this_scale = blend_x8 (this_scale, _mm256_div_ps (sum_xl, sum_l2), pos);
      for (int i = 0; i < n; i++)
        {
          __m256 diff = _mm256_sub_ps (_mm256_add_ps (_mm256_mul_ps (this_scale, _mm256_cvtepi32_ps (Laux[i])),
                                                      this_min), xt[i]);

          diff = use_mad ? _mm256_and_ps (diff, abs_mask) : _mm256_mul_ps (diff, diff);
          cur_error = _mm256_add_ps (cur_error, _mm256_mul_ps (wt[i], diff));
        }
      take = _mm256_and_ps (take, _mm256_cmp_ps (cur_error, best_error, _CMP_LT_OQ));
      take_bits = _mm256_movemask_ps (take);
      if (take_bits == 0)
        continue;
      for (int i = 0; i < n; i++)
        Lt[i] = _mm256_castps_si256 (blend_x8 (_mm256_castsi256_ps (Lt[i]), _mm256_castsi256_ps (Laux[i]), take));
      best_error = blend_x8 (best_error, cur_error, take);
      scale = blend_x8 (scale, this_scale, take);
      min = blend_x8 (min, this_min, take);
    }

  /* flat groups: levels 0, scale 0, and -min */
  for (int i = 0; i < n; i++)
    Lt[i] = _mm256_andnot_si256 (_mm256_castps_si256 (flat), Lt[i]);
  _mm256_storeu_ps (scales, _mm256_andnot_ps (flat, scale));
  _mm256_storeu_ps (the_mins, _mm256_xor_ps (min, neg_zero));
}

/* Levels of lane k of Lt[0..n) to L + k·n as bytes (after adding @offset) */
__attribute__ ((target ("avx2")))
static void
scatter_levels_x8 (const __m256i *Lt,
                   int            n,
                   int            offset,
                   guint8        *L)
{
  gint32 lanes[8];

  for (int i = 0; i < n; i++)
    {
      _mm256_storeu_si256 ((__m256i *) lanes, _mm256_add_epi32 (Lt[i], _mm256_set1_epi32 (offset)));
      for (int k = 0; k < 8; k++)
        L[k * n + i] = (guint8) lanes[k];
    }
}

/* qk_affine_block's search for all eight sub-blocks of 32 */
__attribute__ ((target ("avx2")))
static void
qk_affine_search_avx2 (const float *x,
                       int          nmax,
                       float        rmin,
                       int          nstep,
                       float       *scales,
                       float       *mins,
                       guint8      *L)
{
  const __m256 abs_mask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));
  __m256 xt[32], wt[32];
  __m256i Lt[32];
  __m256 sum_x2 = _mm256_setzero_ps (), av_x;

  for (int l = 0; l < 32; l++)
    {
      xt[l] = gather_x8 (x + l, 32);
      sum_x2 = _mm256_add_ps (sum_x2, _mm256_mul_ps (xt[l], xt[l]));
    }
  av_x = _mm256_sqrt_ps (_mm256_div_ps (sum_x2, _mm256_set1_ps (32.0f)));
  for (int l = 0; l < 32; l++)
    wt[l] = _mm256_add_ps (av_x, _mm256_and_ps (xt[l], abs_mask));
  make_qkx2_quants_x8 (32, nmax, xt, wt, Lt, scales, mins, rmin, 0.1f, nstep, FALSE);
  scatter_levels_x8 (Lt, 32, 0, L);
}

/* q2_k_block's search: sixteen sub-blocks of 16, in two sets of eight */
__attribute__ ((target ("avx2")))
static void
q2_k_search_avx2 (const float *x,
                  float       *scales,
                  float       *mins,
                  guint8      *L)
{
  const __m256 abs_mask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));

  for (int half = 0; half < 2; half++)
    {
      const float *xh = x + 128 * half;
      __m256 xt[16], wt[16];
      __m256i Lt[16];

      for (int l = 0; l < 16; l++)
        {
          xt[l] = gather_x8 (xh + l, 16);
          wt[l] = _mm256_and_ps (xt[l], abs_mask);
        }
      make_qkx2_quants_x8 (16, 3, xt, wt, Lt, scales + 8 * half, mins + 8 * half,
                           -0.5f, 0.1f, 15, TRUE);
      scatter_levels_x8 (Lt, 16, 0, L + 128 * half);
    }
}

/* One make_qx_quants pass for eight sub-blocks of 16: levels at @iscale
 * and the weighted sums Σw·x·l, Σw·l² in index order. */
__attribute__ ((target ("avx2"))) static inline void
qx_levels_x8 (__m256        iscale,
              const __m256 *xt,
              const __m256 *w,
              const __m256 *wx,
              int           nmax,
              __m256i      *L,
              __m256       *sumlx,
              __m256       *suml2)
{
  __m256 slx = _mm256_setzero_ps (), sl2 = _mm256_setzero_ps ();

  for (int i = 0; i < 16; i++)
    {
      __m256 lf;

      L[i] = clamp_x8 (nearest_int_x8 (_mm256_mul_ps (iscale, xt[i])), -nmax, nmax - 1);
      lf = _mm256_cvtepi32_ps (L[i]);
      slx = _mm256_add_ps (slx, _mm256_mul_ps (wx[i], lf));
      sl2 = _mm256_add_ps (sl2, _mm256_mul_ps (_mm256_mul_ps (w[i], lf), lf));
    }
  *sumlx = slx;
  *suml2 = sl2;
}

/* make_qx_quants (Q6_K's, nmax 32) for sixteen sub-blocks of 16, eight
 * at a time; levels offset by nmax as the scalar code stores them */
__attribute__ ((target ("avx2")))
static void
q6_k_search_avx2 (const float *x,
                  float       *scales,
                  gint8       *L)
{
  const int nmax = 32;
  const __m256 zero = _mm256_setzero_ps ();
  const __m256 abs_mask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));

  for (int half = 0; half < 2; half++)
    {
      const float *xh = x + 128 * half;
      __m256 xt[16], w[16], wx[16];
      __m256i Lt[16], l[16];
      __m256 amax = zero, max = zero, tiny, iscale, sumlx = zero, suml2 = zero, scale, best;

      for (int i = 0; i < 16; i++)
        {
          __m256 ax, gt;

          xt[i] = gather_x8 (xh + i, 16);
          ax = _mm256_and_ps (xt[i], abs_mask);
          gt = _mm256_cmp_ps (ax, amax, _CMP_GT_OQ);
          amax = blend_x8 (amax, ax, gt);
          max = blend_x8 (max, xt[i], gt);
        }
      tiny = _mm256_cmp_ps (amax, _mm256_set1_ps (GROUP_MAX_EPS), _CMP_LT_OQ);
      for (int i = 0; i < 16; i++)
        {
          w[i] = _mm256_mul_ps (xt[i], xt[i]);
          wx[i] = _mm256_mul_ps (w[i], xt[i]);
        }
      iscale = _mm256_div_ps (_mm256_set1_ps ((float) -nmax), max);
      qx_levels_x8 (iscale, xt, w, wx, nmax, Lt, &sumlx, &suml2);
      /* "suml2 != 0 ? sumlx / suml2 : 0": NaN counts as != 0 */
      scale = _mm256_and_ps (_mm256_cmp_ps (suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps (sumlx, suml2));
      best = _mm256_mul_ps (scale, sumlx);
      for (int is = -9; is <= 9; is++)
        {
          __m256 take;

          if (is == 0)
            continue;
          iscale = _mm256_div_ps (_mm256_set1_ps (-((float) nmax + 0.1f * (float) is)), max);
          qx_levels_x8 (iscale, xt, w, wx, nmax, l, &sumlx, &suml2);
          take = _mm256_and_ps (_mm256_cmp_ps (suml2, zero, _CMP_GT_OQ),
                                _mm256_cmp_ps (_mm256_mul_ps (sumlx, sumlx), _mm256_mul_ps (best, suml2),
                                               _CMP_GT_OQ));
          if (_mm256_movemask_ps (take) == 0)
            continue;
          for (int i = 0; i < 16; i++)
            Lt[i] = _mm256_castps_si256 (blend_x8 (_mm256_castsi256_ps (Lt[i]), _mm256_castsi256_ps (l[i]), take));
          scale = blend_x8 (scale, _mm256_div_ps (sumlx, suml2), take);
          best = blend_x8 (best, _mm256_mul_ps (scale, sumlx), take);
        }
      /* sub-blocks below GROUP_MAX_EPS: levels 0 (not offset), scale 0 */
      for (int i = 0; i < 16; i++)
        Lt[i] = _mm256_andnot_si256 (_mm256_castps_si256 (tiny),
                                     _mm256_add_epi32 (Lt[i], _mm256_set1_epi32 (nmax)));
      _mm256_storeu_ps (scales + 8 * half, _mm256_andnot_ps (tiny, scale));
      scatter_levels_x8 (Lt, 16, 0, (guint8 *) L + 128 * half);
    }
}

/* The same searches sixteen sub-blocks at a time (AVX-512 F): a whole
 * Q2_K or Q6_K super-block, or two Q4_K or Q5_K super-blocks, per vector.
 * Each lane again performs the scalar sequence of operations; branches
 * become mask registers. */

#define AVX512_TARGET __attribute__ ((target ("avx512f,avx512bw,avx512vl")))

AVX512_TARGET
static inline __m512i
nearest_int_x16 (__m512 f)
{
  __m512i i = _mm512_castps_si512 (_mm512_add_ps (f, _mm512_set1_ps (12582912.0f)));

  return _mm512_sub_epi32 (_mm512_and_si512 (i, _mm512_set1_epi32 (0x007fffff)),
                           _mm512_set1_epi32 (0x00400000));
}

AVX512_TARGET
static inline __m512i
clamp_x16 (__m512i v,
           int     lo,
           int     hi)
{
  return _mm512_max_epi32 (_mm512_set1_epi32 (lo), _mm512_min_epi32 (_mm512_set1_epi32 (hi), v));
}

AVX512_TARGET
static inline __m512
abs_x16 (__m512 v)
{
  return _mm512_castsi512_ps (_mm512_and_si512 (_mm512_castps_si512 (v), _mm512_set1_epi32 (0x7fffffff)));
}

AVX512_TARGET
static inline __m512
gather_x16 (const float *x,
            int          stride)
{
  const __m512i idx = _mm512_mullo_epi32 (_mm512_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7,
                                                             8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32 (stride));

  return _mm512_i32gather_ps (idx, x, 4);
}

/* make_qkx2_quants_x8 with sixteen lanes */
AVX512_TARGET
static void
make_qkx2_quants_x16 (int           n,
                      int           nmax,
                      const __m512 *xt,
                      const __m512 *wt,
                      __m512i      *Lt,
                      float        *scales,
                      float        *the_mins,
                      float         rmin,
                      float         rdelta,
                      int           nstep,
                      gboolean      use_mad)
{
  const __m512 zero = _mm512_setzero_ps ();
  __m512i Laux[32];
  __m512 min = xt[0], max = xt[0];
  __m512 sum_w = wt[0];
  __m512 sum_x = _mm512_mul_ps (sum_w, xt[0]);
  __m512 iscale, scale, best_error = zero;
  __mmask16 flat;

  for (int i = 1; i < n; i++)
    {
      /* "if (x < min) min = x", "if (x > max) max = x" as masks */
      min = _mm512_mask_blend_ps (_mm512_cmp_ps_mask (xt[i], min, _CMP_LT_OQ), min, xt[i]);
      max = _mm512_mask_blend_ps (_mm512_cmp_ps_mask (xt[i], max, _CMP_GT_OQ), max, xt[i]);
      sum_w = _mm512_add_ps (sum_w, wt[i]);
      sum_x = _mm512_add_ps (sum_x, _mm512_mul_ps (wt[i], xt[i]));
    }
  min = _mm512_mask_blend_ps (_mm512_cmp_ps_mask (min, zero, _CMP_GT_OQ), min, zero);
  flat = _mm512_cmp_ps_mask (max, min, _CMP_EQ_OQ);

  iscale = _mm512_div_ps (_mm512_set1_ps ((float) nmax), _mm512_sub_ps (max, min));
  scale = _mm512_div_ps (_mm512_set1_ps (1.0f), iscale);
  for (int i = 0; i < n; i++)
    {
      __m512i l = clamp_x16 (nearest_int_x16 (_mm512_mul_ps (iscale, _mm512_sub_ps (xt[i], min))), 0, nmax);
      __m512 diff;

      Lt[i] = l;
      diff = _mm512_sub_ps (_mm512_add_ps (_mm512_mul_ps (scale, _mm512_cvtepi32_ps (l)), min), xt[i]);
      diff = use_mad ? abs_x16 (diff) : _mm512_mul_ps (diff, diff);
      best_error = _mm512_add_ps (best_error, _mm512_mul_ps (wt[i], diff));
    }

  for (int is = 0; is <= nstep; is++)
    {
      float num = rmin + rdelta * (float) is + (float) nmax;
      __m512 sum_l = zero, sum_l2 = zero, sum_xl = zero, cur_error = zero;
      __m512 D, this_scale, this_min;
      __mmask16 take, pos;

      iscale = _mm512_div_ps (_mm512_set1_ps (num), _mm512_sub_ps (max, min));
      for (int i = 0; i < n; i++)
        {
          __m512i l = clamp_x16 (nearest_int_x16 (_mm512_mul_ps (iscale, _mm512_sub_ps (xt[i], min))), 0, nmax);
          __m512 lf = _mm512_cvtepi32_ps (l);
          __m512 wl = _mm512_mul_ps (wt[i], lf);

          Laux[i] = l;
          sum_l = _mm512_add_ps (sum_l, wl);
          sum_l2 = _mm512_add_ps (sum_l2, _mm512_mul_ps (wl, lf));
          sum_xl = _mm512_add_ps (sum_xl, _mm512_mul_ps (wl, xt[i]));
        }
      D = _mm512_sub_ps (_mm512_mul_ps (sum_w, sum_l2), _mm512_mul_ps (sum_l, sum_l));
      take = _mm512_cmp_ps_mask (D, zero, _CMP_GT_OQ) & (__mmask16) ~flat;
      if (take == 0)
        continue;
      this_scale = _mm512_div_ps (_mm512_sub_ps (_mm512_mul_ps (sum_w, sum_xl), _mm512_mul_ps (sum_x, sum_l)), D);
      this_min = _mm512_div_ps (_mm512_sub_ps (_mm512_mul_ps (sum_l2, sum_x), _mm512_mul_ps (sum_l, sum_xl)), D);
      pos = _mm512_cmp_ps_mask (this_min, zero, _CMP_GT_OQ);
      this_min = _mm512_mask_blend_ps (pos, this_min, zero);
      this_scale = _mm512_mask_blend_ps (pos, this_scale, _mm512_div_ps (sum_xl, sum_l2));
      for (int i = 0; i < n; i++)
        {
          __m512 diff = _mm512_sub_ps (_mm512_add_ps (_mm512_mul_ps (this_scale, _mm512_cvtepi32_ps (Laux[i])),
                                                      this_min), xt[i]);

          diff = use_mad ? abs_x16 (diff) : _mm512_mul_ps (diff, diff);
          cur_error = _mm512_add_ps (cur_error, _mm512_mul_ps (wt[i], diff));
        }
      take &= _mm512_cmp_ps_mask (cur_error, best_error, _CMP_LT_OQ);
      if (take == 0)
        continue;
      for (int i = 0; i < n; i++)
        Lt[i] = _mm512_mask_blend_epi32 (take, Lt[i], Laux[i]);
      best_error = _mm512_mask_blend_ps (take, best_error, cur_error);
      scale = _mm512_mask_blend_ps (take, scale, this_scale);
      min = _mm512_mask_blend_ps (take, min, this_min);
    }

  for (int i = 0; i < n; i++)
    Lt[i] = _mm512_maskz_mov_epi32 ((__mmask16) ~flat, Lt[i]);
  _mm512_storeu_ps (scales, _mm512_maskz_mov_ps ((__mmask16) ~flat, scale));
  _mm512_storeu_ps (the_mins, _mm512_castsi512_ps (_mm512_xor_si512 (_mm512_castps_si512 (min),
                                                                     _mm512_set1_epi32 ((int) 0x80000000u))));
}

AVX512_TARGET
static void
scatter_levels_x16 (const __m512i *Lt,
                    int            n,
                    guint8        *L)
{
  gint32 lanes[16];

  for (int i = 0; i < n; i++)
    {
      _mm512_storeu_si512 (lanes, Lt[i]);
      for (int k = 0; k < 16; k++)
        L[k * n + i] = (guint8) lanes[k];
    }
}

/* qk_affine_search for two consecutive super-blocks (sixteen sub-blocks
 * of 32 floats, contiguous) */
AVX512_TARGET
static void
qk_affine_search2_avx512 (const float *x,
                          int          nmax,
                          float        rmin,
                          int          nstep,
                          float       *scales,
                          float       *mins,
                          guint8      *L)
{
  __m512 xt[32], wt[32];
  __m512i Lt[32];
  __m512 sum_x2 = _mm512_setzero_ps (), av_x;

  for (int l = 0; l < 32; l++)
    {
      xt[l] = gather_x16 (x + l, 32);
      sum_x2 = _mm512_add_ps (sum_x2, _mm512_mul_ps (xt[l], xt[l]));
    }
  av_x = _mm512_sqrt_ps (_mm512_div_ps (sum_x2, _mm512_set1_ps (32.0f)));
  for (int l = 0; l < 32; l++)
    wt[l] = _mm512_add_ps (av_x, abs_x16 (xt[l]));
  make_qkx2_quants_x16 (32, nmax, xt, wt, Lt, scales, mins, rmin, 0.1f, nstep, FALSE);
  scatter_levels_x16 (Lt, 32, L);
}

AVX512_TARGET
static void
q2_k_search_avx512 (const float *x,
                    float       *scales,
                    float       *mins,
                    guint8      *L)
{
  __m512 xt[16], wt[16];
  __m512i Lt[16];

  for (int l = 0; l < 16; l++)
    {
      xt[l] = gather_x16 (x + l, 16);
      wt[l] = abs_x16 (xt[l]);
    }
  make_qkx2_quants_x16 (16, 3, xt, wt, Lt, scales, mins, -0.5f, 0.1f, 15, TRUE);
  scatter_levels_x16 (Lt, 16, L);
}

/* qx_levels_x8() for sixteen sub-blocks at once */
AVX512_TARGET static inline void
qx_levels_x16 (__m512        iscale,
               const __m512 *xt,
               const __m512 *w,
               const __m512 *wx,
               int           nmax,
               __m512i      *L,
               __m512       *sumlx,
               __m512       *suml2)
{
  __m512 slx = _mm512_setzero_ps (), sl2 = _mm512_setzero_ps ();

  for (int i = 0; i < 16; i++)
    {
      __m512 lf;

      L[i] = clamp_x16 (nearest_int_x16 (_mm512_mul_ps (iscale, xt[i])), -nmax, nmax - 1);
      lf = _mm512_cvtepi32_ps (L[i]);
      slx = _mm512_add_ps (slx, _mm512_mul_ps (wx[i], lf));
      sl2 = _mm512_add_ps (sl2, _mm512_mul_ps (_mm512_mul_ps (w[i], lf), lf));
    }
  *sumlx = slx;
  *suml2 = sl2;
}

AVX512_TARGET
static void
q6_k_search_avx512 (const float *x,
                    float       *scales,
                    gint8       *L)
{
  const int nmax = 32;
  const __m512 zero = _mm512_setzero_ps ();
  __m512 xt[16], w[16], wx[16];
  __m512i Lt[16], l[16];
  __m512 amax = zero, max = zero, iscale, sumlx = zero, suml2 = zero, scale, best;
  __mmask16 tiny;

  for (int i = 0; i < 16; i++)
    {
      __m512 ax;
      __mmask16 gt;

      xt[i] = gather_x16 (x + i, 16);
      ax = abs_x16 (xt[i]);
      gt = _mm512_cmp_ps_mask (ax, amax, _CMP_GT_OQ);
      amax = _mm512_mask_blend_ps (gt, amax, ax);
      max = _mm512_mask_blend_ps (gt, max, xt[i]);
    }
  tiny = _mm512_cmp_ps_mask (amax, _mm512_set1_ps (GROUP_MAX_EPS), _CMP_LT_OQ);
  for (int i = 0; i < 16; i++)
    {
      w[i] = _mm512_mul_ps (xt[i], xt[i]);
      wx[i] = _mm512_mul_ps (w[i], xt[i]);
    }
  iscale = _mm512_div_ps (_mm512_set1_ps ((float) -nmax), max);
  qx_levels_x16 (iscale, xt, w, wx, nmax, Lt, &sumlx, &suml2);
  scale = _mm512_maskz_div_ps (_mm512_cmp_ps_mask (suml2, zero, _CMP_NEQ_UQ), sumlx, suml2);
  best = _mm512_mul_ps (scale, sumlx);
  for (int is = -9; is <= 9; is++)
    {
      __mmask16 take;

      if (is == 0)
        continue;
      iscale = _mm512_div_ps (_mm512_set1_ps (-((float) nmax + 0.1f * (float) is)), max);
      qx_levels_x16 (iscale, xt, w, wx, nmax, l, &sumlx, &suml2);
      take = _mm512_cmp_ps_mask (suml2, zero, _CMP_GT_OQ)
             & _mm512_cmp_ps_mask (_mm512_mul_ps (sumlx, sumlx), _mm512_mul_ps (best, suml2), _CMP_GT_OQ);
      if (take == 0)
        continue;
      for (int i = 0; i < 16; i++)
        Lt[i] = _mm512_mask_blend_epi32 (take, Lt[i], l[i]);
      scale = _mm512_mask_blend_ps (take, scale, _mm512_div_ps (sumlx, suml2));
      best = _mm512_mask_blend_ps (take, best, _mm512_mul_ps (scale, sumlx));
    }
  for (int i = 0; i < 16; i++)
    Lt[i] = _mm512_maskz_add_epi32 ((__mmask16) ~tiny, Lt[i], _mm512_set1_epi32 (nmax));
  _mm512_storeu_ps (scales, _mm512_maskz_mov_ps ((__mmask16) ~tiny, scale));
  scatter_levels_x16 (Lt, 16, (guint8 *) L);
}

/* The requantization of a finished super-block, n (a multiple of 8)
 * elements: L[i] = clamp (nearest_int ((x[i] + dm) / d), lo, hi) + offset,
 * or without the "+ dm" when !add. One division per element as in the
 * scalar loops, eight at a time. */
__attribute__ ((target ("avx2")))
static void
requantize_avx2 (const float *x,
                 int          n,
                 gboolean     add,
                 float        dm,
                 float        d,
                 int          lo,
                 int          hi,
                 int          offset,
                 guint8      *L)
{
  const __m256 dv = _mm256_set1_ps (d), dmv = _mm256_set1_ps (dm);
  gint32 lanes[8];

  for (int i = 0; i < n; i += 8)
    {
      __m256 v = _mm256_loadu_ps (x + i);
      __m256i l;

      if (add)
        v = _mm256_add_ps (v, dmv);
      l = clamp_x8 (nearest_int_x8 (_mm256_div_ps (v, dv)), lo, hi);
      _mm256_storeu_si256 ((__m256i *) lanes, _mm256_add_epi32 (l, _mm256_set1_epi32 (offset)));
      for (int k = 0; k < 8; k++)
        L[i + k] = (guint8) lanes[k];
    }
}

/* make_q3_quants (Q3_K's, nmax 4) for sixteen sub-blocks of 16, eight at
 * a time. The sweeps of one-level changes stop for all lanes when no lane
 * changed: a lane whose sweep changed nothing is at a fixed point (the
 * next sweep sees the same state and changes nothing again), so running
 * it on with the others leaves it where the scalar code stops. */
__attribute__ ((target ("avx2")))
static void
q3_k_search_avx2 (const float *x,
                  float       *scales,
                  gint8       *L)
{
  const int nmax = 4;
  const __m256 zero = _mm256_setzero_ps ();
  const __m256 abs_mask = _mm256_castsi256_ps (_mm256_set1_epi32 (0x7fffffff));

  for (int half = 0; half < 2; half++)
    {
      const float *xh = x + 128 * half;
      __m256 xt[16], w[16], wx[16];
      __m256i Lt[16];
      __m256 amax = zero, max = zero, tiny, iscale, sumlx = zero, suml2 = zero;

      for (int i = 0; i < 16; i++)
        {
          __m256 ax, gt;

          xt[i] = gather_x8 (xh + i, 16);
          ax = _mm256_and_ps (xt[i], abs_mask);
          gt = _mm256_cmp_ps (ax, amax, _CMP_GT_OQ);
          amax = blend_x8 (amax, ax, gt);
          max = blend_x8 (max, xt[i], gt);
        }
      tiny = _mm256_cmp_ps (amax, _mm256_set1_ps (GROUP_MAX_EPS), _CMP_LT_OQ);
      iscale = _mm256_div_ps (_mm256_set1_ps ((float) -nmax), max);
      for (int i = 0; i < 16; i++)
        {
          __m256 lf;

          Lt[i] = clamp_x8 (nearest_int_x8 (_mm256_mul_ps (iscale, xt[i])), -nmax, nmax - 1);
          w[i] = _mm256_mul_ps (xt[i], xt[i]);
          wx[i] = _mm256_mul_ps (w[i], xt[i]);
          lf = _mm256_cvtepi32_ps (Lt[i]);
          sumlx = _mm256_add_ps (sumlx, _mm256_mul_ps (wx[i], lf));
          suml2 = _mm256_add_ps (suml2, _mm256_mul_ps (_mm256_mul_ps (w[i], lf), lf));
        }
      for (int itry = 0; itry < 5; itry++)
        {
          __m256 changed = zero;

          for (int i = 0; i < 16; i++)
            {
              __m256 lf = _mm256_cvtepi32_ps (Lt[i]);
              __m256 slx = _mm256_sub_ps (sumlx, _mm256_mul_ps (wx[i], lf));
              __m256 sl2 = _mm256_sub_ps (suml2, _mm256_mul_ps (_mm256_mul_ps (w[i], lf), lf));
              __m256 ok = _mm256_cmp_ps (slx, zero, _CMP_GT_OQ);
              __m256i new_l;
              __m256 nf;

              if (_mm256_movemask_ps (ok) == 0)
                continue;
              new_l = clamp_x8 (nearest_int_x8 (_mm256_div_ps (_mm256_mul_ps (xt[i], sl2), slx)),
                                -nmax, nmax - 1);
              ok = _mm256_andnot_ps (_mm256_castsi256_ps (_mm256_cmpeq_epi32 (new_l, Lt[i])), ok);
              nf = _mm256_cvtepi32_ps (new_l);
              slx = _mm256_add_ps (slx, _mm256_mul_ps (wx[i], nf));
              sl2 = _mm256_add_ps (sl2, _mm256_mul_ps (_mm256_mul_ps (w[i], nf), nf));
              ok = _mm256_and_ps (ok, _mm256_cmp_ps (sl2, zero, _CMP_GT_OQ));
              ok = _mm256_and_ps (ok, _mm256_cmp_ps (_mm256_mul_ps (_mm256_mul_ps (slx, slx), suml2),
                                                     _mm256_mul_ps (_mm256_mul_ps (sumlx, sumlx), sl2),
                                                     _CMP_GT_OQ));
              Lt[i] = _mm256_castps_si256 (blend_x8 (_mm256_castsi256_ps (Lt[i]), _mm256_castsi256_ps (new_l), ok));
              sumlx = blend_x8 (sumlx, slx, ok);
              suml2 = blend_x8 (suml2, sl2, ok);
              changed = _mm256_or_ps (changed, ok);
            }
          if (_mm256_movemask_ps (changed) == 0)
            break;
        }
      /* sub-blocks below GROUP_MAX_EPS: levels 0 (not offset), scale 0 */
      for (int i = 0; i < 16; i++)
        Lt[i] = _mm256_andnot_si256 (_mm256_castps_si256 (tiny),
                                     _mm256_add_epi32 (Lt[i], _mm256_set1_epi32 (nmax)));
      _mm256_storeu_ps (scales + 8 * half,
                        _mm256_andnot_ps (tiny, _mm256_and_ps (_mm256_cmp_ps (suml2, zero, _CMP_GT_OQ),
                                                               _mm256_div_ps (sumlx, suml2))));
      scatter_levels_x8 (Lt, 16, 0, (guint8 *) L + 128 * half);
    }
}

/* q3_k_search_avx2 with sixteen lanes: the whole super-block at once */
AVX512_TARGET
static void
q3_k_search_avx512 (const float *x,
                    float       *scales,
                    gint8       *L)
{
  const int nmax = 4;
  const __m512 zero = _mm512_setzero_ps ();
  __m512 xt[16], w[16], wx[16];
  __m512i Lt[16];
  __m512 amax = zero, max = zero, iscale, sumlx = zero, suml2 = zero;
  __mmask16 tiny;

  for (int i = 0; i < 16; i++)
    {
      __m512 ax;
      __mmask16 gt;

      xt[i] = gather_x16 (x + i, 16);
      ax = abs_x16 (xt[i]);
      gt = _mm512_cmp_ps_mask (ax, amax, _CMP_GT_OQ);
      amax = _mm512_mask_blend_ps (gt, amax, ax);
      max = _mm512_mask_blend_ps (gt, max, xt[i]);
    }
  tiny = _mm512_cmp_ps_mask (amax, _mm512_set1_ps (GROUP_MAX_EPS), _CMP_LT_OQ);
  iscale = _mm512_div_ps (_mm512_set1_ps ((float) -nmax), max);
  for (int i = 0; i < 16; i++)
    {
      __m512 lf;

      Lt[i] = clamp_x16 (nearest_int_x16 (_mm512_mul_ps (iscale, xt[i])), -nmax, nmax - 1);
      w[i] = _mm512_mul_ps (xt[i], xt[i]);
      wx[i] = _mm512_mul_ps (w[i], xt[i]);
      lf = _mm512_cvtepi32_ps (Lt[i]);
      sumlx = _mm512_add_ps (sumlx, _mm512_mul_ps (wx[i], lf));
      suml2 = _mm512_add_ps (suml2, _mm512_mul_ps (_mm512_mul_ps (w[i], lf), lf));
    }
  for (int itry = 0; itry < 5; itry++)
    {
      __mmask16 changed = 0;

      for (int i = 0; i < 16; i++)
        {
          __m512 lf = _mm512_cvtepi32_ps (Lt[i]);
          __m512 slx = _mm512_sub_ps (sumlx, _mm512_mul_ps (wx[i], lf));
          __m512 sl2 = _mm512_sub_ps (suml2, _mm512_mul_ps (_mm512_mul_ps (w[i], lf), lf));
          __mmask16 ok = _mm512_cmp_ps_mask (slx, zero, _CMP_GT_OQ);
          __m512i new_l;
          __m512 nf;

          if (ok == 0)
            continue;
          new_l = clamp_x16 (nearest_int_x16 (_mm512_div_ps (_mm512_mul_ps (xt[i], sl2), slx)),
                             -nmax, nmax - 1);
          ok &= _mm512_cmpneq_epi32_mask (new_l, Lt[i]);
          nf = _mm512_cvtepi32_ps (new_l);
          slx = _mm512_add_ps (slx, _mm512_mul_ps (wx[i], nf));
          sl2 = _mm512_add_ps (sl2, _mm512_mul_ps (_mm512_mul_ps (w[i], nf), nf));
          ok &= _mm512_cmp_ps_mask (sl2, zero, _CMP_GT_OQ);
          ok &= _mm512_cmp_ps_mask (_mm512_mul_ps (_mm512_mul_ps (slx, slx), suml2),
                                    _mm512_mul_ps (_mm512_mul_ps (sumlx, sumlx), sl2), _CMP_GT_OQ);
          Lt[i] = _mm512_mask_blend_epi32 (ok, Lt[i], new_l);
          sumlx = _mm512_mask_blend_ps (ok, sumlx, slx);
          suml2 = _mm512_mask_blend_ps (ok, suml2, sl2);
          changed |= ok;
        }
      if (changed == 0)
        break;
    }
  for (int i = 0; i < 16; i++)
    Lt[i] = _mm512_maskz_add_epi32 ((__mmask16) ~tiny, Lt[i], _mm512_set1_epi32 (nmax));
  _mm512_storeu_ps (scales, _mm512_maskz_div_ps ((__mmask16) ~tiny & _mm512_cmp_ps_mask (suml2, zero, _CMP_GT_OQ),
                                                 sumlx, suml2));
  scatter_levels_x16 (Lt, 16, (guint8 *) L);
}

#endif /* HAVE_X86 */

/* ------------------------------------------------------------------ */
/* K-quants: super-blocks of 256 */

/* Q2_K: 84 bytes, scales[16] (scale | min << 4), qs[64], fp16 d, dmin */
static void
q2_k_block (const float    *x,
            guint8         *out,
            SmeltSimdLevel  level G_GNUC_UNUSED)
{
  guint8 *sc = out, *qs = out + 16;
  guint8 L[QK_K];
  float weights[16], mins[16], scales[16];
  float max_scale = 0.0f, max_min = 0.0f;
  float dd, dmin;

#ifdef HAVE_X86
  if (level >= SMELT_SIMD_AVX512)
    q2_k_search_avx512 (x, scales, mins, L);
  else if (level >= SMELT_SIMD_AVX2)
    q2_k_search_avx2 (x, scales, mins, L);
  else
#endif
    for (int j = 0; j < 16; j++)
      {
        for (int l = 0; l < 16; l++)
          weights[l] = fabsf (x[16 * j + l]);
        scales[j] = make_qkx2_quants (16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                      -0.5f, 0.1f, 15, TRUE);
      }
  for (int j = 0; j < 16; j++)
    {
      if (scales[j] > max_scale)
        max_scale = scales[j];
      if (mins[j] > max_min)
        max_min = mins[j];
    }

  if (max_scale > 0.0f)
    {
      float iscale = 15.0f / max_scale;

      for (int j = 0; j < 16; j++)
        sc[j] = (guint8) nearest_int (iscale * scales[j]);
      put_fp16 (out + 80, fp16_bits (max_scale / 15.0f));
    }
  else
    {
      memset (sc, 0, 16);
      put_fp16 (out + 80, fp16_bits (0.0f));
    }
  if (max_min > 0.0f)
    {
      float iscale = 15.0f / max_min;

      for (int j = 0; j < 16; j++)
        sc[j] |= (guint8) ((guint32) nearest_int (iscale * mins[j]) << 4);
      put_fp16 (out + 82, fp16_bits (max_min / 15.0f));
    }
  else
    put_fp16 (out + 82, fp16_bits (0.0f));

  /* requantize with the scales as stored */
  dd = fp16_value (get_fp16 (out + 80));
  dmin = fp16_value (get_fp16 (out + 82));
  for (int j = 0; j < 16; j++)
    {
      float d = dd * (sc[j] & 0xf);
      float dm;

      if (d == 0.0f)
        continue;       /* keeps the levels of the search */
      dm = dmin * (sc[j] >> 4);
#ifdef HAVE_X86
      if (level >= SMELT_SIMD_AVX2)
        {
          requantize_avx2 (x + 16 * j, 16, TRUE, dm, d, 0, 3, 0, L + 16 * j);
          continue;
        }
#endif
      for (int i = 0; i < 16; i++)
        {
          int l = nearest_int ((x[16 * j + i] + dm) / d);

          L[16 * j + i] = (guint8) MAX (0, MIN (3, l));
        }
    }

  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; l++)
      qs[j / 4 + l] = L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6;
}

/* Q3_K: 110 bytes, hmask[32], qs[64], scales[12] (6-bit signed, packed),
 * fp16 d */
static void
q3_k_block (const float    *x,
            guint8         *out,
            SmeltSimdLevel  level G_GNUC_UNUSED)
{
  guint8 *hmask = out, *qs = out + 32, *sc = out + 96;
  gint8 L[QK_K];
  float scales[16];
  float max_scale = 0.0f, amax = 0.0f, dd;

#ifdef HAVE_X86
  if (level >= SMELT_SIMD_AVX512)
    q3_k_search_avx512 (x, scales, L);
  else if (level >= SMELT_SIMD_AVX2)
    q3_k_search_avx2 (x, scales, L);
  else
#endif
    for (int j = 0; j < 16; j++)
      scales[j] = make_q3_quants (16, 4, x + 16 * j, L + 16 * j);
  for (int j = 0; j < 16; j++)
    {
      if (fabsf (scales[j]) > amax)
        {
          amax = fabsf (scales[j]);
          max_scale = scales[j];
        }
    }

  memset (sc, 0, 12);
  if (max_scale != 0.0f)
    {
      float iscale = -32.0f / max_scale;

      for (int j = 0; j < 16; j++)
        {
          /* ggml keeps nearest_int's result in an int8_t before clamping */
          int l = as_int8 ((guint8) nearest_int (iscale * scales[j]));

          l = MAX (-32, MIN (31, l)) + 32;
          if (j < 8)
            sc[j] = l & 0xf;
          else
            sc[j - 8] |= (guint8) ((l & 0xf) << 4);
          sc[j % 4 + 8] |= (guint8) ((l >> 4) << (2 * (j / 4)));
        }
      put_fp16 (out + 108, fp16_bits (1 / iscale));
    }
  else
    put_fp16 (out + 108, fp16_bits (0.0f));

  dd = fp16_value (get_fp16 (out + 108));
  for (int j = 0; j < 16; j++)
    {
      int s = j < 8 ? sc[j] & 0xf : sc[j - 8] >> 4;
      float d;

      s = (s | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
      d = dd * s;
      if (d == 0.0f)
        continue;
#ifdef HAVE_X86
      if (level >= SMELT_SIMD_AVX2)
        {
          requantize_avx2 (x + 16 * j, 16, FALSE, 0.0f, d, -4, 3, 4, (guint8 *) L + 16 * j);
          continue;
        }
#endif
      for (int i = 0; i < 16; i++)
        {
          int l = nearest_int (x[16 * j + i] / d);

          L[16 * j + i] = (gint8) (MAX (-4, MIN (3, l)) + 4);
        }
    }

  /* the high bit of element j goes to bit j / 32 of hmask[j % 32] */
  memset (hmask, 0, 32);
  for (int j = 0; j < QK_K; j++)
    if (L[j] > 3)
      {
        hmask[j % 32] |= (guint8) (1u << (j / 32));
        L[j] -= 4;
      }
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; l++)
      qs[j / 4 + l] = (guint8) (L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

/* ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j */
static inline void
scale_min_k4 (int           j,
              const guint8 *q,
              guint8       *d,
              guint8       *m)
{
  if (j < 4)
    {
      *d = q[j] & 63;
      *m = q[j + 4] & 63;
    }
  else
    {
      *d = (q[j + 4] & 0xf) | (guint8) ((q[j - 4] >> 6) << 4);
      *m = (q[j + 4] >> 4) | (guint8) ((q[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K share everything up to the levels: 8 sub-blocks of 32
 * with weights av_x + |x|, an affine search (this function), 6-bit scales
 * and mins under fp16 d and dmin at out[0..3], scales[12] at out[4..15]
 * (qk_affine_finish). */
static void
qk_affine_search (const float    *x,
                  int             nmax,
                  float           rmin,
                  int             nstep,
                  float          *scales,
                  float          *mins,
                  guint8         *L,
                  SmeltSimdLevel  level)
{
  float weights[32];

#ifdef HAVE_X86
  if (level >= SMELT_SIMD_AVX2)
    {
      qk_affine_search_avx2 (x, nmax, rmin, nstep, scales, mins, L);
      return;
    }
#else
  (void) level;
#endif
  for (int j = 0; j < 8; j++)
    {
      float sum_x2 = 0.0f, av_x;

      for (int l = 0; l < 32; l++)
        sum_x2 += x[32 * j + l] * x[32 * j + l];
      av_x = sqrtf (sum_x2 / 32);
      for (int l = 0; l < 32; l++)
        weights[l] = av_x + fabsf (x[32 * j + l]);
      scales[j] = make_qkx2_quants (32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j],
                                    rmin, 0.1f, nstep, FALSE);
    }
}

/* The scales and mins of the search to 6 bits, then the levels (0..nmax)
 * in L requantized with the scales as stored */
static void
qk_affine_finish (const float    *x,
                  int             nmax,
                  const float    *scales,
                  const float    *mins,
                  guint8         *out,
                  guint8         *L,
                  SmeltSimdLevel  level G_GNUC_UNUSED)
{
  guint8 *sc = out + 4;
  float max_scale = 0.0f, max_min = 0.0f;
  float inv_scale, inv_min, dd, dmin;

  for (int j = 0; j < 8; j++)
    {
      if (scales[j] > max_scale)
        max_scale = scales[j];
      if (mins[j] > max_min)
        max_min = mins[j];
    }

  inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; j++)
    {
      /* nearest_int's result goes through a uint8_t before the clamp */
      guint8 ls = (guint8) nearest_int (inv_scale * scales[j]);
      guint8 lm = (guint8) nearest_int (inv_min * mins[j]);

      ls = MIN (63, ls);
      lm = MIN (63, lm);
      if (j < 4)
        {
          sc[j] = ls;
          sc[j + 4] = lm;
        }
      else
        {
          sc[j + 4] = (ls & 0xf) | (guint8) ((lm & 0xf) << 4);
          sc[j - 4] |= (guint8) ((ls >> 4) << 6);
          sc[j] |= (guint8) ((lm >> 4) << 6);
        }
    }
  put_fp16 (out, fp16_bits (max_scale / 63.0f));
  put_fp16 (out + 2, fp16_bits (max_min / 63.0f));

  dd = fp16_value (get_fp16 (out));
  dmin = fp16_value (get_fp16 (out + 2));
  for (int j = 0; j < 8; j++)
    {
      guint8 s, m;
      float d, dm;

      scale_min_k4 (j, sc, &s, &m);
      d = dd * s;
      if (d == 0.0f)
        continue;
      dm = dmin * m;
#ifdef HAVE_X86
      if (level >= SMELT_SIMD_AVX2)
        {
          requantize_avx2 (x + 32 * j, 32, TRUE, dm, d, 0, nmax, 0, L + 32 * j);
          continue;
        }
#endif
      for (int i = 0; i < 32; i++)
        {
          int l = nearest_int ((x[32 * j + i] + dm) / d);

          L[32 * j + i] = (guint8) MAX (0, MIN (nmax, l));
        }
    }
}

/* Q4_K: 144 bytes, d, dmin, scales[12], qs[128] (j | j+32 << 4 per 64) */
static void
q4_k_pack (const guint8 *L,
           guint8       *out)
{
  guint8 *q = out + 16;

  for (int j = 0; j < QK_K; j += 64)
    {
      for (int l = 0; l < 32; l++)
        q[l] = L[j + l] | (guint8) (L[j + l + 32] << 4);
      q += 32;
    }
}

/* Q5_K: 176 bytes, d, dmin, scales[12], qh[32], qs[128] */
static void
q5_k_pack (const guint8 *L,
           guint8       *out)
{
  guint8 *qh = out + 16, *ql = out + 48;
  guint8 m1 = 1, m2 = 2;

  memset (qh, 0, 32);
  for (int n = 0; n < QK_K; n += 64)
    {
      for (int j = 0; j < 32; j++)
        {
          int l1 = L[n + j], l2 = L[n + j + 32];

          if (l1 > 15)
            {
              l1 -= 16;
              qh[j] |= m1;
            }
          if (l2 > 15)
            {
              l2 -= 16;
              qh[j] |= m2;
            }
          ql[j] = (guint8) (l1 | l2 << 4);
        }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
}

/* The parameters ggml's quantize_row_q4_K_ref and _q5_K_ref pass */
typedef struct
{
  int nmax, nstep;
  float rmin;
  gsize bytes;
  void (*pack) (const guint8 *L, guint8 *out);
} QkAffineType;

static const QkAffineType q4_k_type = { 15, 20, -1.0f, 144, q4_k_pack };
static const QkAffineType q5_k_type = { 31, 15, -0.5f, 176, q5_k_pack };

static void
qk_affine_block (const QkAffineType *t,
                 const float        *x,
                 guint8             *out,
                 SmeltSimdLevel      level)
{
  guint8 L[QK_K];
  float scales[8], mins[8];

  qk_affine_search (x, t->nmax, t->rmin, t->nstep, scales, mins, L, level);
  qk_affine_finish (x, t->nmax, scales, mins, out, L, level);
  t->pack (L, out);
}

static void
q4_k_block (const float    *x,
            guint8         *out,
            SmeltSimdLevel  level)
{
  qk_affine_block (&q4_k_type, x, out, level);
}

static void
q5_k_block (const float    *x,
            guint8         *out,
            SmeltSimdLevel  level)
{
  qk_affine_block (&q5_k_type, x, out, level);
}

#ifdef HAVE_X86
/* AVX-512: two super-blocks per search, the odd last one with AVX2 */
static void
quantize_qk_affine_avx512 (const QkAffineType *t,
                           const float        *src,
                           guint64             n,
                           guint8             *dst)
{
  guint64 nb = n / QK_K, b;

  for (b = 0; b + 2 <= nb; b += 2)
    {
      const float *x = src + b * QK_K;
      guint8 *out = dst + b * t->bytes;
      guint8 L[2 * QK_K];
      float scales[16], mins[16];

      qk_affine_search2_avx512 (x, t->nmax, t->rmin, t->nstep, scales, mins, L);
      for (int h = 0; h < 2; h++)
        {
          qk_affine_finish (x + h * QK_K, t->nmax, scales + 8 * h, mins + 8 * h,
                            out + h * t->bytes, L + h * QK_K, SMELT_SIMD_AVX512);
          t->pack (L + h * QK_K, out + h * t->bytes);
        }
    }
  if (b < nb)
    qk_affine_block (t, src + b * QK_K, dst + b * t->bytes, SMELT_SIMD_AVX2);
}
#endif

/* Q6_K: 210 bytes, ql[128], qh[64], scales[16] (int8), fp16 d */
static void
q6_k_block (const float    *x,
            guint8         *out,
            SmeltSimdLevel  level G_GNUC_UNUSED)
{
  guint8 *ql = out, *qh = out + 128, *sc = out + 192;
  gint8 L[QK_K];
  float scales[16];
  float max_scale = 0.0f, max_abs_scale = 0.0f, iscale, dd;

#ifdef HAVE_X86
  if (level >= SMELT_SIMD_AVX512)
    q6_k_search_avx512 (x, scales, L);
  else if (level >= SMELT_SIMD_AVX2)
    q6_k_search_avx2 (x, scales, L);
  else
#endif
    for (int ib = 0; ib < 16; ib++)
      scales[ib] = make_qx_quants (32, x + 16 * ib, L + 16 * ib);
  for (int ib = 0; ib < 16; ib++)
    {
      if (fabsf (scales[ib]) > max_abs_scale)
        {
          max_abs_scale = fabsf (scales[ib]);
          max_scale = scales[ib];
        }
    }
  if (max_abs_scale < GROUP_MAX_EPS)
    {
      memset (out, 0, 210);     /* d = fp16(0) = 0 too */
      return;
    }

  iscale = -128.0f / max_scale;
  put_fp16 (out + 208, fp16_bits (1 / iscale));
  for (int ib = 0; ib < 16; ib++)
    sc[ib] = (guint8) MIN (127, nearest_int (iscale * scales[ib]));

  dd = fp16_value (get_fp16 (out + 208));
  for (int j = 0; j < 16; j++)
    {
      float d = dd * as_int8 (sc[j]);

      if (d == 0.0f)
        continue;
#ifdef HAVE_X86
      if (level >= SMELT_SIMD_AVX2)
        {
          requantize_avx2 (x + 16 * j, 16, FALSE, 0.0f, d, -32, 31, 32, (guint8 *) L + 16 * j);
          continue;
        }
#endif
      for (int i = 0; i < 16; i++)
        {
          int l = nearest_int (x[16 * j + i] / d);

          L[16 * j + i] = (gint8) (MAX (-32, MIN (31, l)) + 32);
        }
    }

  for (int j = 0; j < QK_K; j += 128)
    {
      for (int l = 0; l < 32; l++)
        {
          guint8 q1 = L[j + l] & 0xf;
          guint8 q2 = L[j + l + 32] & 0xf;
          guint8 q3 = L[j + l + 64] & 0xf;
          guint8 q4 = L[j + l + 96] & 0xf;

          ql[l] = q1 | (guint8) (q3 << 4);
          ql[l + 32] = q2 | (guint8) (q4 << 4);
          qh[l] = (guint8) ((L[j + l] >> 4) | (L[j + l + 32] >> 4) << 2
                            | (L[j + l + 64] >> 4) << 4 | (L[j + l + 96] >> 4) << 6);
        }
      ql += 64;
      qh += 32;
    }
}

/* A super-block function over the row; the level must be supported (the
 * callers below check it), and picks the search of each block. */
static void
quantize_k (void           (*block_fn) (const float *, guint8 *, SmeltSimdLevel),
            gsize            bytes,
            SmeltSimdLevel   level,
            const float     *src,
            guint64          n,
            guint8          *dst)
{
  for (guint64 b = 0; b < n / QK_K; b++)
    block_fn (src + b * QK_K, dst + b * bytes, level);
}

/* The portable encoders under their own names */
#define DEFINE_K_QUANTIZER(name, block_fn, bytes)                   \
  void                                                              \
  name (const float *src,                                           \
        guint64      n,                                             \
        guint8      *dst)                                           \
  {                                                                 \
    quantize_k (block_fn, bytes, SMELT_SIMD_PORTABLE, src, n, dst); \
  }

DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q2_k, q2_k_block, 84)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q3_k, q3_k_block, 110)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q4_k, q4_k_block, 144)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q5_k, q5_k_block, 176)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q6_k, q6_k_block, 210)

static gboolean quantize_portable (SmeltGgmlType type, const float *src, guint64 n, guint8 *dst);

/**
 * _smelt_ggml_quantize_at:
 * @level: the back end; a level this CPU lacks falls back to portable
 * @type: a ggml block type
 * @src: @n floats
 * @n: a multiple of the block size of @type
 * @dst: room for the blocks
 *
 * Quantizes with the encoder of @type in this file, using the vector
 * searches of @level where there are some. Every level writes the same
 * bytes.
 *
 * Returns: %FALSE if this file has no encoder for @type
 */
gboolean
_smelt_ggml_quantize_at (SmeltSimdLevel  level,
                         SmeltGgmlType   type,
                         const float    *src,
                         guint64         n,
                         guint8         *dst)
{
  /* the best level at most @level that this CPU has */
  while (level > SMELT_SIMD_PORTABLE && !_smelt_simd_supported (level))
    level--;
#ifndef HAVE_X86
  level = SMELT_SIMD_PORTABLE;
#else
  if (level >= SMELT_SIMD_AVX512)
    switch (type)
      {
      case SMELT_GGML_TYPE_Q4_K: quantize_qk_affine_avx512 (&q4_k_type, src, n, dst); return TRUE;
      case SMELT_GGML_TYPE_Q5_K: quantize_qk_affine_avx512 (&q5_k_type, src, n, dst); return TRUE;
      default: break;
      }
#endif
  switch (type)
    {
    case SMELT_GGML_TYPE_Q2_K: quantize_k (q2_k_block, 84, level, src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q3_K: quantize_k (q3_k_block, 110, level, src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q4_K: quantize_k (q4_k_block, 144, level, src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q5_K: quantize_k (q5_k_block, 176, level, src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q6_K: quantize_k (q6_k_block, 210, level, src, n, dst); return TRUE;
    default:
      return quantize_portable (type, src, n, dst);
    }
}

/**
 * _smelt_ggml_quantize:
 *
 * _smelt_ggml_quantize_at() with the best level of this machine (or
 * $SMELT_SIMD's).
 */
gboolean
_smelt_ggml_quantize (SmeltGgmlType  type,
                      const float   *src,
                      guint64        n,
                      guint8        *dst)
{
  return _smelt_ggml_quantize_at (_smelt_simd_level (), type, src, n, dst);
}

/* The encoders of this file without vector searches */
static gboolean
quantize_portable (SmeltGgmlType  type,
                   const float   *src,
                   guint64        n,
                   guint8        *dst)
{
  switch (type)
    {
    case SMELT_GGML_TYPE_Q4_0: _smelt_ggml_quantize_q4_0 (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q4_1: _smelt_ggml_quantize_q4_1 (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q5_0: _smelt_ggml_quantize_q5_0 (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q5_1: _smelt_ggml_quantize_q5_1 (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q2_K: _smelt_ggml_quantize_q2_k (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q3_K: _smelt_ggml_quantize_q3_k (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q4_K: _smelt_ggml_quantize_q4_k (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q5_K: _smelt_ggml_quantize_q5_k (src, n, dst); return TRUE;
    case SMELT_GGML_TYPE_Q6_K: _smelt_ggml_quantize_q6_k (src, n, dst); return TRUE;
    default:
      return FALSE;
    }
}
