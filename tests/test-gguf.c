/* test-gguf.c: GGUF layout planner, reader and type table
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <math.h>
#include <string.h>
#include <glib/gstdio.h>

#include "smelt-private.h"

typedef struct {
  char *dir;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->dir = g_dir_make_tmp ("smelt-test-gguf-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GDir) d = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while ((name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (f->dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (f->dir);
  g_free (f->dir);
}

/* Writes the header, then each tensor's bytes (value i+1 repeated) and the
 * zero padding, as a format plugin streams them. */
static char *
write_file (Fixture         *f,
            const char      *name,
            SmeltGgufLayout *layout)
{
  g_autoptr(GBytes) header = smelt_gguf_layout_get_header (layout);
  GByteArray *out = g_byte_array_new ();
  char *path = g_build_filename (f->dir, name, NULL);

  g_byte_array_append (out, g_bytes_get_data (header, NULL), g_bytes_get_size (header));
  for (guint i = 0; i < smelt_gguf_layout_get_n_tensors (layout); i++)
    {
      guint64 size = smelt_gguf_layout_get_tensor_size (layout, i);
      guint64 at = out->len;

      g_assert_cmpuint (at, ==, smelt_gguf_layout_get_tensor_offset (layout, i));
      g_byte_array_set_size (out, at + size);
      memset (out->data + at, i + 1, size);
      while (out->len % 32 != 0)
        g_byte_array_append (out, (const guint8 *) "", 1);
    }
  g_assert_cmpuint (out->len, ==, smelt_gguf_layout_get_file_size (layout));
  g_assert_true (g_file_set_contents (path, (const char *) out->data, out->len, NULL));
  g_byte_array_unref (out);
  return path;
}

static SmeltGgufLayout *
sample_layout (void)
{
  SmeltGgufLayout *l = smelt_gguf_layout_new ();
  const char *tokens[] = { "<s>", "</s>", "héllo", "" };
  gint32 types[] = { 3, 3, 1, 5 };
  float scores[] = { 0.f, -1.5f, -2.25f, -10000.f };
  guint64 ne_emb[] = { 64, 4 };
  guint64 ne_norm[] = { 64 };
  guint64 ne_q[] = { 64, 64 };

  smelt_gguf_layout_set_string (l, "general.architecture", "llama");
  smelt_gguf_layout_set_uint32 (l, "llama.block_count", 1);
  smelt_gguf_layout_set_float32 (l, "llama.rope.freq_base", 500000.f);
  smelt_gguf_layout_set_bool (l, "tokenizer.ggml.add_bos_token", TRUE);
  smelt_gguf_layout_set_int8 (l, "test.i8", -5);
  smelt_gguf_layout_set_uint64 (l, "test.u64", G_MAXUINT64);
  smelt_gguf_layout_set_float64 (l, "test.f64", 0.1);
  smelt_gguf_layout_set_string_array (l, "tokenizer.ggml.tokens", tokens, 4);
  smelt_gguf_layout_set_array (l, "tokenizer.ggml.token_type", SMELT_GGUF_VALUE_INT32, types, 4);
  smelt_gguf_layout_set_array (l, "tokenizer.ggml.scores", SMELT_GGUF_VALUE_FLOAT32, scores, 4);
  g_assert_true (smelt_gguf_layout_add_tensor (l, "token_embd.weight", SMELT_GGML_TYPE_F16, ne_emb, 2, NULL));
  g_assert_true (smelt_gguf_layout_add_tensor (l, "output_norm.weight", SMELT_GGML_TYPE_F32, ne_norm, 1, NULL));
  g_assert_true (smelt_gguf_layout_add_tensor (l, "blk.0.attn_q.weight", SMELT_GGML_TYPE_Q8_0, ne_q, 2, NULL));
  return l;
}

