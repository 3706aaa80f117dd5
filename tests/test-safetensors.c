/* test-safetensors.c: the safetensors reader and layout, stored tensors
 * and the small utilities
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>

#include "smelt-private.h"

/* ---- fixtures ---- */

typedef struct
{
  char *dir;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  f->dir = g_dir_make_tmp ("smelt-safetensors-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GDir) dir = g_dir_open (f->dir, 0, NULL);
  const char *name;

  while (dir && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (f->dir, name, NULL);
      g_unlink (path);
    }
  g_rmdir (f->dir);
  g_free (f->dir);
}

static char *
write_file (Fixture      *f,
            const char   *name,
            gconstpointer data,
            gsize         length)
{
  g_autoptr(GError) error = NULL;
  char *path = g_build_filename (f->dir, name, NULL);

  g_file_set_contents (path, data, (gssize) length, &error);
  g_assert_no_error (error);
  return path;
}

/* The test values: exactly representable in F32, F16 and BF16, so every
 * conversion between them is exact. */
static float
value (guint i)
{
  return ((float) (i % 12) - 5.0f) * 0.5f;
}

/* F16 bits of value(0) … value(11), from Python's struct.pack('<e'). */
static const guint16 f16_bits[12] = {
  0xc100, 0xc000, 0xbe00, 0xbc00, 0xb800, 0x0000,
  0x3800, 0x3c00, 0x3e00, 0x4000, 0x4100, 0x4200,
};

static guint16
bf16_of (float v)
{
  guint32 u;

  memcpy (&u, &v, 4);
  g_assert_cmpuint (u & 0xffff, ==, 0);
  return (guint16) (u >> 16);
}

/* Fills @n elements of @dtype with value(0…). */
static void
fill_values (SmeltDType dtype,
             guint8    *dest,
             gsize      n)
{
  for (gsize i = 0; i < n; i++)
    {
      switch (dtype)
        {
        case SMELT_DTYPE_F32:
          {
            float v = value (i);
            memcpy (dest + 4 * i, &v, 4);
          }
          break;
        case SMELT_DTYPE_F16:
          memcpy (dest + 2 * i, &f16_bits[i % 12], 2);
          break;
        case SMELT_DTYPE_BF16:
          {
            guint16 b = bf16_of (value (i));
            memcpy (dest + 2 * i, &b, 2);
          }
          break;
        default:
          for (gsize k = 0; k < smelt_dtype_get_bits (dtype) / 8; k++)
            dest[i * (smelt_dtype_get_bits (dtype) / 8) + k] = (guint8) (i * 7 + k);
          break;
        }
    }
}

/* Checks @n elements of @dtype in @data against value(@first …). */
static void
assert_values (SmeltDType    dtype,
               const guint8 *data,
               gsize         first,
               gsize         n)
{
  for (gsize i = 0; i < n; i++)
    {
      switch (dtype)
        {
        case SMELT_DTYPE_F32:
          {
            float v;
            memcpy (&v, data + 4 * i, 4);
            g_assert_cmpfloat (v, ==, value (first + i));
          }
          break;
        case SMELT_DTYPE_F16:
          {
            guint16 h;
            memcpy (&h, data + 2 * i, 2);
            g_assert_cmphex (h, ==, f16_bits[(first + i) % 12]);
          }
          break;
        case SMELT_DTYPE_BF16:
          {
            guint16 b;
            memcpy (&b, data + 2 * i, 2);
            g_assert_cmphex (b, ==, bf16_of (value (first + i)));
          }
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

/* ---- layout ---- */

static void
add (SmeltSafetensorsLayout *layout,
     const char             *name,
     SmeltDType              dtype,
     guint                   n_dims,
     ...)
{
  g_autoptr(GError) error = NULL;
  guint64 shape[8];
  va_list args;

  va_start (args, n_dims);
  for (guint i = 0; i < n_dims; i++)
    shape[i] = va_arg (args, guint64);
  va_end (args);
  smelt_safetensors_layout_add_tensor (layout, name, dtype, shape, n_dims, &error);
  g_assert_no_error (error);
}

/* What safetensors.torch.save_file writes for
 *   {"b.weight": bf16[2,3], "a.bias": f32[3], "c": u8[5],
 *    "a.weight": f16[2,2], "z.scale": f32 scalar}
 * with metadata {"format": "pt"}: sorted F32 (by name), BF16, F16, U8,
 * compact JSON, fields dtype/shape/data_offsets, padded with spaces to
 * 336 = 0x150 bytes. Derived from formats.md §1.2-1.4. */
static const char reference_header[] =
  "\x50\x01\x00\x00\x00\x00\x00\x00"
  "{\"__metadata__\":{\"format\":\"pt\"},"
  "\"a.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
  "\"z.scale\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]},"
  "\"b.weight\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
  "\"a.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[28,36]},"
  "\"c\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[36,41]}}  ";

static SmeltSafetensorsLayout *
reference_layout (void)
{
  SmeltSafetensorsLayout *layout = smelt_safetensors_layout_new ();

  add (layout, "b.weight", SMELT_DTYPE_BF16, 2, (guint64) 2, (guint64) 3);
  add (layout, "a.bias", SMELT_DTYPE_F32, 1, (guint64) 3);
  add (layout, "c", SMELT_DTYPE_U8, 1, (guint64) 5);
  add (layout, "a.weight", SMELT_DTYPE_F16, 2, (guint64) 2, (guint64) 2);
  add (layout, "z.scale", SMELT_DTYPE_F32, 0);
  return layout;
}

static void
test_layout_reference_header (void)
{
  g_autoptr(SmeltSafetensorsLayout) layout = reference_layout ();
  g_autoptr(GBytes) header = NULL;
  const char *expected_order[] = { "a.bias", "z.scale", "b.weight", "a.weight", "c" };
  guint64 begin, end;

  /* Insertion order before sorting. */
  g_assert_cmpstr (smelt_safetensors_layout_get_tensor_name (layout, 0), ==, "b.weight");
  g_assert_true (smelt_safetensors_layout_get_span (layout, "a.bias", &begin, &end));
  g_assert_cmpuint (begin, ==, 12);
  g_assert_cmpuint (end, ==, 24);

  smelt_safetensors_layout_sort (layout);
  header = smelt_safetensors_layout_get_header (layout);
  g_assert_cmpmem (g_bytes_get_data (header, NULL), g_bytes_get_size (header),
                   reference_header, sizeof reference_header - 1);

  g_assert_cmpuint (smelt_safetensors_layout_get_n_tensors (layout), ==, 5);
  for (guint i = 0; i < G_N_ELEMENTS (expected_order); i++)
    g_assert_cmpstr (smelt_safetensors_layout_get_tensor_name (layout, i), ==,
                     expected_order[i]);
  g_assert_true (smelt_safetensors_layout_get_span (layout, "b.weight", &begin, &end));
  g_assert_cmpuint (begin, ==, 16);
  g_assert_cmpuint (end, ==, 28);
  g_assert_false (smelt_safetensors_layout_get_span (layout, "nope", &begin, &end));
  g_assert_cmpuint (smelt_safetensors_layout_get_data_size (layout), ==, 41);
  g_assert_cmpuint (smelt_safetensors_layout_get_file_size (layout), ==, 8 + 336 + 41);
}

static void
test_layout_sort_order (void)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  /* formats.md §1.4: descending U64, I64, F64, C64, F32, U32, I32, BF16,
   * F16, U16, I16, F8_E5M2FNUZ, F8_E4M3FNUZ, F8_E8M0, F8_E4M3, F8_E5M2,
   * I8, U8, F6_E3M2, F6_E2M3, F4, BOOL. */
  static const SmeltDType order[] = {
    SMELT_DTYPE_U64, SMELT_DTYPE_I64, SMELT_DTYPE_F64, SMELT_DTYPE_C64, SMELT_DTYPE_F32,
    SMELT_DTYPE_U32, SMELT_DTYPE_I32, SMELT_DTYPE_BF16, SMELT_DTYPE_F16, SMELT_DTYPE_U16,
    SMELT_DTYPE_I16, SMELT_DTYPE_F8_E5M2FNUZ, SMELT_DTYPE_F8_E4M3FNUZ, SMELT_DTYPE_F8_E8M0,
    SMELT_DTYPE_F8_E4M3, SMELT_DTYPE_F8_E5M2, SMELT_DTYPE_I8, SMELT_DTYPE_U8,
    SMELT_DTYPE_F6_E3M2, SMELT_DTYPE_F6_E2M3, SMELT_DTYPE_F4, SMELT_DTYPE_BOOL,
  };

  /* Add in reverse, with names that would sort the other way, plus two
   * names per type to check the byte-wise name order ("B" < "a"). */
  for (guint i = G_N_ELEMENTS (order); i-- > 0; )
    {
      g_autofree char *a = g_strdup_printf ("a%02u", 99 - i);
      g_autofree char *b = g_strdup_printf ("B%02u", 99 - i);

      add (layout, a, order[i], 1, (guint64) 8);
      add (layout, b, order[i], 1, (guint64) 8);
    }
  smelt_safetensors_layout_sort (layout);

  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    {
      g_autofree char *a = g_strdup_printf ("a%02u", 99 - i);
      g_autofree char *b = g_strdup_printf ("B%02u", 99 - i);
      guint64 begin, end, prev_end = 0;

      g_assert_cmpstr (smelt_safetensors_layout_get_tensor_name (layout, 2 * i), ==, b);
      g_assert_cmpstr (smelt_safetensors_layout_get_tensor_name (layout, 2 * i + 1), ==, a);
      if (i > 0)
        {
          const char *prev = smelt_safetensors_layout_get_tensor_name (layout, 2 * i - 1);
          g_assert_true (smelt_safetensors_layout_get_span (layout, prev, NULL, &prev_end));
        }
      g_assert_true (smelt_safetensors_layout_get_span (layout, b, &begin, &end));
      g_assert_cmpuint (begin, ==, prev_end);
      /* Widest first: every tensor is aligned to its element size. */
      if (smelt_dtype_get_bits (order[i]) >= 8)
        g_assert_cmpuint (begin % (smelt_dtype_get_bits (order[i]) / 8), ==, 0);
    }
}

static void
test_layout_errors (void)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  guint64 shape3[] = { 3 };
  guint64 shape9[] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  guint64 huge[] = { G_MAXUINT64 / 2, 4 };
  GError *error = NULL;

  add (layout, "a", SMELT_DTYPE_F32, 1, (guint64) 2);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "a", SMELT_DTYPE_F16, shape3, 1, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "“a”"));
  g_clear_error (&error);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "b", SMELT_DTYPE_INVALID, shape3, 1, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_clear_error (&error);

  /* 3 × 4 bits is a byte and a half. */
  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "b", SMELT_DTYPE_F4, shape3, 1, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "whole number of bytes"));
  g_clear_error (&error);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "b", SMELT_DTYPE_U8, huge, 2, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_clear_error (&error);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "b", SMELT_DTYPE_U8, shape9, 9, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_clear_error (&error);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "__metadata__", SMELT_DTYPE_U8, shape3, 1, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_clear_error (&error);

  g_assert_false (smelt_safetensors_layout_add_tensor (layout, "bad\xff", SMELT_DTYPE_U8, shape3, 1, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED);
  g_clear_error (&error);

  /* F4 × 4 is two whole bytes. */
  {
    guint64 shape4[] = { 4 };
    g_assert_true (smelt_safetensors_layout_add_tensor (layout, "f4", SMELT_DTYPE_F4, shape4, 1, &error));
    g_assert_no_error (error);
  }
  g_assert_cmpuint (smelt_safetensors_layout_get_n_tensors (layout), ==, 2);
  g_assert_cmpuint (smelt_safetensors_layout_get_data_size (layout), ==, 10);
}

