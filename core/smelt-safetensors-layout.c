/* smelt-safetensors-layout.c: plans a safetensors file before any data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "smelt-private.h"

/**
 * SmeltSafetensorsLayout:
 *
 * The plan of a safetensors file: its tensors, where each one's data goes,
 * and the exact header bytes.
 *
 * A format adds every tensor with [method@Smelt.SafetensorsLayout.add_tensor],
 * optionally calls [method@Smelt.SafetensorsLayout.sort] to get the order
 * `safetensors.torch.save_file` uses, then writes
 * [method@Smelt.SafetensorsLayout.get_header] followed by each tensor's
 * bytes in layout order. With the default metadata and after sorting, the
 * file is byte-identical to the one the reference writer produces for the
 * same tensors.
 */

/* The largest number of dimensions the reader accepts: refusing more here
 * keeps everything smelt writes readable by smelt. */
#define MAX_DIMS 8

typedef struct
{
  char *name;
  SmeltDType dtype;
  guint64 *shape;
  guint n_dims;
  guint64 size;
  guint64 begin;
} LayoutEntry;

struct _SmeltSafetensorsLayout
{
  GObject parent_instance;

  GPtrArray *entries;     /* LayoutEntry*, in layout order */
  GHashTable *by_name;    /* name → LayoutEntry* */
  GHashTable *metadata;   /* key → value */
  guint64 data_size;
  GBytes *header;         /* built on demand, dropped on any change */
};

G_DEFINE_FINAL_TYPE (SmeltSafetensorsLayout, smelt_safetensors_layout, G_TYPE_OBJECT)

static void
layout_entry_free (LayoutEntry *entry)
{
  g_free (entry->name);
  g_free (entry->shape);
  g_free (entry);
}

static void
invalidate (SmeltSafetensorsLayout *self)
{
  g_clear_pointer (&self->header, g_bytes_unref);
}

/* Lays the data out back to back in the current order: the reference
 * writer pads nothing and gets its alignment from the sort alone. */
static void
assign_offsets (SmeltSafetensorsLayout *self)
{
  guint64 offset = 0;

  for (guint i = 0; i < self->entries->len; i++)
    {
      LayoutEntry *entry = self->entries->pdata[i];

      entry->begin = offset;
      offset += entry->size;
    }
  self->data_size = offset;
}

static void
smelt_safetensors_layout_finalize (GObject *object)
{
  SmeltSafetensorsLayout *self = SMELT_SAFETENSORS_LAYOUT (object);

  g_clear_pointer (&self->by_name, g_hash_table_unref);
  g_clear_pointer (&self->entries, g_ptr_array_unref);
  g_clear_pointer (&self->metadata, g_hash_table_unref);
  invalidate (self);

  G_OBJECT_CLASS (smelt_safetensors_layout_parent_class)->finalize (object);
}

static void
smelt_safetensors_layout_class_init (SmeltSafetensorsLayoutClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_safetensors_layout_finalize;
}

static void
smelt_safetensors_layout_init (SmeltSafetensorsLayout *self)
{
  self->entries = g_ptr_array_new_with_free_func ((GDestroyNotify) layout_entry_free);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  self->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  /* transformers and PEFT always write this, and some loaders refuse
   * files without it. */
  g_hash_table_insert (self->metadata, g_strdup ("format"), g_strdup ("pt"));
}

/**
 * smelt_safetensors_layout_new:
 *
 * Creates an empty layout whose metadata is `{"format": "pt"}`.
 *
 * Returns: (transfer full): a new #SmeltSafetensorsLayout
 */
SmeltSafetensorsLayout *
smelt_safetensors_layout_new (void)
{
  return g_object_new (SMELT_TYPE_SAFETENSORS_LAYOUT, NULL);
}

static gboolean
check_name (SmeltSafetensorsLayout *self,
            const char             *name,
            GError                **error)
{
  if (!g_utf8_validate (name, -1, NULL))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor name is not valid UTF-8");
      return FALSE;
    }
  if (strcmp (name, "__metadata__") == 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "“__metadata__” is reserved and cannot name a tensor");
      return FALSE;
    }
  if (g_hash_table_contains (self->by_name, name))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” is already in the layout", name);
      return FALSE;
    }
  return TRUE;
}