static void
test_layout_round_trip (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(SmeltGgufLayout) l = sample_layout ();
  g_autofree char *path = write_file (f, "a.gguf", l);
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltGgufFile) file = smelt_gguf_file_new (path, &error);
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GBytes) data_q = NULL;
  g_autofree char *text = NULL;
  guint64 ne[4];
  int i;

  g_assert_no_error (error);
  g_assert_cmpuint (smelt_gguf_file_get_version (file), ==, 3);
  g_assert_cmpuint (smelt_gguf_file_get_n_kv (file), ==, 10);
  g_assert_cmpstr (smelt_gguf_file_get_key (file, 0), ==, "general.architecture");
  g_assert_cmpuint (smelt_gguf_file_get_data_offset (file) % 32, ==, 0);

  i = smelt_gguf_file_find_key (file, "llama.rope.freq_base");
  g_assert_cmpint (i, ==, 2);
  g_assert_cmpint (smelt_gguf_file_get_kv_type (file, i), ==, SMELT_GGUF_VALUE_FLOAT32);
  v = smelt_gguf_file_get_value (file, i);
  g_assert_cmpfloat (g_variant_get_double (v), ==, 500000.0);
  g_clear_pointer (&v, g_variant_unref);

  i = smelt_gguf_file_find_key (file, "test.u64");
  v = smelt_gguf_file_get_value (file, i);
  g_assert_cmpuint (g_variant_get_uint64 (v), ==, G_MAXUINT64);
  g_clear_pointer (&v, g_variant_unref);

  i = smelt_gguf_file_find_key (file, "test.i8");
  v = smelt_gguf_file_get_value (file, i);
  g_assert_cmpint (g_variant_get_int16 (v), ==, -5);
  g_clear_pointer (&v, g_variant_unref);

  i = smelt_gguf_file_find_key (file, "tokenizer.ggml.tokens");
  g_assert_cmpint (smelt_gguf_file_get_array_type (file, i), ==, SMELT_GGUF_VALUE_STRING);
  g_assert_cmpuint (smelt_gguf_file_get_array_length (file, i), ==, 4);
  text = smelt_gguf_file_format_value (file, i, 2);
  g_assert_cmpstr (text, ==, "[4 × string: \"<s>\", \"</s>\", …]");
  v = smelt_gguf_file_get_value (file, i);
  {
    g_autoptr(GVariant) e = g_variant_get_child_value (v, 2);
    g_autoptr(GVariant) s = g_variant_get_variant (e);
    g_assert_cmpstr (g_variant_get_string (s, NULL), ==, "héllo");
  }

  g_assert_cmpuint (smelt_gguf_file_get_n_tensors (file), ==, 3);
  i = smelt_gguf_file_find_tensor (file, "blk.0.attn_q.weight");
  g_assert_cmpint (i, ==, 2);
  g_assert_cmpint (smelt_gguf_file_get_tensor_type (file, i), ==, SMELT_GGML_TYPE_Q8_0);
  g_assert_cmpuint (smelt_gguf_file_get_tensor_shape (file, i, ne), ==, 2);
  g_assert_cmpuint (ne[0], ==, 64);
  g_assert_cmpuint (ne[1], ==, 64);
  g_assert_cmpuint (ne[2], ==, 1);
  /* 64 rows × 2 blocks × 34 bytes */
  g_assert_cmpuint (smelt_gguf_file_get_tensor_size (file, i), ==, 64 * 2 * 34);
  g_assert_cmpuint (smelt_gguf_file_get_tensor_offset (file, i), ==,
                    smelt_gguf_layout_get_tensor_offset (l, i));
  data_q = smelt_gguf_file_get_tensor_data (file, i);
  g_assert_cmpuint (((const guint8 *) g_bytes_get_data (data_q, NULL))[0], ==, 3);
}

/* Setting an existing key keeps its place (the converter's dict
 * semantics); a copy is independent of the template. */
static void
test_layout_replace_in_place (void)
{
  g_autoptr(SmeltGgufLayout) l = sample_layout ();
  g_autoptr(SmeltGgufLayout) copy = NULL;

  smelt_gguf_layout_set_uint32 (l, "general.file_type", 1);
  copy = smelt_gguf_layout_copy (l);
  smelt_gguf_layout_set_uint32 (copy, "llama.block_count", 7);
  smelt_gguf_layout_set_uint32 (copy, "general.file_type", 7);
  g_assert_cmpstr (smelt_gguf_layout_get_key (copy, 1), ==, "llama.block_count");
  g_assert_cmpuint (smelt_gguf_layout_get_n_kv (copy), ==, smelt_gguf_layout_get_n_kv (l));
  g_assert_cmpstr (smelt_gguf_layout_get_key (copy, smelt_gguf_layout_get_n_kv (copy) - 1), ==,
                   "general.file_type");
  g_assert_true (smelt_gguf_layout_remove (copy, "llama.block_count"));
  g_assert_false (smelt_gguf_layout_has_key (copy, "llama.block_count"));
  g_assert_true (smelt_gguf_layout_has_key (l, "llama.block_count"));
  g_assert_cmpuint (smelt_gguf_layout_get_n_tensors (copy), ==, 3);
}

