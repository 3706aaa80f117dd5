/* smelt-ggml-dequant.c: ggml block types back to float32
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/* Each decoder gives the floats ggml's reference to_float routines give
 * (dequantize_row_* in ggml-quants.c): the same integer unpacking, the
 * same float products in the same order, no contraction (the project
 * builds with -ffp-contract=off, and ggml's generic routines have no
 * fused operations either). tests/gguf/test_gguf_decode.py compares them
 * bit for bit with ggml's. The quality report (gguf-quant) measures
 * errors with them, so they must be what llama.cpp computes with. */

static inline float
half (const guint8 *p)
{
  guint16 h = (guint16) (p[0] | (p[1] << 8));
  float f;

  smelt_convert_f16_to_f32 (&h, &f, 1);
  return f;
}

/* Q4_0: fp16 d, 16 bytes of nibbles (low nibbles first half, high
 * nibbles second half), value (q − 8)·d */
static void
decode_q4_0 (const guint8 *b,
             float        *y)
{
  float d = half (b);

  for (int j = 0; j < 16; j++)
    {
      y[j] = (float) ((b[2 + j] & 0x0f) - 8) * d;
      y[j + 16] = (float) ((b[2 + j] >> 4) - 8) * d;
    }
}

/* Q4_1: fp16 d and m, nibbles; q·d + m */
static void
decode_q4_1 (const guint8 *b,
             float        *y)
{
  float d = half (b), m = half (b + 2);

  for (int j = 0; j < 16; j++)
    {
      y[j] = (float) (b[4 + j] & 0x0f) * d + m;
      y[j + 16] = (float) (b[4 + j] >> 4) * d + m;
    }
}

/* The fifth bits of Q5_0/Q5_1: bit j of the little-endian u32 for
 * element j. */
static inline guint32
load_u32 (const guint8 *p)
{
  return (guint32) p[0] | ((guint32) p[1] << 8) | ((guint32) p[2] << 16) | ((guint32) p[3] << 24);
}

/* Q5_0: fp16 d, u32 high bits, nibbles; (q − 16)·d */
static void
decode_q5_0 (const guint8 *b,
             float        *y)
{
  float d = half (b);
  guint32 qh = load_u32 (b + 2);

  for (int j = 0; j < 16; j++)
    {
      int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;

      y[j] = (float) (((b[6 + j] & 0x0f) | (h0 << 4)) - 16) * d;
      y[j + 16] = (float) (((b[6 + j] >> 4) | (h1 << 4)) - 16) * d;
    }
}

/* Q5_1: fp16 d and m, u32 high bits, nibbles; q·d + m */
static void
decode_q5_1 (const guint8 *b,
             float        *y)
{
  float d = half (b), m = half (b + 2);
  guint32 qh = load_u32 (b + 4);

  for (int j = 0; j < 16; j++)
    {
      int h0 = (qh >> j) & 1, h1 = (qh >> (j + 16)) & 1;

      y[j] = (float) ((b[8 + j] & 0x0f) | (h0 << 4)) * d + m;
      y[j + 16] = (float) ((b[8 + j] >> 4) | (h1 << 4)) * d + m;
    }
}

/* Q8_0: fp16 d, 32 int8; q·d */
static void
decode_q8_0 (const guint8 *b,
             float        *y)
{
  float d = half (b);

  for (int j = 0; j < 32; j++)
    y[j] = (float) (gint8) b[2 + j] * d;
}

/* Q2_K: 16 bytes of 4-bit scale | 4-bit min, 64 bytes of 2-bit values,
 * fp16 d and dmin. Sub-block s (16 elements) uses scales[s]; its values
 * sit in bits 2·(s/2 mod 4) of q[32·(s/8) + 16·(s mod 2) + l]. */
static void
decode_q2_k (const guint8 *b,
             float        *y)
{
  const guint8 *scales = b, *qs = b + 16;
  float d = half (b + 80), dmin = half (b + 82);

  for (int s = 0; s < 16; s++)
    {
      const guint8 *q = qs + 32 * (s / 8) + 16 * (s % 2);
      int shift = 2 * ((s / 2) % 4);
      float dl = d * (float) (scales[s] & 0x0f);
      float ml = dmin * (float) (scales[s] >> 4);

      for (int l = 0; l < 16; l++)
        *y++ = dl * (float) ((q[l] >> shift) & 3) - ml;
    }
}