static gboolean
compute_size (const char    *name,
              SmeltDType     dtype,
              const guint64 *shape,
              guint          n_dims,
              guint64       *size,
              GError       **error)
{
  guint bits = smelt_dtype_get_bits (dtype);
  g_autofree char *shape_string = NULL;
  guint64 n_elements, n_bits;

  if (bits == 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” has no valid dtype", name);
      return FALSE;
    }
  if (n_dims > MAX_DIMS)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” has %u dimensions; at most %u are supported",
                   name, n_dims, MAX_DIMS);
      return FALSE;
    }
  shape_string = _smelt_shape_to_string (shape, n_dims);
  if (!_smelt_shape_n_elements (shape, n_dims, &n_elements) ||
      !g_uint64_checked_mul (&n_bits, n_elements, bits))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s”: shape %s is too large", name, shape_string);
      return FALSE;
    }
  if (n_bits % 8 != 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s”: shape %s of %s is not a whole number of bytes",
                   name, shape_string, smelt_dtype_to_string (dtype));
      return FALSE;
    }
  *size = n_bits / 8;
  return TRUE;
}

/**
 * smelt_safetensors_layout_add_tensor:
 * @self: a #SmeltSafetensorsLayout
 * @name: the tensor's name, valid UTF-8
 * @dtype: its element type
 * @shape: (array length=n_dims) (nullable): its dimensions, outermost first
 * @n_dims: the number of dimensions (0 for a scalar)
 * @error: return location for a #GError
 *
 * Appends a tensor to the layout, its data following the previous one's.
 * Fails with %SMELT_FORMAT_ERROR_FAILED if @name is already used or
 * reserved, @dtype is not a type, or the shape's size is not a whole
 * number of bytes or does not fit 64 bits.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_safetensors_layout_add_tensor (SmeltSafetensorsLayout *self,
                                     const char             *name,
                                     SmeltDType              dtype,
                                     const guint64          *shape,
                                     guint                   n_dims,
                                     GError                **error)
{
  LayoutEntry *entry;
  guint64 size, end;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (shape != NULL || n_dims == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!check_name (self, name, error) ||
      !compute_size (name, dtype, shape, n_dims, &size, error))
    return FALSE;
  if (!g_uint64_checked_add (&end, self->data_size, size))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” does not fit: the data would exceed 64 bits", name);
      return FALSE;
    }

  entry = g_new0 (LayoutEntry, 1);
  entry->name = g_strdup (name);
  entry->dtype = dtype;
  entry->shape = g_new0 (guint64, MAX (n_dims, 1));
  if (n_dims > 0)
    memcpy (entry->shape, shape, n_dims * sizeof (guint64));
  entry->n_dims = n_dims;
  entry->size = size;
  entry->begin = self->data_size;
  self->data_size = end;

  g_ptr_array_add (self->entries, entry);
  g_hash_table_insert (self->by_name, entry->name, entry);
  invalidate (self);
  return TRUE;
}

/**
 * smelt_safetensors_layout_set_shape:
 * @self: a #SmeltSafetensorsLayout
 * @name: a tensor of the layout
 * @shape: (array length=n_dims): its new shape
 * @n_dims: its rank
 * @error: return location for a #GError
 *
 * Changes a tensor's shape, and so its size: the tensors after it move.
 * For data whose length is only known once it is made (a 4-bit weight's
 * JSON quant state), planned at its longest first.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_safetensors_layout_set_shape (SmeltSafetensorsLayout *self,
                                    const char             *name,
                                    const guint64          *shape,
                                    guint                   n_dims,
                                    GError                **error)
{
  LayoutEntry *entry;
  guint64 size, pos = 0;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);
  g_return_val_if_fail (shape != NULL || n_dims == 0, FALSE);

  entry = g_hash_table_lookup (self->by_name, name);
  if (entry == NULL)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” is not in the layout", name);
      return FALSE;
    }
  if (!compute_size (name, entry->dtype, shape, n_dims, &size, error))
    return FALSE;
  g_free (entry->shape);
  entry->shape = g_new0 (guint64, MAX (n_dims, 1));
  if (n_dims > 0)
    memcpy (entry->shape, shape, n_dims * sizeof (guint64));
  entry->n_dims = n_dims;
  entry->size = size;
  for (guint i = 0; i < self->entries->len; i++)
    {
      LayoutEntry *e = self->entries->pdata[i];

      e->begin = pos;
      pos += e->size;
    }
  self->data_size = pos;
  invalidate (self);
  return TRUE;
}

/**
 * smelt_safetensors_layout_set_metadata:
 * @self: a #SmeltSafetensorsLayout
 * @key: a `__metadata__` key, valid UTF-8
 * @value: (nullable): its value, valid UTF-8, or %NULL to remove @key
 *
 * Adds, replaces or removes a `__metadata__` entry. The header lists
 * "format" first and the other keys in byte-wise order, so that the same
 * metadata always gives the same bytes. A layout without any metadata
 * writes no `__metadata__` at all.
 */