static void
test_layout_metadata_and_escaping (void)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  g_autoptr(GBytes) header = NULL;
  g_autoptr(GBytes) header2 = NULL;
  const char *expected =
    "{\"__metadata__\":{\"format\":\"pt\",\"Zed\":\"z\",\"alpha\":\"\\\"q\\\\\"},"
    "\"q\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\xc3\xa9/\":"
    "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}";
  gsize size;
  const char *data;

  add (layout, "q\"\\\n\r\t\b\f\x01\x1f\x7f\xc3\xa9/", SMELT_DTYPE_U8, 1, (guint64) 1);
  smelt_safetensors_layout_set_metadata (layout, "alpha", "\"q\\");
  smelt_safetensors_layout_set_metadata (layout, "Zed", "z");
  smelt_safetensors_layout_set_metadata (layout, "gone", "x");
  smelt_safetensors_layout_set_metadata (layout, "gone", NULL);

  header = smelt_safetensors_layout_get_header (layout);
  data = g_bytes_get_data (header, &size);
  g_assert_cmpuint (size % 8, ==, 0);
  g_assert_cmpuint (GUINT64_FROM_LE (*(const guint64 *) data), ==, size - 8);
  g_assert_cmpuint (size - 8, >=, strlen (expected));
  g_assert_cmpmem (data + 8, strlen (expected), expected, strlen (expected));
  for (gsize i = 8 + strlen (expected); i < size; i++)
    g_assert_cmpint (data[i], ==, ' ');
  g_assert_cmpuint (size - 8 - strlen (expected), <, 8);

  /* Without any metadata the header has no __metadata__ at all. */
  smelt_safetensors_layout_set_metadata (layout, "format", NULL);
  smelt_safetensors_layout_set_metadata (layout, "alpha", NULL);
  smelt_safetensors_layout_set_metadata (layout, "Zed", NULL);
  header2 = smelt_safetensors_layout_get_header (layout);
  data = g_bytes_get_data (header2, &size);
  g_assert_cmpuint (size, >, 13);
  g_assert_cmpmem (data + 8, 5, "{\"q\\\"", 5);
}

/* ---- round trip ---- */

/* Writes a file planned by @layout, each tensor's data made by
 * fill_values(); returns its path. */
static char *
write_layout (Fixture                *f,
              const char             *name,
              SmeltSafetensorsLayout *layout)
{
  g_autoptr(GBytes) header = smelt_safetensors_layout_get_header (layout);
  g_autoptr(GByteArray) file = g_byte_array_new ();
  g_autofree guint8 *data = g_malloc0 (smelt_safetensors_layout_get_data_size (layout) + 1);

  for (guint i = 0; i < smelt_safetensors_layout_get_n_tensors (layout); i++)
    {
      const char *tensor = smelt_safetensors_layout_get_tensor_name (layout, i);
      const char *suffix = strrchr (tensor, '.');
      guint64 begin, end;
      SmeltDType dtype;
      guint bits;

      g_assert_true (smelt_safetensors_layout_get_span (layout, tensor, &begin, &end));
      /* Names that carry their dtype after the last '.' get test values;
       * the others stay zero. */
      dtype = suffix ? smelt_dtype_from_string (suffix + 1) : SMELT_DTYPE_INVALID;
      if (dtype == SMELT_DTYPE_INVALID)
        continue;
      bits = smelt_dtype_get_bits (dtype);
      fill_values (dtype, data + begin, (end - begin) * 8 / bits);
    }
  g_byte_array_append (file, g_bytes_get_data (header, NULL), g_bytes_get_size (header));
  g_byte_array_append (file, data, smelt_safetensors_layout_get_data_size (layout));
  g_assert_cmpuint (file->len, ==, smelt_safetensors_layout_get_file_size (layout));
  return write_file (f, name, file->data, file->len);
}

