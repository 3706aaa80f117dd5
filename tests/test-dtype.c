/* test-dtype.c: dtype names and F32/F16/BF16 conversions
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every SIMD back end the CPU supports is compared bit for bit with the
 * portable one, and the portable one with references written differently:
 * GCC's _Float16 (soft-float IEEE conversions in libgcc) for F16, and a
 * double-precision "nearest neighbour, ties to even" for BF16.
 */
#include "config.h"

#include "smelt-private.h"

#include <float.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) || defined(__SSE__)
# include <xmmintrin.h>
# define HAVE_MXCSR 1
#endif

/* GCC defines this where _Float16 exists (x86-64 since GCC 12). */
#if defined(__FLT16_MAX__)
# define HAVE_FLOAT16 1
#endif

#define N_RANDOM 10000000
#define RANDOM_SEED 0x5EED1234u

/* ---- helpers ---------------------------------------------------------- */

static inline guint32
f2u (float f)
{
  guint32 u;

  memcpy (&u, &f, sizeof u);
  return u;
}

static inline void
set_bits (float *p, guint32 u)
{
  /* memcpy, not a float rvalue, so signalling NaNs reach the array as is */
  memcpy (p, &u, sizeof u);
}

static inline guint32
get_bits (const float *p)
{
  guint32 u;

  memcpy (&u, p, sizeof u);
  return u;
}

static gboolean
f32_bits_is_nan (guint32 u)
{
  return (u & 0x7FFFFFFF) > 0x7F800000;
}

static gboolean
f16_is_nan (guint16 h)
{
  return (h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0;
}

/* The value of an F16 pattern, from the definition of the format. */
static double
f16_value (guint16 h)
{
  guint e = (h >> 10) & 0x1F;
  guint m = h & 0x03FF;
  double v;

  g_assert (e != 0x1F);
  v = e == 0 ? ldexp (m, -24) : ldexp (1024 + m, (int) e - 25);
  return (h & 0x8000) ? -v : v;
}

static SmeltSimdLevel levels[SMELT_SIMD_N_LEVELS];
static guint n_levels;

static void
init_levels (void)
{
  n_levels = 0;
  for (guint l = 0; l < SMELT_SIMD_N_LEVELS; l++)
    if (_smelt_simd_supported ((SmeltSimdLevel) l))
      levels[n_levels++] = (SmeltSimdLevel) l;
}

static SmeltSimdLevel
best_level (void)
{
  return levels[n_levels - 1];
}

/* ---- inputs ----------------------------------------------------------- */

static const guint32 nan_payloads[] = {
  0x7F800001, 0x7FC00000, 0x7FFFFFFF, 0x7F802000, 0x7FA00000, 0x7F801FFF,
  0x7FBFFFFF, 0x7F800100, 0x7FC00001, 0x7FFF0000, 0x7F810000, 0x7F808000,
  0x7F807FFF, 0x7F80FFFF, 0x7FFFE000, 0x7FFFFFFE,
};

static void
append (GArray *a,
        guint32 u)
{
  g_array_append_val (a, u);
}

static void
append_near (GArray *a,
             guint32 u)
{
  append (a, u - 1);
  append (a, u);
  append (a, u + 1);
}

static void
append_specials (GArray *a)
{
  const float values[] = {
    65504.0f, 65519.99f, 65520.0f, 65536.0f, 131008.0f, FLT_MAX, 1.0f, 0.0f,
    FLT_MIN, FLT_TRUE_MIN, 0x1p-24f, 0x1p-25f, 0x1.8p-24f, 0x1p-14f,
    0x1.ff8p-15f, 0x1.ffcp-15f, 0x1p-26f, 3.0f, 1.0f / 3.0f, INFINITY,
    0x1.fefffep127f, 0x1.ff0000p127f, 0x1.ff8000p127f, 0x1.fe8000p127f,
  };

  for (guint s = 0; s < 2; s++)
    {
      guint32 sign = s ? 0x80000000 : 0;

      for (guint i = 0; i < G_N_ELEMENTS (values); i++)
        append_near (a, f2u (values[i]) | sign);
      for (guint i = 0; i < G_N_ELEMENTS (nan_payloads); i++)
        append (a, nan_payloads[i] | sign);
    }
}

/* Around every F16 and BF16 rounding boundary: each representable value,
 * each halfway point between neighbours, and one F32 ulp either side of
 * both. Covers every subnormal F16 result and the overflow threshold. */
static const float *
get_sweep (gsize *n)
{
  static GArray *sweep;

  if (sweep == NULL)
    {
      GArray *a = g_array_new (FALSE, FALSE, sizeof (guint32));

      for (guint32 h = 0; h < 0x10000; h++)
        {
          guint32 mag = h & 0x7FFF;

          /* BF16: representable values are the top halves of floats */
          append_near (a, h << 16);
          append_near (a, (h << 16) + 0x8000);

          /* F16 */
          if (mag < 0x7C00)
            {
              double lo = fabs (f16_value ((guint16) mag));
              double hi = mag == 0x7BFF ? 65536.0 : fabs (f16_value ((guint16) (mag + 1)));
              guint32 sign = (h & 0x8000) << 16;

              append_near (a, f2u ((float) lo) | sign);
              append_near (a, f2u ((float) ((lo + hi) / 2)) | sign);  /* exact */
            }
          else
            append_near (a, ((h & 0x8000) << 16) | 0x7F800000 | ((h & 0x3FF) << 13));
        }
      append_specials (a);
      sweep = a;
    }
  *n = sweep->len;
  return (const float *) (gconstpointer) sweep->data;
}

static const float *
get_random (gsize *n)
{
  static float *values;

  if (values == NULL)
    {
      GRand *rand = g_rand_new_with_seed (RANDOM_SEED);

      values = g_new (float, N_RANDOM);
      for (gsize i = 0; i < N_RANDOM; i++)
        set_bits (&values[i], g_rand_int (rand));
      g_rand_free (rand);
    }
  *n = N_RANDOM;
  return values;
}

/* A short, dense mix for the length/alignment tests: specials (overflow,
 * NaN, halfway) interleaved with sweep values, so that every tail sees
 * some of each. */
static const float *
get_mix (gsize *n)
{
  static float *mix;
  static gsize n_mix;

  if (mix == NULL)
    {
      GArray *specials = g_array_new (FALSE, FALSE, sizeof (guint32));
      GRand *rand = g_rand_new_with_seed (RANDOM_SEED + 1);
      gsize n_sweep;
      const float *sweep = get_sweep (&n_sweep);
      const guint32 *sp;

      append_specials (specials);
      sp = (const guint32 *) (gconstpointer) specials->data;
      n_mix = 4096;
      mix = g_new (float, n_mix);
      for (gsize i = 0; i < n_mix; i++)
        {
          if (i % 3 == 0)
            set_bits (&mix[i], sp[g_rand_int_range (rand, 0, specials->len)]);
          else
            set_bits (&mix[i], get_bits (&sweep[g_rand_int_range (rand, 0, (gint32) n_sweep)]));
        }
      g_rand_free (rand);
      g_array_unref (specials);
    }
  *n = n_mix;
  return mix;
}

/* All 65536 16-bit patterns. */
static const guint16 *
get_all16 (void)
{
  static guint16 *all;

  if (all == NULL)
    {
      all = g_new (guint16, 0x10000);
      for (guint32 h = 0; h < 0x10000; h++)
        all[h] = (guint16) h;
    }
  return all;
}

/* ---- bit-for-bit comparison ------------------------------------------- */

static void
assert_same16 (const char     *what,
               SmeltSimdLevel  level,
               const float    *in,
               const guint16  *expected,
               const guint16  *got,
               gsize           n)
{
  if (memcmp (expected, got, n * sizeof *got) == 0)
    return;
  for (gsize i = 0; i < n; i++)
    if (expected[i] != got[i])
      {
        g_test_message ("%s (%s): element %" G_GSIZE_FORMAT ", input 0x%08x",
                        what, _smelt_simd_level_name (level), i, get_bits (&in[i]));
        g_assert_cmphex (got[i], ==, expected[i]);
      }
}

static void
assert_same32 (const char     *what,
               SmeltSimdLevel  level,
               const guint16  *in,
               const float    *expected,
               const float    *got,
               gsize           n)
{
  if (memcmp (expected, got, n * sizeof *got) == 0)
    return;
  for (gsize i = 0; i < n; i++)
    if (get_bits (&expected[i]) != get_bits (&got[i]))
      {
        g_test_message ("%s (%s): element %" G_GSIZE_FORMAT ", input 0x%04x",
                        what, _smelt_simd_level_name (level), i, in[i]);
        g_assert_cmphex (get_bits (&got[i]), ==, get_bits (&expected[i]));
      }
}

/* Every level against the portable one on @in (whole array in one call). */
static void
compare_levels_narrow (const float *in,
                       gsize        n)
{
  guint16 *ref = g_new (guint16, n);
  guint16 *out = g_new (guint16, n);
  gsize ref_ov, ov;

  _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, in, ref, n);
  for (guint l = 1; l < n_levels; l++)
    {
      memset (out, 0xA5, n * sizeof *out);
      _smelt_convert_f32_to_bf16_at (levels[l], in, out, n);
      assert_same16 ("f32->bf16", levels[l], in, ref, out, n);
    }

  ref_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, in, ref, n);
  for (guint l = 1; l < n_levels; l++)
    {
      memset (out, 0xA5, n * sizeof *out);
      ov = _smelt_convert_f32_to_f16_at (levels[l], in, out, n);
      assert_same16 ("f32->f16", levels[l], in, ref, out, n);
      g_assert_cmpuint (ov, ==, ref_ov);
    }

  g_free (ref);
  g_free (out);
}

