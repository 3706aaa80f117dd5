/* smelt-tensor.c: the SmeltTensor interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

/**
 * SmeltTensor:
 *
 * A named, typed, shaped array that can be read row by row.
 *
 * Stored tensors are slices of a memory-mapped safetensors file; merged
 * tensors compute W + s·B·A per row block. Formats only see this interface.
 */

G_DEFINE_INTERFACE (SmeltTensor, smelt_tensor, G_TYPE_OBJECT)

/* ---- virtual methods ----
 *
 * Each virtual method is documented on the public function of the same
 * name that calls it (get_name() on smelt_tensor_get_name(), and so on):
 * when their signatures match, g-ir-scanner gives the <virtual-method>
 * that function's text, in place of the text of a
 * `SmeltTensorInterface::name` block, so the reference shows one text on
 * both pages. Write there what an implementation must do.
 *
 * The block below only gives get_shape() the annotations of
 * smelt_tensor_get_shape(): without them the two return types differ,
 * the scanner does not pair them and the virtual method has no text.
 */

/**
 * SmeltTensorInterface::get_shape:
 * @self: a #SmeltTensor
 * @n_dims: (out): where to store the number of dimensions
 *
 * Gets the dimensions; see smelt_tensor_get_shape().
 *
 * Returns: (array length=n_dims) (transfer none): the dimensions,
 *   outermost first, owned by the tensor
 */

static void
smelt_tensor_default_init (SmeltTensorInterface *iface)
{
}

/**
 * smelt_tensor_get_name:
 * @self: a #SmeltTensor
 *
 * Gets the tensor's name in the model it belongs to.
 *
 * Every implementation provides it. Formats call it from any thread,
 * worker threads included (error messages of encode_rows()): return a
 * string the tensor owns, never %NULL, the same for the tensor's life.
 *
 * Returns: the tensor's name in the model it belongs to
 */
const char *
smelt_tensor_get_name (SmeltTensor *self)
{
  g_return_val_if_fail (SMELT_IS_TENSOR (self), NULL);
  return SMELT_TENSOR_GET_IFACE (self)->get_name (self);
}

/**
 * smelt_tensor_get_dtype:
 * @self: a #SmeltTensor
 *
 * Gets the element type of the tensor's natural representation.
 *
 * Every implementation provides it: the type of the stored bytes
 * (smelt_tensor_get_bytes()), or for a computed tensor the type it
 * would be stored in. smelt_tensor_get_n_bytes() follows from it, and
 * the job measures progress and cuts stored bytes into row blocks by it.
 *
 * Returns: the element type of the tensor's natural representation
 */
SmeltDType
smelt_tensor_get_dtype (SmeltTensor *self)
{
  g_return_val_if_fail (SMELT_IS_TENSOR (self), SMELT_DTYPE_INVALID);
  return SMELT_TENSOR_GET_IFACE (self)->get_dtype (self);
}

/**
 * smelt_tensor_get_shape:
 * @self: a #SmeltTensor
 * @n_dims: (out): where to store the number of dimensions
 *
 * Gets the tensor's dimensions.
 *
 * Every implementation provides it. smelt_tensor_get_n_rows(),
 * smelt_tensor_get_row_length() and the other sizes are computed from
 * it, often and from every thread: return an array the tensor owns,
 * unchanged for its life, without allocating. @n_dims is never %NULL.
 *
 * Returns: (array length=n_dims) (transfer none): the dimensions,
 *   outermost first, owned by the tensor
 */
const guint64 *
smelt_tensor_get_shape (SmeltTensor *self,
                        guint       *n_dims)
{
  g_return_val_if_fail (SMELT_IS_TENSOR (self), NULL);
  g_return_val_if_fail (n_dims != NULL, NULL);
  return SMELT_TENSOR_GET_IFACE (self)->get_shape (self, n_dims);
}