static SmeltSafetensorsLayout *
roundtrip_layout (void)
{
  SmeltSafetensorsLayout *layout = smelt_safetensors_layout_new ();

  add (layout, "w.F32", SMELT_DTYPE_F32, 2, (guint64) 4, (guint64) 3);
  add (layout, "w.F16", SMELT_DTYPE_F16, 2, (guint64) 3, (guint64) 4);
  add (layout, "w.BF16", SMELT_DTYPE_BF16, 3, (guint64) 2, (guint64) 3, (guint64) 2);
  add (layout, "bias.F32", SMELT_DTYPE_F32, 1, (guint64) 5);
  add (layout, "scalar.BF16", SMELT_DTYPE_BF16, 0);
  add (layout, "empty.F16", SMELT_DTYPE_F16, 2, (guint64) 0, (guint64) 4);
  add (layout, "codes.U8", SMELT_DTYPE_U8, 1, (guint64) 7);
  add (layout, "ids.I64", SMELT_DTYPE_I64, 1, (guint64) 2);
  smelt_safetensors_layout_set_metadata (layout, "note", "é");
  return layout;
}

static void
test_roundtrip (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(SmeltSafetensorsLayout) layout = roundtrip_layout ();
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) keys = NULL;
  g_autofree char *path = NULL;
  g_autoptr(GBytes) header = NULL;
  guint64 prev_offset = 0;

  smelt_safetensors_layout_sort (layout);
  path = write_layout (f, "model.safetensors", layout);
  file = smelt_safetensors_file_new (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (file);

  header = smelt_safetensors_layout_get_header (layout);
  g_assert_cmpstr (smelt_safetensors_file_get_path (file), ==, path);
  g_assert_cmpuint (smelt_safetensors_file_get_header_size (file), ==, g_bytes_get_size (header));
  g_assert_cmpuint (smelt_safetensors_file_get_n_tensors (file), ==, 8);
  g_assert_cmpstr (smelt_safetensors_file_get_metadata (file, "format"), ==, "pt");
  g_assert_cmpstr (smelt_safetensors_file_get_metadata (file, "note"), ==, "é");
  g_assert_null (smelt_safetensors_file_get_metadata (file, "nope"));
  keys = smelt_safetensors_file_list_metadata (file);
  g_assert_cmpuint (g_strv_length (keys), ==, 2);
  g_assert_cmpstr (keys[0], ==, "format");
  g_assert_cmpstr (keys[1], ==, "note");
  g_assert_null (smelt_safetensors_file_lookup (file, "nope"));

  for (guint i = 0; i < smelt_safetensors_file_get_n_tensors (file); i++)
    {
      SmeltTensor *tensor = smelt_safetensors_file_get_tensor (file, i);
      const char *name = smelt_tensor_get_name (tensor);
      g_autoptr(GBytes) bytes = smelt_tensor_get_bytes (tensor);
      g_autoptr(GBytes) bytes2 = smelt_tensor_get_bytes (tensor);
      guint64 begin, end, offset;
      guint n_dims;
      const guint64 *shape = smelt_tensor_get_shape (tensor, &n_dims);
      g_autofree char *shape_string = _smelt_shape_to_string (shape, n_dims);

      /* Same order as the layout, which is the order of the data. */
      g_assert_cmpstr (name, ==, smelt_safetensors_layout_get_tensor_name (layout, i));
      g_assert_true (smelt_safetensors_file_lookup (file, name) == tensor);
      g_assert_true (smelt_safetensors_layout_get_span (layout, name, &begin, &end));
      g_assert_cmpint (smelt_tensor_get_dtype (tensor), ==,
                       smelt_dtype_from_string (strrchr (name, '.') + 1));
      g_assert_cmpuint (g_bytes_get_size (bytes), ==, end - begin);
      g_assert_cmpuint (smelt_tensor_get_n_bytes (tensor), ==, end - begin);
      g_assert_false (smelt_tensor_is_modified (tensor));
      offset = _smelt_stored_tensor_get_offset (SMELT_STORED_TENSOR (tensor));
      g_assert_cmpuint (offset, ==, smelt_safetensors_file_get_header_size (file) + begin);
      g_assert_cmpuint (offset, >=, prev_offset);
      prev_offset = offset;
      g_assert_cmpstr (_smelt_stored_tensor_get_file_path (SMELT_STORED_TENSOR (tensor)), ==, path);
      /* Zero-copy: both slices point into the one mapping. */
      g_assert_true (g_bytes_get_data (bytes, NULL) == g_bytes_get_data (bytes2, NULL) ||
                     g_bytes_get_size (bytes) == 0);

      if (g_str_equal (name, "w.BF16"))
        g_assert_cmpstr (shape_string, ==, "[2, 3, 2]");
      else if (g_str_equal (name, "scalar.BF16"))
        g_assert_cmpuint (n_dims, ==, 0);
      else if (g_str_equal (name, "empty.F16"))
        g_assert_cmpstr (shape_string, ==, "[0, 4]");
      else if (g_str_equal (name, "codes.U8"))
        {
          const guint8 *codes = g_bytes_get_data (bytes, NULL);
          for (guint k = 0; k < 7; k++)
            g_assert_cmpuint (codes[k], ==, k * 7);
        }
    }
}

static void
test_read_rows (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(SmeltSafetensorsLayout) layout = roundtrip_layout ();
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  static const char *names[] = { "w.F32", "w.F16", "w.BF16", "bias.F32", "scalar.BF16" };
  static const SmeltDType wants[] = { SMELT_DTYPE_F32, SMELT_DTYPE_F16, SMELT_DTYPE_BF16 };
  guint8 dest[256];

  smelt_safetensors_layout_sort (layout);
  path = write_layout (f, "rows.safetensors", layout);
  file = smelt_safetensors_file_new (path, &error);
  g_assert_no_error (error);

  for (guint t = 0; t < G_N_ELEMENTS (names); t++)
    for (guint w = 0; w < G_N_ELEMENTS (wants); w++)
      {
        SmeltTensor *tensor = smelt_safetensors_file_lookup (file, names[t]);
        guint64 n_rows = smelt_tensor_get_n_rows (tensor);
        guint64 row_length = smelt_tensor_get_row_length (tensor);

        /* Everything, then the rows after the first. */
        g_assert_true (smelt_tensor_read_rows (tensor, 0, n_rows, wants[w], dest, &error));
        g_assert_no_error (error);
        assert_values (wants[w], dest, 0, n_rows * row_length);
        if (n_rows > 1)
          {
            memset (dest, 0xaa, sizeof dest);
            g_assert_true (smelt_tensor_read_rows (tensor, 1, n_rows - 1, wants[w], dest, &error));
            g_assert_no_error (error);
            assert_values (wants[w], dest, row_length, (n_rows - 1) * row_length);
          }
        g_assert_true (smelt_tensor_read_rows (tensor, n_rows, 0, wants[w], dest, &error));
        g_assert_no_error (error);
      }

  /* Rows past the end. */
  g_assert_false (smelt_tensor_read_rows (smelt_safetensors_file_lookup (file, "w.F32"),
                                          3, 2, SMELT_DTYPE_F32, dest, &error));
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_clear_error (&error);

  /* Integer tensors cannot be converted; the message names tensor and type. */
  g_assert_false (smelt_tensor_read_rows (smelt_safetensors_file_lookup (file, "codes.U8"),
                                          0, 1, SMELT_DTYPE_F32, dest, &error));
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "codes.U8"));
  g_assert_nonnull (strstr (error->message, "U8"));
  g_clear_error (&error);

  /* The empty tensor has no data to read but reading none of it works. */
  g_assert_true (smelt_tensor_read_rows (smelt_safetensors_file_lookup (file, "empty.F16"),
                                         0, 0, SMELT_DTYPE_F32, dest, &error));
  g_assert_no_error (error);
}