/* The 16 six-bit scales of Q3_K, packed in 12 bytes: the low four bits of
 * scale s in byte s mod 8 (low nibble for s < 8, high for s ≥ 8), the top
 * two bits in byte 8 + s mod 4, at bit 2·(s/4). */
static int
q3_k_scale (const guint8 *packed,
            int           s)
{
  int low = s < 8 ? packed[s] & 0x0f : packed[s - 8] >> 4;
  int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;

  return (low | (high << 4)) - 32;
}

/* Q3_K: 32 bytes of high bits, 64 bytes of 2-bit values, 12 bytes of
 * scales, fp16 d. Element l of sub-block s: low bits as in Q2_K, minus 4
 * when its high bit (bit s/2 of hmask[16·(s mod 2) + l]) is clear. */
static void
decode_q3_k (const guint8 *b,
             float        *y)
{
  const guint8 *hmask = b, *qs = b + 32, *packed = b + 96;
  float d = half (b + 108);

  for (int s = 0; s < 16; s++)
    {
      const guint8 *q = qs + 32 * (s / 8) + 16 * (s % 2);
      const guint8 *hm = hmask + 16 * (s % 2);
      int shift = 2 * ((s / 2) % 4);
      guint8 bit = (guint8) (1u << (s / 2));
      float dl = d * (float) q3_k_scale (packed, s);

      for (int l = 0; l < 16; l++)
        *y++ = dl * (float) (((q[l] >> shift) & 3) - ((hm[l] & bit) ? 0 : 4));
    }
}

/* The eight six-bit scales and mins of Q4_K and Q5_K in 12 bytes
 * (ggml's get_scale_min_k4). */
