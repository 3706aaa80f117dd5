/* smelt-gguf-file.c: validating GGUF reader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltGgufFile:
 *
 * A GGUF file, mapped and checked as strictly as ggml's own loader does
 * (and a little more): magic and version, counts that fit the file,
 * non-empty unique UTF-8 keys, known value types, no nested arrays,
 * `general.alignment` a power of two, tensor names shorter than 64 bytes
 * and unique, 1 to 4 dimensions, known types whose rows split into
 * blocks, offsets exactly at the running sum of aligned sizes, and data
 * inside the file. A file that passes loads in llama.cpp as far as the
 * container goes.
 */

typedef struct {
  const char        *key;      /* points into the mapping; NUL-copied below */
  char              *key_copy;
  SmeltGgufValueType type;
  SmeltGgufValueType array_type;
  guint64            n;        /* array length */
  gsize              value_at; /* file offset of the value (after the type tag) */
  gsize              value_end;
} KvEntry;

typedef struct {
  char         *name;
  SmeltGgmlType type;
  guint         n_dims;
  guint64       ne[4];
  guint64       offset;   /* from the data start */
  guint64       size;
} TensorEntry;

struct _SmeltGgufFile
{
  GObject       parent_instance;

  char         *path;
  GMappedFile  *map;
  GBytes       *bytes;
  const guint8 *data;
  gsize         length;
  guint32       version;
  guint32       alignment;
  guint64       data_offset;
  GArray       *kvs;       /* KvEntry */
  GArray       *tensors;   /* TensorEntry */
  GHashTable   *kv_index;  /* key → index + 1 */
  GHashTable   *tensor_index;
};

G_DEFINE_FINAL_TYPE (SmeltGgufFile, smelt_gguf_file, G_TYPE_OBJECT)

static void
kv_entry_clear (gpointer data)
{
  g_free (((KvEntry *) data)->key_copy);
}

static void
tensor_entry_clear (gpointer data)
{
  g_free (((TensorEntry *) data)->name);
}

static void
smelt_gguf_file_finalize (GObject *object)
{
  SmeltGgufFile *self = SMELT_GGUF_FILE (object);

  g_clear_pointer (&self->kv_index, g_hash_table_unref);
  g_clear_pointer (&self->tensor_index, g_hash_table_unref);
  g_clear_pointer (&self->kvs, g_array_unref);
  g_clear_pointer (&self->tensors, g_array_unref);
  g_clear_pointer (&self->bytes, g_bytes_unref);
  g_clear_pointer (&self->map, g_mapped_file_unref);
  g_free (self->path);
  G_OBJECT_CLASS (smelt_gguf_file_parent_class)->finalize (object);
}

static void
smelt_gguf_file_class_init (SmeltGgufFileClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_gguf_file_finalize;
}

static void
smelt_gguf_file_init (SmeltGgufFile *self)
{
  self->kvs = g_array_new (FALSE, TRUE, sizeof (KvEntry));
  g_array_set_clear_func (self->kvs, kv_entry_clear);
  self->tensors = g_array_new (FALSE, TRUE, sizeof (TensorEntry));
  g_array_set_clear_func (self->tensors, tensor_entry_clear);
  self->kv_index = g_hash_table_new (g_str_hash, g_str_equal);
  self->tensor_index = g_hash_table_new (g_str_hash, g_str_equal);
  self->alignment = SMELT_GGUF_ALIGNMENT;
}

/* ---- a bounds-checked cursor ------------------------------------------ */

typedef struct {
  SmeltGgufFile *file;
  gsize          pos;
  GError       **error;
} Cursor;

