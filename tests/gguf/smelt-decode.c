/* smelt-decode.c: smelt's ggml row decoders on raw rows, for the
 * bit-for-bit comparison with ggml's dequantization
 * (tests/gguf/test_gguf_decode.py)
 *
 *   smelt-decode TYPE N_ROWS N_PER_ROW < in.bin > out.f32
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smelt-private.h"

static const SmeltGgmlType candidates[] = {
  SMELT_GGML_TYPE_F32, SMELT_GGML_TYPE_F16, SMELT_GGML_TYPE_BF16, SMELT_GGML_TYPE_Q8_0,
  SMELT_GGML_TYPE_Q4_0, SMELT_GGML_TYPE_Q4_1, SMELT_GGML_TYPE_Q5_0, SMELT_GGML_TYPE_Q5_1,
  SMELT_GGML_TYPE_Q2_K, SMELT_GGML_TYPE_Q3_K, SMELT_GGML_TYPE_Q4_K, SMELT_GGML_TYPE_Q5_K,
  SMELT_GGML_TYPE_Q6_K,
};

int
main (int   argc,
      char *argv[])
{
  g_autofree guint8 *in = NULL;
  g_autofree float *out = NULL;
  guint64 n_rows, n_per_row, row_size;
  gsize want, got;
  int type = -1;

  if (argc != 4)
    {
      fprintf (stderr, "usage: smelt-decode TYPE N_ROWS N_PER_ROW < in.bin > out.f32\n");
      return 2;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (candidates); i++)
    if (g_ascii_strcasecmp (argv[1], smelt_ggml_type_get_name (candidates[i])) == 0)
      type = candidates[i];
  n_rows = g_ascii_strtoull (argv[2], NULL, 10);
  n_per_row = g_ascii_strtoull (argv[3], NULL, 10);
  row_size = type < 0 ? 0 : smelt_ggml_type_row_size (type, n_per_row);
  if (row_size == 0 || n_rows == 0)
    {
      fprintf (stderr, "smelt-decode: bad type or shape\n");
      return 2;
    }
  want = n_rows * row_size;
  in = g_malloc (want);
  got = fread (in, 1, want, stdin);
  if (got != want)
    {
      fprintf (stderr, "smelt-decode: read %zu bytes, expected %zu\n", got, want);
      return 1;
    }
  out = g_new (float, n_rows * n_per_row);
  if (!smelt_ggml_decode_rows (type, in, n_rows, n_per_row, out))
    return 1;
  return fwrite (out, sizeof (float), n_rows * n_per_row, stdout) == n_rows * n_per_row ? 0 : 1;
}
