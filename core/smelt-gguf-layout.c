/* smelt-gguf-layout.c: plans a GGUF v3 file: metadata, tensor infos, offsets
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltGgufLayout:
 *
 * Plans a GGUF v3 file before any tensor data exists: key/value metadata
 * in insertion order, tensor infos in data order, each tensor at the
 * running sum of 32-byte aligned sizes. smelt_gguf_layout_get_header()
 * then gives the exact bytes that precede the tensor data, so a format
 * can stream the data behind it without seeking.
 *
 * Setting a key that exists replaces its value where it stands (as the
 * reference converter's writer does), so a template can be copied and
 * given a per-file `general.file_type`.
 */

typedef struct {
  char       *key;
  GByteArray *value;   /* type tag and encoded value, as in the file */
} Kv;

typedef struct {
  char         *name;
  SmeltGgmlType type;
  guint         n_dims;
  guint64       ne[4];
  guint64       size;
  guint64       offset;   /* from the data start */
} TensorInfo;

struct _SmeltGgufLayout
{
  GObject     parent_instance;

  GPtrArray  *kvs;        /* Kv */
  GHashTable *kv_index;   /* key → Kv */
  GPtrArray  *tensors;    /* TensorInfo */
  GHashTable *tensor_names;
  guint64     data_size;
};

G_DEFINE_FINAL_TYPE (SmeltGgufLayout, smelt_gguf_layout, G_TYPE_OBJECT)

static void
kv_free (gpointer data)
{
  Kv *kv = data;

  g_free (kv->key);
  g_byte_array_unref (kv->value);
  g_free (kv);
}

static void
tensor_info_free (gpointer data)
{
  TensorInfo *t = data;

  g_free (t->name);
  g_free (t);
}

static void
smelt_gguf_layout_finalize (GObject *object)
{
  SmeltGgufLayout *self = SMELT_GGUF_LAYOUT (object);

  g_hash_table_unref (self->kv_index);
  g_ptr_array_unref (self->kvs);
  g_hash_table_unref (self->tensor_names);
  g_ptr_array_unref (self->tensors);
  G_OBJECT_CLASS (smelt_gguf_layout_parent_class)->finalize (object);
}

static void
smelt_gguf_layout_class_init (SmeltGgufLayoutClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_gguf_layout_finalize;
}

static void
smelt_gguf_layout_init (SmeltGgufLayout *self)
{
  self->kvs = g_ptr_array_new_with_free_func (kv_free);
  self->kv_index = g_hash_table_new (g_str_hash, g_str_equal);
  self->tensors = g_ptr_array_new_with_free_func (tensor_info_free);
  self->tensor_names = g_hash_table_new (g_str_hash, g_str_equal);
}

/**
 * smelt_gguf_layout_new:
 *
 * Creates an empty layout, to which metadata and tensors are added.
 *
 * Returns: (transfer full): an empty layout
 */
SmeltGgufLayout *
smelt_gguf_layout_new (void)
{
  return g_object_new (SMELT_TYPE_GGUF_LAYOUT, NULL);
}

/**
 * smelt_gguf_layout_copy:
 * @self: a layout
 *
 * Copies @self, metadata and tensors, into an independent layout.
 *
 * Returns: (transfer full): an independent copy of @self, metadata and
 *   tensors
 */
SmeltGgufLayout *
smelt_gguf_layout_copy (SmeltGgufLayout *self)
{
  SmeltGgufLayout *copy;

  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), NULL);

  copy = smelt_gguf_layout_new ();
  for (guint i = 0; i < self->kvs->len; i++)
    {
      Kv *kv = g_ptr_array_index (self->kvs, i);
      Kv *c = g_new0 (Kv, 1);

      c->key = g_strdup (kv->key);
      c->value = g_byte_array_sized_new (kv->value->len);
      g_byte_array_append (c->value, kv->value->data, kv->value->len);
      g_ptr_array_add (copy->kvs, c);
      g_hash_table_insert (copy->kv_index, c->key, c);
    }
  for (guint i = 0; i < self->tensors->len; i++)
    {
      TensorInfo *t = g_ptr_array_index (self->tensors, i);
      TensorInfo *c = g_memdup2 (t, sizeof *t);

      c->name = g_strdup (t->name);
      g_ptr_array_add (copy->tensors, c);
      g_hash_table_add (copy->tensor_names, c->name);
    }
  copy->data_size = self->data_size;
  return copy;
}