G_GNUC_PRINTF (2, 3)
static gboolean
fail (Cursor     *c,
      const char *format,
      ...)
{
  g_autofree char *msg = NULL;
  va_list args;

  va_start (args, format);
  msg = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (c->error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: not a valid GGUF file: %s (at byte %zu)", c->file->path, msg, c->pos);
  return FALSE;
}

static gboolean
take (Cursor *c,
      gsize   n,
      void   *out)
{
  if (n > c->file->length - c->pos)
    return fail (c, "the file ends early (%zu bytes)", c->file->length);
  if (out != NULL)
    memcpy (out, c->file->data + c->pos, n);
  c->pos += n;
  return TRUE;
}

static gboolean
take_u32 (Cursor  *c,
          guint32 *v)
{
  return take (c, 4, v);
}

static gboolean
take_u64 (Cursor  *c,
          guint64 *v)
{
  return take (c, 8, v);
}

/* A string: u64 length, bytes. @what names it in errors. Returns a
 * NUL-terminated copy when @copy is given. */
static gboolean
take_string (Cursor      *c,
             const char  *what,
             char       **copy)
{
  guint64 n = 0;
  gsize start;

  if (!take_u64 (c, &n))
    return FALSE;
  if (n > c->file->length - c->pos)
    return fail (c, "%s claims %" G_GUINT64_FORMAT " bytes, past the end of the file", what, n);
  start = c->pos;
  c->pos += n;
  if (copy != NULL)
    *copy = g_strndup ((const char *) c->file->data + start, n);
  return TRUE;
}

static gsize
scalar_size (SmeltGgufValueType type)
{
  switch (type)
    {
    case SMELT_GGUF_VALUE_UINT8: case SMELT_GGUF_VALUE_INT8: case SMELT_GGUF_VALUE_BOOL:
      return 1;
    case SMELT_GGUF_VALUE_UINT16: case SMELT_GGUF_VALUE_INT16:
      return 2;
    case SMELT_GGUF_VALUE_UINT32: case SMELT_GGUF_VALUE_INT32: case SMELT_GGUF_VALUE_FLOAT32:
      return 4;
    case SMELT_GGUF_VALUE_UINT64: case SMELT_GGUF_VALUE_INT64: case SMELT_GGUF_VALUE_FLOAT64:
      return 8;
    case SMELT_GGUF_VALUE_STRING: case SMELT_GGUF_VALUE_ARRAY:
    default:
      return 0;
    }
}

static const char *
value_type_name (SmeltGgufValueType type)
{
  static const char *const names[] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
  };

  return (guint) type < G_N_ELEMENTS (names) ? names[type] : "?";
}

static gboolean
is_valid_type (guint32 type)
{
  return type <= SMELT_GGUF_VALUE_FLOAT64;
}

/* Skips (and checks) one value of @type; bools must be 0 or 1. */
static gboolean
skip_value (Cursor            *c,
            SmeltGgufValueType type,
            const char        *key)
{
  gsize size = scalar_size (type);

  if (type == SMELT_GGUF_VALUE_STRING)
    return take_string (c, key, NULL);
  if (type == SMELT_GGUF_VALUE_BOOL && c->pos < c->file->length && c->file->data[c->pos] > 1)
    return fail (c, "key “%s”: a bool of value %u", key, c->file->data[c->pos]);
  return take (c, size, NULL);
}

static gboolean
read_array (Cursor  *c,
            KvEntry *e)
{
  guint32 type = 0;
  gsize size;

  if (!take_u32 (c, &type) || !take_u64 (c, &e->n))
    return FALSE;
  if (!is_valid_type (type))
    return fail (c, "key “%s”: array of unknown type %u", e->key_copy, type);
  if (type == SMELT_GGUF_VALUE_ARRAY)
    return fail (c, "key “%s”: nested arrays, which ggml rejects", e->key_copy);
  e->array_type = type;
  size = scalar_size (type);
  if (size > 0)
    {
      if (e->n > (c->file->length - c->pos) / size)
        return fail (c, "key “%s”: %" G_GUINT64_FORMAT " elements do not fit in the file",
                     e->key_copy, e->n);
      if (type != SMELT_GGUF_VALUE_BOOL)
        return take (c, size * e->n, NULL);
    }
  else if (e->n > (c->file->length - c->pos) / 8)
    return fail (c, "key “%s”: %" G_GUINT64_FORMAT " strings do not fit in the file",
                 e->key_copy, e->n);
  for (guint64 i = 0; i < e->n; i++)
    if (!skip_value (c, type, e->key_copy))
      return FALSE;
  return TRUE;
}

static gboolean
check_alignment (Cursor  *c,
                 KvEntry *e)
{
  guint32 a;

  if (e->type != SMELT_GGUF_VALUE_UINT32)
    return fail (c, "general.alignment is a %s, not a u32", value_type_name (e->type));
  memcpy (&a, c->file->data + e->value_at, 4);
  if (a == 0 || (a & (a - 1)) != 0)
    return fail (c, "general.alignment %u is not a power of two", a);
  c->file->alignment = a;
  return TRUE;
}

