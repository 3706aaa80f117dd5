/* smelt-bnb4.c: bitsandbytes 4-bit (NF4/FP4) blockwise quantization
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

/* The arithmetic of bitsandbytes' 4-bit weights, byte for byte as its
 * CUDA kernels (kQuantizeBlockwise, dQuantize, kDequantizeBlockwise)
 * compute them, which is what every `*-bnb-4bit` checkpoint on the Hub
 * holds:
 *
 * - blocks of @blocksize consecutive elements of the flattened weight,
 *   a float32 absmax each, elements scaled by the reciprocal of the absmax
 *   (multiplied, not divided) and mapped to 4-bit codes: NF4 by counting
 *   the thresholds (the float32 midpoints of the table) strictly below the
 *   value, FP4 by the kernel's decision tree; an all-zero block scales to
 *   NaN and gets code 0;
 * - two codes per byte, the even element in the high nibble;
 * - double quantization: the absmax values minus their mean, in blocks of
 *   256, coded to 8 bits on the signed dynamic map by the kernel's
 *   binary search.
 *
 * No FMA anywhere: the kernels multiply and add in separate float32
 * operations, and the core is built with -ffp-contract=off.
 */

typedef union {
  guint32 bits[16];
  float   f[16];
} Table16;

/* get_4bit_type("nf4") */
static const Table16 nf4_code = { .bits = {
  0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
  0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
} };

/* the kernel's FP4 table: codes 8…15 are the negatives, 8 being -0 */
static const Table16 fp4_code = { .bits = {
  0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
  0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
} };

/* the quant_map bitsandbytes stores for FP4: Python's `-0` is the
 * integer 0, so code 8 is +0 there (the table is informational) */
static const Table16 fp4_stored = { .bits = {
  0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
  0x00000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
} };

/* dQuantizeNF4's decision points: exactly the float32 midpoints of
 * adjacent NF4 values */
static const union { guint32 bits[15]; float f[15]; } nf4_threshold = { .bits = {
  0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff,
  0x3df64862, 0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da,
} };

/* create_dynamic_map(signed=True): indices 128…255; 127 is 0 and
 * 127 - k is the negative of 127 + k (so there is no -1.0) */
static const guint32 dynamic_positive[128] = {
  0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
  0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
  0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
  0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
  0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
  0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
  0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
  0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
  0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
  0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
  0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
  0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
  0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
  0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
  0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
  0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
};

static const float *
dynamic_map (void)
{
  static float map[256];
  static gsize done;

  if (g_once_init_enter (&done))
    {
      for (guint k = 0; k < 128; k++)
        memcpy (&map[128 + k], &dynamic_positive[k], 4);
      map[127] = 0.0f;
      for (guint k = 1; k <= 127; k++)
        map[127 - k] = -map[127 + k];
      g_once_init_leave (&done, 1);
    }
  return map;
}

/**
 * smelt_bnb4_type_to_string:
 * @type: a type
 *
 * Gets "nf4" or "fp4", as bitsandbytes spells them.
 *
 * Returns: "nf4" or "fp4", as bitsandbytes spells them
 */
const char *
smelt_bnb4_type_to_string (SmeltBnb4Type type)
{
  return type == SMELT_BNB4_FP4 ? "fp4" : "nf4";
}

/**
 * smelt_bnb4_type_from_string:
 * @name: "nf4" or "fp4" (any case)
 * @type: (out): the type
 *
 * Parses a bitsandbytes 4-bit type name, as `bnb_4bit_quant_type` spells
 * it.
 *
 * Returns: whether @name is a bitsandbytes 4-bit type
 */
gboolean
smelt_bnb4_type_from_string (const char    *name,
                             SmeltBnb4Type *type)
{
  if (name != NULL && g_ascii_strcasecmp (name, "nf4") == 0)
    *type = SMELT_BNB4_NF4;
  else if (name != NULL && g_ascii_strcasecmp (name, "fp4") == 0)
    *type = SMELT_BNB4_FP4;
  else
    return FALSE;
  return TRUE;
}

/**
 * smelt_bnb4_blocksize_is_valid:
 * @blocksize: a block size
 *
 * Tells whether bitsandbytes quantizes with @blocksize (a power of two from
 * 32 to 4096).
 *
 * Returns: whether bitsandbytes quantizes with @blocksize (a power of two
 *   from 32 to 4096)
 */
gboolean
smelt_bnb4_blocksize_is_valid (guint blocksize)
{
  return blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0;
}

/**
 * smelt_bnb4_get_code:
 * @type: a type
 *
 * Gets the 16 values the codes dequantize to (the kernels' tables).
 *
 * Returns: (array fixed-size=16): the 16 values the codes dequantize to
 *   (the kernels' tables)
 */
const float *
smelt_bnb4_get_code (SmeltBnb4Type type)
{
  return type == SMELT_BNB4_FP4 ? fp4_code.f : nf4_code.f;
}

/**
 * smelt_bnb4_get_quant_map:
 * @type: a type
 *
 * Gets the table bitsandbytes stores as `weight.quant_map`.
 *
 * Returns: (array fixed-size=16): the table bitsandbytes stores as
 *   `weight.quant_map`
 */
const float *
smelt_bnb4_get_quant_map (SmeltBnb4Type type)
{
  return type == SMELT_BNB4_FP4 ? fp4_stored.f : nf4_code.f;
}

/**
 * smelt_bnb4_get_nested_map:
 *
 * Gets the signed dynamic 8-bit map smelt quantizes absmax values with (and
 * stores as `nested_quant_map`).
 *
 * Returns: (array fixed-size=256): the signed dynamic 8-bit map smelt
 *   quantizes absmax values with (and stores as `nested_quant_map`)
 */
const float *
smelt_bnb4_get_nested_map (void)
{
  return dynamic_map ();
}

/* dQuantizeNF4: the number of thresholds below @s; NaN gives 0 */
static inline guint8
quantize_nf4 (float s)
{
  guint8 code = 0;

  for (guint i = 0; i < 15; i++)
    code += s > nf4_threshold.f[i];
  return code;
}

/* dQuantizeFP4's tree, with its constants (five are a few ulp away from
 * the true midpoints, and the checkpoints were made with these) */
static inline guint8
quantize_fp4 (float s)
{
  guint8 sign = s < 0.0f ? 8 : 0;
  float a = fabsf (s);
  guint8 code;

  if (a > 0.29166667f)
    code = a > 0.583333f ? (a > 0.8333333f ? 3 : 2) : (a > 0.4166667f ? 5 : 4);
  else
    code = a > 0.0859375f ? (a > 0.20833333f ? 7 : 6) : (a > 0.00260417f ? 1 : 0);
  return code + sign;
}