/**
 * smelt_tensor_get_bytes:
 * @self: a #SmeltTensor
 *
 * Gets the stored bytes without copying them.
 *
 * A tensor read from a file returns a new reference to its bytes there
 * (a #GBytes over the mapping), smelt_tensor_get_n_bytes() of them, rows
 * one after another in the type of smelt_tensor_get_dtype(): the job
 * hands slices of it, a block of rows each, to the formats that want
 * %SMELT_ROWS_STORED. A tensor whose rows are computed (merged with an
 * adapter's delta, or dequantized from NF4) has no such bytes and returns
 * %NULL, as does one without an implementation; the job then reads its
 * rows with smelt_tensor_read_rows().
 *
 * Returns: (transfer full) (nullable): the stored bytes, or %NULL for
 *   tensors that are computed (merged views)
 */
GBytes *
smelt_tensor_get_bytes (SmeltTensor *self)
{
  SmeltTensorInterface *iface;

  g_return_val_if_fail (SMELT_IS_TENSOR (self), NULL);
  iface = SMELT_TENSOR_GET_IFACE (self);
  return iface->get_bytes ? iface->get_bytes (self) : NULL;
}

/**
 * smelt_tensor_read_rows:
 * @self: a #SmeltTensor
 * @first_row: the first row to read
 * @n_rows: how many rows
 * @want: %SMELT_DTYPE_F32, %SMELT_DTYPE_F16 or %SMELT_DTYPE_BF16
 * @dest: (not nullable): room for @n_rows rows of @want
 * @error: return location for a #GError
 *
 * Reads rows converted to @want. Safe to call from several threads at
 * once.
 *
 * Every implementation provides it. This function has already refused
 * rows outside the tensor (%SMELT_MODEL_ERROR_INVALID) and any other
 * @want (%SMELT_MODEL_ERROR_UNSUPPORTED), so the virtual method gets a
 * valid range and one of the three types. It writes @n_rows ×
 * smelt_tensor_get_row_length() values to @dest. The job calls it from
 * worker threads, several at once on distinct rows of the same tensor,
 * and reads rows again in a later pass after smelt_tensor_release_rows()
 * and smelt_tensor_release(): both must leave the rows readable.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_tensor_read_rows (SmeltTensor *self,
                        guint64      first_row,
                        guint64      n_rows,
                        SmeltDType   want,
                        gpointer     dest,
                        GError     **error)
{
  g_return_val_if_fail (SMELT_IS_TENSOR (self), FALSE);
  g_return_val_if_fail (dest != NULL || n_rows == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (first_row > smelt_tensor_get_n_rows (self) ||
      n_rows > smelt_tensor_get_n_rows (self) - first_row)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: rows %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                   " are outside the tensor's %" G_GUINT64_FORMAT " rows",
                   smelt_tensor_get_name (self), first_row, n_rows,
                   smelt_tensor_get_n_rows (self));
      return FALSE;
    }
  if (want != SMELT_DTYPE_F32 && want != SMELT_DTYPE_F16 && want != SMELT_DTYPE_BF16)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: cannot read rows as %s", smelt_tensor_get_name (self),
                   smelt_dtype_to_string (want));
      return FALSE;
    }
  return SMELT_TENSOR_GET_IFACE (self)->read_rows (self, first_row, n_rows, want, dest, error);
}

/**
 * smelt_tensor_is_modified:
 * @self: a #SmeltTensor
 *
 * Tells whether an adapter changes this tensor; an unmodified tensor's
 * stored bytes can be copied as they are.
 *
 * Formats ask from plan() on (bnb4 and gguf-quant plan by it), so the
 * answer must not change during the tensor's life. Without an
 * implementation a tensor is unmodified.
 *
 * Returns: %TRUE if the tensor's values differ from the base model's
 */
gboolean
smelt_tensor_is_modified (SmeltTensor *self)
{
  SmeltTensorInterface *iface;

  g_return_val_if_fail (SMELT_IS_TENSOR (self), FALSE);
  iface = SMELT_TENSOR_GET_IFACE (self);
  return iface->is_modified ? iface->is_modified (self) : FALSE;
}