static gboolean
read_kv (Cursor *c,
         guint   index)
{
  KvEntry e = { 0 };
  gsize start = c->pos;
  guint32 type = 0;

  if (!take_string (c, "a key", &e.key_copy))
    return FALSE;
  g_array_append_val (c->file->kvs, e);   /* owns key_copy from here on */
  if (*e.key_copy == '\0' || !g_utf8_validate (e.key_copy, -1, NULL) ||
      strlen (e.key_copy) != c->pos - start - 8)
    return fail (c, "key %u is empty, not UTF-8 or holds a NUL byte", index);
  if (g_hash_table_contains (c->file->kv_index, e.key_copy))
    return fail (c, "key “%s” appears twice", e.key_copy);
  if (!take_u32 (c, &type))
    return FALSE;
  if (!is_valid_type (type))
    return fail (c, "key “%s” has unknown type %u", e.key_copy, type);
  e.key = e.key_copy;
  e.type = type;
  e.value_at = c->pos;
  if (type == SMELT_GGUF_VALUE_ARRAY ? !read_array (c, &e) : !skip_value (c, type, e.key_copy))
    return FALSE;
  e.value_end = c->pos;
  if (strcmp (e.key, "general.alignment") == 0 && !check_alignment (c, &e))
    return FALSE;
  g_array_index (c->file->kvs, KvEntry, index) = e;
  g_hash_table_insert (c->file->kv_index, e.key_copy, GUINT_TO_POINTER (index + 1));
  return TRUE;
}

static gboolean
read_tensor_info (Cursor *c,
                  guint   index)
{
  TensorEntry t = { 0 };
  guint32 type = 0;
  guint64 rows = 1;

  if (!take_string (c, "a tensor name", &t.name))
    return FALSE;
  g_array_append_val (c->file->tensors, t);
  if (*t.name == '\0' || strlen (t.name) > SMELT_GGUF_MAX_NAME)
    return fail (c, "tensor %u has an empty name or one of more than %d bytes", index,
                 SMELT_GGUF_MAX_NAME);
  if (g_hash_table_contains (c->file->tensor_index, t.name))
    return fail (c, "tensor “%s” appears twice", t.name);
  if (!take_u32 (c, &t.n_dims))
    return FALSE;
  if (t.n_dims < 1 || t.n_dims > 4)
    return fail (c, "tensor “%s” has %u dimensions", t.name, t.n_dims);
  for (guint d = 0; d < 4; d++)
    t.ne[d] = 1;
  for (guint d = 0; d < t.n_dims; d++)
    if (!take_u64 (c, &t.ne[d]))
      return FALSE;
  if (!take_u32 (c, &type) || !take_u64 (c, &t.offset))
    return FALSE;
  if (!smelt_ggml_type_is_known (type))
    return fail (c, "tensor “%s” has unknown type %u", t.name, type);
  t.type = type;
  for (guint d = 1; d < 4; d++)
    if (t.ne[d] > G_MAXINT64 || !g_uint64_checked_mul (&rows, rows, t.ne[d]))
      return fail (c, "tensor “%s” has an impossible shape", t.name);
  t.size = smelt_ggml_type_row_size (type, t.ne[0]);
  if (t.ne[0] > G_MAXINT64 || (t.size == 0 && t.ne[0] != 0) ||
      !g_uint64_checked_mul (&t.size, t.size, rows))
    return fail (c, "tensor “%s”: rows of %" G_GUINT64_FORMAT " do not split into %s blocks",
                 t.name, t.ne[0], smelt_ggml_type_get_name (type));
  g_array_index (c->file->tensors, TensorEntry, index) = t;
  g_hash_table_insert (c->file->tensor_index, t.name, GUINT_TO_POINTER (index + 1));
  return TRUE;
}

static guint64
align_to (guint64 x,
          guint64 a)
{
  return (x + a - 1) / a * a;
}

/* ggml requires each offset to be exactly where the previous tensor's
 * aligned data ends; anything else is a lying file. */