static inline guint8
quantize_one (SmeltBnb4Type type,
              float         s)
{
  return type == SMELT_BNB4_FP4 ? quantize_fp4 (s) : quantize_nf4 (s);
}

/* The kernel's FP4 constants, sorted: the tree of quantize_fp4() is a
 * search tree over them, so its leaf is a function of the rank of |s|
 * among them (how many lie below): rank 0…7 → code 0, 1, 6, 7, 4, 5, 2, 3,
 * the AVX2 path's lookup table. */
static const float fp4_sorted[7] = {
  0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f,
};

/* The absmax of a block as the bits of a float32: for non-negative floats
 * the bit patterns order as the values, so an unsigned integer max of
 * the magnitudes' bits is fmaxf's answer for finite values, and it is at
 * least F32_EXP_ALL_ONES exactly when some value is infinite or NaN. */
#define F32_ABS_BITS     0x7FFFFFFFu
#define F32_EXP_ALL_ONES 0x7F800000u

static inline float
bits_to_float (guint32 bits)
{
  float f;

  memcpy (&f, &bits, sizeof f);
  return f;
}

static guint32
absmax_bits_portable (const float *x,
                      gsize        len)
{
  guint32 m = 0;

  for (gsize i = 0; i < len; i++)
    {
      guint32 b;

      memcpy (&b, x + i, sizeof b);
      m = MAX (m, b & F32_ABS_BITS);
    }
  return m;
}

#ifdef HAVE_X86
__attribute__ ((target ("avx2"))) static guint32
absmax_bits_avx2 (const float *x,
                  gsize        len)
{
  const __m256i abs = _mm256_set1_epi32 ((int) F32_ABS_BITS);
  __m256i m = _mm256_setzero_si256 ();
  __m128i h;
  gsize i = 0;

  for (; i + 8 <= len; i += 8)
    m = _mm256_max_epu32 (m, _mm256_and_si256 (abs, _mm256_loadu_si256 ((const __m256i *) (x + i))));
  h = _mm_max_epu32 (_mm256_castsi256_si128 (m), _mm256_extracti128_si256 (m, 1));
  h = _mm_max_epu32 (h, _mm_shuffle_epi32 (h, _MM_SHUFFLE (1, 0, 3, 2)));
  h = _mm_max_epu32 (h, _mm_shuffle_epi32 (h, _MM_SHUFFLE (2, 3, 0, 1)));
  return MAX ((guint32) _mm_cvtsi128_si32 (h), absmax_bits_portable (x + i, len - i));
}

/* The thresholds (NF4) or sorted constants (FP4) as vectors, loaded once
 * per call: kept in a local array, the compiler knows the byte stores to
 * the output cannot change them. */
typedef struct {
  __m256 t[15];
  guint  n;
} Cuts;

__attribute__ ((target ("avx2"))) static void
load_cuts (SmeltBnb4Type  type,
           Cuts          *c)
{
  const float *src = type == SMELT_BNB4_NF4 ? nf4_threshold.f : fp4_sorted;

  c->n = type == SMELT_BNB4_NF4 ? 15 : 7;
  for (guint t = 0; t < c->n; t++)
    c->t[t] = _mm256_set1_ps (src[t]);
}

/* Eight lanes at a time, each lane's arithmetic the portable one: the
 * same float32 product, the same strict comparisons (false for NaN).
 * Writes the codes of the first len - len % 8 elements two per byte into
 * @packed and returns how many elements it did. */
