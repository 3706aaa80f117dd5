/* smelt-source.h: the model every export of a job sees: base tensors with
 * the adapters merged in
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>
#include <smelt/smelt-model.h>
#include <smelt/smelt-adapter.h>

G_BEGIN_DECLS

#define SMELT_TYPE_SOURCE (smelt_source_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltSource, smelt_source, SMELT, SOURCE, GObject)

/**
 * SmeltSourceClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltSource, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltSource  *smelt_source_new              (SmeltModel    *model,
                                             SmeltAdapter **adapters,
                                             const double  *weights,
                                             guint          n_adapters,
                                             GError       **error);
SMELT_AVAILABLE_IN_ALL
SmeltModel   *smelt_source_get_model        (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
guint         smelt_source_get_n_adapters   (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
SmeltAdapter *smelt_source_get_adapter      (SmeltSource   *self,
                                             guint          index);
SMELT_AVAILABLE_IN_ALL
double        smelt_source_get_adapter_weight (SmeltSource *self,
                                             guint          index);
SMELT_AVAILABLE_IN_ALL
guint         smelt_source_get_n_tensors    (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
SmeltTensor  *smelt_source_get_tensor       (SmeltSource   *self,
                                             guint          index);
SMELT_AVAILABLE_IN_ALL
SmeltTensor  *smelt_source_lookup_tensor    (SmeltSource   *self,
                                             const char    *name);
SMELT_AVAILABLE_IN_ALL
JsonObject   *smelt_source_get_config       (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
guint         smelt_source_get_n_merged     (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
guint64       smelt_source_get_n_bytes      (SmeltSource   *self);
SMELT_AVAILABLE_IN_ALL
const char * const *smelt_source_get_tokenizer_files (SmeltSource *self);
SMELT_AVAILABLE_IN_ALL
const char   *smelt_source_get_tokenizer_path (SmeltSource *self,
                                               const char  *name);
SMELT_AVAILABLE_IN_ALL
SmeltTensor  *smelt_source_get_base_tensor  (SmeltSource   *self,
                                             SmeltTensor   *tensor);
SMELT_AVAILABLE_IN_ALL
GBytes       *smelt_source_make_config_json (SmeltSource   *self,
                                             const char    *torch_dtype,
                                             JsonNode      *quantization_config);

G_END_DECLS
