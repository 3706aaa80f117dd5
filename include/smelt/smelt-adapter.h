/* smelt-adapter.h: a PEFT LoRA adapter directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <json-glib/json-glib.h>
#include <smelt/smelt-safetensors.h>

G_BEGIN_DECLS

#define SMELT_TYPE_ADAPTER (smelt_adapter_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltAdapter, smelt_adapter, SMELT, ADAPTER, GObject)

/**
 * SmeltAdapterClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltAdapter, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltAdapter         *smelt_adapter_new_for_path   (const char   *path,
                                                    GError      **error);
SMELT_AVAILABLE_IN_ALL
const char           *smelt_adapter_get_path       (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
JsonObject           *smelt_adapter_get_config     (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
SmeltSafetensorsFile *smelt_adapter_get_file       (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
guint                 smelt_adapter_get_rank       (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
double                smelt_adapter_get_alpha      (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
gboolean              smelt_adapter_get_use_rslora (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
gboolean              smelt_adapter_get_use_dora   (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
gboolean              smelt_adapter_get_fan_in_fan_out (SmeltAdapter *self);
SMELT_AVAILABLE_IN_ALL
double                smelt_adapter_get_scale_for  (SmeltAdapter *self,
                                                    const char   *module,
                                                    guint         rank);
SMELT_AVAILABLE_IN_ALL
const char * const   *smelt_adapter_get_tokenizer_files (SmeltAdapter *self);

G_END_DECLS
