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
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <string.h>

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
/* K-quants: super-blocks of 256 */

/* Q2_K: 84 bytes, scales[16] (scale | min << 4), qs[64], fp16 d, dmin */
static void
q2_k_block (const float *x,
            guint8      *out)
{
  guint8 *sc = out, *qs = out + 16;
  guint8 L[QK_K];
  float weights[16], mins[16], scales[16];
  float max_scale = 0.0f, max_min = 0.0f;
  float dd, dmin;

  for (int j = 0; j < 16; j++)
    {
      for (int l = 0; l < 16; l++)
        weights[l] = fabsf (x[16 * j + l]);
      scales[j] = make_qkx2_quants (16, 3, x + 16 * j, weights, L + 16 * j, &mins[j],
                                    -0.5f, 0.1f, 15, TRUE);
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
q3_k_block (const float *x,
            guint8      *out)
{
  guint8 *hmask = out, *qs = out + 32, *sc = out + 96;
  gint8 L[QK_K];
  float scales[16];
  float max_scale = 0.0f, amax = 0.0f, dd;

  for (int j = 0; j < 16; j++)
    {
      scales[j] = make_q3_quants (16, 4, x + 16 * j, L + 16 * j);
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
 * with weights av_x + |x|, an affine search, 6-bit scales and mins under
 * fp16 d and dmin at out[0..3], scales[12] at out[4..15]. Leaves the
 * levels (0..nmax) in L. */
static void
qk_affine_block (const float *x,
                 int          nmax,
                 float        rmin,
                 int          nstep,
                 guint8      *out,
                 guint8      *L)
{
  guint8 *sc = out + 4;
  float weights[32], mins[8], scales[8];
  float max_scale = 0.0f, max_min = 0.0f;
  float inv_scale, inv_min, dd, dmin;

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
      for (int i = 0; i < 32; i++)
        {
          int l = nearest_int ((x[32 * j + i] + dm) / d);

          L[32 * j + i] = (guint8) MAX (0, MIN (nmax, l));
        }
    }
}

/* Q4_K: 144 bytes, d, dmin, scales[12], qs[128] (j | j+32 << 4 per 64) */
static void
q4_k_block (const float *x,
            guint8      *out)
{
  guint8 L[QK_K];
  guint8 *q = out + 16;

  qk_affine_block (x, 15, -1.0f, 20, out, L);
  for (int j = 0; j < QK_K; j += 64)
    {
      for (int l = 0; l < 32; l++)
        q[l] = L[j + l] | (guint8) (L[j + l + 32] << 4);
      q += 32;
    }
}

/* Q5_K: 176 bytes, d, dmin, scales[12], qh[32], qs[128] */
static void
q5_k_block (const float *x,
            guint8      *out)
{
  guint8 L[QK_K];
  guint8 *qh = out + 16, *ql = out + 48;
  guint8 m1 = 1, m2 = 2;

  qk_affine_block (x, 31, -0.5f, 15, out, L);
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

/* Q6_K: 210 bytes, ql[128], qh[64], scales[16] (int8), fp16 d */
static void
q6_k_block (const float *x,
            guint8      *out)
{
  guint8 *ql = out, *qh = out + 128, *sc = out + 192;
  gint8 L[QK_K];
  float scales[16];
  float max_scale = 0.0f, max_abs_scale = 0.0f, iscale, dd;

  for (int ib = 0; ib < 16; ib++)
    {
      scales[ib] = make_qx_quants (32, x + 16 * ib, L + 16 * ib);
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

#define DEFINE_K_QUANTIZER(name, block_fn, bytes)                   \
  void                                                              \
  name (const float *src,                                           \
        guint64      n,                                             \
        guint8      *dst)                                           \
  {                                                                 \
    for (guint64 b = 0; b < n / QK_K; b++)                          \
      block_fn (src + b * QK_K, dst + b * (bytes));                 \
  }

DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q2_k, q2_k_block, 84)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q3_k, q3_k_block, 110)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q4_k, q4_k_block, 144)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q5_k, q5_k_block, 176)
DEFINE_K_QUANTIZER (_smelt_ggml_quantize_q6_k, q6_k_block, 210)

/**
 * _smelt_ggml_quantize:
 * @type: a ggml block type
 * @src: @n floats
 * @n: a multiple of the block size of @type
 * @dst: room for the blocks
 *
 * Quantizes with the encoder of @type in this file.
 *
 * Returns: %FALSE if this file has no encoder for @type
 */
gboolean
_smelt_ggml_quantize (SmeltGgmlType  type,
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