/* ---- encoding ---------------------------------------------------------- */

static void
put (GByteArray   *out,
     gconstpointer data,
     gsize         n)
{
  /* GGUF is little-endian; so is every host smelt builds for */
  G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);
  g_byte_array_append (out, data, n);
}

static void
put_u32 (GByteArray *out,
         guint32     v)
{
  put (out, &v, 4);
}

static void
put_u64 (GByteArray *out,
         guint64     v)
{
  put (out, &v, 8);
}

static void
put_string (GByteArray *out,
            const char *s)
{
  gsize n = strlen (s);

  put_u64 (out, n);
  put (out, s, n);
}

static gsize
value_type_size (SmeltGgufValueType type)
{
  switch (type)
    {
    case SMELT_GGUF_VALUE_UINT8:
    case SMELT_GGUF_VALUE_INT8:
    case SMELT_GGUF_VALUE_BOOL:
      return 1;
    case SMELT_GGUF_VALUE_UINT16:
    case SMELT_GGUF_VALUE_INT16:
      return 2;
    case SMELT_GGUF_VALUE_UINT32:
    case SMELT_GGUF_VALUE_INT32:
    case SMELT_GGUF_VALUE_FLOAT32:
      return 4;
    case SMELT_GGUF_VALUE_UINT64:
    case SMELT_GGUF_VALUE_INT64:
    case SMELT_GGUF_VALUE_FLOAT64:
      return 8;
    case SMELT_GGUF_VALUE_STRING:
    case SMELT_GGUF_VALUE_ARRAY:
    default:
      return 0;
    }
}

/* Replaces the value of @key where it stands, or appends the key. */
static void
set_value (SmeltGgufLayout *self,
           const char      *key,
           GByteArray      *value)
{
  Kv *kv;

  g_return_if_fail (key != NULL && *key != '\0');

  kv = g_hash_table_lookup (self->kv_index, key);
  if (kv != NULL)
    {
      g_byte_array_unref (kv->value);
      kv->value = value;
      return;
    }
  kv = g_new0 (Kv, 1);
  kv->key = g_strdup (key);
  kv->value = value;
  g_ptr_array_add (self->kvs, kv);
  g_hash_table_insert (self->kv_index, kv->key, kv);
}

static void
set_scalar (SmeltGgufLayout    *self,
            const char         *key,
            SmeltGgufValueType  type,
            gconstpointer       value)
{
  GByteArray *v = g_byte_array_new ();

  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (self));

  put_u32 (v, type);
  put (v, value, value_type_size (type));
  set_value (self, key, v);
}

/**
 * smelt_gguf_layout_copy_kv:
 * @self: a layout
 * @file: a GGUF file
 * @index: a key index in @file
 *
 * Sets key @index of @file in @self with its type and value exactly as
 * @file stores them: in place if @self has the key, else at the end, as
 * gguf_set_kv() does when llama-quantize copies a model's metadata.
 */
void
smelt_gguf_layout_copy_kv (SmeltGgufLayout *self,
                           SmeltGgufFile   *file,
                           guint            index)
{
  GByteArray *v;
  const guint8 *raw;
  gsize size = 0;

  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (self));
  g_return_if_fail (SMELT_IS_GGUF_FILE (file));
  g_return_if_fail (index < smelt_gguf_file_get_n_kv (file));

  raw = _smelt_gguf_file_get_raw_value (file, index, &size);
  v = g_byte_array_sized_new (size);
  g_byte_array_append (v, raw, size);
  set_value (self, smelt_gguf_file_get_key (file, index), v);
}