__attribute__ ((target ("avx2"))) static gsize
quantize_block_avx2 (SmeltBnb4Type  type,
                     const Cuts    *c,
                     const float   *x,
                     gsize          len,
                     float          inv,
                     guint8        *packed)
{
  const __m256 vinv = _mm256_set1_ps (inv);
  const __m256 sign = _mm256_set1_ps (-0.0f);
  const __m256i lut = _mm256_setr_epi32 (0, 1, 6, 7, 4, 5, 2, 3);
  const __m256i eight = _mm256_set1_epi32 (8);
  const __m256i bytes = _mm256_setr_epi8 (0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  gsize i = 0;

  for (; i + 8 <= len; i += 8)
    {
      __m256 s = _mm256_mul_ps (_mm256_loadu_ps (x + i), vinv);
      __m256i acc = _mm256_setzero_si256 ();
      __m256i pairs;
      guint16 lo, hi;

      if (type == SMELT_BNB4_NF4)
        for (guint t = 0; t < 15; t++)
          acc = _mm256_sub_epi32 (acc, _mm256_castps_si256 (_mm256_cmp_ps (s, c->t[t], _CMP_GT_OQ)));
      else
        {
          __m256 a = _mm256_andnot_ps (sign, s);
          __m256i neg = _mm256_castps_si256 (_mm256_cmp_ps (s, _mm256_setzero_ps (), _CMP_LT_OQ));

          for (guint t = 0; t < 7; t++)
            acc = _mm256_sub_epi32 (acc, _mm256_castps_si256 (_mm256_cmp_ps (a, c->t[t], _CMP_GT_OQ)));
          acc = _mm256_permutevar8x32_epi32 (lut, acc);
          acc = _mm256_or_si256 (acc, _mm256_and_si256 (neg, eight));
        }
      /* each 64-bit lane holds an (even, odd) pair of codes: even << 4 | odd
       * in its low byte; gather those four bytes */
      pairs = _mm256_or_si256 (_mm256_slli_epi64 (acc, 4), _mm256_srli_epi64 (acc, 32));
      pairs = _mm256_shuffle_epi8 (pairs, bytes);
      lo = (guint16) _mm_extract_epi16 (_mm256_castsi256_si128 (pairs), 0);
      hi = (guint16) _mm_extract_epi16 (_mm256_extracti128_si256 (pairs, 1), 0);
      memcpy (packed + i / 2, &lo, 2);
      memcpy (packed + i / 2 + 2, &hi, 2);
    }
  return i;
}

#define TARGET_AVX512 \
  __attribute__ ((target ("avx512f,avx512bw,avx512vl,avx512dq,avx2")))

TARGET_AVX512 static guint32
absmax_bits_avx512 (const float *x,
                    gsize        len)
{
  const __m512i abs = _mm512_set1_epi32 ((int) F32_ABS_BITS);
  __m512i m = _mm512_setzero_si512 ();
  gsize i = 0;

  for (; i + 16 <= len; i += 16)
    m = _mm512_max_epu32 (m, _mm512_and_si512 (abs, _mm512_loadu_si512 (x + i)));
  return MAX ((guint32) _mm512_reduce_max_epu32 (m), absmax_bits_portable (x + i, len - i));
}

/* The sorted cut points one lane up, for a binary search by permutes:
 * lane k holds the k-th smallest (lane 0 is never read). NF4: its 15
 * thresholds; FP4: the 7 sorted constants of its tree. */
typedef struct {
  __m512 nf4;
  __m512 fp4;
} Search;

TARGET_AVX512 static void
load_search (Search *sr)
{
  float nf4[16] = { 0 }, fp4[16] = { 0 };

  for (guint k = 1; k < 16; k++)
    nf4[k] = nf4_threshold.f[k - 1];
  for (guint k = 1; k < 8; k++)
    fp4[k] = fp4_sorted[k - 1];
  sr->nf4 = _mm512_loadu_ps (nf4);
  sr->fp4 = _mm512_loadu_ps (fp4);
}

/* How many cut points lie strictly below each lane of @s: the count the
 * portable code makes by comparing with every one, found by a binary
 * search (each step adds its size when the cut at count + size is
 * below). NaN compares false everywhere and counts 0, as there. Written
 * out step by step: as a loop, the compiler kept the counter and reloaded
 * the table, twice the time. */
#define SEARCH_STEP(c, s, cuts, step) \
  G_STMT_START { \
    __m512i cand_ = _mm512_or_si512 ((c), _mm512_set1_epi32 (step)); \
    (c) = _mm512_mask_mov_epi32 ((c), \
                                 _mm512_cmp_ps_mask ((s), _mm512_permutexvar_ps (cand_, (cuts)), \
                                                     _CMP_GT_OQ), \
                                 cand_); \
  } G_STMT_END

TARGET_AVX512 static inline __m512i
nf4_codes (__m512 s,
           __m512 cuts)
{
  /* the first cut is the middle one, t[7] (lane 8) */
  __m512i c = _mm512_maskz_mov_epi32 (_mm512_cmp_ps_mask (s, _mm512_set1_ps (nf4_threshold.f[7]),
                                                          _CMP_GT_OQ),
                                      _mm512_set1_epi32 (8));

  SEARCH_STEP (c, s, cuts, 4);
  SEARCH_STEP (c, s, cuts, 2);
  SEARCH_STEP (c, s, cuts, 1);
  return c;
}

TARGET_AVX512 static inline __m512i
fp4_codes (__m512 s,
           __m512 cuts)
{
  const __m512i lut = _mm512_setr_epi32 (0, 1, 6, 7, 4, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 a = _mm512_abs_ps (s);
  __mmask16 neg = _mm512_cmp_ps_mask (s, _mm512_setzero_ps (), _CMP_LT_OQ);
  /* rank of |s| among the 7 sorted constants; the middle one is lane 4 */
  __m512i c = _mm512_maskz_mov_epi32 (_mm512_cmp_ps_mask (a, _mm512_set1_ps (fp4_sorted[3]),
                                                          _CMP_GT_OQ),
                                      _mm512_set1_epi32 (4));

  SEARCH_STEP (c, a, cuts, 2);
  SEARCH_STEP (c, a, cuts, 1);
  c = _mm512_permutexvar_epi32 (c, lut);
  return _mm512_mask_or_epi32 (c, neg, c, _mm512_set1_epi32 (8));
}

/* 16 codes, two per byte: each 64-bit lane holds an (even, odd) pair; its
 * low byte becomes even << 4 | odd, and the narrowing keeps that byte. */
TARGET_AVX512 static inline void
store_codes (__m512i  c,
             guint8  *packed)
{
  __m512i pairs = _mm512_or_si512 (_mm512_slli_epi64 (c, 4), _mm512_srli_epi64 (c, 32));

  _mm_storel_epi64 ((__m128i *) packed, _mm512_cvtepi64_epi8 (pairs));
}

/* Sixteen lanes at a time, as the portable code (same products, same
 * strict comparisons), 64 elements per step so that four independent
 * searches overlap; returns how many elements it did. */
TARGET_AVX512 static inline gsize
quantize_block_avx512 (SmeltBnb4Type  type,
                       const Search  *sr,
                       const float   *src,
                       gsize          len,
                       float          inv,
                       guint8        *packed)
{
  const __m512 vinv = _mm512_set1_ps (inv);
  gsize i = 0;

#define CODES(k) (type == SMELT_BNB4_NF4 \
                  ? nf4_codes (_mm512_mul_ps (_mm512_loadu_ps (src + i + 16 * (k)), vinv), sr->nf4) \
                  : fp4_codes (_mm512_mul_ps (_mm512_loadu_ps (src + i + 16 * (k)), vinv), sr->fp4))
  for (; i + 64 <= len; i += 64)
    {
      __m512i c0 = CODES (0), c1 = CODES (1), c2 = CODES (2), c3 = CODES (3);

      store_codes (c0, packed + i / 2);
      store_codes (c1, packed + i / 2 + 8);
      store_codes (c2, packed + i / 2 + 16);
      store_codes (c3, packed + i / 2 + 24);
    }
  for (; i + 16 <= len; i += 16)
    store_codes (CODES (0), packed + i / 2);
#undef CODES
  return i;
}

/* A float32 value rounded to @dtype and back (to nearest, ties to even),
 * as the conversions of smelt-dtype.c do for finite values: BF16 by
 * adding half an ulp of the kept bits plus the tie bit, F16 by the F16C
 * instructions. */
TARGET_AVX512 static inline __m512
round_avx512 (__m512     v,
              SmeltDType dtype)
{
  if (dtype == SMELT_DTYPE_BF16)
    {
      __m512i b = _mm512_castps_si512 (v);
      __m512i tie = _mm512_and_si512 (_mm512_srli_epi32 (b, 16), _mm512_set1_epi32 (1));

      b = _mm512_add_epi32 (b, _mm512_add_epi32 (tie, _mm512_set1_epi32 (0x7fff)));
      return _mm512_castsi512_ps (_mm512_and_si512 (b, _mm512_set1_epi32 ((int) 0xffff0000u)));
    }
  if (dtype == SMELT_DTYPE_F16)
    return _mm512_cvtph_ps (_mm512_cvtps_ph (v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return v;
}

/* Whole blocks (@blocksize a multiple of 16), rounded to @dtype and
 * quantized in one pass over the input, a group of blocks (about 2048
 * values, in the first-level cache) at a time: first each block is
 * rounded into a buffer while the largest input magnitude is found, then
 * the group's reciprocals, then the codes. Rounding is odd and monotonic,
 * so the rounded block's absmax is the rounded input absmax. Grouping
 * keeps each block's chain (reduce, divide, search) from stalling the
 * next one. Returns the first block holding a value that is not finite
 * (before or after rounding), or @n_blocks. */
#define GROUP_VALUES 2048

TARGET_AVX512 static gsize
quantize_rounded_avx512 (SmeltBnb4Type  type,
                         SmeltDType     dtype,
                         const float   *x,
                         gsize          n_blocks,
                         guint          blocksize,
                         guint8        *packed,
                         float         *absmax)
{
  float tmp[MAX (GROUP_VALUES, 4096)] __attribute__ ((aligned (64)));
  float inv[GROUP_VALUES / 16];
  const __m512i abs = _mm512_set1_epi32 ((int) F32_ABS_BITS);
  gsize group = MAX (GROUP_VALUES / blocksize, 1);
  Search sr;

  load_search (&sr);
  for (gsize g = 0; g < n_blocks; g += group)
    {
      gsize k_end = MIN (group, n_blocks - g);

      for (gsize k = 0; k < k_end; k++)
        {
          const float *src = x + (g + k) * blocksize;
          float *dst = tmp + k * blocksize;
          __m512i m = _mm512_setzero_si512 ();
          guint32 bits;
          float a;

          for (guint i = 0; i < blocksize; i += 16)
            {
              __m512 v = _mm512_loadu_ps (src + i);

              m = _mm512_max_epu32 (m, _mm512_and_si512 (_mm512_castps_si512 (v), abs));
              _mm512_store_ps (dst + i, round_avx512 (v, dtype));
            }
          bits = (guint32) _mm512_reduce_max_epu32 (m);
          if (bits >= F32_EXP_ALL_ONES)
            return g + k;
          a = _mm512_cvtss_f32 (round_avx512 (_mm512_set1_ps (bits_to_float (bits)), dtype));
          if (!isfinite (a))
            return g + k;
          absmax[g + k] = a;
        }
      for (gsize k = 0; k < k_end; k += 16)
        {
          /* the last vector may hold fewer blocks: read no further */
          __mmask16 live = (__mmask16) (k_end - k >= 16 ? 0xffff : (1u << (k_end - k)) - 1);

          _mm512_mask_storeu_ps (inv + k, live,
                                 _mm512_div_ps (_mm512_set1_ps (1.0f),
                                                _mm512_maskz_loadu_ps (live, absmax + g + k)));
        }
      for (gsize k = 0; k < k_end; k++)
        quantize_block_avx512 (type, &sr, tmp + k * blocksize, blocksize, inv[k],
                               packed + (g + k) * blocksize / 2);
    }
  return n_blocks;
}
#endif

/* The elements of a block the SIMD lanes left over (and every element on
 * the portable path). */
static void
quantize_tail (SmeltBnb4Type  type,
               const float   *x,
               gsize          from,
               gsize          len,
               float          inv,
               guint8        *packed)
{
  for (gsize i = from; i < len; i += 2)
    {
      guint8 hi = quantize_one (type, x[i] * inv);
      /* an odd tail pads with a 0.0 of this block */
      guint8 lo = quantize_one (type, i + 1 < len ? x[i + 1] * inv : 0.0f * inv);

      packed[i / 2] = (guint8) (hi << 4 | lo);
    }
}

static gboolean
use_avx2 (SmeltSimdLevel level)
{
#ifdef HAVE_X86
  return level >= SMELT_SIMD_AVX2 && _smelt_simd_supported (SMELT_SIMD_AVX2);
#else
  return FALSE;
#endif
}

static gboolean
use_avx512 (SmeltSimdLevel level)
{
#ifdef HAVE_X86
  return level >= SMELT_SIMD_AVX512 && _smelt_simd_supported (SMELT_SIMD_AVX512);
#else
  return FALSE;
#endif
}

static guint32
absmax_bits_at (SmeltSimdLevel  level,
                const float    *x,
                gsize           len)
{
#ifdef HAVE_X86
  if (use_avx512 (level))
    return absmax_bits_avx512 (x, len);
  if (use_avx2 (level))
    return absmax_bits_avx2 (x, len);
#endif
  return absmax_bits_portable (x, len);
}

/* absmax of each block of @x; the values must be finite */
void
_smelt_bnb4_absmax_at (SmeltSimdLevel  level,
                       const float    *x,
                       gsize           n,
                       guint           blocksize,
                       float          *absmax)
{
  for (gsize b = 0; b * blocksize < n; b++)
    {
      gsize len = MIN ((gsize) blocksize, n - b * blocksize);

      absmax[b] = bits_to_float (absmax_bits_at (level, x + b * blocksize, len));
    }
}

/* Every block of @x: absmax, then the codes. Stops at the first block
 * holding an infinity or a NaN and returns FALSE. */
static gboolean
quantize_blocks (SmeltSimdLevel  level,
                 SmeltBnb4Type   type,
                 const float    *x,
                 gsize           n,
                 guint           blocksize,
                 guint8         *packed,
                 float          *absmax)
{
#ifdef HAVE_X86
  gboolean avx512 = use_avx512 (level);
  gboolean avx2 = !avx512 && use_avx2 (level);
  Search sr;
  Cuts cuts;

  if (avx512)
    load_search (&sr);
  else if (avx2)
    load_cuts (type, &cuts);
#endif

  g_return_val_if_fail (blocksize % 2 == 0, FALSE);

  for (gsize b = 0; b * blocksize < n; b++)
    {
      gsize start = b * blocksize;
      gsize len = MIN ((gsize) blocksize, n - start);
      guint32 bits = absmax_bits_at (level, x + start, len);
      float inv;
      gsize done = 0;

      if (bits >= F32_EXP_ALL_ONES)
        return FALSE;
      absmax[b] = bits_to_float (bits);
      inv = 1.0f / absmax[b];
#ifdef HAVE_X86
      if (avx512)
        done = quantize_block_avx512 (type, &sr, x + start, len, inv, packed + start / 2);
      else if (avx2)
        done = quantize_block_avx2 (type, &cuts, x + start, len, inv, packed + start / 2);
#endif
      quantize_tail (type, x + start, done, len, inv, packed + start / 2);
    }
  return TRUE;
}

void
_smelt_bnb4_quantize_at (SmeltSimdLevel  level,
                         SmeltBnb4Type   type,
                         const float    *x,
                         gsize           n,
                         guint           blocksize,
                         guint8         *packed,
                         float          *absmax)
{
  quantize_blocks (level, type, x, n, blocksize, packed, absmax);
}

/* Rounds @n values to @dtype and back, in place of a copy. */
static void
round_values (SmeltSimdLevel  level,
              SmeltDType      dtype,
              const float    *x,
              guint16        *half,
              float          *out,
              gsize           n)
{
  if (dtype == SMELT_DTYPE_BF16)
    {
      _smelt_convert_f32_to_bf16_at (level, x, half, n);
      _smelt_convert_bf16_to_f32_at (level, half, out, n);
    }
  else
    {
      _smelt_convert_f32_to_f16_at (level, x, half, n);
      _smelt_convert_f16_to_f32_at (level, half, out, n);
    }
}

static gsize
first_non_finite (const float *x,
                  gsize        n)
{
  for (gsize i = 0; i < n; i++)
    if (!isfinite (x[i]))
      return i;
  return n;
}

/* Elements rounded and quantized per step: a whole number of blocks that
 * stays in the first-level cache. */
#define ROUND_CHUNK 4096

gssize
_smelt_bnb4_quantize_as_at (SmeltSimdLevel  level,
                            SmeltBnb4Type   type,
                            SmeltDType      dtype,
                            const float    *x,
                            gsize           n,
                            guint           blocksize,
                            guint8         *packed,
                            float          *absmax)
{
  gsize chunk = MAX (ROUND_CHUNK / blocksize, 1) * blocksize;
  gboolean round = dtype == SMELT_DTYPE_BF16 || dtype == SMELT_DTYPE_F16;
  g_autofree float *tmp = round ? g_new (float, MIN (chunk, n) + 1) : NULL;
  g_autofree guint16 *half = round ? g_new (guint16, MIN (chunk, n) + 1) : NULL;
  gsize start0 = 0, base = 0;

#ifdef HAVE_X86
  if (use_avx512 (level) && blocksize % 16 == 0 && blocksize <= 4096)
    {
      gsize full = n / blocksize;
      gsize done = quantize_rounded_avx512 (type, dtype, x, full, blocksize, packed, absmax);

      /* a bad block: the chunks below find the value again and say which */
      start0 = done * blocksize;
      if (done == full)
        {
          x += start0, packed += start0 / 2, absmax += done, n -= start0;
          base = start0;
          start0 = 0;
        }
    }
#endif
  for (gsize start = start0; start < n; start += chunk)
    {
      gsize m = MIN (chunk, n - start);
      const float *v = x + start;

      if (round)
        {
          round_values (level, dtype, v, half, tmp, m);
          v = tmp;
        }
      if (!quantize_blocks (level, type, v, m, blocksize, packed + start / 2, absmax + start / blocksize))
        return (gssize) (base + start + first_non_finite (v, m));
    }
  return -1;
}

/**
 * smelt_bnb4_quantize:
 * @type: NF4 or FP4
 * @x: (array length=n): the values, in the weight's row-major order
 * @n: how many; the first is at a block boundary
 * @blocksize: elements per block (see smelt_bnb4_blocksize_is_valid())
 * @packed: (type gpointer) (not nullable): room for (@n + 1) / 2 bytes of codes
 * @absmax: (type gpointer) (not nullable): room for ⌈@n / @blocksize⌉ float32 absmax values
 *
 * Quantizes @n finite values as bitsandbytes' kQuantizeBlockwise does.
 * When @n is odd the last byte's low nibble codes a 0.0 of the last block.
 */
void
smelt_bnb4_quantize (SmeltBnb4Type  type,
                     const float   *x,
                     gsize          n,
                     guint          blocksize,
                     guint8        *packed,
                     float         *absmax)
{
  _smelt_bnb4_quantize_at (_smelt_simd_level (), type, x, n, blocksize, packed, absmax);
}

/**
 * smelt_bnb4_quantize_as:
 * @type: NF4 or FP4
 * @dtype: the weight's 16-bit type (%SMELT_DTYPE_BF16 or %SMELT_DTYPE_F16),
 *   or %SMELT_DTYPE_F32 to quantize @x as it is
 * @x: (array length=n): float32 values, in the weight's row-major order
 * @n: how many; the first is at a block boundary
 * @blocksize: elements per block
 * @packed: (type gpointer) (not nullable): room for (@n + 1) / 2 bytes of codes
 * @absmax: (type gpointer) (not nullable): room for ⌈@n / @blocksize⌉ float32 absmax values
 *
 * Quantizes the values bitsandbytes sees when it quantizes a weight
 * stored as @dtype: each value rounded to @dtype (to nearest, ties to
 * even) first, as smelt_bnb4_quantize() of those rounded values, without
 * an intermediate copy of the weight.
 *
 * Returns: -1, or the index of the first value that is not finite once
 *   rounded (a NaN or infinity, or a value too large for @dtype); the
 *   outputs are then incomplete
 */
gssize
smelt_bnb4_quantize_as (SmeltBnb4Type  type,
                        SmeltDType     dtype,
                        const float   *x,
                        gsize          n,
                        guint          blocksize,
                        guint8        *packed,
                        float         *absmax)
{
  return _smelt_bnb4_quantize_as_at (_smelt_simd_level (), type, dtype, x, n, blocksize,
                                     packed, absmax);
}

/**
 * smelt_bnb4_absmax:
 * @x: (array length=n): finite values, the first at a block boundary
 * @n: how many
 * @blocksize: elements per block
 * @absmax: (type gpointer) (not nullable): room for ⌈@n / @blocksize⌉ float32 values
 *
 * The blocks' absmax values alone, as smelt_bnb4_quantize() computes them.
 */
void
smelt_bnb4_absmax (const float *x,
                   gsize        n,
                   guint        blocksize,
                   float       *absmax)
{
  _smelt_bnb4_absmax_at (_smelt_simd_level (), x, n, blocksize, absmax);
}

/**
 * smelt_bnb4_nested_offset:
 * @absmax: (array length=n_blocks): absmax values
 * @n_blocks: how many
 *
 * The offset double quantization subtracts: the mean of @absmax, summed
 * in order in double precision and rounded to float32 (bitsandbytes takes
 * torch's mean, whose last bit depends on the reduction; any offset is
 * valid as long as the one written is the one the codes used).
 *
 * Returns: the offset
 */
float
smelt_bnb4_nested_offset (const float *absmax,
                          gsize        n_blocks)
{
  double sum = 0.0;

  if (n_blocks == 0)
    return 0.0f;
  for (gsize i = 0; i < n_blocks; i++)
    sum += absmax[i];
  return (float) (sum / (double) n_blocks);
}

/* dQuantize<0>: the kernel's fixed binary search over the sorted map,
 * then a midpoint test; exact midpoints resolve to the pivot, NaN to 0 */
static guint8
quantize_dynamic (const float *code,
                  float        x)
{
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f, val = code[pivot];

  /* the kernel's steps, written as selects rather than branches: the
   * comparisons are unpredictable, and this runs once per 4-bit block */
  for (int i = 64; i > 0; i >>= 1)
    {
      gboolean gt = x > val;

      lower_pivot = gt ? pivot : lower_pivot;
      lower = gt ? val : lower;
      upper_pivot = gt ? upper_pivot : pivot;
      upper = gt ? upper : val;
      pivot += gt ? i : -i;
      val = code[pivot];
    }
  if (upper_pivot == 255)
    upper = code[255];
  if (lower_pivot == 0)
    lower = code[0];
  if (x > val)
    return (guint8) (x > (upper + val) * 0.5f ? upper_pivot : pivot);
  return (guint8) (x < (lower + val) * 0.5f ? lower_pivot : pivot);
}

#ifdef HAVE_X86
/* Eight searches at once: the same steps, float comparisons and midpoint
 * arithmetic in every lane, the table read by gathers. */
__attribute__ ((target ("avx2"))) static void
quantize_dynamic_x8 (const float *code,
                     const float *x8,
                     guint8      *out)
{
  const __m256 x = _mm256_loadu_ps (x8);
  const __m256 half = _mm256_set1_ps (0.5f);
  __m256i pivot = _mm256_set1_epi32 (127);
  __m256i upper_pivot = _mm256_set1_epi32 (255);
  __m256i lower_pivot = _mm256_setzero_si256 ();
  __m256 lower = _mm256_set1_ps (-1.0f), upper = _mm256_set1_ps (1.0f);
  __m256 val = _mm256_i32gather_ps (code, pivot, 4);
  __m256 gt, mid;
  __m256i gti, res, up, down;
  guint32 lanes[8];

  for (int i = 64; i > 0; i >>= 1)
    {
      __m256i step = _mm256_set1_epi32 (i);

      gt = _mm256_cmp_ps (x, val, _CMP_GT_OQ);
      gti = _mm256_castps_si256 (gt);
      lower_pivot = _mm256_blendv_epi8 (lower_pivot, pivot, gti);
      lower = _mm256_blendv_ps (lower, val, gt);
      upper_pivot = _mm256_blendv_epi8 (pivot, upper_pivot, gti);
      upper = _mm256_blendv_ps (val, upper, gt);
      pivot = _mm256_blendv_epi8 (_mm256_sub_epi32 (pivot, step), _mm256_add_epi32 (pivot, step), gti);
      val = _mm256_i32gather_ps (code, pivot, 4);
    }
  upper = _mm256_blendv_ps (upper, _mm256_set1_ps (code[255]),
                            _mm256_castsi256_ps (_mm256_cmpeq_epi32 (upper_pivot, _mm256_set1_epi32 (255))));
  lower = _mm256_blendv_ps (lower, _mm256_set1_ps (code[0]),
                            _mm256_castsi256_ps (_mm256_cmpeq_epi32 (lower_pivot, _mm256_setzero_si256 ())));
  gt = _mm256_cmp_ps (x, val, _CMP_GT_OQ);
  mid = _mm256_mul_ps (_mm256_add_ps (upper, val), half);
  up = _mm256_blendv_epi8 (pivot, upper_pivot, _mm256_castps_si256 (_mm256_cmp_ps (x, mid, _CMP_GT_OQ)));
  mid = _mm256_mul_ps (_mm256_add_ps (lower, val), half);
  down = _mm256_blendv_epi8 (pivot, lower_pivot, _mm256_castps_si256 (_mm256_cmp_ps (x, mid, _CMP_LT_OQ)));
  res = _mm256_blendv_epi8 (down, up, _mm256_castps_si256 (gt));
  _mm256_storeu_si256 ((__m256i *) lanes, res);
  for (guint k = 0; k < 8; k++)
    out[k] = (guint8) lanes[k];
}
#endif

#ifdef HAVE_X86
/* The values dQuantize's search can read at each step: after k steps the
 * pivot is 127 − (128 − 128/2^k) + idx·256/2^k, where idx's k bits are
 * the comparisons so far (first one highest). Tables of 2^k values are
 * read by permutes from registers: this CPU family's gathers are far
 * slower (and cost this search 29 cycles a value). */
typedef struct {
  float t[8][128];
} StepTables;

static guint
step_pivot (guint k,
            guint idx)
{
  return 127 - (128 - (128 >> k)) + idx * (256 >> k);
}

static const StepTables *
step_tables (void)
{
  static StepTables st;
  static gsize done;

  if (g_once_init_enter (&done))
    {
      const float *code = dynamic_map ();

      for (guint k = 1; k <= 7; k++)
        for (guint idx = 0; idx < (1u << k); idx++)
          st.t[k][idx] = code[step_pivot (k, idx)];
      g_once_init_leave (&done, 1);
    }
  return &st;
}

/* t[idx] for a table of 2^k values, idx < 2^k in every lane. */
TARGET_AVX512 static inline __m512
step_lookup (const float *t,
             guint        k,
             __m512i      idx)
{
  __m512 a, b, c, d;
  __mmask16 hi;

  if (k <= 4)
    return _mm512_permutexvar_ps (idx, _mm512_loadu_ps (t));
  a = _mm512_permutex2var_ps (_mm512_loadu_ps (t), idx, _mm512_loadu_ps (t + 16));
  if (k == 5)
    return a;
  b = _mm512_permutex2var_ps (_mm512_loadu_ps (t + 32), idx, _mm512_loadu_ps (t + 48));
  hi = _mm512_test_epi32_mask (idx, _mm512_set1_epi32 (32));
  a = _mm512_mask_mov_ps (a, hi, b);
  if (k == 6)
    return a;
  c = _mm512_permutex2var_ps (_mm512_loadu_ps (t + 64), idx, _mm512_loadu_ps (t + 80));
  d = _mm512_permutex2var_ps (_mm512_loadu_ps (t + 96), idx, _mm512_loadu_ps (t + 112));
  c = _mm512_mask_mov_ps (c, hi, d);
  return _mm512_mask_mov_ps (a, _mm512_test_epi32_mask (idx, _mm512_set1_epi32 (64)), c);
}

/* Sixty-four searches, four vectors of sixteen side by side (one
 * search's steps depend on each other): quantize_dynamic()'s steps,
 * comparisons and midpoint arithmetic in every lane, each step's value
 * read from its table. */
TARGET_AVX512 static void
quantize_dynamic_x64 (const StepTables *st,
                      const float      *code,
                      const float      *x64,
                      guint8           *out)
{
  const __m512 half = _mm512_set1_ps (0.5f);
  __m512 x[4], val[4], lower[4], upper[4];
  __m512i pivot[4], lower_pivot[4], upper_pivot[4], idx[4];

#pragma GCC unroll 4
  for (guint v = 0; v < 4; v++)
    {
      x[v] = _mm512_loadu_ps (x64 + 16 * v);
      val[v] = _mm512_set1_ps (code[127]);
      lower[v] = _mm512_set1_ps (-1.0f);
      upper[v] = _mm512_set1_ps (1.0f);
      pivot[v] = _mm512_set1_epi32 (127);
      lower_pivot[v] = _mm512_setzero_si512 ();
      upper_pivot[v] = _mm512_set1_epi32 (255);
      idx[v] = _mm512_setzero_si512 ();
    }
#pragma GCC unroll 7
  for (guint k = 1; k <= 7; k++)
    {
#pragma GCC unroll 4
      for (guint v = 0; v < 4; v++)
        {
          __mmask16 gt = _mm512_cmp_ps_mask (x[v], val[v], _CMP_GT_OQ);

          lower_pivot[v] = _mm512_mask_mov_epi32 (lower_pivot[v], gt, pivot[v]);
          lower[v] = _mm512_mask_mov_ps (lower[v], gt, val[v]);
          upper_pivot[v] = _mm512_mask_mov_epi32 (pivot[v], gt, upper_pivot[v]);
          upper[v] = _mm512_mask_mov_ps (val[v], gt, upper[v]);
          idx[v] = _mm512_slli_epi32 (idx[v], 1);
          idx[v] = _mm512_mask_add_epi32 (idx[v], gt, idx[v], _mm512_set1_epi32 (1));
          pivot[v] = _mm512_add_epi32 (_mm512_set1_epi32 ((int) step_pivot (k, 0)),
                                       _mm512_slli_epi32 (idx[v], (int) (8 - k)));
          val[v] = step_lookup (st->t[k], k, idx[v]);
        }
    }
#pragma GCC unroll 4
  for (guint v = 0; v < 4; v++)
    {
      __mmask16 top = _mm512_cmpeq_epi32_mask (upper_pivot[v], _mm512_set1_epi32 (255));
      __mmask16 bottom = _mm512_cmpeq_epi32_mask (lower_pivot[v], _mm512_setzero_si512 ());
      __m512 up_v = _mm512_mask_mov_ps (upper[v], top, _mm512_set1_ps (code[255]));
      __m512 low_v = _mm512_mask_mov_ps (lower[v], bottom, _mm512_set1_ps (code[0]));
      __mmask16 gt = _mm512_cmp_ps_mask (x[v], val[v], _CMP_GT_OQ);
      __mmask16 above = _mm512_cmp_ps_mask (x[v], _mm512_mul_ps (_mm512_add_ps (up_v, val[v]), half),
                                            _CMP_GT_OQ);
      __mmask16 below = _mm512_cmp_ps_mask (x[v], _mm512_mul_ps (_mm512_add_ps (low_v, val[v]), half),
                                            _CMP_LT_OQ);
      __m512i up = _mm512_mask_mov_epi32 (pivot[v], above, upper_pivot[v]);
      __m512i down = _mm512_mask_mov_epi32 (pivot[v], below, lower_pivot[v]);

      _mm_storeu_si128 ((__m128i *) (out + 16 * v),
                        _mm512_cvtepi32_epi8 (_mm512_mask_mov_epi32 (down, gt, up)));
    }
}
#endif

#ifdef HAVE_X86
/* max |absmax − offset| over the whole vectors of a 256-block (the order
 * of a max does not matter); returns how many values it took. */
TARGET_AVX512 static gsize
nested_amax_avx512 (const float *absmax,
                    gsize        len,
                    float        offset,
                    float       *amax)
{
  const __m512 off = _mm512_set1_ps (offset);
  __m512 m = _mm512_setzero_ps ();
  gsize i = 0;

  for (; i + 16 <= len; i += 16)
    m = _mm512_max_ps (m, _mm512_abs_ps (_mm512_sub_ps (_mm512_loadu_ps (absmax + i), off)));
  *amax = _mm512_reduce_max_ps (m);
  return i;
}

/* (absmax − offset) × inv, the same two float32 operations per value. */
TARGET_AVX512 static gsize
scale_nested_avx512 (const float *absmax,
                     gsize        len,
                     float        offset,
                     float        inv,
                     float       *scaled)
{
  const __m512 off = _mm512_set1_ps (offset), vinv = _mm512_set1_ps (inv);
  gsize i = 0;

  for (; i + 16 <= len; i += 16)
    _mm512_storeu_ps (scaled + i, _mm512_mul_ps (_mm512_sub_ps (_mm512_loadu_ps (absmax + i), off), vinv));
  return i;
}
#endif

/* The nested codes of one 256-block: the scaled values, then the search. */
static void
quantize_nested_block (SmeltSimdLevel  level,
                       const float    *map,
                       const float    *absmax,
                       gsize           len,
                       float           offset,
                       float           inv,
                       guint8         *codes)
{
  float scaled[SMELT_BNB4_NESTED_BLOCKSIZE];
  gsize i = 0, k = 0;

#ifdef HAVE_X86
  if (use_avx512 (level))
    k = scale_nested_avx512 (absmax, len, offset, inv, scaled);
#endif
  for (; k < len; k++)
    scaled[k] = (absmax[k] - offset) * inv;
#ifdef HAVE_X86
  if (use_avx512 (level))
    for (const StepTables *st = step_tables (); i + 64 <= len; i += 64)
      quantize_dynamic_x64 (st, map, scaled + i, codes + i);
  if (use_avx2 (level))
    for (; i + 8 <= len; i += 8)
      quantize_dynamic_x8 (map, scaled + i, codes + i);
#endif
  for (; i < len; i++)
    codes[i] = quantize_dynamic (map, scaled[i]);
}

void
_smelt_bnb4_quantize_nested_at (SmeltSimdLevel  level,
                                const float    *absmax,
                                gsize           n_blocks,
                                float           offset,
                                guint8         *codes,
                                float          *nested_absmax)
{
  const float *map = dynamic_map ();

  for (gsize b = 0; b * SMELT_BNB4_NESTED_BLOCKSIZE < n_blocks; b++)
    {
      gsize start = b * SMELT_BNB4_NESTED_BLOCKSIZE;
      gsize len = MIN ((gsize) SMELT_BNB4_NESTED_BLOCKSIZE, n_blocks - start);
      float amax = 0.0f;
      gsize i = 0;

#ifdef HAVE_X86
      if (use_avx512 (level))
        i = nested_amax_avx512 (absmax + start, len, offset, &amax);
#endif
      /* the differences are finite: a plain max is fmaxf's */
      for (; i < len; i++)
        {
          float d = fabsf (absmax[start + i] - offset);

          amax = d > amax ? d : amax;
        }
      nested_absmax[b] = amax;
      quantize_nested_block (level, map, absmax + start, len, offset, 1.0f / amax, codes + start);
    }
}

/**
 * smelt_bnb4_quantize_nested:
 * @absmax: (array length=n_blocks): the 4-bit blocks' absmax values
 * @n_blocks: how many
 * @offset: from smelt_bnb4_nested_offset()
 * @codes: (type gpointer) (not nullable): room for @n_blocks 8-bit codes
 * @nested_absmax: (type gpointer) (not nullable): room for ⌈@n_blocks / 256⌉ float32 values
 *
 * Double quantization, as bitsandbytes' compress_statistics: @absmax −
 * @offset in blocks of 256, each scaled by the reciprocal of its absmax
 * and coded on the signed dynamic map.
 */
void
smelt_bnb4_quantize_nested (const float *absmax,
                            gsize        n_blocks,
                            float        offset,
                            guint8      *codes,
                            float       *nested_absmax)
{
  _smelt_bnb4_quantize_nested_at (_smelt_simd_level (), absmax, n_blocks, offset, codes, nested_absmax);
}

/**
 * smelt_bnb4_dequantize_nested:
 * @codes: (array length=n_blocks): 8-bit absmax codes
 * @n_blocks: how many
 * @nested_absmax: (type gpointer) (not nullable): the per-256-block scales
 * @nested_map: (array fixed-size=256): the stored `nested_quant_map`
 * @offset: the stored `nested_offset`
 * @absmax: (type gpointer) (not nullable): room for @n_blocks float32 absmax values
 *
 * The absmax values bitsandbytes decodes: map × scale, then + offset, as
 * two float32 operations.
 */
void
smelt_bnb4_dequantize_nested (const guint8 *codes,
                              gsize         n_blocks,
                              const float  *nested_absmax,
                              const float  *nested_map,
                              float         offset,
                              float        *absmax)
{
  for (gsize i = 0; i < n_blocks; i++)
    {
      float v = nested_map[codes[i]] * nested_absmax[i / SMELT_BNB4_NESTED_BLOCKSIZE];

      absmax[i] = v + offset;
    }
}

#ifdef HAVE_X86
/* Sixteen values at a time from eight bytes: each 64-bit lane takes one
 * byte, and its two 32-bit halves become the high and the low nibble, in
 * element order; the same float32 product as the scalar loop. */
TARGET_AVX512 static gsize
dequantize_run_avx512 (const float  *code,
                       const guint8 *packed,
                       float         a,
                       gsize         len,
                       float        *out)
{
  const __m512 table = _mm512_loadu_ps (code);
  const __m512 scale = _mm512_set1_ps (a);
  const __m512i low = _mm512_set1_epi64 (0x0f);
  gsize i = 0;

  for (; i + 16 <= len; i += 16)
    {
      __m512i bytes = _mm512_cvtepu8_epi64 (_mm_loadl_epi64 ((const __m128i *) (packed + i / 2)));
      __m512i idx = _mm512_or_si512 (_mm512_srli_epi64 (bytes, 4),
                                     _mm512_slli_epi64 (_mm512_and_si512 (bytes, low), 32));

      _mm512_storeu_ps (out + i, _mm512_mul_ps (_mm512_permutexvar_ps (idx, table), scale));
    }
  return i;
}
#endif

/**
 * smelt_bnb4_dequantize:
 * @type: NF4 or FP4
 * @packed: (type gpointer) (not nullable): the whole weight's codes
 * @absmax: (type gpointer) (not nullable): the whole weight's absmax values
 * @first: the first element to decode
 * @n: how many
 * @blocksize: elements per block
 * @out: (type gpointer) (not nullable): room for @n float32 values
 *
 * Decodes elements [@first, @first + @n) as kDequantizeBlockwise does:
 * table value × absmax, in float32.
 */
void
smelt_bnb4_dequantize (SmeltBnb4Type  type,
                       const guint8  *packed,
                       const float   *absmax,
                       gsize          first,
                       gsize          n,
                       guint          blocksize,
                       float         *out)
{
  const float *code = smelt_bnb4_get_code (type);
  gsize j = first, end = first + n;
#ifdef HAVE_X86
  gboolean avx512 = use_avx512 (_smelt_simd_level ());
#endif

  /* block by block, without a division per element: this runs over
   * every weight of the model for the quality report */
  while (j < end)
    {
      gsize block_end = MIN ((j / blocksize + 1) * blocksize, end);
      float a = absmax[j / blocksize];

      if (j % 2 == 1)
        {
          *out++ = code[packed[j / 2] & 0x0f] * a;
          j++;
        }
#ifdef HAVE_X86
      if (avx512)
        {
          gsize done = dequantize_run_avx512 (code, packed + j / 2, a, block_end - j, out);

          j += done;
          out += done;
        }
#endif
      for (; j + 1 < block_end; j += 2)
        {
          guint8 byte = packed[j / 2];

          *out++ = code[byte >> 4] * a;
          *out++ = code[byte & 0x0f] * a;
        }
      if (j < block_end)
        {
          *out++ = code[packed[j / 2] >> 4] * a;
          j++;
        }
    }
}

/**
 * smelt_bnb4_format_python_float:
 * @value: a number
 *
 * Formats @value as Python's repr() does (the shortest digits that read
 * back as @value; exponent form below 1e-4 and from 1e16), which is how
 * json.dumps writes `nested_offset` in the quant-state blob.
 *
 * Returns: (transfer full): the text
 */
char *
smelt_bnb4_format_python_float (double value)
{
  GString *s = g_string_new (NULL);

  _smelt_append_python_float (s, value);
  return g_string_free (s, FALSE);
}