static void
compare_levels_widen (const guint16 *in,
                      gsize          n)
{
  float *ref = g_new (float, n);
  float *out = g_new (float, n);

  _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, in, ref, n);
  for (guint l = 1; l < n_levels; l++)
    {
      memset (out, 0xA5, n * sizeof *out);
      _smelt_convert_f16_to_f32_at (levels[l], in, out, n);
      assert_same32 ("f16->f32", levels[l], in, ref, out, n);
    }

  _smelt_convert_bf16_to_f32_at (SMELT_SIMD_PORTABLE, in, ref, n);
  for (guint l = 1; l < n_levels; l++)
    {
      memset (out, 0xA5, n * sizeof *out);
      _smelt_convert_bf16_to_f32_at (levels[l], in, out, n);
      assert_same32 ("bf16->f32", levels[l], in, ref, out, n);
    }

  g_free (ref);
  g_free (out);
}

/* ---- independent references ------------------------------------------- */

/* BF16 by definition: the two neighbouring BF16 values in double precision,
 * the nearer one, ties to the even significand. Not NaN. */
static guint16
bf16_reference (float f)
{
  guint16 sign = (f2u (f) >> 16) & 0x8000;
  double d = fabs ((double) f);
  double ulp, lo, hi, r;
  int e;

  if (isinf (f))
    return sign | 0x7F80;
  if (d == 0)
    return sign;

  /* d = fr * 2^e, fr in [0.5, 1): 8 significant bits means an ulp of
   * 2^(e-8), but never below the subnormal spacing 2^-133. */
  frexp (d, &e);
  ulp = ldexp (1.0, MAX (e - 8, -133));
  lo = floor (d / ulp) * ulp;
  hi = lo + ulp;
  if (d - lo < hi - d)
    r = lo;
  else if (d - lo > hi - d)
    r = hi;
  else
    r = fmod (lo / ulp, 2.0) == 0.0 ? lo : hi;

  if (r >= 0x1p128)
    return sign | 0x7F80;
  g_assert_cmphex (f2u ((float) r) & 0xFFFF, ==, 0);
  return sign | (guint16) (f2u ((float) r) >> 16);
}