static gboolean
check_tensor_data (Cursor *c)
{
  SmeltGgufFile *f = c->file;
  guint64 expect = 0;

  f->data_offset = align_to (c->pos, f->alignment);
  for (guint i = 0; i < f->tensors->len; i++)
    {
      TensorEntry *t = &g_array_index (f->tensors, TensorEntry, i);

      if (t->offset != expect)
        return fail (c, "tensor “%s” has offset %" G_GUINT64_FORMAT ", expected %" G_GUINT64_FORMAT,
                     t->name, t->offset, expect);
      if (t->size > f->length || f->data_offset + t->offset > f->length - t->size)
        return fail (c, "the data of tensor “%s” runs past the end of the file (%zu bytes)",
                     t->name, f->length);
      expect = align_to (t->offset + t->size, f->alignment);
    }
  return TRUE;
}

static gboolean
parse (SmeltGgufFile *self,
       GError       **error)
{
  Cursor c = { self, 0, error };
  guint64 n_tensors = 0, n_kv = 0;
  char magic[4];

  if (!take (&c, 4, magic) || !take_u32 (&c, &self->version))
    return FALSE;
  if (memcmp (magic, "GGUF", 4) != 0)
    return c.pos = 0, fail (&c, "no GGUF magic");
  if (self->version != 2 && self->version != 3)
    return fail (&c, "version %u; smelt reads versions 2 and 3", self->version);
  if (!take_u64 (&c, &n_tensors) || !take_u64 (&c, &n_kv))
    return FALSE;
  /* each key takes at least 13 bytes and each tensor info at least 32 */
  if (n_kv > self->length / 13 || n_tensors > self->length / 32)
    return fail (&c, "%" G_GUINT64_FORMAT " keys and %" G_GUINT64_FORMAT " tensors cannot fit "
                 "in %zu bytes", n_kv, n_tensors, self->length);
  for (guint i = 0; i < n_kv; i++)
    if (!read_kv (&c, i))
      return FALSE;
  for (guint i = 0; i < n_tensors; i++)
    if (!read_tensor_info (&c, i))
      return FALSE;
  return check_tensor_data (&c);
}

/**
 * smelt_gguf_file_new:
 * @path: a GGUF file
 * @error: return location for a #GError
 *
 * Maps and validates @path. Nothing is trusted: every count, length and
 * offset is checked against the file before use.
 *
 * Returns: (transfer full) (nullable): the file, or %NULL with an error
 *   naming @path and the problem
 */
SmeltGgufFile *
smelt_gguf_file_new (const char  *path,
                     GError     **error)
{
  g_autoptr(SmeltGgufFile) self = NULL;
  GError *local = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  self = g_object_new (SMELT_TYPE_GGUF_FILE, NULL);
  self->path = g_strdup (path);
  self->map = g_mapped_file_new (path, FALSE, &local);
  if (self->map == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: %s", path, local->message);
      g_error_free (local);
      return NULL;
    }
  self->bytes = g_mapped_file_get_bytes (self->map);
  self->data = g_bytes_get_data (self->bytes, &self->length);
  if (!parse (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

/**
 * smelt_gguf_file_get_path:
 * @self: a file
 *
 * Gets the path the file was opened from.
 *
 * Returns: the path the file was opened from
 */
const char *
smelt_gguf_file_get_path (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), NULL);
  return self->path;
}

/**
 * smelt_gguf_file_get_version:
 * @self: a file
 *
 * Gets the GGUF version (2 or 3).
 *
 * Returns: the GGUF version (2 or 3)
 */
guint32
smelt_gguf_file_get_version (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), 0);
  return self->version;
}

/**
 * smelt_gguf_file_get_data_offset:
 * @self: a file
 *
 * Gets where the tensor data starts.
 *
 * Returns: where the tensor data starts
 */
guint64
smelt_gguf_file_get_data_offset (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), 0);
  return self->data_offset;
}

/**
 * smelt_gguf_file_get_n_kv:
 * @self: a file
 *
 * Gets the number of metadata keys.
 *
 * Returns: the number of metadata keys
 */
guint
smelt_gguf_file_get_n_kv (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), 0);
  return self->kvs->len;
}

static KvEntry *
kv_at (SmeltGgufFile *self,
       guint          index)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), NULL);
  g_return_val_if_fail (index < self->kvs->len, NULL);
  return &g_array_index (self->kvs, KvEntry, index);
}

