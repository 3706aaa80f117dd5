/* smelt-bnb4-codec.c: smelt's bitsandbytes 4-bit arithmetic, for tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   smelt-bnb4-codec quantize nf4|fp4 BLOCKSIZE nested|plain IN.f32 OUTDIR
 *       writes OUTDIR/packed.bin, absmax.bin (float32, or the 8-bit codes
 *       when nested), nested_absmax.bin, offset.txt (Python repr)
 *   smelt-bnb4-codec dequantize nf4|fp4 BLOCKSIZE nested|plain N OUTDIR OUT.f32
 *       decodes what quantize wrote (with smelt's nested map)
 *   smelt-bnb4-codec repr VALUE...
 *       prints each value (a C99 hex float) as Python's repr()
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smelt/smelt.h>

static void
die (const char *what,
     GError     *error)
{
  fprintf (stderr, "smelt-bnb4-codec: %s: %s\n", what, error ? error->message : "failed");
  exit (1);
}

static void
save (const char *dir,
      const char *name,
      const void *data,
      gsize       len)
{
  g_autofree char *path = dir ? g_build_filename (dir, name, NULL) : g_strdup (name);
  GError *error = NULL;

  if (!g_file_set_contents (path, data, len, &error))
    die (path, error);
}

static gpointer
load (const char *dir,
      const char *name,
      gsize      *len)
{
  g_autofree char *path = dir ? g_build_filename (dir, name, NULL) : g_strdup (name);
  GError *error = NULL;
  char *data = NULL;

  if (!g_file_get_contents (path, &data, len, &error))
    die (path, error);
  return data;
}

static void
parse_common (char         **argv,
              SmeltBnb4Type *type,
              guint         *blocksize,
              gboolean      *nested)
{
  if (!smelt_bnb4_type_from_string (argv[0], type))
    die (argv[0], NULL);
  *blocksize = (guint) atoi (argv[1]);
  if (!smelt_bnb4_blocksize_is_valid (*blocksize))
    die (argv[1], NULL);
  *nested = strcmp (argv[2], "nested") == 0;
}

static int
quantize (char **argv)
{
  SmeltBnb4Type type;
  guint bs;
  gboolean nested;
  gsize len, n, nb;
  g_autofree float *x = NULL;
  g_autofree guint8 *packed = NULL;
  g_autofree float *absmax = NULL;

  parse_common (argv, &type, &bs, &nested);
  x = load (NULL, argv[3], &len);
  n = len / 4;
  nb = (n + bs - 1) / bs;
  packed = g_malloc0 ((n + 1) / 2 + 1);
  absmax = g_new0 (float, nb + 1);
  smelt_bnb4_quantize (type, x, n, bs, packed, absmax);
  save (argv[4], "packed.bin", packed, (n + 1) / 2);
  if (nested)
    {
      g_autofree guint8 *codes = g_malloc0 (nb + 1);
      g_autofree float *nested_absmax = g_new0 (float, nb / 256 + 2);
      float offset = smelt_bnb4_nested_offset (absmax, nb);
      g_autofree char *text = smelt_bnb4_format_python_float (offset);

      smelt_bnb4_quantize_nested (absmax, nb, offset, codes, nested_absmax);
      save (argv[4], "absmax.bin", codes, nb);
      save (argv[4], "nested_absmax.bin", nested_absmax, (nb + 255) / 256 * 4);
      save (argv[4], "offset.txt", text, strlen (text));
    }
  else
    save (argv[4], "absmax.bin", absmax, nb * 4);
  return 0;
}

/* quantize-as TYPE BLOCKSIZE bf16|f16 IN OUTDIR: the fused rounding and
 * quantization; also writes first_bad.txt (-1 or an index) */
static int
quantize_as (char **argv)
{
  SmeltBnb4Type type;
  SmeltDType dtype;
  guint bs;
  gsize len, n, nb;
  gssize bad;
  g_autofree float *x = NULL;
  g_autofree guint8 *packed = NULL;
  g_autofree float *absmax = NULL;
  g_autofree char *text = NULL;

  if (!smelt_bnb4_type_from_string (argv[0], &type))
    die (argv[0], NULL);
  bs = (guint) atoi (argv[1]);
  if (!smelt_bnb4_blocksize_is_valid (bs))
    die (argv[1], NULL);
  if (strcmp (argv[2], "bf16") == 0)
    dtype = SMELT_DTYPE_BF16;
  else if (strcmp (argv[2], "f16") == 0)
    dtype = SMELT_DTYPE_F16;
  else
    die (argv[2], NULL);
  x = load (NULL, argv[3], &len);
  n = len / 4;
  nb = (n + bs - 1) / bs;
  packed = g_malloc0 ((n + 1) / 2 + 1);
  absmax = g_new0 (float, nb + 1);
  bad = smelt_bnb4_quantize_as (type, dtype, x, n, bs, packed, absmax);
  text = g_strdup_printf ("%" G_GSSIZE_FORMAT, bad);
  save (argv[4], "packed.bin", packed, (n + 1) / 2);
  save (argv[4], "absmax.bin", absmax, nb * 4);
  save (argv[4], "first_bad.txt", text, strlen (text));
  return 0;
}

static int
dequantize (char **argv)
{
  SmeltBnb4Type type;
  guint bs;
  gboolean nested;
  gsize n = (gsize) g_ascii_strtoull (argv[3], NULL, 10), nb, len;
  g_autofree guint8 *packed = NULL;
  g_autofree float *absmax = NULL;
  g_autofree float *out = NULL;

  parse_common (argv, &type, &bs, &nested);
  nb = (n + bs - 1) / bs;
  packed = load (argv[4], "packed.bin", &len);
  if (nested)
    {
      g_autofree guint8 *codes = load (argv[4], "absmax.bin", &len);
      g_autofree float *nested_absmax = load (argv[4], "nested_absmax.bin", &len);
      g_autofree char *text = load (argv[4], "offset.txt", &len);

      absmax = g_new (float, nb);
      smelt_bnb4_dequantize_nested (codes, nb, nested_absmax, smelt_bnb4_get_nested_map (),
                                    (float) g_ascii_strtod (text, NULL), absmax);
    }
  else
    absmax = load (argv[4], "absmax.bin", &len);
  out = g_new (float, n + 1);
  smelt_bnb4_dequantize (type, packed, absmax, 0, n, bs, out);
  save (NULL, argv[5], out, n * 4);
  return 0;
}

int
main (int    argc,
      char **argv)
{
  if (argc >= 7 && strcmp (argv[1], "quantize") == 0)
    return quantize (argv + 2);
  if (argc >= 7 && strcmp (argv[1], "quantize-as") == 0)
    return quantize_as (argv + 2);
  if (argc >= 8 && strcmp (argv[1], "dequantize") == 0)
    return dequantize (argv + 2);
  if (argc >= 2 && strcmp (argv[1], "repr") == 0)
    {
      for (int i = 2; i < argc; i++)
        {
          g_autofree char *s = smelt_bnb4_format_python_float (strtod (argv[i], NULL));
          printf ("%s\n", s);
        }
      return 0;
    }
  fprintf (stderr, "usage: smelt-bnb4-codec quantize|dequantize|repr …\n");
  return 2;
}
