/* smelt-stored-tensor.c: a tensor that lives in a memory-mapped file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/* After smelt-private.h, which brings in G_OS_UNIX. */
#ifdef G_OS_UNIX
# include <sys/mman.h>
# include <unistd.h>
#endif

/* SmeltStoredTensor:
 *
 * A slice [offset, offset + size) of a read-only GMappedFile. Nothing is
 * copied: get_bytes() hands out a GBytes over the mapping and read_rows()
 * converts straight from the mapped pages. The object is immutable after
 * construction, so every method is safe to call from several threads.
 */
struct _SmeltStoredTensor
{
  GObject parent_instance;

  GMappedFile *mapping;
  GBytes *file_bytes;   /* the whole mapping; slices are cut from it */
  char *file_path;
  char *name;
  SmeltDType dtype;
  guint64 *shape;
  guint n_dims;
  guint64 offset;
  guint64 size;
};

static void smelt_stored_tensor_iface_init (SmeltTensorInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltStoredTensor, _smelt_stored_tensor, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SMELT_TYPE_TENSOR,
                                                      smelt_stored_tensor_iface_init))

/* Sources that are not aligned to their element size (a header length
 * that is not a multiple of 8, as some third-party writers produce) are
 * converted through a bounce buffer of this many bytes, so the converters
 * never see a misaligned pointer. */
#define BOUNCE_BYTES (256 * 1024)

static const char *
smelt_stored_tensor_get_name (SmeltTensor *tensor)
{
  return SMELT_STORED_TENSOR (tensor)->name;
}

static SmeltDType
smelt_stored_tensor_get_dtype (SmeltTensor *tensor)
{
  return SMELT_STORED_TENSOR (tensor)->dtype;
}

static const guint64 *
smelt_stored_tensor_get_shape (SmeltTensor *tensor,
                               guint       *n_dims)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (tensor);

  *n_dims = self->n_dims;
  return self->shape;
}

static GBytes *
smelt_stored_tensor_get_bytes (SmeltTensor *tensor)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (tensor);

  return g_bytes_new_from_bytes (self->file_bytes, self->offset, self->size);
}

static const guint8 *
stored_data (SmeltStoredTensor *self)
{
  return (const guint8 *) g_mapped_file_get_contents (self->mapping) + self->offset;
}

static gboolean
convert_elements (SmeltStoredTensor *self,
                  const guint8      *src,
                  SmeltDType         want,
                  guint8            *dest,
                  gsize              n,
                  GError           **error)
{
  gsize src_size = smelt_dtype_get_bits (self->dtype) / 8;
  gsize dest_size = smelt_dtype_get_bits (want) / 8;
  gsize n_overflow = 0;
  g_autofree guint8 *bounce = NULL;
  gsize chunk;

  if (((guintptr) src % src_size) == 0)
    {
      if (!smelt_convert (self->dtype, src, want, dest, n, &n_overflow))
        goto unsupported;
      return TRUE;
    }

  chunk = BOUNCE_BYTES / src_size;
  bounce = g_malloc (MIN (n, chunk) * src_size);
  for (gsize done = 0; done < n; done += chunk)
    {
      gsize m = MIN (chunk, n - done);

      memcpy (bounce, src + done * src_size, m * src_size);
      if (!smelt_convert (self->dtype, bounce, want, dest + done * dest_size, m, &n_overflow))
        goto unsupported;
    }
  return TRUE;

unsupported:
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
               "%s: tensor “%s” is stored as %s, which cannot be converted to %s",
               self->file_path, self->name, smelt_dtype_to_string (self->dtype),
               smelt_dtype_to_string (want));
  return FALSE;
}

static gboolean
smelt_stored_tensor_read_rows (SmeltTensor *tensor,
                               guint64      first_row,
                               guint64      n_rows,
                               SmeltDType   want,
                               gpointer     dest,
                               GError     **error)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (tensor);
  guint64 row_length = smelt_tensor_get_row_length (tensor);
  gsize src_size = smelt_dtype_get_bits (self->dtype) / 8;
  const guint8 *src;
  gsize n;

  if (self->dtype != SMELT_DTYPE_F32 && self->dtype != SMELT_DTYPE_F16 &&
      self->dtype != SMELT_DTYPE_BF16)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: tensor “%s” is stored as %s; only F32, F16 and BF16 "
                   "tensors can be read as %s",
                   self->file_path, self->name, smelt_dtype_to_string (self->dtype),
                   smelt_dtype_to_string (want));
      return FALSE;
    }

  /* The wrapper has checked the row range, and the reader has checked
   * that the tensor fits the file, so these products cannot overflow. */
  n = (gsize) (n_rows * row_length);
  src = stored_data (self) + first_row * row_length * src_size;
  if (n == 0)
    return TRUE;

  if (want == self->dtype)
    {
      memcpy (dest, src, n * src_size);
      return TRUE;
    }
  return convert_elements (self, src, want, dest, n, error);
}

static gboolean
smelt_stored_tensor_is_modified (SmeltTensor *tensor)
{
  return FALSE;
}

/* Drops the tensor's resident pages so that streaming a model larger than
 * RAM keeps the resident set bounded. Only whole pages strictly inside the
 * tensor's span are dropped: a page shared with a neighbour that a
 * concurrent worker may be reading stays put. The mapping is read-only and
 * private, so the pages come back from the file if they are read again. */