static void
check_bf16_reference (const float *in,
                      gsize        n)
{
  guint16 *out = g_new (guint16, n);

  _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, in, out, n);
  for (gsize i = 0; i < n; i++)
    {
      guint32 x = get_bits (&in[i]);

      if (f32_bits_is_nan (x))
        {
          /* quiet NaN, same sign, top of the payload; never infinity */
          g_assert_cmphex (out[i] & 0x8000, ==, (x >> 16) & 0x8000);
          g_assert_cmphex (out[i] & 0x7FC0, ==, 0x7FC0);
          g_assert_cmphex (out[i], ==, (x >> 16) | 0x40);
        }
      else if (out[i] != bf16_reference (in[i]))
        {
          g_test_message ("f32->bf16: input 0x%08x", x);
          g_assert_cmphex (out[i], ==, bf16_reference (in[i]));
        }
    }
  g_free (out);
}

#ifdef HAVE_FLOAT16
static guint16
f16_reference (float f)
{
  _Float16 h = (_Float16) f;
  guint16 u;

  memcpy (&u, &h, sizeof u);
  return u;
}

static void
check_f16_reference (const float *in,
                     gsize        n)
{
  guint16 *out = g_new (guint16, n);
  gsize ov, ref_ov = 0;

  ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, in, out, n);
  for (gsize i = 0; i < n; i++)
    {
      guint32 x = get_bits (&in[i]);
      guint16 want = f16_reference (in[i]);

      if (f32_bits_is_nan (x))
        {
          g_assert_true (f16_is_nan (out[i]));
          g_assert_cmphex (out[i] & 0x8000, ==, (x >> 16) & 0x8000);
          continue;
        }
      if (out[i] != want)
        {
          g_test_message ("f32->f16: input 0x%08x", x);
          g_assert_cmphex (out[i], ==, want);
        }
      ref_ov += !isinf (in[i]) && (want & 0x7FFF) == 0x7C00;
    }
  g_assert_cmpuint (ov, ==, ref_ov);
  g_free (out);
}
#endif

/* ---- tests ------------------------------------------------------------ */

static void
test_strings (void)
{
  static const struct {
    SmeltDType  dtype;
    const char *name;
    guint       bits;
    gboolean    is_float;
  } table[] = {
    { SMELT_DTYPE_F32, "F32", 32, TRUE },
    { SMELT_DTYPE_F16, "F16", 16, TRUE },
    { SMELT_DTYPE_BF16, "BF16", 16, TRUE },
    { SMELT_DTYPE_F64, "F64", 64, TRUE },
    { SMELT_DTYPE_I64, "I64", 64, FALSE },
    { SMELT_DTYPE_I32, "I32", 32, FALSE },
    { SMELT_DTYPE_I16, "I16", 16, FALSE },
    { SMELT_DTYPE_I8, "I8", 8, FALSE },
    { SMELT_DTYPE_U64, "U64", 64, FALSE },
    { SMELT_DTYPE_U32, "U32", 32, FALSE },
    { SMELT_DTYPE_U16, "U16", 16, FALSE },
    { SMELT_DTYPE_U8, "U8", 8, FALSE },
    { SMELT_DTYPE_BOOL, "BOOL", 8, FALSE },
    { SMELT_DTYPE_F8_E4M3, "F8_E4M3", 8, TRUE },
    { SMELT_DTYPE_F8_E5M2, "F8_E5M2", 8, TRUE },
    { SMELT_DTYPE_F8_E8M0, "F8_E8M0", 8, TRUE },
    { SMELT_DTYPE_F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, TRUE },
    { SMELT_DTYPE_F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, TRUE },
    { SMELT_DTYPE_F6_E2M3, "F6_E2M3", 6, TRUE },
    { SMELT_DTYPE_F6_E3M2, "F6_E3M2", 6, TRUE },
    { SMELT_DTYPE_F4, "F4", 4, TRUE },
    { SMELT_DTYPE_C64, "C64", 64, FALSE },
  };
  const char *rejected[] = {
    "f32", "FP16", "", "BF16 ", " BF16", "bf16", "F8_E4M3FN", "FLOAT", "F",
    "F32\n", "U4", "C128",
  };

  /* every enum value is in the table, once */
  g_assert_cmpuint (G_N_ELEMENTS (table), ==, SMELT_DTYPE_C64);
  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    {
      g_assert_cmpint (table[i].dtype, ==, (SmeltDType) (i + 1));
      g_assert_cmpstr (smelt_dtype_to_string (table[i].dtype), ==, table[i].name);
      g_assert_cmpint (smelt_dtype_from_string (table[i].name), ==, table[i].dtype);
      g_assert_cmpuint (smelt_dtype_get_bits (table[i].dtype), ==, table[i].bits);
      g_assert_cmpint (smelt_dtype_is_float (table[i].dtype), ==, table[i].is_float);
    }

  /* round trip for every value, INVALID and out-of-range included */
  for (guint d = SMELT_DTYPE_INVALID; d <= SMELT_DTYPE_C64; d++)
    g_assert_cmpint (smelt_dtype_from_string (smelt_dtype_to_string ((SmeltDType) d)), ==, d);
  g_assert_nonnull (smelt_dtype_to_string ((SmeltDType) 999));
  g_assert_cmpint (smelt_dtype_from_string (smelt_dtype_to_string ((SmeltDType) 999)), ==,
                   SMELT_DTYPE_INVALID);

  g_assert_cmpuint (smelt_dtype_get_bits (SMELT_DTYPE_INVALID), ==, 0);
  g_assert_cmpuint (smelt_dtype_get_bits ((SmeltDType) 999), ==, 0);
  g_assert_false (smelt_dtype_is_float (SMELT_DTYPE_INVALID));
  g_assert_false (smelt_dtype_is_float ((SmeltDType) 999));

  for (guint i = 0; i < G_N_ELEMENTS (rejected); i++)
    g_assert_cmpint (smelt_dtype_from_string (rejected[i]), ==, SMELT_DTYPE_INVALID);
  g_assert_cmpint (smelt_dtype_from_string (NULL), ==, SMELT_DTYPE_INVALID);
}