/* Tensors big enough to span pages: release() drops pages strictly
 * inside, and reading afterwards still gives the data. */
static void
test_release_and_alias (Fixture       *f,
                        gconstpointer  data)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltTensor) alias = NULL;
  g_autofree char *path = NULL;
  g_autofree float *rows = g_new (float, 3 * 12000);
  SmeltTensor *big;

  add (layout, "big.F32", SMELT_DTYPE_F32, 2, (guint64) 3, (guint64) 12000);
  add (layout, "small.F32", SMELT_DTYPE_F32, 1, (guint64) 3);
  path = write_layout (f, "big.safetensors", layout);
  file = smelt_safetensors_file_new (path, &error);
  g_assert_no_error (error);

  big = smelt_safetensors_file_lookup (file, "big.F32");
  g_assert_true (smelt_tensor_read_rows (big, 0, 3, SMELT_DTYPE_F32, rows, &error));
  smelt_tensor_release (big);
  smelt_tensor_release (smelt_safetensors_file_lookup (file, "small.F32"));
  memset (rows, 0, 3 * 12000 * sizeof (float));
  g_assert_true (smelt_tensor_read_rows (big, 0, 3, SMELT_DTYPE_F32, rows, &error));
  g_assert_no_error (error);
  assert_values (SMELT_DTYPE_F32, (const guint8 *) rows, 0, 3 * 12000);

  alias = _smelt_stored_tensor_new_alias (SMELT_STORED_TENSOR (big), "model.big");
  g_assert_cmpstr (smelt_tensor_get_name (alias), ==, "model.big");
  g_assert_cmpuint (smelt_tensor_get_n_elements (alias), ==, 36000);
  g_assert_cmpuint (_smelt_stored_tensor_get_offset (SMELT_STORED_TENSOR (alias)), ==,
                    _smelt_stored_tensor_get_offset (SMELT_STORED_TENSOR (big)));
  g_clear_object (&file);
  /* The alias keeps the mapping alive. */
  g_assert_true (smelt_tensor_read_rows (alias, 2, 1, SMELT_DTYPE_BF16, rows, &error));
  g_assert_no_error (error);
  assert_values (SMELT_DTYPE_BF16, (const guint8 *) rows, 24000, 12000);
}

/* A header whose length is not a multiple of 8, as some writers produce:
 * the F32 data is misaligned in memory and must still convert. */
static void
test_unaligned (Fixture       *f,
                gconstpointer  data)
{
  const char *json = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = NULL;
  guint64 n = GUINT64_TO_LE (strlen (json));
  guint8 values[24];
  guint8 dest[24];

  g_assert_cmpuint (strlen (json) % 4, !=, 0);
  fill_values (SMELT_DTYPE_F32, values, 6);
  g_byte_array_append (bytes, (const guint8 *) &n, 8);
  g_byte_array_append (bytes, (const guint8 *) json, strlen (json));
  g_byte_array_append (bytes, values, 24);
  path = write_file (f, "unaligned.safetensors", bytes->data, bytes->len);

  file = smelt_safetensors_file_new (path, &error);
  g_assert_no_error (error);
  for (SmeltDType want = SMELT_DTYPE_F32; want <= SMELT_DTYPE_BF16; want++)
    {
      SmeltTensor *x = smelt_safetensors_file_lookup (file, "x");

      g_assert_true (smelt_tensor_read_rows (x, 1, 1, want, dest, &error));
      g_assert_no_error (error);
      assert_values (want, dest, 3, 3);
    }
  g_assert_null (smelt_safetensors_file_get_metadata (file, "format"));
}

static void
test_no_tensors (Fixture       *f,
                 gconstpointer  data)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = write_layout (f, "empty.safetensors", layout);
  g_auto(GStrv) keys = NULL;

  file = smelt_safetensors_file_new (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (smelt_safetensors_file_get_n_tensors (file), ==, 0);
  g_assert_cmpstr (smelt_safetensors_file_get_metadata (file, "format"), ==, "pt");
  g_clear_object (&file);

  {
    const char raw[] = "\x08\x00\x00\x00\x00\x00\x00\x00{}      ";
    g_autofree char *path2 = write_file (f, "bare.safetensors", raw, sizeof raw - 1);

    file = smelt_safetensors_file_new (path2, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (smelt_safetensors_file_get_n_tensors (file), ==, 0);
    keys = smelt_safetensors_file_list_metadata (file);
    g_assert_cmpuint (g_strv_length (keys), ==, 0);
  }
}

/* ---- corrupt files ---- */

static void
assert_rejected_bytes (Fixture      *f,
                       const char   *name,
                       gconstpointer data,
                       gsize         length,
                       const char   *expected)
{
  g_autofree char *path = write_file (f, name, data, length);
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltSafetensorsFile) file = smelt_safetensors_file_new (path, &error);

  g_assert_null (file);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  if (!g_str_has_prefix (error->message, path) || strstr (error->message, expected) == NULL)
    g_error ("%s: expected a message starting with the path and containing “%s”, got: %s",
             name, expected, error->message);
}

/* A file made of the 8-byte length of @json, @json, and @data_size zero
 * bytes. */
static void
assert_rejected (Fixture    *f,
                 const char *name,
                 const char *json,
                 gsize       data_size,
                 const char *expected)
{
  g_autoptr(GByteArray) bytes = g_byte_array_new ();
  guint64 n = GUINT64_TO_LE (strlen (json));
  g_autofree guint8 *zeros = g_malloc0 (data_size + 1);

  g_byte_array_append (bytes, (const guint8 *) &n, 8);
  g_byte_array_append (bytes, (const guint8 *) json, strlen (json));
  g_byte_array_append (bytes, zeros, data_size);
  assert_rejected_bytes (f, name, bytes->data, bytes->len, expected);
}

#define T(name, dtype, shape, offsets) \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

static void
test_corrupt_lengths (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(SmeltSafetensorsLayout) layout = reference_layout ();
  g_autofree char *good_path = NULL;
  g_autofree char *good = NULL;
  gsize good_length;
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  g_autoptr(GError) error = NULL;
  gsize cuts[] = { 8 + 1, 8 + 100, 8 + 335, 8 + 336 + 1, 8 + 336 + 40 };
  guint8 raw[16] = { 0 };

  /* The untouched file reads. */
  smelt_safetensors_layout_sort (layout);
  good_path = write_layout (f, "good.a.U8", layout);
  file = smelt_safetensors_file_new (good_path, &error);
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (good_path, &good, &good_length, NULL));
  g_assert_cmpuint (good_length, ==, 8 + 336 + 41);

  assert_rejected_bytes (f, "empty.safetensors", "", 0, "too short");
  assert_rejected_bytes (f, "cut-4.safetensors", good, 4, "too short");
  assert_rejected_bytes (f, "cut-7.safetensors", good, 7, "too short");
  for (guint i = 0; i < G_N_ELEMENTS (cuts); i++)
    {
      g_autofree char *name = g_strdup_printf ("cut-%" G_GSIZE_FORMAT ".safetensors", cuts[i]);

      assert_rejected_bytes (f, name, good, cuts[i],
                             cuts[i] < 8 + 336 ? "runs past the end of the" : "truncated");
    }
  /* Trailing garbage. */
  {
    g_autofree char *longer = g_malloc0 (good_length + 3);

    memcpy (longer, good, good_length);
    assert_rejected_bytes (f, "trailing.safetensors", longer, good_length + 3,
                           "3 bytes of trailing data");
  }

  assert_rejected_bytes (f, "zero-header.safetensors", raw, sizeof raw, "header length is 0");
  raw[0] = 0x01; raw[1] = 0xe1; raw[2] = 0xf5; raw[3] = 0x05;   /* 100000001 */
  assert_rejected_bytes (f, "huge-header.safetensors", raw, sizeof raw, "exceeds the limit");
  raw[0] = 0x00; raw[1] = 0x09; raw[2] = 0x3d; raw[3] = 0x00;   /* 4000000 */
  assert_rejected_bytes (f, "past-eof.safetensors", raw, sizeof raw,
                         "header length 4000000 runs past the end of the 16-byte file");
  memset (raw, 0xff, 8);
  assert_rejected_bytes (f, "max-header.safetensors", raw, sizeof raw, "exceeds the limit");
}