/**
 * smelt_gguf_layout_set_uint8:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to an unsigned 8-bit value.
 */
void
smelt_gguf_layout_set_uint8 (SmeltGgufLayout *self, const char *key, guint8 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_UINT8, &value);
}

/**
 * smelt_gguf_layout_set_int8:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a signed 8-bit value.
 */
void
smelt_gguf_layout_set_int8 (SmeltGgufLayout *self, const char *key, gint8 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_INT8, &value);
}

/**
 * smelt_gguf_layout_set_uint16:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to an unsigned 16-bit value.
 */
void
smelt_gguf_layout_set_uint16 (SmeltGgufLayout *self, const char *key, guint16 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_UINT16, &value);
}

/**
 * smelt_gguf_layout_set_int16:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a signed 16-bit value.
 */
void
smelt_gguf_layout_set_int16 (SmeltGgufLayout *self, const char *key, gint16 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_INT16, &value);
}

/**
 * smelt_gguf_layout_set_uint32:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to an unsigned 32-bit value.
 */
void
smelt_gguf_layout_set_uint32 (SmeltGgufLayout *self, const char *key, guint32 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_UINT32, &value);
}

/**
 * smelt_gguf_layout_set_int32:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a signed 32-bit value.
 */
void
smelt_gguf_layout_set_int32 (SmeltGgufLayout *self, const char *key, gint32 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_INT32, &value);
}

/**
 * smelt_gguf_layout_set_uint64:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to an unsigned 64-bit value.
 */
void
smelt_gguf_layout_set_uint64 (SmeltGgufLayout *self, const char *key, guint64 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_UINT64, &value);
}

/**
 * smelt_gguf_layout_set_int64:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a signed 64-bit value.
 */
void
smelt_gguf_layout_set_int64 (SmeltGgufLayout *self, const char *key, gint64 value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_INT64, &value);
}

/**
 * smelt_gguf_layout_set_float32:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a binary32 value.
 */
void
smelt_gguf_layout_set_float32 (SmeltGgufLayout *self, const char *key, float value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_FLOAT32, &value);
}

/**
 * smelt_gguf_layout_set_float64:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a binary64 value.
 */
void
smelt_gguf_layout_set_float64 (SmeltGgufLayout *self, const char *key, double value)
{
  set_scalar (self, key, SMELT_GGUF_VALUE_FLOAT64, &value);
}

/**
 * smelt_gguf_layout_set_bool:
 * @self: a layout
 * @key: the key
 * @value: the value
 *
 * Sets @key to a boolean, stored as one byte.
 */
void
smelt_gguf_layout_set_bool (SmeltGgufLayout *self, const char *key, gboolean value)
{
  guint8 b = value ? 1 : 0;

  set_scalar (self, key, SMELT_GGUF_VALUE_BOOL, &b);
}

/**
 * smelt_gguf_layout_set_string:
 * @self: a layout
 * @key: the key
 * @value: a UTF-8 string
 *
 * Sets @key to a string.
 */
void
smelt_gguf_layout_set_string (SmeltGgufLayout *self,
                              const char      *key,
                              const char      *value)
{
  GByteArray *v;

  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (self));
  g_return_if_fail (value != NULL);

  v = g_byte_array_new ();
  put_u32 (v, SMELT_GGUF_VALUE_STRING);
  put_string (v, value);
  set_value (self, key, v);
}

/**
 * smelt_gguf_layout_set_array:
 * @self: a layout
 * @key: the key
 * @element_type: a fixed-size element type (not string or array)
 * @elements: (type gpointer) (not nullable): the elements, packed, in host
 *   (little-endian) order: @n_elements of @element_type's size
 * @n_elements: the number of elements
 *
 * Sets @key to an array of numbers or booleans.
 */