static void
test_layout_rejects (void)
{
  g_autoptr(SmeltGgufLayout) l = smelt_gguf_layout_new ();
  g_autoptr(GError) error = NULL;
  guint64 ne[] = { 48, 2 };
  guint64 ok[] = { 64, 2 };
  char name[80];

  memset (name, 'x', 64);
  name[64] = '\0';
  g_assert_false (smelt_gguf_layout_add_tensor (l, name, SMELT_GGML_TYPE_F32, ok, 2, &error));
  g_assert_nonnull (strstr (error->message, "63"));
  g_clear_error (&error);
  name[63] = '\0';
  g_assert_true (smelt_gguf_layout_add_tensor (l, name, SMELT_GGML_TYPE_F32, ok, 2, &error));
  g_assert_false (smelt_gguf_layout_add_tensor (l, name, SMELT_GGML_TYPE_F32, ok, 2, &error));
  g_assert_nonnull (strstr (error->message, "twice"));
  g_clear_error (&error);
  /* 48 does not split into Q8_0 blocks of 32 */
  g_assert_false (smelt_gguf_layout_add_tensor (l, "a", SMELT_GGML_TYPE_Q8_0, ne, 2, &error));
  g_assert_nonnull (strstr (error->message, "blocks of 32"));
  g_clear_error (&error);
  g_assert_false (smelt_gguf_layout_add_tensor (l, "b", SMELT_GGML_TYPE_F32, ok, 5, &error));
  g_clear_error (&error);
}

static char *
write_bytes (Fixture      *f,
             const char   *name,
             const guint8 *data,
             gsize         len)
{
  char *path = g_build_filename (f->dir, name, NULL);

  g_assert_true (g_file_set_contents (path, (const char *) data, len, NULL));
  return path;
}

static void
expect_invalid (Fixture      *f,
                const guint8 *data,
                gsize         len,
                const char   *fragment)
{
  g_autofree char *path = write_bytes (f, "bad.gguf", data, len);
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltGgufFile) file = smelt_gguf_file_new (path, &error);

  g_assert_null (file);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, path));
  if (fragment != NULL && strstr (error->message, fragment) == NULL)
    g_error ("expected “%s” in: %s", fragment, error->message);
}

/* Every truncation of a valid file is refused, never read past the end. */
static void
test_reader_truncated (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(SmeltGgufLayout) l = sample_layout ();
  g_autofree char *path = write_file (f, "a.gguf", l);
  g_autofree char *contents = NULL;
  gsize len;

  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  for (gsize cut = 0; cut < len; cut += (cut < 600 ? 1 : 97))
    expect_invalid (f, (const guint8 *) contents, cut, NULL);
}

/* Patches one field of a valid file and expects a specific complaint. */
static void
test_reader_lies (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(SmeltGgufLayout) l = smelt_gguf_layout_new ();
  guint64 ne[] = { 32, 2 };
  g_autoptr(GBytes) header = NULL;
  g_autofree guint8 *buf = NULL;
  gsize hlen, flen;
  guint64 big = G_MAXUINT64 / 2;

  smelt_gguf_layout_set_bool (l, "a.flag", TRUE);
  smelt_gguf_layout_set_string (l, "general.alignment_", "x");
  g_assert_true (smelt_gguf_layout_add_tensor (l, "t", SMELT_GGML_TYPE_F32, ne, 2, NULL));
  header = smelt_gguf_layout_get_header (l);
  hlen = g_bytes_get_size (header);
  flen = smelt_gguf_layout_get_file_size (l);
  buf = g_malloc0 (flen);
  memcpy (buf, g_bytes_get_data (header, NULL), hlen);

#define PATCH(at, value, len, frag) \
  G_STMT_START { \
    g_autofree guint8 *copy = g_memdup2 (buf, flen); \
    memcpy (copy + (at), (value), (len)); \
    expect_invalid (f, copy, flen, frag); \
  } G_STMT_END

  /* layout: magic 0, version 4, n_tensors 8, n_kv 16, key "a.flag" at 24
   * (len 8 + 6), type at 38, bool at 42 */
  PATCH (0, "GGUG", 4, "magic");
  PATCH (4, "\x07\0\0\0", 4, "version 7");
  PATCH (8, &big, 8, "cannot fit");
  PATCH (42, "\x02", 1, "bool of value 2");
  PATCH (38, "\x0d\0\0\0", 4, "unknown type 13");
  PATCH (24, "\0\0\0\0\0\0\0\0", 8, "empty");
  PATCH (34, "\0", 1, "NUL");
  /* second key becomes "a.flag" too */
  PATCH (24 + 8 + 6 + 4 + 1 + 8, "a.flag\0\0\0\0\0\0\0\0\0\0\0\0", 18, NULL);

  {
    /* the tensor's offset (last 8 bytes of its info) lies */
    gsize info_end = hlen;
    guint64 off = 32;

    while (info_end > 0 && buf[info_end - 1] == 0)
      info_end--;
    /* offset is 0 in the file: find "t" name then skip fields */
    for (gsize p = 0; p + 9 < hlen; p++)
      if (memcmp (buf + p, "\x01\0\0\0\0\0\0\0t", 9) == 0)
        {
          gsize at = p + 9 + 4 + 16 + 4;
          PATCH (at, &off, 8, "expected 0");
          off = 1;
          PATCH (at - 4, "\x0c\0\0\0", 4, "blocks");   /* q4_K with rows of 32 */
          PATCH (p + 9, "\x05\0\0\0", 4, "dimensions");
          break;
        }
  }
  /* data cut short */
  expect_invalid (f, buf, flen - 1, "past the end");
#undef PATCH
}