static void
test_corrupt_text (Fixture       *f,
                   gconstpointer  data)
{
  g_autoptr(GString) deep = g_string_new ("{\"a\":");
  const char nul_header[] = "\x08\x00\x00\x00\x00\x00\x00\x00{}\0     ";

  assert_rejected (f, "space.safetensors", " {}", 0, "does not start with “{”");
  assert_rejected (f, "array.safetensors", "[]", 0, "does not start with “{”");
  assert_rejected (f, "utf8.safetensors", "{\"a\xff\":1}", 0, "not valid UTF-8");
  assert_rejected (f, "overlong.safetensors", "{\"\xc0\xaf\":1}", 0, "not valid UTF-8");
  assert_rejected_bytes (f, "nul.safetensors", nul_header, sizeof nul_header - 1, "NUL byte");

  for (guint i = 0; i < 1000000; i++)
    g_string_append_c (deep, '[');
  for (guint i = 0; i < 1000000; i++)
    g_string_append_c (deep, ']');
  g_string_append_c (deep, '}');
  assert_rejected (f, "deep.safetensors", deep->str, 0, "nests deeper than 8 levels");
  assert_rejected (f, "deep-objects.safetensors",
                   "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{}}}}}}}}}", 0,
                   "nests deeper than 8 levels");

  assert_rejected (f, "trailing-comma.safetensors",
                   "{" T ("a", "U8", "[1]", "[0,1]") ",}", 1, "header JSON is invalid");
  assert_rejected (f, "inner-comma.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",}}", 1, "header JSON is invalid");
  assert_rejected (f, "no-colon.safetensors", "{\"a\" 1}", 0, "header JSON is invalid");
  assert_rejected (f, "unterminated.safetensors", "{\"a\":{\"dtype\":\"U8\"", 0,
                   "header JSON ends");
  assert_rejected (f, "unterminated-string.safetensors", "{\"a", 0, "ends inside a string");
  assert_rejected (f, "single-quotes.safetensors", "{'a':1}", 0, "header JSON is invalid");
  assert_rejected (f, "comment.safetensors", "{/* x */}", 0, "header JSON is invalid");
  assert_rejected (f, "two-objects.safetensors", "{} {}", 0, "unexpected data after");
  assert_rejected (f, "garbage-after.safetensors", "{}x", 0, "unexpected data after");
  assert_rejected (f, "leading-zero.safetensors",
                   "{" T ("a", "U8", "[01]", "[0,1]") "}", 1, "header JSON is invalid");
  assert_rejected (f, "control-char.safetensors",
                   "{\"a\tb\":{}}", 0, "raw control character 0x09");
  assert_rejected (f, "bad-escape.safetensors", "{\"a\\x\":{}}", 0, "header JSON is invalid");
  assert_rejected (f, "lone-surrogate.safetensors", "{\"a\\ud800\":{}}", 0, "unpaired surrogate");
  assert_rejected (f, "lone-low-surrogate.safetensors", "{\"a\\udc00x\":{}}", 0,
                   "unpaired surrogate");
  assert_rejected (f, "nul-escape.safetensors", "{\"a\\u0000b\":{}}", 0, "NUL character");
}