static void
test_levels (void)
{
  g_assert_true (_smelt_simd_supported (SMELT_SIMD_PORTABLE));
  g_assert_false (_smelt_simd_supported (SMELT_SIMD_N_LEVELS));
  g_assert_cmpstr (_smelt_simd_level_name (SMELT_SIMD_PORTABLE), ==, "portable");
  g_assert_cmpstr (_smelt_simd_level_name (SMELT_SIMD_AVX2), ==, "avx2");
  g_assert_cmpstr (_smelt_simd_level_name (SMELT_SIMD_AVX512), ==, "avx512");
  g_assert_null (_smelt_simd_level_name (SMELT_SIMD_N_LEVELS));
  g_assert_true (_smelt_simd_supported (_smelt_simd_level ()));
  g_assert_cmpint (_smelt_simd_level (), <=, best_level ());

  for (guint l = 0; l < n_levels; l++)
    g_test_message ("supported: %s", _smelt_simd_level_name (levels[l]));
  g_test_message ("in use: %s", _smelt_simd_level_name (_smelt_simd_level ()));
  if (n_levels == 1)
    g_test_message ("only the portable back end runs on this CPU");

  /* an unsupported or bogus level falls back instead of faulting */
  {
    float f = 1.5f;
    guint16 h = 0;

    g_assert_cmpuint (_smelt_convert_f32_to_f16_at ((SmeltSimdLevel) 77, &f, &h, 1), ==, 0);
    g_assert_cmphex (h, ==, 0x3E00);
  }
}

static void
test_widen_exhaustive (void)
{
  const guint16 *all = get_all16 ();
  float *out = g_new (float, 0x10000);

  compare_levels_widen (all, 0x10000);

  /* BF16 -> F32 is bits << 16, NaN payloads included */
  _smelt_convert_bf16_to_f32_at (SMELT_SIMD_PORTABLE, all, out, 0x10000);
  for (guint32 h = 0; h < 0x10000; h++)
    g_assert_cmphex (get_bits (&out[h]), ==, h << 16);

  /* F16 -> F32 from the definition of the format, and from _Float16 */
  _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, all, out, 0x10000);
  for (guint32 h = 0; h < 0x10000; h++)
    {
      guint32 u = get_bits (&out[h]);

      if ((h & 0x7C00) != 0x7C00)
        g_assert_cmpfloat ((double) out[h], ==, f16_value ((guint16) h));
      else if ((h & 0x3FF) == 0)
        g_assert_cmphex (u, ==, ((h & 0x8000) << 16) | 0x7F800000);
      else
        /* NaN: sign and payload kept, quiet bit set */
        g_assert_cmphex (u, ==, ((h & 0x8000) << 16) | 0x7FC00000 | ((h & 0x3FF) << 13));
      /* and the sign of zero */
      g_assert_cmphex (u >> 31, ==, h >> 15);

#ifdef HAVE_FLOAT16
      {
        _Float16 x;
        float want;

        memcpy (&x, &all[h], sizeof x);
        want = (float) x;
        if (isnan (want))
          g_assert_true (isnan (out[h]));
        else
          g_assert_cmphex (u, ==, f2u (want));
      }
#endif
    }
  g_free (out);
}

/* Every non-NaN F16 and BF16 survives widening and narrowing unchanged. */
static void
test_round_trip (void)
{
  const guint16 *all = get_all16 ();
  float *wide = g_new (float, 0x10000);
  guint16 *back = g_new (guint16, 0x10000);

  for (guint l = 0; l < n_levels; l++)
    {
      _smelt_convert_f16_to_f32_at (levels[l], all, wide, 0x10000);
      g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], wide, back, 0x10000), ==, 0);
      for (guint32 h = 0; h < 0x10000; h++)
        if (!f16_is_nan ((guint16) h))
          g_assert_cmphex (back[h], ==, h);
        else
          g_assert_cmphex (back[h], ==, h | 0x200);  /* quietened */

      _smelt_convert_bf16_to_f32_at (levels[l], all, wide, 0x10000);
      _smelt_convert_f32_to_bf16_at (levels[l], wide, back, 0x10000);
      for (guint32 h = 0; h < 0x10000; h++)
        if ((h & 0x7F80) != 0x7F80 || (h & 0x7F) == 0)
          g_assert_cmphex (back[h], ==, h);
        else
          g_assert_cmphex (back[h], ==, h | 0x40);
    }
  g_free (wide);
  g_free (back);
}