static void
test_reader_nested_array (Fixture       *f,
                          gconstpointer  data)
{
  GByteArray *b = g_byte_array_new ();
  guint32 u32;
  guint64 u64;

#define PUT(v) g_byte_array_append (b, (const guint8 *) &(v), sizeof (v))
  g_byte_array_append (b, (const guint8 *) "GGUF", 4);
  u32 = 3; PUT (u32);
  u64 = 0; PUT (u64);
  u64 = 1; PUT (u64);
  u64 = 1; PUT (u64);
  g_byte_array_append (b, (const guint8 *) "k", 1);
  u32 = SMELT_GGUF_VALUE_ARRAY; PUT (u32);
  u32 = SMELT_GGUF_VALUE_ARRAY; PUT (u32);
  u64 = 0; PUT (u64);
#undef PUT
  expect_invalid (f, b->data, b->len, "nested");
  g_byte_array_unref (b);
}

static void
test_types (void)
{
  g_assert_cmpuint (smelt_ggml_type_row_size (SMELT_GGML_TYPE_Q8_0, 4096), ==, 128 * 34);
  g_assert_cmpuint (smelt_ggml_type_row_size (SMELT_GGML_TYPE_Q4_K, 4096), ==, 16 * 144);
  g_assert_cmpuint (smelt_ggml_type_row_size (SMELT_GGML_TYPE_Q4_K, 896), ==, 0);
  g_assert_cmpuint (smelt_ggml_type_row_size (SMELT_GGML_TYPE_BF16, 3), ==, 6);
  g_assert_cmpstr (smelt_ggml_type_get_name (SMELT_GGML_TYPE_Q6_K), ==, "q6_K");
  g_assert_false (smelt_ggml_type_is_known (4));
  g_assert_true (smelt_ggml_type_can_encode (SMELT_GGML_TYPE_Q8_0));
  g_assert_true (smelt_ggml_type_can_encode (SMELT_GGML_TYPE_Q4_K));
  g_assert_false (smelt_ggml_type_can_encode (SMELT_GGML_TYPE_IQ4_NL));
}

/* Q8_0 by hand: amax 2.54 → d = 0.02 (fp16 0x251f), q = roundf(x/d) with
 * halves away from zero. Byte equality with ggml itself is checked by the
 * llama.cpp harness test. */
static void
test_q8_0_hand (void)
{
  float x[32] = { 0 };
  guint8 out[34];
  float d = 2.54f / 127;
  float id = 1.0f / d;
  guint16 d16;

  x[0] = 2.54f;
  x[1] = -2.54f;
  x[2] = 0.5f * d;    /* exactly half a step: away from zero → 1 */
  x[3] = -1.5f * d;   /* → -2 */
  x[4] = 0.01f;
  g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q8_0, x, 1, 32, out));
  smelt_convert_f32_to_f16 (&d, &d16, 1);
  g_assert_cmpuint (out[0] | out[1] << 8, ==, d16);
  g_assert_cmpint ((gint8) out[2], ==, 127);
  g_assert_cmpint ((gint8) out[3], ==, -127);
  g_assert_cmpint ((gint8) out[4], ==, (int) roundf (x[2] * id));
  g_assert_cmpint ((gint8) out[5], ==, (int) roundf (x[3] * id));
  g_assert_cmpint ((gint8) out[6], ==, (int) roundf (0.01f * id));
  for (int j = 5; j < 32; j++)
    g_assert_cmpint ((gint8) out[2 + j], ==, 0);

  /* all zero: d = 0, q = 0 */
  memset (x, 0, sizeof x);
  g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q8_0, x, 1, 32, out));
  for (int j = 0; j < 34; j++)
    g_assert_cmpuint (out[j], ==, 0);
  /* rows that do not split into blocks are refused */
  g_assert_false (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q8_0, x, 1, 16, out));
}