/**
 * smelt_tensor_release:
 * @self: a #SmeltTensor
 *
 * Tells the tensor the job is done with it, so that mapped pages and
 * caches can be dropped. Reading again afterwards still works.
 *
 * The job calls this on its thread once the tensor's last block has been
 * written to every export, in each pass; a later pass reads the tensor
 * again. Without an implementation nothing is dropped.
 */
void
smelt_tensor_release (SmeltTensor *self)
{
  SmeltTensorInterface *iface;

  g_return_if_fail (SMELT_IS_TENSOR (self));
  iface = SMELT_TENSOR_GET_IFACE (self);
  if (iface->release)
    iface->release (self);
}

/**
 * smelt_tensor_release_rows:
 * @self: a #SmeltTensor
 * @first_row: the first row the job is done with
 * @n_rows: how many rows
 *
 * Tells the tensor that these rows have been consumed, so that their
 * mapped pages can be dropped while the rest of the tensor streams.
 * Reading them again still works.
 *
 * The job calls this on its thread after each block has been written to
 * every export, in row order, while worker threads may be reading later
 * rows of the same tensor; that is what keeps memory bounded inside a
 * tensor of several GB. Without an implementation nothing is dropped.
 */
void
smelt_tensor_release_rows (SmeltTensor *self,
                           guint64      first_row,
                           guint64      n_rows)
{
  SmeltTensorInterface *iface;

  g_return_if_fail (SMELT_IS_TENSOR (self));
  iface = SMELT_TENSOR_GET_IFACE (self);
  if (iface->release_rows)
    iface->release_rows (self, first_row, n_rows);
}

/**
 * smelt_tensor_get_n_rows:
 * @self: a #SmeltTensor
 *
 * Gets the size of the first dimension, or 1 for 0-D and 1-D tensors.
 *
 * Returns: the size of the first dimension, or 1 for 0-D and 1-D tensors
 */
guint64
smelt_tensor_get_n_rows (SmeltTensor *self)
{
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (self, &n_dims);

  return n_dims >= 2 ? shape[0] : 1;
}

/**
 * smelt_tensor_get_row_length:
 * @self: a #SmeltTensor
 *
 * Gets the number of elements in one row.
 *
 * Returns: the number of elements in one row
 */
guint64
smelt_tensor_get_row_length (SmeltTensor *self)
{
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (self, &n_dims);
  guint64 n = 1;

  for (guint i = (n_dims >= 2 ? 1 : 0); i < n_dims; i++)
    n *= shape[i];
  return n;
}

/**
 * smelt_tensor_get_n_elements:
 * @self: a #SmeltTensor
 *
 * Gets the number of elements.
 *
 * Returns: the number of elements
 */
guint64
smelt_tensor_get_n_elements (SmeltTensor *self)
{
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (self, &n_dims);
  guint64 n = 1;

  for (guint i = 0; i < n_dims; i++)
    n *= shape[i];
  return n;
}

/**
 * smelt_tensor_get_n_bytes:
 * @self: a #SmeltTensor
 *
 * Gets the size of the natural representation in bytes.
 *
 * Returns: the size of the natural representation in bytes
 */
guint64
smelt_tensor_get_n_bytes (SmeltTensor *self)
{
  return smelt_tensor_get_n_elements (self) * smelt_dtype_get_bits (smelt_tensor_get_dtype (self)) / 8;
}

gboolean
_smelt_shape_n_elements (const guint64 *shape,
                         guint          n_dims,
                         guint64       *n_elements)
{
  guint64 n = 1;

  for (guint i = 0; i < n_dims; i++)
    if (!g_uint64_checked_mul (&n, n, shape[i]))
      return FALSE;
  *n_elements = n;
  return TRUE;
}

char *
_smelt_shape_to_string (const guint64 *shape,
                        guint          n_dims)
{
  GString *s = g_string_new ("[");

  for (guint i = 0; i < n_dims; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}
