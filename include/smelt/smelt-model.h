/* smelt-model.h: a Hugging Face model directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>
#include <smelt/smelt-tensor.h>
#include <smelt/smelt-gguf.h>

G_BEGIN_DECLS

#define SMELT_TYPE_MODEL (smelt_model_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltModel, smelt_model, SMELT, MODEL, GObject)

/**
 * SmeltModelClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltModel, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltModel   *smelt_model_new_for_path      (const char  *path,
                                             GError     **error);
SMELT_AVAILABLE_IN_ALL
const char   *smelt_model_get_path          (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
JsonObject   *smelt_model_get_config        (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
JsonObject   *smelt_model_get_generation_config (SmeltModel *self);
SMELT_AVAILABLE_IN_ALL
const char   *smelt_model_get_architecture  (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
guint         smelt_model_get_n_tensors     (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
SmeltTensor  *smelt_model_get_tensor        (SmeltModel  *self,
                                             guint        index);
SMELT_AVAILABLE_IN_ALL
SmeltTensor  *smelt_model_lookup_tensor     (SmeltModel  *self,
                                             const char  *name);
SMELT_AVAILABLE_IN_ALL
guint64       smelt_model_get_n_parameters  (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
guint64       smelt_model_get_n_bytes       (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
guint         smelt_model_get_n_shards      (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
SmeltDType    smelt_model_get_dtype         (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
const char * const *smelt_model_get_tokenizer_files (SmeltModel *self);
SMELT_AVAILABLE_IN_ALL
SmeltGgufFile *smelt_model_get_gguf         (SmeltModel  *self);
SMELT_AVAILABLE_IN_ALL
gboolean      smelt_model_is_bnb4           (SmeltModel  *self);

G_END_DECLS