/* roundf semantics over many values, including the exact halves and the
 * float just below a half, which a naive floor(x + 0.5) gets wrong. */
static void
test_q8_0_rounding (void)
{
  GRand *r = g_rand_new_with_seed (7);

  for (int iter = 0; iter < 2000; iter++)
    {
      float x[32];
      guint8 out[34];
      float amax = 0, d, id;

      for (int j = 0; j < 32; j++)
        {
          x[j] = (float) g_rand_double_range (r, -3, 3);
          if (iter % 3 == 0 && j > 0)
            x[j] = nextafterf (((int) (x[j] * 10) + 0.5f) / 10.f, 0);
        }
      for (int j = 0; j < 32; j++)
        amax = MAX (amax, fabsf (x[j]));
      d = amax / 127;
      id = d != 0 ? 1.0f / d : 0;
      g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q8_0, x, 1, 32, out));
      for (int j = 0; j < 32; j++)
        g_assert_cmpint ((gint8) out[2 + j], ==, (int) roundf (x[j] * id));
    }
  g_rand_free (r);
}

/* The inline fp16 of Q8_0 scales equals the tested converter on every
 * non-negative finite float class: random bits, halves, edges. */
static void
test_fp16_scale (void)
{
  GRand *r = g_rand_new_with_seed (11);

  for (guint i = 0; i < 2000000; i++)
    {
      guint32 bits = i < 1000000 ? g_rand_int (r) & 0x7fffffff : (i - 1000000) << 11;
      float f;
      guint16 want;

      memcpy (&f, &bits, 4);
      if (!isfinite (f))
        continue;
      smelt_convert_f32_to_f16 (&f, &want, 1);
      if (_smelt_ggml_fp16 (f) != want)
        g_error ("fp16 of %a (0x%08x): 0x%04x, expected 0x%04x", f, bits, _smelt_ggml_fp16 (f), want);
    }
  g_rand_free (r);
}

static void
fill_adversarial (float *x,
                  gsize  n,
                  GRand *r,
                  int    kind)
{
  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;

      switch (kind)
        {
        case 0: x[i] = (float) g_rand_double_range (r, -1, 1); break;
        case 1: x[i] = 0.0f; break;
        case 2: x[i] = -3.5f; break;
        case 3: x[i] = i % 32 == 5 ? 1e6f : (float) g_rand_double_range (r, -1e-3, 1e-3); break;
        case 4: bits = g_rand_int_range (r, 1, 0x7fffff) | (g_rand_boolean (r) ? 0x80000000u : 0);
                memcpy (&x[i], &bits, 4); break;                          /* subnormal */
        case 5: x[i] = (float) (g_rand_int_range (r, -126, 127)) + 0.5f; if (i % 32 == 0) x[i] = 127; break;
        case 6: x[i] = (float) g_rand_double_range (r, -3e38, 3e38); break;
        default: x[i] = (float) g_rand_double_range (r, -1e-30, 1e-30); break;
        }
    }
}

/* Every SIMD path writes the portable path's bytes. */
static void
test_q8_0_paths (void)
{
  GRand *r = g_rand_new_with_seed (5);
  const gsize n = 32 * 64;
  g_autofree float *x = g_new (float, n);
  g_autofree guint8 *a = g_malloc (n / 32 * 34);
  g_autofree guint8 *b = g_malloc (n / 32 * 34);

  for (int level = SMELT_SIMD_AVX2; level < SMELT_SIMD_N_LEVELS; level++)
    {
      if (!_smelt_simd_supported (level))
        {
          g_test_message ("%s not supported here", _smelt_simd_level_name (level));
          continue;
        }
      for (int kind = 0; kind < 8; kind++)
        for (int iter = 0; iter < 20; iter++)
          {
            fill_adversarial (x, n, r, kind);
            _smelt_ggml_encode_q8_0_at (SMELT_SIMD_PORTABLE, x, n, a);
            _smelt_ggml_encode_q8_0_at (level, x, n, b);
            if (memcmp (a, b, n / 32 * 34) != 0)
              g_error ("q8_0 %s differs from portable (kind %d)", _smelt_simd_level_name (level), kind);
          }
    }
  g_rand_free (r);
}

/* ---- block quantizers (core/smelt-ggml-quants.c) ----
 * Byte equality with ggml itself over many adversarial matrices is the
 * job of tests/gguf/test_gguf_encode.py; these cases run without the
 * llama.cpp libraries and check what can be derived by hand from the
 * definitions (doc: shared/reference/gguf.md §5). */