/**
 * smelt_gguf_file_get_key:
 * @self: a file
 * @index: a key index, in file order
 *
 * Gets the key.
 *
 * Returns: the key
 */
const char *
smelt_gguf_file_get_key (SmeltGgufFile *self,
                         guint          index)
{
  KvEntry *e = kv_at (self, index);

  return e ? e->key : NULL;
}

/**
 * smelt_gguf_file_find_key:
 * @self: a file
 * @key: a key
 *
 * Gets the index of @key, or -1.
 *
 * Returns: the index of @key, or -1
 */
int
smelt_gguf_file_find_key (SmeltGgufFile *self,
                          const char    *key)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), -1);
  return GPOINTER_TO_INT (g_hash_table_lookup (self->kv_index, key)) - 1;
}

/**
 * smelt_gguf_file_get_kv_type:
 * @self: a file
 * @index: a key index
 *
 * Gets the value's type.
 *
 * Returns: the value's type
 */
SmeltGgufValueType
smelt_gguf_file_get_kv_type (SmeltGgufFile *self,
                             guint          index)
{
  KvEntry *e = kv_at (self, index);

  return e ? e->type : SMELT_GGUF_VALUE_UINT8;
}

/**
 * smelt_gguf_file_get_array_type:
 * @self: a file
 * @index: the index of an array key
 *
 * Gets the element type.
 *
 * Returns: the element type
 */
SmeltGgufValueType
smelt_gguf_file_get_array_type (SmeltGgufFile *self,
                                guint          index)
{
  KvEntry *e = kv_at (self, index);

  return e ? e->array_type : SMELT_GGUF_VALUE_UINT8;
}

/**
 * smelt_gguf_file_get_array_length:
 * @self: a file
 * @index: the index of an array key
 *
 * Gets the number of elements, or 0 for a scalar.
 *
 * Returns: the number of elements, or 0 for a scalar
 */
guint64
smelt_gguf_file_get_array_length (SmeltGgufFile *self,
                                  guint          index)
{
  KvEntry *e = kv_at (self, index);

  return e && e->type == SMELT_GGUF_VALUE_ARRAY ? e->n : 0;
}

/* Values were checked by parse(), so reading them back cannot run off. */
static GVariant *
scalar_variant (const guint8       *p,
                SmeltGgufValueType  type,
                gsize              *used)
{
  guint64 n = 0;

  *used = scalar_size (type);
  switch (type)
    {
    case SMELT_GGUF_VALUE_UINT8: return g_variant_new_byte (p[0]);
    case SMELT_GGUF_VALUE_INT8: return g_variant_new_int16 ((gint8) p[0]);
    case SMELT_GGUF_VALUE_BOOL: return g_variant_new_boolean (p[0] != 0);
    case SMELT_GGUF_VALUE_UINT16: { guint16 v; memcpy (&v, p, 2); return g_variant_new_uint16 (v); }
    case SMELT_GGUF_VALUE_INT16: { gint16 v; memcpy (&v, p, 2); return g_variant_new_int16 (v); }
    case SMELT_GGUF_VALUE_UINT32: { guint32 v; memcpy (&v, p, 4); return g_variant_new_uint32 (v); }
    case SMELT_GGUF_VALUE_INT32: { gint32 v; memcpy (&v, p, 4); return g_variant_new_int32 (v); }
    case SMELT_GGUF_VALUE_FLOAT32: { float v; memcpy (&v, p, 4); return g_variant_new_double (v); }
    case SMELT_GGUF_VALUE_UINT64: { guint64 v; memcpy (&v, p, 8); return g_variant_new_uint64 (v); }
    case SMELT_GGUF_VALUE_INT64: { gint64 v; memcpy (&v, p, 8); return g_variant_new_int64 (v); }
    case SMELT_GGUF_VALUE_FLOAT64: { double v; memcpy (&v, p, 8); return g_variant_new_double (v); }
    case SMELT_GGUF_VALUE_STRING:
      memcpy (&n, p, 8);
      *used = 8 + n;
      if (g_utf8_validate ((const char *) p + 8, n, NULL) && memchr (p + 8, 0, n) == NULL)
        {
          g_autofree char *s = g_strndup ((const char *) p + 8, n);
          return g_variant_new_string (s);
        }
      return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, p + 8, n, 1);
    case SMELT_GGUF_VALUE_ARRAY:
    default:
      g_assert_not_reached ();
    }
}

