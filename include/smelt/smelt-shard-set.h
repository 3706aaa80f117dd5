/* smelt-shard-set.h: the safetensors shards of an export, planned then streamed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-safetensors.h>
#include <smelt/smelt-format.h>

G_BEGIN_DECLS

#define SMELT_TYPE_SHARD_SET (smelt_shard_set_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltShardSet, smelt_shard_set, SMELT, SHARD_SET, GObject)

/**
 * SmeltShardSetClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltShardSet, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltShardSet *smelt_shard_set_new            (guint64        max_shard_size);
SMELT_AVAILABLE_IN_ALL
guint          smelt_shard_set_begin_group    (SmeltShardSet *self,
                                               guint64        size);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_shard_set_add_tensor     (SmeltShardSet *self,
                                               const char    *name,
                                               SmeltDType     dtype,
                                               const guint64 *shape,
                                               guint          n_dims,
                                               GError       **error);
SMELT_AVAILABLE_IN_ALL
void           smelt_shard_set_close_plan     (SmeltShardSet *self);
SMELT_AVAILABLE_IN_ALL
guint          smelt_shard_set_get_n_shards   (SmeltShardSet *self);
SMELT_AVAILABLE_IN_ALL
const char    *smelt_shard_set_get_file_name  (SmeltShardSet *self,
                                               guint          shard);
SMELT_AVAILABLE_IN_ALL
SmeltSafetensorsLayout *smelt_shard_set_get_layout (SmeltShardSet *self,
                                                    guint          shard);
SMELT_AVAILABLE_IN_ALL
int            smelt_shard_set_lookup         (SmeltShardSet *self,
                                               const char    *name);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_shard_set_set_tensor_shape (SmeltShardSet *self,
                                                 const char    *name,
                                                 const guint64 *shape,
                                                 guint          n_dims,
                                                 GError       **error);
SMELT_AVAILABLE_IN_ALL
void           smelt_shard_set_plan_files     (SmeltShardSet *self,
                                               SmeltFormat   *format,
                                               gboolean       sizes_known);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_shard_set_write          (SmeltShardSet *self,
                                               SmeltFormat   *format,
                                               guint          shard,
                                               const void    *data,
                                               gsize          len,
                                               GCancellable  *cancellable,
                                               GError       **error);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_shard_set_finish         (SmeltShardSet *self,
                                               SmeltFormat   *format,
                                               GCancellable  *cancellable,
                                               GError       **error);

G_END_DECLS