static const SmeltGgmlType quant_types[] = {
  SMELT_GGML_TYPE_Q4_0, SMELT_GGML_TYPE_Q4_1, SMELT_GGML_TYPE_Q5_0, SMELT_GGML_TYPE_Q5_1,
  SMELT_GGML_TYPE_Q2_K, SMELT_GGML_TYPE_Q3_K, SMELT_GGML_TYPE_Q4_K, SMELT_GGML_TYPE_Q5_K,
  SMELT_GGML_TYPE_Q6_K,
};

static guint16
f16_of (float f)
{
  guint16 h;

  smelt_convert_f32_to_f16 (&f, &h, 1);
  return h;
}

/* All-zero input. Q4_0 and Q5_0 store d = 0 / -8 = -0 (0x8000) and the
 * middle level (8, 16); Q4_1/Q5_1 store the first element as min, so -0
 * rows give m = 0x8000; every K type writes zeros. */
static void
test_quants_zero_blocks (void)
{
  float x[256];
  guint8 out[256];

  for (int sign = 0; sign < 2; sign++)
    {
      for (int i = 0; i < 256; i++)
        x[i] = sign ? -0.0f : 0.0f;
      for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
        {
          SmeltGgmlType type = quant_types[t];
          gsize bytes = smelt_ggml_type_row_size (type, 256);
          guint8 want[256] = { 0 };

          switch (type)
            {
            case SMELT_GGML_TYPE_Q4_0:
              for (int b = 0; b < 8; b++)
                {
                  want[18 * b + 1] = 0x80;
                  memset (want + 18 * b + 2, 0x88, 16);
                }
              break;
            case SMELT_GGML_TYPE_Q5_0:
              for (int b = 0; b < 8; b++)
                {
                  want[22 * b + 1] = 0x80;
                  memset (want + 22 * b + 2, 0xff, 4);     /* bit 4 of every q = 16 */
                }
              break;
            case SMELT_GGML_TYPE_Q4_1:
            case SMELT_GGML_TYPE_Q5_1:
              for (gsize b = 0; sign && b < bytes; b += bytes / 8)
                want[b + 3] = 0x80;
              break;
            default:
              break;
            }
          memset (out, 0xa5, sizeof out);
          g_assert_true (smelt_ggml_encode_rows (type, x, 1, 256, out));
          if (memcmp (out, want, bytes) != 0)
            g_error ("%s of %s zeros differs", smelt_ggml_type_get_name (type), sign ? "negative" : "positive");
        }
    }
}

/* Q4_0 on x[j] = j - 16: the signed maximum is -16 (the first of the
 * largest magnitudes), d = 2, q = trunc(x / 2 + 8.5) clamped to 15, so
 * the .5 cases go up; nibbles j | j+16 << 4. */
static void
test_quants_q4_0_ramp (void)
{
  float x[32];
  guint8 out[18];

  for (int j = 0; j < 32; j++)
    x[j] = (float) (j - 16);
  g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q4_0, x, 1, 32, out));
  g_assert_cmpuint (out[0] | out[1] << 8, ==, f16_of (2.0f));
  for (int j = 0; j < 16; j++)
    {
      int lo = (j + 1) / 2, hi = MIN (15, (j + 17) / 2);

      g_assert_cmpuint (out[2 + j], ==, lo | hi << 4);
    }
}

/* Q4_K and Q5_K on a ramp 0..nmax repeated: the first grid (scale 1,
 * min 0) fits exactly, no trial can beat an error of 0, so every
 * sub-block has scale 1 and min 0: 6-bit scales 63, mins 0, d = fp16(1/63),
 * dmin = 0, and the levels are the values. This pins the packing of the
 * scales, the nibbles and Q5_K's high bits. */
static void
test_quants_k_ramp (void)
{
  float x[256];
  guint8 out[176];

  for (int i = 0; i < 256; i++)
    x[i] = (float) (i % 16);
  g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q4_K, x, 1, 256, out));
  g_assert_cmpuint (out[0] | out[1] << 8, ==, f16_of (1.0f / 63));
  g_assert_cmpuint (out[2] | out[3] << 8, ==, 0);
  for (int j = 0; j < 4; j++)
    {
      g_assert_cmpuint (out[4 + j], ==, 63 | 3 << 6);    /* scale j, top bits of scale j+4 */
      g_assert_cmpuint (out[8 + j], ==, 0);              /* mins */
      g_assert_cmpuint (out[12 + j], ==, 0x0f);          /* low bits of scale and min j+4 */
    }
  for (int l = 0; l < 128; l++)
    g_assert_cmpuint (out[16 + l], ==, (l % 16) * 0x11);

  for (int i = 0; i < 256; i++)
    x[i] = (float) (i % 32);
  g_assert_true (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q5_K, x, 1, 256, out));
  g_assert_cmpuint (out[0] | out[1] << 8, ==, f16_of (1.0f / 63));
  g_assert_cmpuint (out[2] | out[3] << 8, ==, 0);
  for (int j = 0; j < 32; j++)
    g_assert_cmpuint (out[16 + j], ==, j < 16 ? 0 : 0xff);   /* qh */
  for (int l = 0; l < 128; l++)
    g_assert_cmpuint (out[48 + l], ==, (l % 16) * 0x11);
  /* K rows must split into super-blocks */
  g_assert_false (smelt_ggml_encode_rows (SMELT_GGML_TYPE_Q4_K, x, 1, 128, out));
}