/**
 * smelt_gguf_file_get_value:
 * @self: a file
 * @index: a key index
 *
 * Returns the value as a #GVariant: integers as the matching GVariant
 * integer (int8 widened to int16), floats as doubles, strings as "s" (or
 * "ay" when not valid UTF-8), arrays as "av".
 *
 * Returns: (transfer full): the value
 */
GVariant *
smelt_gguf_file_get_value (SmeltGgufFile *self,
                           guint          index)
{
  KvEntry *e = kv_at (self, index);
  const guint8 *p;
  GVariantBuilder b;
  gsize used;

  g_return_val_if_fail (e != NULL, NULL);

  p = self->data + e->value_at;
  if (e->type != SMELT_GGUF_VALUE_ARRAY)
    return g_variant_ref_sink (scalar_variant (p, e->type, &used));
  p += 12;
  g_variant_builder_init (&b, G_VARIANT_TYPE ("av"));
  for (guint64 i = 0; i < e->n; i++)
    {
      g_variant_builder_add (&b, "v", scalar_variant (p, e->array_type, &used));
      p += used;
    }
  return g_variant_ref_sink (g_variant_builder_end (&b));
}

static void
append_scalar (GString            *s,
               const guint8       *p,
               SmeltGgufValueType  type,
               gsize              *used)
{
  g_autoptr(GVariant) v = g_variant_ref_sink (scalar_variant (p, type, used));

  if (type == SMELT_GGUF_VALUE_STRING && g_variant_is_of_type (v, G_VARIANT_TYPE_STRING))
    {
      g_autofree char *esc = g_strescape (g_variant_get_string (v, NULL), NULL);
      g_string_append_printf (s, "\"%s\"", esc);
    }
  else if (type == SMELT_GGUF_VALUE_STRING)
    g_string_append_printf (s, "<%zu bytes, not UTF-8>", *used - 8);
  else if (type == SMELT_GGUF_VALUE_FLOAT32 || type == SMELT_GGUF_VALUE_FLOAT64)
    g_string_append_printf (s, "%.9g", g_variant_get_double (v));
  else
    {
      g_autofree char *text = g_variant_print (v, FALSE);
      g_string_append (s, text);
    }
}

/**
 * smelt_gguf_file_format_value:
 * @self: a file
 * @index: a key index
 * @max_elements: how many array elements to show before "…"
 *
 * Gets the value as text for people: strings quoted and escaped, arrays as
 * `[n × type: a, b, …]`.
 *
 * Returns: (transfer full): the value as text for people: strings quoted
 *   and escaped, arrays as `[n × type: a, b, …]`
 */
char *
smelt_gguf_file_format_value (SmeltGgufFile *self,
                              guint          index,
                              guint          max_elements)
{
  KvEntry *e = kv_at (self, index);
  GString *s;
  const guint8 *p;
  gsize used;

  g_return_val_if_fail (e != NULL, NULL);

  s = g_string_new (NULL);
  p = self->data + e->value_at;
  if (e->type != SMELT_GGUF_VALUE_ARRAY)
    {
      append_scalar (s, p, e->type, &used);
      return g_string_free (s, FALSE);
    }
  g_string_append_printf (s, "[%" G_GUINT64_FORMAT " × %s", e->n, value_type_name (e->array_type));
  p += 12;
  for (guint64 i = 0; i < e->n && i < max_elements; i++)
    {
      g_string_append (s, i == 0 ? ": " : ", ");
      append_scalar (s, p, e->array_type, &used);
      p += used;
    }
  g_string_append (s, e->n > max_elements ? ", …]" : "]");
  return g_string_free (s, FALSE);
}

/**
 * smelt_gguf_file_get_n_tensors:
 * @self: a file
 *
 * Gets the number of tensors.
 *
 * Returns: the number of tensors
 */
guint
smelt_gguf_file_get_n_tensors (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), 0);
  return self->tensors->len;
}

/**
 * smelt_gguf_file_find_tensor:
 * @self: a file
 * @name: a tensor name
 *
 * Gets the tensor's index, or -1.
 *
 * Returns: the tensor's index, or -1
 */