static void
test_narrow_sweep (void)
{
  gsize n;
  const float *sweep = get_sweep (&n);

  g_test_message ("%" G_GSIZE_FORMAT " sweep values", n);
  compare_levels_narrow (sweep, n);
  check_bf16_reference (sweep, n);
#ifdef HAVE_FLOAT16
  check_f16_reference (sweep, n);
#else
  g_test_message ("no _Float16: F16 reference check skipped");
#endif
}

static void
test_narrow_random (void)
{
  gsize n;
  const float *values = get_random (&n);

  compare_levels_narrow (values, n);
  check_bf16_reference (values, n);
#ifdef HAVE_FLOAT16
  check_f16_reference (values, n);
#endif
}

/* Lengths 0..70, inputs at element offsets 0 and 1 and allocated to the
 * exact size (so AddressSanitizer sees over-reads), outputs at every
 * element offset from a 64-byte boundary (so the back ends' alignment
 * heads all run) with guard values around them (so any level's
 * over-writes are caught). */
#define GUARD 16
#define N_DST_OFFSETS 34

static void
test_tails (void)
{
  const gsize starts[] = { 0, 5, 37, 1000, 2999 };
  gsize n_mix;
  const float *mix = get_mix (&n_mix);
  gsize dst_len = N_DST_OFFSETS + 70 + GUARD;
  guint16 *dst16 = g_aligned_alloc (dst_len, sizeof (guint16), 64);
  float *dst32 = g_aligned_alloc (dst_len, sizeof (float), 64);
  guint16 ref16[70];
  float ref32[70];

  for (guint l = 0; l < n_levels; l++)
    for (gsize off = 0; off < 2; off++)
      for (gsize len = 0; len <= 70; len++)
        {
          SmeltSimdLevel level = levels[l];
          float *src32 = g_malloc ((off + len + 1) * sizeof (float));
          guint16 *src16 = g_malloc ((off + len + 1) * sizeof (guint16));

          for (gsize doff = 0; doff < N_DST_OFFSETS; doff++)
            {
              const float *in = mix + starts[(len + doff) % G_N_ELEMENTS (starts)];
              gsize ov, ref_ov;

              memcpy (src32 + off, in, len * sizeof (float));
              for (gsize i = 0; i < len; i++)
                src16[off + i] = (guint16) (get_bits (&in[i]) >> (i % 2 ? 16 : 0));

#define FILL_GUARDS() G_STMT_START { \
                memset (dst16, 0xA5, dst_len * sizeof (guint16)); \
                memset (dst32, 0xA5, dst_len * sizeof (float)); \
              } G_STMT_END
#define CHECK_GUARDS16() G_STMT_START { \
                for (gsize g = 0; g < doff; g++) \
                  g_assert_cmphex (dst16[g], ==, 0xA5A5); \
                for (gsize g = doff + len; g < dst_len; g++) \
                  g_assert_cmphex (dst16[g], ==, 0xA5A5); \
              } G_STMT_END
#define CHECK_GUARDS32() G_STMT_START { \
                for (gsize g = 0; g < doff; g++) \
                  g_assert_cmphex (get_bits (&dst32[g]), ==, 0xA5A5A5A5); \
                for (gsize g = doff + len; g < dst_len; g++) \
                  g_assert_cmphex (get_bits (&dst32[g]), ==, 0xA5A5A5A5); \
              } G_STMT_END

              /* F32 -> BF16 */
              _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, in, ref16, len);
              FILL_GUARDS ();
              _smelt_convert_f32_to_bf16_at (level, src32 + off, dst16 + doff, len);
              assert_same16 ("f32->bf16 tail", level, in, ref16, dst16 + doff, len);
              CHECK_GUARDS16 ();

              /* F32 -> F16 and its overflow count */
              ref_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, in, ref16, len);
              FILL_GUARDS ();
              ov = _smelt_convert_f32_to_f16_at (level, src32 + off, dst16 + doff, len);
              assert_same16 ("f32->f16 tail", level, in, ref16, dst16 + doff, len);
              CHECK_GUARDS16 ();
              g_assert_cmpuint (ov, ==, ref_ov);

              /* F16 -> F32 */
              _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, src16 + off, ref32, len);
              FILL_GUARDS ();
              _smelt_convert_f16_to_f32_at (level, src16 + off, dst32 + doff, len);
              assert_same32 ("f16->f32 tail", level, src16 + off, ref32, dst32 + doff, len);
              CHECK_GUARDS32 ();

              /* BF16 -> F32 */
              _smelt_convert_bf16_to_f32_at (SMELT_SIMD_PORTABLE, src16 + off, ref32, len);
              FILL_GUARDS ();
              _smelt_convert_bf16_to_f32_at (level, src16 + off, dst32 + doff, len);
              assert_same32 ("bf16->f32 tail", level, src16 + off, ref32, dst32 + doff, len);
              CHECK_GUARDS32 ();

#undef FILL_GUARDS
#undef CHECK_GUARDS16
#undef CHECK_GUARDS32
            }
          g_free (src32);
          g_free (src16);
        }

  g_aligned_free (dst16);
  g_aligned_free (dst32);
}