/* Drops the whole pages strictly inside [offset, offset + size) of the
 * tensor's data. */
static void
drop_pages (SmeltStoredTensor *self,
            guint64            offset,
            guint64            size)
{
#if defined(G_OS_UNIX) && defined(MADV_DONTNEED)
  guintptr page = (guintptr) sysconf (_SC_PAGESIZE);
  guintptr begin = (guintptr) stored_data (self) + offset;
  guintptr end = begin + size;
  guintptr first, last;

  if (size == 0 || page == 0 || page == (guintptr) -1)
    return;
  first = (begin + page - 1) / page * page;
  last = end / page * page;
  if (last > first)
    madvise ((void *) first, last - first, MADV_DONTNEED);
#endif
}

static void
smelt_stored_tensor_release (SmeltTensor *tensor)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (tensor);

  drop_pages (self, 0, self->size);
}

static void
smelt_stored_tensor_release_rows (SmeltTensor *tensor,
                                  guint64      first_row,
                                  guint64      n_rows)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (tensor);
  guint64 rows = smelt_tensor_get_n_rows (tensor);
  guint64 row_bytes = rows ? self->size / rows : 0;

  if (first_row >= rows)
    return;
  n_rows = MIN (n_rows, rows - first_row);
  drop_pages (self, first_row * row_bytes, n_rows * row_bytes);
}

static void
smelt_stored_tensor_iface_init (SmeltTensorInterface *iface)
{
  iface->get_name = smelt_stored_tensor_get_name;
  iface->get_dtype = smelt_stored_tensor_get_dtype;
  iface->get_shape = smelt_stored_tensor_get_shape;
  iface->get_bytes = smelt_stored_tensor_get_bytes;
  iface->read_rows = smelt_stored_tensor_read_rows;
  iface->is_modified = smelt_stored_tensor_is_modified;
  iface->release = smelt_stored_tensor_release;
  iface->release_rows = smelt_stored_tensor_release_rows;
}

static void
_smelt_stored_tensor_finalize (GObject *object)
{
  SmeltStoredTensor *self = SMELT_STORED_TENSOR (object);

  g_clear_pointer (&self->file_bytes, g_bytes_unref);
  g_clear_pointer (&self->mapping, g_mapped_file_unref);
  g_free (self->file_path);
  g_free (self->name);
  g_free (self->shape);

  G_OBJECT_CLASS (_smelt_stored_tensor_parent_class)->finalize (object);
}

static void
_smelt_stored_tensor_class_init (SmeltStoredTensorClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = _smelt_stored_tensor_finalize;
}

static void
_smelt_stored_tensor_init (SmeltStoredTensor *self)
{
}

/* Creates a tensor over [@offset, @offset + @size) of @mapping. The caller
 * has validated that the span lies inside the mapping and that @size is
 * the byte size of @shape in @dtype. */
SmeltTensor *
_smelt_stored_tensor_new (GMappedFile   *mapping,
                          const char    *file_path,
                          const char    *name,
                          SmeltDType     dtype,
                          const guint64 *shape,
                          guint          n_dims,
                          guint64        offset,
                          guint64        size)
{
  SmeltStoredTensor *self;

  g_return_val_if_fail (mapping != NULL, NULL);
  g_return_val_if_fail (name != NULL, NULL);
  g_return_val_if_fail (shape != NULL || n_dims == 0, NULL);
  g_return_val_if_fail (offset <= g_mapped_file_get_length (mapping), NULL);
  g_return_val_if_fail (size <= g_mapped_file_get_length (mapping) - offset, NULL);

  self = g_object_new (SMELT_TYPE_STORED_TENSOR, NULL);
  self->mapping = g_mapped_file_ref (mapping);
  self->file_bytes = g_mapped_file_get_bytes (mapping);
  self->file_path = g_strdup (file_path ? file_path : "");
  self->name = g_strdup (name);
  self->dtype = dtype;
  /* g_memdup2 (NULL, 0) is NULL, but get_shape must never return NULL
   * for a scalar: keep a one-element buffer. */
  self->shape = g_new0 (guint64, MAX (n_dims, 1));
  if (n_dims > 0)
    memcpy (self->shape, shape, n_dims * sizeof (guint64));
  self->n_dims = n_dims;
  self->offset = offset;
  self->size = size;

  return SMELT_TENSOR (self);
}

const char *
_smelt_stored_tensor_get_file_path (SmeltStoredTensor *self)
{
  g_return_val_if_fail (SMELT_IS_STORED_TENSOR (self), NULL);
  return self->file_path;
}

guint64
_smelt_stored_tensor_get_offset (SmeltStoredTensor *self)
{
  g_return_val_if_fail (SMELT_IS_STORED_TENSOR (self), 0);
  return self->offset;
}

SmeltTensor *
_smelt_stored_tensor_new_alias (SmeltStoredTensor *self,
                                const char        *name)
{
  g_return_val_if_fail (SMELT_IS_STORED_TENSOR (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  return _smelt_stored_tensor_new (self->mapping, self->file_path, name, self->dtype,
                                   self->shape, self->n_dims, self->offset, self->size);
}