void
smelt_safetensors_layout_set_metadata (SmeltSafetensorsLayout *self,
                                       const char             *key,
                                       const char             *value)
{
  g_return_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self));
  g_return_if_fail (key != NULL && g_utf8_validate (key, -1, NULL));
  g_return_if_fail (value == NULL || g_utf8_validate (value, -1, NULL));

  if (value != NULL)
    g_hash_table_insert (self->metadata, g_strdup (key), g_strdup (value));
  else
    g_hash_table_remove (self->metadata, key);
  invalidate (self);
}

/* Rank of each type in the reference writer's `Dtype` enum, whose derived
 * ordering is what `prepare()` sorts by (descending). */
static guint
dtype_rank (SmeltDType dtype)
{
  switch (dtype)
    {
    case SMELT_DTYPE_BOOL: return 0;
    case SMELT_DTYPE_F4: return 1;
    case SMELT_DTYPE_F6_E2M3: return 2;
    case SMELT_DTYPE_F6_E3M2: return 3;
    case SMELT_DTYPE_U8: return 4;
    case SMELT_DTYPE_I8: return 5;
    case SMELT_DTYPE_F8_E5M2: return 6;
    case SMELT_DTYPE_F8_E4M3: return 7;
    case SMELT_DTYPE_F8_E8M0: return 8;
    case SMELT_DTYPE_F8_E4M3FNUZ: return 9;
    case SMELT_DTYPE_F8_E5M2FNUZ: return 10;
    case SMELT_DTYPE_I16: return 11;
    case SMELT_DTYPE_U16: return 12;
    case SMELT_DTYPE_F16: return 13;
    case SMELT_DTYPE_BF16: return 14;
    case SMELT_DTYPE_I32: return 15;
    case SMELT_DTYPE_U32: return 16;
    case SMELT_DTYPE_F32: return 17;
    case SMELT_DTYPE_C64: return 18;
    case SMELT_DTYPE_F64: return 19;
    case SMELT_DTYPE_I64: return 20;
    case SMELT_DTYPE_U64: return 21;
    case SMELT_DTYPE_INVALID:
    default:
      return 0;
    }
}

static int
compare_reference_order (gconstpointer a,
                         gconstpointer b)
{
  const LayoutEntry *x = *(const LayoutEntry * const *) a;
  const LayoutEntry *y = *(const LayoutEntry * const *) b;
  guint rx = dtype_rank (x->dtype), ry = dtype_rank (y->dtype);

  if (rx != ry)
    return rx > ry ? -1 : 1;
  return strcmp (x->name, y->name);
}

/**
 * smelt_safetensors_layout_sort:
 * @self: a #SmeltSafetensorsLayout
 *
 * Reorders the tensors as `safetensors.torch.save_file` does: by element
 * type, widest first in the reference implementation's type order (so
 * F32 before BF16 before F16 before U8), then by name in byte order, and
 * lays their data out again in that order. Widest-first keeps every
 * tensor aligned to its element size without any padding.
 */
void
smelt_safetensors_layout_sort (SmeltSafetensorsLayout *self)
{
  g_return_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self));

  g_ptr_array_sort (self->entries, compare_reference_order);
  assign_offsets (self);
  invalidate (self);
}

