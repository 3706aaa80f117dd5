/* smelt-safetensors.h: validating safetensors reader and layout planner
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-tensor.h>

G_BEGIN_DECLS

/**
 * SMELT_SAFETENSORS_MAX_HEADER:
 *
 * The largest header the reader accepts, as the reference reader does.
 */
#define SMELT_SAFETENSORS_MAX_HEADER (100000000)

#define SMELT_TYPE_SAFETENSORS_FILE (smelt_safetensors_file_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltSafetensorsFile, smelt_safetensors_file, SMELT, SAFETENSORS_FILE, GObject)

/**
 * SmeltSafetensorsFileClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltSafetensorsFile, a final type: it adds
 * nothing to #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltSafetensorsFile *smelt_safetensors_file_new            (const char            *path,
                                                             GError               **error);
SMELT_AVAILABLE_IN_ALL
const char           *smelt_safetensors_file_get_path       (SmeltSafetensorsFile  *self);
SMELT_AVAILABLE_IN_ALL
guint                 smelt_safetensors_file_get_n_tensors  (SmeltSafetensorsFile  *self);
SMELT_AVAILABLE_IN_ALL
SmeltTensor          *smelt_safetensors_file_get_tensor     (SmeltSafetensorsFile  *self,
                                                             guint                  index);
SMELT_AVAILABLE_IN_ALL
SmeltTensor          *smelt_safetensors_file_lookup         (SmeltSafetensorsFile  *self,
                                                             const char            *name);
SMELT_AVAILABLE_IN_ALL
const char           *smelt_safetensors_file_get_metadata   (SmeltSafetensorsFile  *self,
                                                             const char            *key);
SMELT_AVAILABLE_IN_ALL
char                **smelt_safetensors_file_list_metadata  (SmeltSafetensorsFile  *self);
SMELT_AVAILABLE_IN_ALL
guint64               smelt_safetensors_file_get_header_size (SmeltSafetensorsFile *self);

#define SMELT_TYPE_SAFETENSORS_LAYOUT (smelt_safetensors_layout_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltSafetensorsLayout, smelt_safetensors_layout, SMELT, SAFETENSORS_LAYOUT, GObject)

/**
 * SmeltSafetensorsLayoutClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltSafetensorsLayout, a final type: it adds
 * nothing to #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltSafetensorsLayout *smelt_safetensors_layout_new          (void);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_safetensors_layout_add_tensor   (SmeltSafetensorsLayout *self,
                                                    const char             *name,
                                                    SmeltDType              dtype,
                                                    const guint64          *shape,
                                                    guint                   n_dims,
                                                    GError                **error);
SMELT_AVAILABLE_IN_ALL
void         smelt_safetensors_layout_set_metadata (SmeltSafetensorsLayout *self,
                                                    const char             *key,
                                                    const char             *value);
SMELT_AVAILABLE_IN_ALL
void         smelt_safetensors_layout_sort         (SmeltSafetensorsLayout *self);
SMELT_AVAILABLE_IN_ALL
guint        smelt_safetensors_layout_get_n_tensors (SmeltSafetensorsLayout *self);
SMELT_AVAILABLE_IN_ALL
const char  *smelt_safetensors_layout_get_tensor_name (SmeltSafetensorsLayout *self,
                                                       guint                   index);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_safetensors_layout_get_span     (SmeltSafetensorsLayout *self,
                                                    const char             *name,
                                                    guint64                *begin,
                                                    guint64                *end);
SMELT_AVAILABLE_IN_ALL
GBytes      *smelt_safetensors_layout_get_header   (SmeltSafetensorsLayout *self);
SMELT_AVAILABLE_IN_ALL
GBytes      *smelt_safetensors_layout_get_header_sized (SmeltSafetensorsLayout *self,
                                                        gsize                   size);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_safetensors_layout_set_shape    (SmeltSafetensorsLayout *self,
                                                    const char             *name,
                                                    const guint64          *shape,
                                                    guint                   n_dims,
                                                    GError                **error);
SMELT_AVAILABLE_IN_ALL
guint64      smelt_safetensors_layout_get_data_size (SmeltSafetensorsLayout *self);
SMELT_AVAILABLE_IN_ALL
guint64      smelt_safetensors_layout_get_file_size (SmeltSafetensorsLayout *self);

G_END_DECLS