void
smelt_gguf_layout_set_array (SmeltGgufLayout    *self,
                             const char         *key,
                             SmeltGgufValueType  element_type,
                             gconstpointer       elements,
                             gsize               n_elements)
{
  gsize size = value_type_size (element_type);
  GByteArray *v;

  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (self));
  g_return_if_fail (size > 0);
  g_return_if_fail (elements != NULL || n_elements == 0);

  v = g_byte_array_sized_new (12 + size * n_elements);
  put_u32 (v, SMELT_GGUF_VALUE_ARRAY);
  put_u32 (v, element_type);
  put_u64 (v, n_elements);
  put (v, elements, size * n_elements);
  set_value (self, key, v);
}

/**
 * smelt_gguf_layout_set_string_array:
 * @self: a layout
 * @key: the key
 * @strings: (array length=n_strings): UTF-8 strings
 * @n_strings: the number of strings
 *
 * Sets @key to an array of strings.
 */
void
smelt_gguf_layout_set_string_array (SmeltGgufLayout    *self,
                                    const char         *key,
                                    const char * const *strings,
                                    gsize               n_strings)
{
  GByteArray *v;
  gsize total = 12;

  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (self));
  g_return_if_fail (strings != NULL || n_strings == 0);

  for (gsize i = 0; i < n_strings; i++)
    total += 8 + strlen (strings[i]);
  v = g_byte_array_sized_new (total);
  put_u32 (v, SMELT_GGUF_VALUE_ARRAY);
  put_u32 (v, SMELT_GGUF_VALUE_STRING);
  put_u64 (v, n_strings);
  for (gsize i = 0; i < n_strings; i++)
    put_string (v, strings[i]);
  set_value (self, key, v);
}

/**
 * smelt_gguf_layout_remove:
 * @self: a layout
 * @key: the key
 *
 * Removes @key; the keys after it move up.
 *
 * Returns: whether @key was there
 */
gboolean
smelt_gguf_layout_remove (SmeltGgufLayout *self,
                          const char      *key)
{
  Kv *kv;

  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), FALSE);

  kv = g_hash_table_lookup (self->kv_index, key);
  if (kv == NULL)
    return FALSE;
  g_hash_table_remove (self->kv_index, key);
  g_ptr_array_remove (self->kvs, kv);
  return TRUE;
}

/**
 * smelt_gguf_layout_has_key:
 * @self: a layout
 * @key: the key
 *
 * Tells whether @key is set.
 *
 * Returns: whether @key is set
 */
gboolean
smelt_gguf_layout_has_key (SmeltGgufLayout *self,
                           const char      *key)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), FALSE);

  return g_hash_table_contains (self->kv_index, key);
}

/**
 * smelt_gguf_layout_get_n_kv:
 * @self: a layout
 *
 * Gets the number of keys.
 *
 * Returns: the number of keys
 */
guint
smelt_gguf_layout_get_n_kv (SmeltGgufLayout *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), 0);

  return self->kvs->len;
}

/**
 * smelt_gguf_layout_get_key:
 * @self: a layout
 * @index: a key index, in file order
 *
 * Gets the key at @index.
 *
 * Returns: the key at @index
 */
const char *
smelt_gguf_layout_get_key (SmeltGgufLayout *self,
                           guint            index)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), NULL);
  g_return_val_if_fail (index < self->kvs->len, NULL);

  return ((Kv *) g_ptr_array_index (self->kvs, index))->key;
}

/* ---- tensors ----------------------------------------------------------- */

static guint64
align_up (guint64 x)
{
  return (x + SMELT_GGUF_ALIGNMENT - 1) / SMELT_GGUF_ALIGNMENT * SMELT_GGUF_ALIGNMENT;
}