typedef struct {
  const float *x;
  gsize        n;
  guint8      *out[G_N_ELEMENTS (quant_types)];
} QuantJob;

static gpointer
quant_thread (gpointer data)
{
  QuantJob *job = data;

  for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
    smelt_ggml_encode_rows (quant_types[t], job->x, job->n / 4096, 4096, job->out[t]);
  return NULL;
}

/* The encoders keep no state: threads running them at the same time on
 * the same input write the bytes of a lone run. */
static void
test_quants_threads (void)
{
  const gsize n = 16 * 4096;
  GRand *r = g_rand_new_with_seed (13);
  g_autofree float *x = g_new (float, n);
  QuantJob jobs[3];
  GThread *threads[3];

  for (gsize i = 0; i < n; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1) * (i % 97 == 0 ? 50 : 1);
  for (guint k = 0; k < G_N_ELEMENTS (jobs); k++)
    {
      jobs[k].x = x;
      jobs[k].n = n;
      for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
        jobs[k].out[t] = g_malloc (smelt_ggml_type_row_size (quant_types[t], n));
    }
  quant_thread (&jobs[0]);
  for (guint k = 1; k < G_N_ELEMENTS (jobs); k++)
    threads[k] = g_thread_new ("quant", quant_thread, &jobs[k]);
  for (guint k = 1; k < G_N_ELEMENTS (jobs); k++)
    g_thread_join (threads[k]);
  for (guint k = 0; k < G_N_ELEMENTS (jobs); k++)
    for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
      {
        if (k > 0 && memcmp (jobs[k].out[t], jobs[0].out[t], smelt_ggml_type_row_size (quant_types[t], n)) != 0)
          g_error ("%s: thread %u differs", smelt_ggml_type_get_name (quant_types[t]), k);
      }
  for (guint k = 0; k < G_N_ELEMENTS (jobs); k++)
    for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
      g_free (jobs[k].out[t]);
  g_rand_free (r);
}

/* One 16-element piece of a super-block, of a random kind. Mixing kinds
 * inside a super-block makes the lanes of a vector search (one sub-block
 * each) take different branches at the same step. */
static void
fill_piece (float *x,
            GRand *r)
{
  int kind = g_rand_int_range (r, 0, 13);
  float c = (float) g_rand_double_range (r, -4, 4);
  float s = powf (10.0f, (float) g_rand_int_range (r, -8, 9));
  guint32 bits;

  for (int i = 0; i < 16; i++)
    switch (kind)
      {
      case 0: x[i] = (float) g_rand_double_range (r, -1, 1) * s; break;
      case 1: x[i] = g_rand_boolean (r) ? 0.0f : -0.0f; break;
      case 2: x[i] = c; break;                                            /* constant */
      case 3: x[i] = (float) g_rand_double_range (r, -1e-3, 1e-3); break; /* outlier below */
      case 4: bits = g_rand_int_range (r, 0, 0x7fffff) | (g_rand_boolean (r) ? 0x80000000u : 0);
              memcpy (&x[i], &bits, 4); break;                            /* subnormal */
      case 5: x[i] = (float) g_rand_double_range (r, -1e30, 1e30); break; /* squares overflow */
      case 6: x[i] = 0.5f * g_rand_int_range (r, -9, 10); break;          /* rounding ties */
      case 7: x[i] = (float) g_rand_double_range (r, -1, 1) * 1e-20f; break; /* scale rounds to 0 */
      case 8: x[i] = (float) g_rand_double_range (r, 0.5, 1) * s; break;  /* min > 0 */
      case 9: x[i] = (float) -g_rand_double_range (r, 0.5, 1) * s; break; /* all negative */
      case 10: x[i] = c + 0.25f * g_rand_int_range (r, 0, 16); break;     /* on a grid */
      case 11: x[i] = (float) g_rand_double_range (r, -1, 1) * 1e-16f; break; /* near GROUP_MAX_EPS */
      default: x[i] = (float) g_rand_double_range (r, -1, 1) + (i == 0 ? 40.0f : 0.0f); break;
      }
  if (kind == 3)
    x[g_rand_int_range (r, 0, 16)] = g_rand_boolean (r) ? 1e4f : -1e4f;
  if (kind == 11 && g_rand_boolean (r))
    x[g_rand_int_range (r, 0, 16)] = g_rand_boolean (r) ? 1e-15f : -1e-15f;   /* GROUP_MAX_EPS itself */
}