/**
 * smelt_safetensors_layout_get_n_tensors:
 * @self: a #SmeltSafetensorsLayout
 *
 * Gets the number of tensors in the layout.
 *
 * Returns: the number of tensors in the layout
 */
guint
smelt_safetensors_layout_get_n_tensors (SmeltSafetensorsLayout *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), 0);
  return self->entries->len;
}

/**
 * smelt_safetensors_layout_get_tensor_name:
 * @self: a #SmeltSafetensorsLayout
 * @index: a position in layout order
 *
 * Gets the name of the tensor whose data comes @index-th in the file.
 *
 * Returns: (transfer none): the name of the tensor whose data comes
 *   @index-th in the file
 */
const char *
smelt_safetensors_layout_get_tensor_name (SmeltSafetensorsLayout *self,
                                          guint                   index)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), NULL);
  g_return_val_if_fail (index < self->entries->len, NULL);
  return ((LayoutEntry *) self->entries->pdata[index])->name;
}

/**
 * smelt_safetensors_layout_get_span:
 * @self: a #SmeltSafetensorsLayout
 * @name: a tensor name
 * @begin: (out) (optional): where the tensor's data begins, relative to the
 *   start of the data section
 * @end: (out) (optional): where it ends (exclusive)
 *
 * Finds where a tensor's bytes lie in the data section.
 *
 * Returns: %TRUE if @name is in the layout
 */
gboolean
smelt_safetensors_layout_get_span (SmeltSafetensorsLayout *self,
                                   const char             *name,
                                   guint64                *begin,
                                   guint64                *end)
{
  LayoutEntry *entry;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  entry = g_hash_table_lookup (self->by_name, name);
  if (entry == NULL)
    return FALSE;
  if (begin)
    *begin = entry->begin;
  if (end)
    *end = entry->begin + entry->size;
  return TRUE;
}

/* Appends @s as a JSON string the way serde_json writes it: UTF-8 as is,
 * `"` and `\` escaped, \b \f \n \r \t in short form and the other control
 * characters as \u00XX with lower-case hex. */
static void
append_json_string (GString    *out,
                    const char *s)
{
  static const char hex[] = "0123456789abcdef";

  g_string_append_c (out, '"');
  for (const guchar *p = (const guchar *) s; *p; p++)
    {
      switch (*p)
        {
        case '"': g_string_append (out, "\\\""); break;
        case '\\': g_string_append (out, "\\\\"); break;
        case '\b': g_string_append (out, "\\b"); break;
        case '\f': g_string_append (out, "\\f"); break;
        case '\n': g_string_append (out, "\\n"); break;
        case '\r': g_string_append (out, "\\r"); break;
        case '\t': g_string_append (out, "\\t"); break;
        default:
          if (*p < 0x20)
            {
              g_string_append (out, "\\u00");
              g_string_append_c (out, hex[*p >> 4]);
              g_string_append_c (out, hex[*p & 15]);
            }
          else
            g_string_append_c (out, (char) *p);
          break;
        }
    }
  g_string_append_c (out, '"');
}

static int
compare_metadata_keys (gconstpointer a,
                       gconstpointer b)
{
  const char *x = *(const char * const *) a;
  const char *y = *(const char * const *) b;

  /* "format" first: it is the key readers look for. */
  if (strcmp (x, "format") == 0 || strcmp (y, "format") == 0)
    return (strcmp (y, "format") == 0) - (strcmp (x, "format") == 0);
  return strcmp (x, y);
}

static void
append_metadata (SmeltSafetensorsLayout *self,
                 GString                *out)
{
  g_autofree gpointer *keys = NULL;
  guint n_keys;

  keys = g_hash_table_get_keys_as_array (self->metadata, &n_keys);
  if (n_keys == 0)
    return;
  qsort (keys, n_keys, sizeof (gpointer), compare_metadata_keys);

  g_string_append (out, "\"__metadata__\":{");
  for (guint i = 0; i < n_keys; i++)
    {
      if (i > 0)
        g_string_append_c (out, ',');
      append_json_string (out, keys[i]);
      g_string_append_c (out, ':');
      append_json_string (out, g_hash_table_lookup (self->metadata, keys[i]));
    }
  g_string_append_c (out, '}');
}