static gboolean
check_tensor (SmeltGgufLayout *self,
              const char      *name,
              SmeltGgmlType    type,
              const guint64   *ne,
              guint            n_dims,
              guint64         *size,
              GError         **error)
{
  guint64 rows = 1;

  if (*name == '\0' || strlen (name) > SMELT_GGUF_MAX_NAME)
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor name “%s” is %zu bytes; GGUF allows 1 to %d",
                        name, strlen (name), SMELT_GGUF_MAX_NAME), FALSE;
  if (g_hash_table_contains (self->tensor_names, name))
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor “%s” is planned twice", name), FALSE;
  if (n_dims < 1 || n_dims > 4)
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor “%s” has %u dimensions; GGUF allows 1 to 4", name, n_dims), FALSE;
  if (!smelt_ggml_type_is_known (type))
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor “%s” has unknown ggml type %u", name, (guint) type), FALSE;
  for (guint d = 1; d < n_dims; d++)
    if (ne[d] == 0 || !g_uint64_checked_mul (&rows, rows, ne[d]))
      return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                          "tensor “%s” has an empty or huge shape", name), FALSE;
  *size = smelt_ggml_type_row_size (type, ne[0]);
  if (ne[0] == 0 || *size == 0)
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor “%s”: rows of %" G_GUINT64_FORMAT " elements do not "
                        "split into %s blocks of %u", name, ne[0],
                        smelt_ggml_type_get_name (type), smelt_ggml_type_get_block_size (type)), FALSE;
  if (!g_uint64_checked_mul (size, *size, rows) || *size > G_MAXINT64 / 2)
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                        "tensor “%s” is too large", name), FALSE;
  return TRUE;
}

/**
 * smelt_gguf_layout_add_tensor:
 * @self: a layout
 * @name: the tensor name, at most %SMELT_GGUF_MAX_NAME bytes
 * @type: the ggml type
 * @ne: (array length=n_dims): the shape in ggml order: ne[0] is the row
 *   length (the last dimension of a PyTorch shape)
 * @n_dims: 1 to 4
 * @error: return location for a #GError
 *
 * Appends a tensor; its data follows the previous tensor's, aligned to
 * %SMELT_GGUF_ALIGNMENT bytes.
 *
 * Returns: %TRUE, or %FALSE for a bad name, duplicate, or a row length
 *   that does not split into blocks of @type
 */
gboolean
smelt_gguf_layout_add_tensor (SmeltGgufLayout *self,
                              const char      *name,
                              SmeltGgmlType    type,
                              const guint64   *ne,
                              guint            n_dims,
                              GError         **error)
{
  TensorInfo *t;
  guint64 size;

  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), FALSE);
  g_return_val_if_fail (name != NULL && ne != NULL, FALSE);

  if (!check_tensor (self, name, type, ne, n_dims, &size, error))
    return FALSE;
  t = g_new0 (TensorInfo, 1);
  t->name = g_strdup (name);
  t->type = type;
  t->n_dims = n_dims;
  for (guint d = 0; d < 4; d++)
    t->ne[d] = d < n_dims ? ne[d] : 1;
  t->size = size;
  t->offset = self->data_size;
  self->data_size += align_up (size);
  g_ptr_array_add (self->tensors, t);
  g_hash_table_add (self->tensor_names, t->name);
  return TRUE;
}

/**
 * smelt_gguf_layout_get_n_tensors:
 * @self: a layout
 *
 * Gets the number of tensors.
 *
 * Returns: the number of tensors
 */
guint
smelt_gguf_layout_get_n_tensors (SmeltGgufLayout *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), 0);

  return self->tensors->len;
}

static TensorInfo *
tensor_at (SmeltGgufLayout *self,
           guint            index)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), NULL);
  g_return_val_if_fail (index < self->tensors->len, NULL);

  return g_ptr_array_index (self->tensors, index);
}