static void
test_overflow_count (void)
{
  const float values[] = {
    65504.0f, 65519.99f, 65520.0f, FLT_MAX, INFINITY, NAN, -65520.0f,
    -INFINITY, 1.0f, -65504.0f, 70000.0f, -FLT_MAX,
  };
  const gsize expected = 5;  /* 65520, FLT_MAX, -65520, 70000, -FLT_MAX */
  const gsize lengths[] = { 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 1000 };

  for (guint l = 0; l < n_levels; l++)
    {
      guint16 out[G_N_ELEMENTS (values)];

      g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], values, out, G_N_ELEMENTS (values)),
                        ==, expected);
      g_assert_cmphex (out[1], ==, 0x7BFF);
      g_assert_cmphex (out[2], ==, 0x7C00);
      g_assert_cmphex (out[6], ==, 0xFC00);
      g_assert_true (f16_is_nan (out[5]));

      /* the overflowing value alone at each position of several lengths:
       * main loop, masked and scalar tails */
      for (guint li = 0; li < G_N_ELEMENTS (lengths); li++)
        {
          gsize len = lengths[li];
          float *v = g_new0 (float, len);
          guint16 *o = g_new (guint16, len);

          g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], v, o, len), ==, 0);
          for (gsize p = 0; p < len; p++)
            {
              v[p] = -1e6f;
              g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], v, o, len), ==, 1);
              v[p] = INFINITY;  /* already infinite: not an overflow */
              g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], v, o, len), ==, 0);
              v[p] = 0.0f;
            }
          for (gsize p = 0; p < len; p++)
            v[p] = 65520.0f;
          g_assert_cmpuint (_smelt_convert_f32_to_f16_at (levels[l], v, o, len), ==, len);
          g_free (v);
          g_free (o);
        }
    }
}

/* The public find, at whatever level this process dispatches to, against a
 * plain loop. The dispatch test runs it once per level in a subprocess. */
static gssize
naive_find (const float *v,
            gsize        n)
{
  for (gsize i = 0; i < n; i++)
    if (isnan (v[i]) || isinf (v[i]))
      return (gssize) i;
  return -1;
}

static void
check_find_non_finite (void)
{
  const guint32 bad[] = { 0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7F800000, 0xFF800000 };
  const guint32 good[] = { 0x7F7FFFFF, 0xFF7FFFFF, 0x00000000, 0x80000000, 0x00000001,
                           0x477FF000, 0x3F800000, 0x7F000000 };
  const gsize big_n = 100003;
  const gsize big_pos[] = { 0, 1, 63, 64, 50001, big_n - 17, big_n - 2, big_n - 1 };
  float *big;

  g_assert_cmpint (smelt_find_non_finite (NULL, 0), ==, -1);

  for (gsize off = 0; off < 2; off++)
    for (gsize len = 0; len <= 150; len++)
      {
        float *buf = g_malloc ((off + len + 1) * sizeof (float));
        float *v = buf + off;

        for (gsize i = 0; i < len; i++)
          set_bits (&v[i], good[(i + len) % G_N_ELEMENTS (good)]);
        g_assert_cmpint (smelt_find_non_finite (v, len), ==, -1);

        /* every position: first, middle, last, inside the tail */
        for (gsize p = 0; p < len; p++)
          {
            guint32 saved = get_bits (&v[p]);

            set_bits (&v[p], bad[p % G_N_ELEMENTS (bad)]);
            g_assert_cmpint (smelt_find_non_finite (v, len), ==, (gssize) p);
            g_assert_cmpint (smelt_find_non_finite (v, p), ==, -1);  /* just before it */
            if (p + 1 < len)
              {
                /* two of them: the first wins */
                set_bits (&v[len - 1], 0x7F800000);
                g_assert_cmpint (smelt_find_non_finite (v, len), ==, (gssize) p);
                set_bits (&v[len - 1], good[(len - 1 + len) % G_N_ELEMENTS (good)]);
              }
            set_bits (&v[p], saved);
          }
        g_free (buf);
      }

  big = g_new (float, big_n);
  for (gsize i = 0; i < big_n; i++)
    set_bits (&big[i], good[i % G_N_ELEMENTS (good)]);
  g_assert_cmpint (smelt_find_non_finite (big, big_n), ==, -1);
  g_assert_cmpint (naive_find (big, big_n), ==, -1);
  for (guint k = 0; k < G_N_ELEMENTS (big_pos); k++)
    for (guint b = 0; b < G_N_ELEMENTS (bad); b++)
      {
        gsize p = big_pos[k];
        guint32 saved = get_bits (&big[p]);

        set_bits (&big[p], bad[b]);
        g_assert_cmpint (smelt_find_non_finite (big, big_n), ==, (gssize) p);
        g_assert_cmpint (smelt_find_non_finite (big + 1, big_n - 1), ==, (gssize) p - 1);
        g_assert_cmpint (naive_find (big, big_n), ==, (gssize) p);
        set_bits (&big[p], saved);
      }
  g_free (big);

  /* the sweep has NaNs and infinities scattered through it */
  {
    gsize n, start = 0;
    const float *sweep = get_sweep (&n);

    while (start < n)
      {
        gssize want = naive_find (sweep + start, n - start);
        gssize got = smelt_find_non_finite (sweep + start, n - start);

        g_assert_cmpint (got, ==, want);
        if (got < 0)
          break;
        start += (gsize) got + 1;
      }
  }
}

/* Every pair of F32/F16/BF16 through smelt_convert(), against the
 * portable converters composed by hand. */