static void
k4_scale_min (const guint8 *q,
              int           j,
              guint8       *sc,
              guint8       *m)
{
  if (j < 4)
    {
      *sc = q[j] & 63;
      *m = q[j + 4] & 63;
    }
  else
    {
      *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
      *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K: fp16 d and dmin, 12 bytes of scales, 128 bytes of nibbles; each
 * 32 bytes hold two sub-blocks of 32 (low nibbles, then high). */
static void
decode_q4_k (const guint8 *b,
             float        *y)
{
  float d = half (b), dmin = half (b + 2);
  const guint8 *scales = b + 4, *q = b + 16;

  for (int j = 0; j < 4; j++, q += 32)
    {
      guint8 sc, m;
      float d1, m1, d2, m2;

      k4_scale_min (scales, 2 * j, &sc, &m);
      d1 = d * (float) sc;
      m1 = dmin * (float) m;
      k4_scale_min (scales, 2 * j + 1, &sc, &m);
      d2 = d * (float) sc;
      m2 = dmin * (float) m;
      for (int l = 0; l < 32; l++)
        *y++ = d1 * (float) (q[l] & 0x0f) - m1;
      for (int l = 0; l < 32; l++)
        *y++ = d2 * (float) (q[l] >> 4) - m2;
    }
}

/* Q5_K: as Q4_K, with 32 bytes of fifth bits (bit 2j for the low-nibble
 * sub-block of pair j, bit 2j+1 for the high one) before the nibbles. */
static void
decode_q5_k (const guint8 *b,
             float        *y)
{
  float d = half (b), dmin = half (b + 2);
  const guint8 *scales = b + 4, *qh = b + 16, *q = b + 48;

  for (int j = 0; j < 4; j++, q += 32)
    {
      guint8 sc, m;
      float d1, m1, d2, m2;
      guint8 u1 = (guint8) (1u << (2 * j)), u2 = (guint8) (2u << (2 * j));

      k4_scale_min (scales, 2 * j, &sc, &m);
      d1 = d * (float) sc;
      m1 = dmin * (float) m;
      k4_scale_min (scales, 2 * j + 1, &sc, &m);
      d2 = d * (float) sc;
      m2 = dmin * (float) m;
      for (int l = 0; l < 32; l++)
        *y++ = d1 * (float) ((q[l] & 0x0f) + ((qh[l] & u1) ? 16 : 0)) - m1;
      for (int l = 0; l < 32; l++)
        *y++ = d2 * (float) ((q[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
}

/* Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8
 * scales, fp16 d; value d·scale·(q − 32), multiplied in that order. */
static void
decode_q6_k (const guint8 *b,
             float        *y)
{
  const guint8 *ql = b, *qh = b + 128;
  const gint8 *sc = (const gint8 *) (b + 192);
  float d = half (b + 208);

  for (int n = 0; n < 2; n++, y += 128, ql += 64, qh += 32, sc += 8)
    for (int l = 0; l < 32; l++)
      {
        int is = l / 16;
        int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
        int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
        int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

        y[l] = d * (float) sc[is] * (float) q1;
        y[l + 32] = d * (float) sc[is + 2] * (float) q2;
        y[l + 64] = d * (float) sc[is + 4] * (float) q3;
        y[l + 96] = d * (float) sc[is + 6] * (float) q4;
      }
}

typedef void (*DecodeBlock) (const guint8 *block, float *y);

static DecodeBlock
block_decoder (SmeltGgmlType type)
{
  switch (type)
    {
    case SMELT_GGML_TYPE_Q4_0: return decode_q4_0;
    case SMELT_GGML_TYPE_Q4_1: return decode_q4_1;
    case SMELT_GGML_TYPE_Q5_0: return decode_q5_0;
    case SMELT_GGML_TYPE_Q5_1: return decode_q5_1;
    case SMELT_GGML_TYPE_Q8_0: return decode_q8_0;
    case SMELT_GGML_TYPE_Q2_K: return decode_q2_k;
    case SMELT_GGML_TYPE_Q3_K: return decode_q3_k;
    case SMELT_GGML_TYPE_Q4_K: return decode_q4_k;
    case SMELT_GGML_TYPE_Q5_K: return decode_q5_k;
    case SMELT_GGML_TYPE_Q6_K: return decode_q6_k;
    default: return NULL;
    }
}

/**
 * smelt_ggml_decode_rows:
 * @type: a type for which smelt_ggml_type_can_encode() is true
 * @src: (type gpointer) (not nullable): @n_rows × smelt_ggml_type_row_size() bytes of @type
 * @n_rows: rows
 * @n_per_row: elements per row, a multiple of the block size of @type
 * @dst: (type gpointer) (not nullable): room for @n_rows × @n_per_row floats
 *
 * Decodes rows of @type to float32, with the same results as ggml's
 * reference dequantization (the to_float of ggml's type traits), so that
 * what is measured on the decoded values is what llama.cpp computes with.
 *
 * Returns: %FALSE if @type cannot be decoded or the rows do not split
 *   into blocks
 */
gboolean
smelt_ggml_decode_rows (SmeltGgmlType  type,
                        const void    *src,
                        guint64        n_rows,
                        guint64        n_per_row,
                        float         *dst)
{
  guint64 n = n_rows * n_per_row;
  DecodeBlock decode;
  guint block;
  gsize block_bytes;

  if (!smelt_ggml_type_can_encode (type) || smelt_ggml_type_row_size (type, n_per_row) == 0)
    return FALSE;
  switch (type)
    {
    case SMELT_GGML_TYPE_F32:
      memcpy (dst, src, n * sizeof (float));
      return TRUE;
    case SMELT_GGML_TYPE_F16:
      smelt_convert_f16_to_f32 (src, dst, n);
      return TRUE;
    case SMELT_GGML_TYPE_BF16:
      smelt_convert_bf16_to_f32 (src, dst, n);
      return TRUE;
    default:
      break;
    }
  decode = block_decoder (type);
  block = smelt_ggml_type_get_block_size (type);
  block_bytes = smelt_ggml_type_get_block_bytes (type);
  for (guint64 b = 0; b < n / block; b++)
    decode ((const guint8 *) src + b * block_bytes, dst + b * block);
  return TRUE;
}