/**
 * smelt_gguf_layout_get_tensor_name:
 * @self: a layout
 * @index: a tensor index, in data order
 *
 * Gets the tensor's name.
 *
 * Returns: the tensor's name
 */
const char *
smelt_gguf_layout_get_tensor_name (SmeltGgufLayout *self,
                                   guint            index)
{
  TensorInfo *t = tensor_at (self, index);

  return t ? t->name : NULL;
}

/**
 * smelt_gguf_layout_get_tensor_size:
 * @self: a layout
 * @index: a tensor index, in data order
 *
 * Gets the tensor's size in bytes, without padding.
 *
 * Returns: the tensor's size in bytes, without padding
 */
guint64
smelt_gguf_layout_get_tensor_size (SmeltGgufLayout *self,
                                   guint            index)
{
  TensorInfo *t = tensor_at (self, index);

  return t ? t->size : 0;
}

static gsize
header_size (SmeltGgufLayout *self)
{
  gsize n = 4 + 4 + 8 + 8;

  for (guint i = 0; i < self->kvs->len; i++)
    {
      Kv *kv = g_ptr_array_index (self->kvs, i);

      n += 8 + strlen (kv->key) + kv->value->len;
    }
  for (guint i = 0; i < self->tensors->len; i++)
    {
      TensorInfo *t = g_ptr_array_index (self->tensors, i);

      n += 8 + strlen (t->name) + 4 + 8 * t->n_dims + 4 + 8;
    }
  return align_up (n);
}

/**
 * smelt_gguf_layout_get_tensor_offset:
 * @self: a layout
 * @index: a tensor index, in data order
 *
 * Gets where the tensor's data starts, from the start of the file.
 *
 * Returns: where the tensor's data starts, from the start of the file
 */
guint64
smelt_gguf_layout_get_tensor_offset (SmeltGgufLayout *self,
                                     guint            index)
{
  TensorInfo *t = tensor_at (self, index);

  return t ? header_size (self) + t->offset : 0;
}

/**
 * smelt_gguf_layout_get_header:
 * @self: a layout
 *
 * Serializes everything before the tensor data: magic, version 3, counts,
 * metadata, tensor infos and the zero padding to the aligned data start.
 *
 * Returns: (transfer full): the header bytes
 */
GBytes *
smelt_gguf_layout_get_header (SmeltGgufLayout *self)
{
  GByteArray *out;
  gsize size;

  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), NULL);

  size = header_size (self);
  out = g_byte_array_sized_new (size);
  put (out, "GGUF", 4);
  put_u32 (out, 3);
  put_u64 (out, self->tensors->len);
  put_u64 (out, self->kvs->len);
  for (guint i = 0; i < self->kvs->len; i++)
    {
      Kv *kv = g_ptr_array_index (self->kvs, i);

      put_string (out, kv->key);
      put (out, kv->value->data, kv->value->len);
    }
  for (guint i = 0; i < self->tensors->len; i++)
    {
      TensorInfo *t = g_ptr_array_index (self->tensors, i);

      put_string (out, t->name);
      put_u32 (out, t->n_dims);
      for (guint d = 0; d < t->n_dims; d++)
        put_u64 (out, t->ne[d]);
      put_u32 (out, t->type);
      put_u64 (out, t->offset);
    }
  g_assert (out->len <= size);
  while (out->len < size)
    put (out, "", 1);
  return g_byte_array_free_to_bytes (out);
}

/**
 * smelt_gguf_layout_get_file_size:
 * @self: a layout
 *
 * Gets the size of the whole file: header, then every tensor padded to
 * %SMELT_GGUF_ALIGNMENT bytes (the last one too).
 *
 * Returns: the size of the whole file: header, then every tensor padded
 *   to %SMELT_GGUF_ALIGNMENT bytes (the last one too)
 */
guint64
smelt_gguf_layout_get_file_size (SmeltGgufLayout *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_LAYOUT (self), 0);

  return header_size (self) + self->data_size;
}