static void
check_convert_pairs (void)
{
  const SmeltDType types[] = { SMELT_DTYPE_F32, SMELT_DTYPE_F16, SMELT_DTYPE_BF16 };
  /* longer than smelt_convert's internal chunk, and not a multiple of it */
  const gsize n = 3001;
  gsize n_mix;
  const float *mix = get_mix (&n_mix);
  float *f32 = g_new (float, n);
  guint16 *f16 = g_new (guint16, n);
  guint16 *bf16 = g_new (guint16, n);
  gpointer out = g_malloc (n * 4);
  float *tmp = g_new (float, n);
  gsize expected_f16_ov;

  /* inputs: the mix, also in F16 and BF16 (widened values round-trip) */
  memcpy (f32, mix, n * sizeof (float));
  expected_f16_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, f32, f16, n);
  g_assert_cmpuint (expected_f16_ov, >, 0);
  _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, f32, bf16, n);

  for (guint s = 0; s < G_N_ELEMENTS (types); s++)
    for (guint d = 0; d < G_N_ELEMENTS (types); d++)
      {
        SmeltDType st = types[s], dt = types[d];
        gconstpointer src = st == SMELT_DTYPE_F32 ? (gconstpointer) f32 :
                            st == SMELT_DTYPE_F16 ? (gconstpointer) f16 : (gconstpointer) bf16;
        gsize ov = 12345, want_ov = 0;
        gsize dst_bytes = n * smelt_dtype_get_bits (dt) / 8;
        gpointer want = g_malloc (dst_bytes);

        /* the expected result, by the portable converters */
        if (st == dt)
          memcpy (want, src, dst_bytes);
        else if (st == SMELT_DTYPE_F32 && dt == SMELT_DTYPE_F16)
          want_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, src, want, n);
        else if (st == SMELT_DTYPE_F32)
          _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, src, want, n);
        else
          {
            if (st == SMELT_DTYPE_F16)
              _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, src, tmp, n);
            else
              _smelt_convert_bf16_to_f32_at (SMELT_SIMD_PORTABLE, src, tmp, n);
            if (dt == SMELT_DTYPE_F32)
              memcpy (want, tmp, dst_bytes);
            else if (dt == SMELT_DTYPE_F16)
              want_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, tmp, want, n);
            else
              _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, tmp, want, n);
          }

        memset (out, 0xA5, n * 4);
        g_assert_true (smelt_convert (st, src, dt, out, n, &ov));
        g_assert_cmpmem (out, dst_bytes, want, dst_bytes);
        g_assert_cmpuint (ov, ==, want_ov);
        if (st == SMELT_DTYPE_BF16 && dt == SMELT_DTYPE_F16)
          g_assert_cmpuint (ov, >, 0);  /* BF16 reaches beyond 65504 */

        /* short and chunk-crossing lengths: a prefix of the same result,
         * nothing written past it */
        {
          const gsize short_n[] = { 1, 2, 31, 1025 };
          gsize width = smelt_dtype_get_bits (dt) / 8;

          for (guint k = 0; k < G_N_ELEMENTS (short_n); k++)
            {
              gsize m = short_n[k];

              memset (out, 0xA5, n * 4);
              g_assert_true (smelt_convert (st, src, dt, out, m, NULL));
              g_assert_cmpmem (out, m * width, want, m * width);
              g_assert_cmphex (((guint8 *) out)[m * width], ==, 0xA5);
            }
        }

        /* n_overflow is optional; n = 0 touches nothing */
        memset (out, 0xA5, n * 4);
        g_assert_true (smelt_convert (st, src, dt, out, n, NULL));
        g_assert_cmpmem (out, dst_bytes, want, dst_bytes);
        memset (out, 0xA5, n * 4);
        ov = 12345;
        g_assert_true (smelt_convert (st, src, dt, out, 0, &ov));
        g_assert_cmpuint (ov, ==, 0);
        g_assert_cmphex (((guint8 *) out)[0], ==, 0xA5);

        g_free (want);
      }

  /* identical types on the same buffer: a no-op */
  memcpy (tmp, f32, n * sizeof (float));
  g_assert_true (smelt_convert (SMELT_DTYPE_F32, tmp, SMELT_DTYPE_F32, tmp, n, NULL));
  g_assert_cmpmem (tmp, n * sizeof (float), f32, n * sizeof (float));

  /* everything else is refused, output untouched, count zeroed */
  for (guint t = SMELT_DTYPE_INVALID; t <= SMELT_DTYPE_C64 + 1; t++)
    {
      if (t == SMELT_DTYPE_F32 || t == SMELT_DTYPE_F16 || t == SMELT_DTYPE_BF16)
        continue;
      for (guint o = 0; o < G_N_ELEMENTS (types); o++)
        {
          gsize ov = 12345;

          memset (out, 0xA5, 16);
          g_assert_false (smelt_convert ((SmeltDType) t, f32, types[o], out, 4, &ov));
          g_assert_cmpuint (ov, ==, 0);
          g_assert_false (smelt_convert (types[o], f32, (SmeltDType) t, out, 4, NULL));
          g_assert_cmphex (((guint8 *) out)[0], ==, 0xA5);
          g_assert_cmphex (((guint8 *) out)[15], ==, 0xA5);
        }
      g_assert_false (smelt_convert ((SmeltDType) t, f32, (SmeltDType) t, out, 4, NULL));
    }

  g_free (f32);
  g_free (f16);
  g_free (bf16);
  g_free (out);
  g_free (tmp);
}

/* The public single-type converters dispatch to the same bits. */
static void
check_public_converters (void)
{
  gsize n;
  const float *mix = get_mix (&n);
  const guint16 *all = get_all16 ();
  guint16 *ref16 = g_new (guint16, n), *out16 = g_new (guint16, n);
  float *ref32 = g_new (float, 0x10000), *out32 = g_new (float, 0x10000);
  gsize ov;

  _smelt_convert_f32_to_bf16_at (SMELT_SIMD_PORTABLE, mix, ref16, n);
  smelt_convert_f32_to_bf16 (mix, out16, n);
  assert_same16 ("public f32->bf16", _smelt_simd_level (), mix, ref16, out16, n);

  ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, mix, ref16, n);
  g_assert_cmpuint (smelt_convert_f32_to_f16 (mix, out16, n), ==, ov);
  assert_same16 ("public f32->f16", _smelt_simd_level (), mix, ref16, out16, n);

  _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, all, ref32, 0x10000);
  smelt_convert_f16_to_f32 (all, out32, 0x10000);
  assert_same32 ("public f16->f32", _smelt_simd_level (), all, ref32, out32, 0x10000);

  _smelt_convert_bf16_to_f32_at (SMELT_SIMD_PORTABLE, all, ref32, 0x10000);
  smelt_convert_bf16_to_f32 (all, out32, 0x10000);
  assert_same32 ("public bf16->f32", _smelt_simd_level (), all, ref32, out32, 0x10000);

  g_free (ref16);
  g_free (out16);
  g_free (ref32);
  g_free (out32);
}