static void
append_entry (const LayoutEntry *entry,
              GString           *out)
{
  append_json_string (out, entry->name);
  g_string_append (out, ":{\"dtype\":");
  append_json_string (out, smelt_dtype_to_string (entry->dtype));
  g_string_append (out, ",\"shape\":[");
  for (guint i = 0; i < entry->n_dims; i++)
    g_string_append_printf (out, "%s%" G_GUINT64_FORMAT, i ? "," : "", entry->shape[i]);
  g_string_append_printf (out, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT
                          "]}", entry->begin, entry->begin + entry->size);
}

static GBytes *
build_header (SmeltSafetensorsLayout *self,
              gsize                   reserve)
{
  GString *out = g_string_new (NULL);
  guint64 n;

  /* Room for the length, filled in once the JSON is known. */
  g_string_append_len (out, "\0\0\0\0\0\0\0\0", 8);
  g_string_append_c (out, '{');
  append_metadata (self, out);
  for (guint i = 0; i < self->entries->len; i++)
    {
      if (out->len > 9)
        g_string_append_c (out, ',');
      append_entry (self->entries->pdata[i], out);
    }
  g_string_append_c (out, '}');

  /* Padding to a multiple of 8 puts the data section, and so (after the
   * sort) every tensor, at an offset aligned to its element size. */
  while ((out->len - 8) % 8 != 0 || out->len < reserve)
    g_string_append_c (out, ' ');
  n = out->len - 8;
  for (int i = 0; i < 8; i++)
    out->str[i] = (char) ((n >> (8 * i)) & 0xff);

  return g_string_free_to_bytes (out);
}

/**
 * smelt_safetensors_layout_get_header:
 * @self: a #SmeltSafetensorsLayout
 *
 * Gets everything that precedes the data section: the 8-byte
 * little-endian header length N and N bytes of compact JSON,
 * `__metadata__` first, then the tensors in layout order, right-padded
 * with spaces to a multiple of 8.
 *
 * Returns: (transfer full): the first 8 + N bytes of the file
 */
GBytes *
smelt_safetensors_layout_get_header (SmeltSafetensorsLayout *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), NULL);

  if (self->header == NULL)
    self->header = build_header (self, 0);
  return g_bytes_ref (self->header);
}

/**
 * smelt_safetensors_layout_get_header_sized:
 * @self: a #SmeltSafetensorsLayout
 * @size: the length wanted, a multiple of 8
 *
 * smelt_safetensors_layout_get_header(), padded with more spaces to
 * @size bytes (the format allows any trailing whitespace): a header
 * rewritten in place over a longer one it replaces.
 *
 * Returns: (transfer full) (nullable): @size bytes, or %NULL if the
 *   header needs more
 */
GBytes *
smelt_safetensors_layout_get_header_sized (SmeltSafetensorsLayout *self,
                                           gsize                   size)
{
  GBytes *header;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), NULL);

  header = build_header (self, size);
  if (g_bytes_get_size (header) != size)
    g_clear_pointer (&header, g_bytes_unref);
  return header;
}

/**
 * smelt_safetensors_layout_get_data_size:
 * @self: a #SmeltSafetensorsLayout
 *
 * Gets the size of the data section: the sum of the tensors' sizes.
 *
 * Returns: the size of the data section: the sum of the tensors' sizes
 */
guint64
smelt_safetensors_layout_get_data_size (SmeltSafetensorsLayout *self)
{
  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), 0);
  return self->data_size;
}

/**
 * smelt_safetensors_layout_get_file_size:
 * @self: a #SmeltSafetensorsLayout
 *
 * Gets the size of the whole file: header and data.
 *
 * Returns: the size of the whole file: header and data
 */
guint64
smelt_safetensors_layout_get_file_size (SmeltSafetensorsLayout *self)
{
  g_autoptr(GBytes) header = NULL;

  g_return_val_if_fail (SMELT_IS_SAFETENSORS_LAYOUT (self), 0);

  header = smelt_safetensors_layout_get_header (self);
  return g_bytes_get_size (header) + self->data_size;
}