static void
test_corrupt_schema (Fixture       *f,
                     gconstpointer  data)
{
  assert_rejected (f, "not-object.safetensors", "{\"a\":5}", 0,
                   "tensor “a” must be an object, found a number");
  assert_rejected (f, "duplicate.safetensors",
                   "{" T ("a", "U8", "[1]", "[0,1]") "," T ("a", "U8", "[1]", "[1,2]") "}", 2,
                   "lists “a” twice");
  assert_rejected (f, "duplicate-escaped.safetensors",
                   "{" T ("ab", "U8", "[1]", "[0,1]") "," T ("a\\u0062", "U8", "[1]", "[1,2]") "}", 2,
                   "lists “ab” twice");
  assert_rejected (f, "duplicate-metadata.safetensors",
                   "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "lists “__metadata__” twice");
  assert_rejected (f, "duplicate-field.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "tensor “a” has the field “dtype” twice");
  assert_rejected (f, "duplicate-metadata-key.safetensors",
                   "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "has the key “k” twice");
  assert_rejected (f, "bad-dtype.safetensors", "{" T ("a", "F12", "[1]", "[0,1]") "}", 1,
                   "tensor “a” has the unknown dtype “F12”");
  assert_rejected (f, "lower-dtype.safetensors", "{" T ("a", "f32", "[1]", "[0,4]") "}", 4,
                   "unknown dtype “f32”");
  assert_rejected (f, "dtype-number.safetensors",
                   "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                   "“dtype” must be a string, found a number");
  assert_rejected (f, "negative-shape.safetensors", "{" T ("a", "U8", "[-1]", "[0,1]") "}", 1,
                   "“shape” holds the negative number -1");
  assert_rejected (f, "float-shape.safetensors", "{" T ("a", "U8", "[2.0]", "[0,2]") "}", 2,
                   "“shape” holds 2.0, which is not an integer");
  assert_rejected (f, "exp-shape.safetensors", "{" T ("a", "U8", "[1e1]", "[0,10]") "}", 10,
                   "not an integer");
  assert_rejected (f, "huge-shape.safetensors",
                   "{" T ("a", "U8", "[18446744073709551617]", "[0,1]") "}", 1,
                   "does not fit 64 bits");
  assert_rejected (f, "overflow-shape.safetensors",
                   "{" T ("a", "F32", "[4294967296,4294967296,16]", "[0,1]") "}", 1,
                   "shape [4294967296, 4294967296, 16] is too large");
  assert_rejected (f, "bits-overflow.safetensors",
                   "{" T ("a", "F32", "[4611686018427387904]", "[0,1]") "}", 1, "is too large");
  assert_rejected (f, "many-dims.safetensors",
                   "{" T ("a", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1,
                   "“shape” has more than 8 elements");
  assert_rejected (f, "shape-string.safetensors", "{" T ("a", "U8", "\"1\"", "[0,1]") "}", 1,
                   "“shape” must be an array of integers, found a string");
  assert_rejected (f, "shape-nested.safetensors", "{" T ("a", "U8", "[[1]]", "[0,1]") "}", 1,
                   "“shape” must hold integers, found an array");
  assert_rejected (f, "shape-bool.safetensors", "{" T ("a", "U8", "[true]", "[0,1]") "}", 1,
                   "found a boolean");
  assert_rejected (f, "offsets-one.safetensors", "{" T ("a", "U8", "[1]", "[0]") "}", 1,
                   "must hold exactly 2 integers, not 1");
  assert_rejected (f, "offsets-three.safetensors", "{" T ("a", "U8", "[1]", "[0,1,2]") "}", 1,
                   "“data_offsets” has more than 2 elements");
  assert_rejected (f, "offsets-reversed.safetensors", "{" T ("a", "U8", "[0]", "[1,0]") "}", 1,
                   "data_offsets [1, 0] end before they begin");
  assert_rejected (f, "offsets-negative.safetensors", "{" T ("a", "U8", "[1]", "[-1,0]") "}", 1,
                   "negative");
  assert_rejected (f, "mismatch.safetensors", "{" T ("a", "F32", "[2]", "[0,4]") "}", 4,
                   "tensor “a”: data_offsets [0, 4] span 4 bytes but shape [2] of F32 needs 8");
  assert_rejected (f, "half-byte.safetensors", "{" T ("a", "F4", "[3]", "[0,1]") "}", 1,
                   "shape [3] of F4 is not a whole number of bytes");
  assert_rejected (f, "missing-shape.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1,
                   "tensor “a” has no “shape” field");
  assert_rejected (f, "missing-dtype.safetensors",
                   "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                   "tensor “a” has no “dtype” field");
  assert_rejected (f, "missing-offsets.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1,
                   "tensor “a” has no “data_offsets” field");
  assert_rejected (f, "extra-field.safetensors",
                   "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"foo\":1}}", 1,
                   "tensor “a” has an unknown field “foo”");
  assert_rejected (f, "metadata-number.safetensors",
                   "{\"__metadata__\":{\"format\":\"pt\",\"n\":1}}", 0,
                   "__metadata__ value of “n” must be a string, found a number");
  assert_rejected (f, "metadata-nested.safetensors",
                   "{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, "must be a string, found an object");
  assert_rejected (f, "metadata-array.safetensors", "{\"__metadata__\":[]}", 0,
                   "__metadata__ must be an object of strings, found an array");
  /* The first offending tensor in header order is the one named. */
  assert_rejected (f, "first-bad.safetensors",
                   "{" T ("ok", "U8", "[1]", "[0,1]") "," T ("bad1", "X", "[1]", "[1,2]") ","
                   T ("bad2", "Y", "[1]", "[2,3]") "}", 3, "tensor “bad1”");
}

static void
test_corrupt_spans (Fixture       *f,
                    gconstpointer  data)
{
  assert_rejected (f, "overlap.safetensors",
                   "{" T ("a", "F32", "[2]", "[0,8]") "," T ("b", "F32", "[2]", "[4,12]") "}", 12,
                   "tensor “b” [4, 12) overlaps tensor “a” [0, 8)");
  assert_rejected (f, "same-span.safetensors",
                   "{" T ("a", "F32", "[2]", "[0,8]") "," T ("b", "F32", "[2]", "[0,8]") "}", 8,
                   "overlaps");
  assert_rejected (f, "hole.safetensors",
                   "{" T ("a", "F32", "[2]", "[0,8]") "," T ("b", "F32", "[2]", "[12,20]") "}", 20,
                   "bytes [8, 12) between tensors “a” and “b” belong to no tensor");
  assert_rejected (f, "hole-first.safetensors", "{" T ("a", "F32", "[2]", "[4,12]") "}", 12,
                   "bytes [0, 4) before tensor “a”");
  assert_rejected (f, "past-data.safetensors", "{" T ("a", "F32", "[2]", "[0,8]") "}", 6,
                   "tensor “a” [0, 8) runs past the end of the 6-byte data section");
  assert_rejected (f, "trailing-data.safetensors", "{" T ("a", "F32", "[2]", "[0,8]") "}", 9,
                   "1 byte of trailing data");
  assert_rejected (f, "no-tensors-data.safetensors", "{}", 4, "4 bytes of trailing data");
  assert_rejected (f, "huge-offsets.safetensors",
                   "{" T ("a", "U8", "[1]", "[18446744073709551614,18446744073709551615]") "}", 1,
                   "bytes [0, 18446744073709551614) before tensor “a”");

  /* Unsorted headers and zero-size tensors are fine. */
  {
    const char *json = "{" T ("b", "U8", "[2]", "[3,5]") "," T ("z", "U8", "[0]", "[3,3]") ","
                       T ("a", "U8", "[3]", "[0,3]") "," T ("e", "U8", "[0,5]", "[5,5]") "}";
    g_autoptr(GByteArray) bytes = g_byte_array_new ();
    guint64 n = GUINT64_TO_LE (strlen (json));
    g_autofree char *path = NULL;
    g_autoptr(SmeltSafetensorsFile) file = NULL;
    g_autoptr(GError) error = NULL;
    const char *order[] = { "a", "z", "b", "e" };

    g_byte_array_append (bytes, (const guint8 *) &n, 8);
    g_byte_array_append (bytes, (const guint8 *) json, strlen (json));
    g_byte_array_append (bytes, (const guint8 *) "abcde", 5);
    path = write_file (f, "unsorted.safetensors", bytes->data, bytes->len);
    file = smelt_safetensors_file_new (path, &error);
    g_assert_no_error (error);
    for (guint i = 0; i < G_N_ELEMENTS (order); i++)
      g_assert_cmpstr (smelt_tensor_get_name (smelt_safetensors_file_get_tensor (file, i)), ==,
                       order[i]);
  }
}

static void
test_missing (Fixture       *f,
              gconstpointer  data)
{
  g_autofree char *path = g_build_filename (f->dir, "absent.safetensors", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltSafetensorsFile) file = smelt_safetensors_file_new (path, &error);

  g_assert_null (file);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND);
  g_assert_true (g_str_has_prefix (error->message, path));
  g_clear_error (&error);

  file = smelt_safetensors_file_new (f->dir, &error);
  g_assert_null (file);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_true (g_str_has_prefix (error->message, f->dir));
}

/* Runs the reader over every file in $SMELT_BROKEN_CORPUS (or the
 * directory next to this source, when run from the source tree). */
static void
test_broken_corpus (void)
{
  const char *dir_path = g_getenv ("SMELT_BROKEN_CORPUS");
  g_autoptr(GDir) dir = NULL;
  const char *name;
  guint n = 0;

  if (dir_path == NULL)
    dir_path = g_test_get_filename (G_TEST_DIST, "data", "broken", NULL);
  dir = g_dir_open (dir_path, 0, NULL);
  /* a missing corpus is a broken test setup, not a pass */
  if (dir == NULL)
    g_error ("no broken-file corpus at %s (set G_TEST_SRCDIR or SMELT_BROKEN_CORPUS)", dir_path);
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autoptr(GError) error = NULL;
      g_autoptr(SmeltSafetensorsFile) file = NULL;

      if (!g_str_has_suffix (name, ".safetensors"))
        continue;
      path = g_build_filename (dir_path, name, NULL);
      file = smelt_safetensors_file_new (path, &error);
      g_test_message ("%s: %s", name, error ? error->message : "accepted");
      g_assert_null (file);
      g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
      g_assert_true (g_str_has_prefix (error->message, path));
      n++;
    }
  g_assert_cmpuint (n, >=, 10);
}

/* ---- utilities ---- */

static void
test_parse_size (void)
{
  static const struct { const char *text; guint64 bytes; } good[] = {
    { "5GB", 5000000000 },
    { "1.5GB", 1500000000 },
    { "500MB", 500000000 },
    { "10kb", 10000 },
    { "1TB", 1000000000000 },
    { " 2 GiB ", 2147483648 },
    { "1.5MiB", 1572864 },
    { "3KiB", 3072 },
    { "1tib", 1099511627776 },
    { "1048576", 1048576 },
    { "512B", 512 },
    { "512 b", 512 },
    { ".5GB", 500000000 },
    { "50GB", 50000000000 },
    /* Python: int(float("4.35") * 10**6) and int(float("1.001") * 10**3). */
    { "4.35MB", 4350000 },
    { "1.001KB", 1000 },
    { "0.1KB", 100 },
  };
  static const char *bad[] = {
    "", " ", "0", "0GB", "0.0001KB", "-5GB", "5XB", "GB", "1.5", "1.5B", "abc", "1e3GB",
    "99999999999TB", "18446744073709551616", "5 G B", "5GBs", "5.GB.", "nanGB", "infGB",
  };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr(GError) error = NULL;
      guint64 bytes = 0;

      g_assert_true (smelt_parse_size (good[i].text, &bytes, &error));
      g_assert_no_error (error);
      if (bytes != good[i].bytes)
        g_error ("“%s”: %" G_GUINT64_FORMAT " != %" G_GUINT64_FORMAT,
                 good[i].text, bytes, good[i].bytes);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *quoted = g_strdup_printf ("“%s”", bad[i]);
      guint64 bytes = 0;

      if (smelt_parse_size (bad[i], &bytes, &error))
        g_error ("“%s” was accepted as %" G_GUINT64_FORMAT, bad[i], bytes);
      g_assert_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE);
      g_assert_nonnull (strstr (error->message, quoted));
      g_assert_nonnull (strstr (error->message, "GiB"));
    }
}

static void
test_format_size (void)
{
  static const struct { guint64 bytes; const char *text; } cases[] = {
    { 0, "0 B" },
    { 512, "512 B" },
    { 999, "999 B" },
    { 1000, "1.0 kB" },
    { 999949, "999.9 kB" },
    { 999999, "1.0 MB" },
    { 3400000, "3.4 MB" },
    { 1200000000, "1.2 GB" },
    { 16060522496, "16.1 GB" },
    { G_MAXUINT64, "18.4 EB" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = smelt_format_size (cases[i].bytes);
      g_assert_cmpstr (text, ==, cases[i].text);
    }
}

/* The input and the expected strings below were produced by Python 3's
 * json.loads and json.dumps(obj, indent=…, sort_keys=…). */
static const char json_input[] =
  "{\"zeta\": 1, \"alpha\": {\"b\": [1, 2.5, -0.0, 1e-05, 0.0001, 1e16, 1e15, 123456789.123, "
  "0.1, 1.5e300, 2.0, 100.0, 5e-324, 1.7976931348623157e308, -3], \"a\": {}}, \"empty\": [], "
  "\"s\": \"q\\\"uote\\\\back\\nnl\\ttab\\u0001\\u007f\\u00e9\\u4e2d\\ud83d\\ude00/\", "
  "\"t\": true, \"f\": false, \"n\": null, \"nested\": [[], [{}], {\"x\": [null]}], "
  "\"Big\": 9007199254740993, \"neg\": -9223372036854775807}";

static const char json_pretty_sorted[] =
  "{\n  \"Big\": 9007199254740993,\n  \"alpha\": {\n    \"a\": {},\n    \"b\": [\n      1,\n"
  "      2.5,\n      -0.0,\n      1e-05,\n      0.0001,\n      1e+16,\n      1000000000000000.0,\n"
  "      123456789.123,\n      0.1,\n      1.5e+300,\n      2.0,\n      100.0,\n      5e-324,\n"
  "      1.7976931348623157e+308,\n      -3\n    ]\n  },\n  \"empty\": [],\n  \"f\": false,\n"
  "  \"n\": null,\n  \"neg\": -9223372036854775807,\n  \"nested\": [\n    [],\n    [\n      {}\n"
  "    ],\n    {\n      \"x\": [\n        null\n      ]\n    }\n  ],\n"
  "  \"s\": \"q\\\"uote\\\\back\\nnl\\ttab\\u0001\\u007f\\u00e9\\u4e2d\\ud83d\\ude00/\",\n"
  "  \"t\": true,\n  \"zeta\": 1\n}";

static const char json_pretty[] =
  "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"b\": [\n      1,\n      2.5,\n      -0.0,\n"
  "      1e-05,\n      0.0001,\n      1e+16,\n      1000000000000000.0,\n      123456789.123,\n"
  "      0.1,\n      1.5e+300,\n      2.0,\n      100.0,\n      5e-324,\n"
  "      1.7976931348623157e+308,\n      -3\n    ],\n    \"a\": {}\n  },\n  \"empty\": [],\n"
  "  \"s\": \"q\\\"uote\\\\back\\nnl\\ttab\\u0001\\u007f\\u00e9\\u4e2d\\ud83d\\ude00/\",\n"
  "  \"t\": true,\n  \"f\": false,\n  \"n\": null,\n  \"nested\": [\n    [],\n    [\n      {}\n"
  "    ],\n    {\n      \"x\": [\n        null\n      ]\n    }\n  ],\n"
  "  \"Big\": 9007199254740993,\n  \"neg\": -9223372036854775807\n}";

static const char json_compact_sorted[] =
  "{\"Big\": 9007199254740993, \"alpha\": {\"a\": {}, \"b\": [1, 2.5, -0.0, 1e-05, 0.0001, "
  "1e+16, 1000000000000000.0, 123456789.123, 0.1, 1.5e+300, 2.0, 100.0, 5e-324, "
  "1.7976931348623157e+308, -3]}, \"empty\": [], \"f\": false, \"n\": null, "
  "\"neg\": -9223372036854775807, \"nested\": [[], [{}], {\"x\": [null]}], "
  "\"s\": \"q\\\"uote\\\\back\\nnl\\ttab\\u0001\\u007f\\u00e9\\u4e2d\\ud83d\\ude00/\", "
  "\"t\": true, \"zeta\": 1}";

static const char json_compact[] =
  "{\"zeta\": 1, \"alpha\": {\"b\": [1, 2.5, -0.0, 1e-05, 0.0001, 1e+16, 1000000000000000.0, "
  "123456789.123, 0.1, 1.5e+300, 2.0, 100.0, 5e-324, 1.7976931348623157e+308, -3], "
  "\"a\": {}}, \"empty\": [], "
  "\"s\": \"q\\\"uote\\\\back\\nnl\\ttab\\u0001\\u007f\\u00e9\\u4e2d\\ud83d\\ude00/\", "
  "\"t\": true, \"f\": false, \"n\": null, \"nested\": [[], [{}], {\"x\": [null]}], "
  "\"Big\": 9007199254740993, \"neg\": -9223372036854775807}";

static void
test_json_to_string (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = json_from_string (json_input, &error);
  static const struct { double value; const char *text; } floats[] = {
    /* Python repr() of each. */
    { 0.1 + 0.2, "0.30000000000000004" },
    { 1.0 / 3.0, "0.3333333333333333" },
    { 1e22, "1e+22" },
    { 1e-7, "1e-07" },
    { 123e-20, "1.23e-18" },
    { 0.5, "0.5" },
    { 3.0e16, "3e+16" },
    { 9007199254740992.0, "9007199254740992.0" },
    { 1e100, "1e+100" },
    { 4.35, "4.35" },
    { NAN, "NaN" },
    { INFINITY, "Infinity" },
    { -INFINITY, "-Infinity" },
  };
  char *text;

  g_assert_no_error (error);
  text = smelt_json_to_string (node, TRUE, TRUE);
  g_assert_cmpstr (text, ==, json_pretty_sorted);
  g_free (text);
  text = smelt_json_to_string (node, TRUE, FALSE);
  g_assert_cmpstr (text, ==, json_pretty);
  g_free (text);
  text = smelt_json_to_string (node, FALSE, TRUE);
  g_assert_cmpstr (text, ==, json_compact_sorted);
  g_free (text);
  text = smelt_json_to_string (node, FALSE, FALSE);
  g_assert_cmpstr (text, ==, json_compact);
  g_free (text);

  for (guint i = 0; i < G_N_ELEMENTS (floats); i++)
    {
      g_autoptr(JsonNode) value = json_node_init_double (json_node_alloc (), floats[i].value);

      text = smelt_json_to_string (value, TRUE, TRUE);
      g_assert_cmpstr (text, ==, floats[i].text);
      g_free (text);
    }

  /* A sharded checkpoint index, as transformers writes it (before its
   * trailing newline). */
  {
    g_autoptr(JsonNode) index = json_from_string (
      "{\"metadata\":{\"total_size\":16060522496},\"weight_map\":{"
      "\"b\":\"model-00002-of-00002.safetensors\",\"a\":\"model-00001-of-00002.safetensors\"}}",
      &error);

    g_assert_no_error (error);
    text = smelt_json_to_string (index, TRUE, TRUE);
    g_assert_cmpstr (text, ==,
                     "{\n  \"metadata\": {\n    \"total_size\": 16060522496\n  },\n"
                     "  \"weight_map\": {\n    \"a\": \"model-00001-of-00002.safetensors\",\n"
                     "    \"b\": \"model-00002-of-00002.safetensors\"\n  }\n}");
    g_free (text);
  }

  text = smelt_json_to_string (NULL, TRUE, TRUE);
  g_assert_cmpstr (text, ==, "null");
  g_free (text);
}

static void
test_json_load_file (Fixture       *f,
                     gconstpointer  data)
{
  g_autofree char *good = write_file (f, "config.json", "{\"a\": [1, 2]}\n", 14);
  g_autofree char *bad = write_file (f, "bad.json", "{\"a\": }", 7);
  g_autofree char *empty = write_file (f, "empty.json", "", 0);
  g_autofree char *latin1 = write_file (f, "latin1.json", "{\"\xe9\": 1}", 8);
  g_autofree char *missing = g_build_filename (f->dir, "missing.json", NULL);
  g_autofree char *deep_path = NULL;
  g_autoptr(GString) deep = g_string_new (NULL);
  g_autoptr(GString) ok_deep = g_string_new (NULL);
  g_autofree char *ok_deep_path = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) node = NULL;

  node = smelt_json_load_file (good, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (node));
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (json_node_get_object (node), "a")), ==, 2);
  g_clear_pointer (&node, json_node_unref);

  for (guint i = 0; i < 65; i++)
    g_string_append_c (deep, '[');
  for (guint i = 0; i < 65; i++)
    g_string_append_c (deep, ']');
  deep_path = write_file (f, "deep.json", deep->str, deep->len);
  for (guint i = 0; i < 64; i++)
    g_string_append (ok_deep, "[\"]\",");
  g_string_append_c (ok_deep, '0');
  for (guint i = 0; i < 64; i++)
    g_string_append_c (ok_deep, ']');
  ok_deep_path = write_file (f, "ok-deep.json", ok_deep->str, ok_deep->len);
  node = smelt_json_load_file (ok_deep_path, &error);
  g_assert_no_error (error);
  g_clear_pointer (&node, json_node_unref);

  {
    const struct { const char *path; int code; const char *expected; } cases[] = {
      { bad, SMELT_MODEL_ERROR_INVALID, "invalid JSON" },
      { empty, SMELT_MODEL_ERROR_INVALID, "no JSON value" },
      { latin1, SMELT_MODEL_ERROR_INVALID, "UTF-8" },
      { deep_path, SMELT_MODEL_ERROR_INVALID, "deeper than 64" },
      { missing, SMELT_MODEL_ERROR_NOT_FOUND, "" },
    };

    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        node = smelt_json_load_file (cases[i].path, &error);
        g_assert_null (node);
        g_assert_error (error, SMELT_MODEL_ERROR, cases[i].code);
        g_assert_true (g_str_has_prefix (error->message, cases[i].path));
        g_assert_nonnull (strstr (error->message, cases[i].expected));
        g_clear_error (&error);
      }
  }
}