int
smelt_gguf_file_find_tensor (SmeltGgufFile *self,
                             const char    *name)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), -1);
  return GPOINTER_TO_INT (g_hash_table_lookup (self->tensor_index, name)) - 1;
}

static TensorEntry *
tensor_at (SmeltGgufFile *self,
           guint          index)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), NULL);
  g_return_val_if_fail (index < self->tensors->len, NULL);
  return &g_array_index (self->tensors, TensorEntry, index);
}

/**
 * smelt_gguf_file_get_tensor_name:
 * @self: a file
 * @index: a tensor index
 *
 * Gets the tensor's name.
 *
 * Returns: the tensor's name
 */
const char *
smelt_gguf_file_get_tensor_name (SmeltGgufFile *self,
                                 guint          index)
{
  TensorEntry *t = tensor_at (self, index);

  return t ? t->name : NULL;
}

/**
 * smelt_gguf_file_get_tensor_type:
 * @self: a file
 * @index: a tensor index
 *
 * Gets the tensor's ggml type.
 *
 * Returns: the tensor's ggml type
 */
SmeltGgmlType
smelt_gguf_file_get_tensor_type (SmeltGgufFile *self,
                                 guint          index)
{
  TensorEntry *t = tensor_at (self, index);

  return t ? t->type : SMELT_GGML_TYPE_F32;
}

/**
 * smelt_gguf_file_get_tensor_shape:
 * @self: a file
 * @index: a tensor index
 * @ne: (out caller-allocates) (array fixed-size=4): the shape in ggml
 *   order, padded with 1
 *
 * Gets a tensor's shape, in ggml's order (the fastest-varying dimension
 * first).
 *
 * Returns: the number of dimensions stored in the file
 */
guint
smelt_gguf_file_get_tensor_shape (SmeltGgufFile *self,
                                  guint          index,
                                  guint64        ne[4])
{
  TensorEntry *t = tensor_at (self, index);

  if (t == NULL)
    return 0;
  memcpy (ne, t->ne, sizeof t->ne);
  return t->n_dims;
}

/**
 * smelt_gguf_file_get_tensor_offset:
 * @self: a file
 * @index: a tensor index
 *
 * Gets where the tensor's data starts, from the start of the file.
 *
 * Returns: where the tensor's data starts, from the start of the file
 */
guint64
smelt_gguf_file_get_tensor_offset (SmeltGgufFile *self,
                                   guint          index)
{
  TensorEntry *t = tensor_at (self, index);

  return t ? self->data_offset + t->offset : 0;
}

/**
 * smelt_gguf_file_get_tensor_size:
 * @self: a file
 * @index: a tensor index
 *
 * Gets the tensor's size in bytes.
 *
 * Returns: the tensor's size in bytes
 */
guint64
smelt_gguf_file_get_tensor_size (SmeltGgufFile *self,
                                 guint          index)
{
  TensorEntry *t = tensor_at (self, index);

  return t ? t->size : 0;
}

/**
 * smelt_gguf_file_get_tensor_data:
 * @self: a file
 * @index: a tensor index
 *
 * Gets the tensor's bytes, without copying.
 *
 * Returns: (transfer full): the tensor's bytes, without copying
 */
GBytes *
smelt_gguf_file_get_tensor_data (SmeltGgufFile *self,
                                 guint          index)
{
  TensorEntry *t = tensor_at (self, index);

  g_return_val_if_fail (t != NULL, NULL);
  return g_bytes_new_from_bytes (self->bytes, self->data_offset + t->offset, t->size);
}

/* The value of KV @index as the file stores it: the u32 type tag and the
 * encoded value, @size bytes in all. For copying a key unchanged. */
const guint8 *
_smelt_gguf_file_get_raw_value (SmeltGgufFile *self,
                                guint          index,
                                gsize         *size)
{
  KvEntry *e = kv_at (self, index);

  g_return_val_if_fail (e != NULL, NULL);
  *size = e->value_end - e->value_at + 4;
  return self->data + e->value_at - 4;
}

GMappedFile *
_smelt_gguf_file_get_mapping (SmeltGgufFile *self)
{
  g_return_val_if_fail (SMELT_IS_GGUF_FILE (self), NULL);
  return self->map;
}