/* Every SIMD level writes the portable bytes for every block type, on
 * whole-row adversarial inputs and on super-blocks of mixed pieces. */
static void
test_quants_paths (void)
{
  GRand *r = g_rand_new_with_seed (17);
  const gsize n = 256 * 512;
  g_autofree float *x = g_new (float, n);
  gsize max_size = smelt_ggml_type_row_size (SMELT_GGML_TYPE_Q6_K, n);
  g_autofree guint8 *a = g_malloc (max_size);
  g_autofree guint8 *b = g_malloc (max_size);
  int n_levels = 0;

  for (int level = SMELT_SIMD_AVX2; level < SMELT_SIMD_N_LEVELS; level++)
    {
      if (!_smelt_simd_supported (level))
        {
          g_test_message ("%s not supported here", _smelt_simd_level_name (level));
          continue;
        }
      n_levels++;
      for (int kind = 0; kind < 10; kind++)
        {
          if (kind < 8)
            fill_adversarial (x, n, r, kind);
          else
            for (gsize i = 0; i < n; i += 16)
              fill_piece (x + i, r);
          for (gsize t = 0; t < G_N_ELEMENTS (quant_types); t++)
            {
              /* an odd number of super-blocks for half of the kinds: the
               * AVX-512 path searches two at a time */
              gsize nn = kind % 2 ? n - 256 : n;
              gsize size = smelt_ggml_type_row_size (quant_types[t], nn);

              memset (a, 0xa5, size);
              memset (b, 0x5a, size);
              g_assert_true (_smelt_ggml_quantize_at (SMELT_SIMD_PORTABLE, quant_types[t], x, nn, a));
              g_assert_true (_smelt_ggml_quantize_at (level, quant_types[t], x, nn, b));
              for (gsize k = 0; k < size; k++)
                if (a[k] != b[k])
                  g_error ("%s %s differs from portable at byte %" G_GSIZE_FORMAT " (kind %d)",
                           smelt_ggml_type_get_name (quant_types[t]), _smelt_simd_level_name (level), k, kind);
              /* the portable names are the portable path */
              if (quant_types[t] == SMELT_GGML_TYPE_Q4_K)
                {
                  _smelt_ggml_quantize_q4_k (x, nn, b);
                  g_assert_cmpmem (a, size, b, size);
                }
            }
        }
    }
  if (n_levels == 0)
    g_test_skip ("no SIMD level on this CPU");
  g_rand_free (r);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/gguf/layout/round-trip", Fixture, NULL, fixture_setup, test_layout_round_trip, fixture_teardown);
  g_test_add_func ("/gguf/layout/replace-in-place", test_layout_replace_in_place);
  g_test_add_func ("/gguf/layout/rejects", test_layout_rejects);
  g_test_add ("/gguf/reader/truncated", Fixture, NULL, fixture_setup, test_reader_truncated, fixture_teardown);
  g_test_add ("/gguf/reader/lies", Fixture, NULL, fixture_setup, test_reader_lies, fixture_teardown);
  g_test_add ("/gguf/reader/nested-array", Fixture, NULL, fixture_setup, test_reader_nested_array, fixture_teardown);
  g_test_add_func ("/gguf/types", test_types);
  g_test_add_func ("/gguf/q8_0/hand", test_q8_0_hand);
  g_test_add_func ("/gguf/q8_0/rounding", test_q8_0_rounding);
  g_test_add_func ("/gguf/q8_0/simd-paths", test_q8_0_paths);
  g_test_add_func ("/gguf/fp16-scale", test_fp16_scale);
  g_test_add_func ("/gguf/quants/zero-blocks", test_quants_zero_blocks);
  g_test_add_func ("/gguf/quants/q4_0-ramp", test_quants_q4_0_ramp);
  g_test_add_func ("/gguf/quants/k-ramp", test_quants_k_ramp);
  g_test_add_func ("/gguf/quants/threads", test_quants_threads);
  g_test_add_func ("/gguf/quants/simd-paths", test_quants_paths);
  return g_test_run ();
}