static void
test_levenshtein (void)
{
  g_assert_cmpuint (smelt_levenshtein ("kitten", "sitting"), ==, 3);
  g_assert_cmpuint (smelt_levenshtein ("", "abc"), ==, 3);
  g_assert_cmpuint (smelt_levenshtein ("abc", ""), ==, 3);
  g_assert_cmpuint (smelt_levenshtein ("", ""), ==, 0);
  g_assert_cmpuint (smelt_levenshtein ("Flaw", "lawn"), ==, 2);
  g_assert_cmpuint (smelt_levenshtein ("ABC", "abc"), ==, 0);
  g_assert_cmpuint (smelt_levenshtein ("MaxShardSize", "maxshardsize"), ==, 0);
  g_assert_cmpuint (smelt_levenshtein ("lora_alpha", "lora_alhpa"), ==, 2);
  g_assert_cmpuint (smelt_levenshtein ("É", "é"), ==, 0);
  g_assert_cmpuint (smelt_levenshtein ("héllo", "hallo"), ==, 1);
  g_assert_cmpuint (smelt_levenshtein ("Types", "Type"), ==, 1);
  g_assert_cmpuint (smelt_levenshtein ("a\xff", "A\xfe"), ==, 1);
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/safetensors/layout/reference-header", test_layout_reference_header);
  g_test_add_func ("/safetensors/layout/sort-order", test_layout_sort_order);
  g_test_add_func ("/safetensors/layout/errors", test_layout_errors);
  g_test_add_func ("/safetensors/layout/metadata-and-escaping", test_layout_metadata_and_escaping);
  g_test_add ("/safetensors/reader/roundtrip", Fixture, NULL, fixture_setup, test_roundtrip, fixture_teardown);
  g_test_add ("/safetensors/reader/read-rows", Fixture, NULL, fixture_setup, test_read_rows, fixture_teardown);
  g_test_add ("/safetensors/reader/release-and-alias", Fixture, NULL, fixture_setup, test_release_and_alias, fixture_teardown);
  g_test_add ("/safetensors/reader/unaligned", Fixture, NULL, fixture_setup, test_unaligned, fixture_teardown);
  g_test_add ("/safetensors/reader/no-tensors", Fixture, NULL, fixture_setup, test_no_tensors, fixture_teardown);
  g_test_add ("/safetensors/reader/missing", Fixture, NULL, fixture_setup, test_missing, fixture_teardown);
  g_test_add ("/safetensors/corrupt/lengths", Fixture, NULL, fixture_setup, test_corrupt_lengths, fixture_teardown);
  g_test_add ("/safetensors/corrupt/text", Fixture, NULL, fixture_setup, test_corrupt_text, fixture_teardown);
  g_test_add ("/safetensors/corrupt/schema", Fixture, NULL, fixture_setup, test_corrupt_schema, fixture_teardown);
  g_test_add ("/safetensors/corrupt/spans", Fixture, NULL, fixture_setup, test_corrupt_spans, fixture_teardown);
  g_test_add_func ("/safetensors/corrupt/corpus", test_broken_corpus);
  g_test_add_func ("/utils/parse-size", test_parse_size);
  g_test_add_func ("/utils/format-size", test_format_size);
  g_test_add_func ("/utils/json-to-string", test_json_to_string);
  g_test_add ("/utils/json-load-file", Fixture, NULL, fixture_setup, test_json_load_file, fixture_teardown);
  g_test_add_func ("/utils/levenshtein", test_levenshtein);

  return g_test_run ();
}
