/* smelt-tensor.h: the tensor interface shared by readers, the merge engine
 * and format plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-dtype.h>

G_BEGIN_DECLS

#define SMELT_TYPE_TENSOR (smelt_tensor_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (SmeltTensor, smelt_tensor, SMELT, TENSOR, GObject)

/**
 * SmeltTensorInterface:
 * @g_iface: the parent interface
 * @get_name: the tensor's name in the output model
 * @get_dtype: the element type of the stored (or natural) representation
 * @get_shape: the dimensions, outermost first
 * @get_bytes: the stored bytes, or %NULL for computed tensors
 * @read_rows: converts rows to the wanted type; must be safe to call from
 *   several threads at once on distinct row ranges
 * @is_modified: whether the rows differ from the base model's stored tensor
 * @release: drops cached pages or buffers once the job is done with the tensor
 * @release_rows: drops the pages behind rows already consumed, so that
 *   streaming a huge tensor keeps memory bounded; reading them again
 *   still works
 *
 * A tensor as formats see it. A "row" is one slice along the first
 * dimension of a tensor of two or more dimensions; a 1-D or 0-D tensor is a
 * single row holding all its elements. Each virtual method is described,
 * with what an implementation must do, on the function of the same name
 * that calls it (smelt_tensor_get_name() and so on).
 */
struct _SmeltTensorInterface
{
  GTypeInterface g_iface;

  const char *   (*get_name)    (SmeltTensor *self);
  SmeltDType     (*get_dtype)   (SmeltTensor *self);
  const guint64 *(*get_shape)   (SmeltTensor *self,
                                 guint       *n_dims);
  GBytes *       (*get_bytes)   (SmeltTensor *self);
  gboolean       (*read_rows)   (SmeltTensor *self,
                                 guint64      first_row,
                                 guint64      n_rows,
                                 SmeltDType   want,
                                 gpointer     dest,
                                 GError     **error);
  gboolean       (*is_modified) (SmeltTensor *self);
  void           (*release)     (SmeltTensor *self);
  void           (*release_rows) (SmeltTensor *self,
                                  guint64      first_row,
                                  guint64      n_rows);

  /*< private >*/
  gpointer padding[7];
};

SMELT_AVAILABLE_IN_ALL
const char    *smelt_tensor_get_name      (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
SmeltDType     smelt_tensor_get_dtype     (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
const guint64 *smelt_tensor_get_shape     (SmeltTensor *self,
                                           guint       *n_dims);
SMELT_AVAILABLE_IN_ALL
GBytes        *smelt_tensor_get_bytes     (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_tensor_read_rows     (SmeltTensor *self,
                                           guint64      first_row,
                                           guint64      n_rows,
                                           SmeltDType   want,
                                           gpointer     dest,
                                           GError     **error);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_tensor_is_modified   (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
void           smelt_tensor_release       (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
void           smelt_tensor_release_rows  (SmeltTensor *self,
                                           guint64      first_row,
                                           guint64      n_rows);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_tensor_get_n_rows    (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_tensor_get_row_length (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_tensor_get_n_elements (SmeltTensor *self);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_tensor_get_n_bytes   (SmeltTensor *self);

G_END_DECLS