static void
test_find_non_finite (void)
{
  check_find_non_finite ();
}

static void
test_convert (void)
{
  check_convert_pairs ();
  check_public_converters ();
}

/* Runs in a child with $SMELT_SIMD set by test_dispatch(): the dispatched
 * level must be the request capped at what the CPU supports, and the
 * public functions (find_non_finite in particular, which has no _at entry
 * point) must be right at that level. */
static void
test_dispatch_subprocess (void)
{
  const char *want = g_getenv ("SMELT_SIMD");
  SmeltSimdLevel expected = best_level ();
  gboolean known = FALSE;

  g_assert_nonnull (want);
  for (guint l = 0; l < SMELT_SIMD_N_LEVELS; l++)
    if (g_strcmp0 (want, _smelt_simd_level_name ((SmeltSimdLevel) l)) == 0)
      {
        known = TRUE;
        while (l > 0 && !_smelt_simd_supported ((SmeltSimdLevel) l))
          l--;
        expected = MIN (expected, (SmeltSimdLevel) l);
      }
  if (!known)
    g_log_set_always_fatal (G_LOG_FATAL_MASK);  /* the warning is expected */

  g_assert_cmpint (_smelt_simd_level (), ==, expected);
  g_test_message ("SMELT_SIMD=%s dispatches to %s", want,
                  _smelt_simd_level_name (_smelt_simd_level ()));
  if (!known)
    return;

  check_find_non_finite ();
  check_public_converters ();
  check_convert_pairs ();
}

static void
test_dispatch (void)
{
  const char *requests[] = { "portable", "avx2", "avx512" };
  char *saved = g_strdup (g_getenv ("SMELT_SIMD"));

  for (guint i = 0; i < G_N_ELEMENTS (requests); i++)
    {
      g_setenv ("SMELT_SIMD", requests[i], TRUE);
      g_test_trap_subprocess ("/dtype/dispatch/subprocess", 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
      g_test_trap_assert_passed ();
    }

  g_setenv ("SMELT_SIMD", "sse9", TRUE);
  g_test_trap_subprocess ("/dtype/dispatch/subprocess", 0, 0);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*SMELT_SIMD=sse9*");

  if (saved != NULL)
    g_setenv ("SMELT_SIMD", saved, TRUE);
  else
    g_unsetenv ("SMELT_SIMD");
  g_free (saved);
}

/* With DAZ and FTZ set (as -ffast-math start-up code does), every level
 * still gives the same bits as the portable path does with them clear. */
static void
test_mxcsr (void)
{
#ifdef HAVE_MXCSR
  const guint16 *all = get_all16 ();
  gsize n;
  const float *sweep = get_sweep (&n);
  guint16 *ref16 = g_new (guint16, n), *out16 = g_new (guint16, n);
  float *ref32 = g_new (float, 0x10000), *out32 = g_new (float, 0x10000);
  gsize ref_ov;
  unsigned int csr = _mm_getcsr ();

  ref_ov = _smelt_convert_f32_to_f16_at (SMELT_SIMD_PORTABLE, sweep, ref16, n);
  _smelt_convert_f16_to_f32_at (SMELT_SIMD_PORTABLE, all, ref32, 0x10000);

  _mm_setcsr (csr | 0x8040);  /* FTZ | DAZ */
  for (guint l = 0; l < n_levels; l++)
    {
      gsize ov = _smelt_convert_f32_to_f16_at (levels[l], sweep, out16, n);

      _smelt_convert_f16_to_f32_at (levels[l], all, out32, 0x10000);
      _mm_setcsr (csr);  /* the assertions themselves run normally */
      g_assert_cmpuint (ov, ==, ref_ov);
      assert_same16 ("f32->f16 under DAZ/FTZ", levels[l], sweep, ref16, out16, n);
      assert_same32 ("f16->f32 under DAZ/FTZ", levels[l], all, ref32, out32, 0x10000);
      _mm_setcsr (csr | 0x8040);
    }
  _mm_setcsr (csr);
  compare_levels_narrow (sweep, n);  /* and the BF16 side, for good measure */

  g_free (ref16);
  g_free (out16);
  g_free (ref32);
  g_free (out32);
#else
  g_test_skip ("no MXCSR on this architecture");
#endif
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  init_levels ();

  g_test_add_func ("/dtype/strings", test_strings);
  g_test_add_func ("/dtype/levels", test_levels);
  g_test_add_func ("/dtype/widen/exhaustive", test_widen_exhaustive);
  g_test_add_func ("/dtype/round-trip", test_round_trip);
  g_test_add_func ("/dtype/narrow/sweep", test_narrow_sweep);
  g_test_add_func ("/dtype/narrow/random", test_narrow_random);
  g_test_add_func ("/dtype/tails", test_tails);
  g_test_add_func ("/dtype/overflow-count", test_overflow_count);
  g_test_add_func ("/dtype/find-non-finite", test_find_non_finite);
  g_test_add_func ("/dtype/convert", test_convert);
  g_test_add_func ("/dtype/mxcsr", test_mxcsr);
  g_test_add_func ("/dtype/dispatch", test_dispatch);
  g_test_add_func ("/dtype/dispatch/subprocess", test_dispatch_subprocess);

  return g_test_run ();
}
