/* smelt-registry.h: finds plugins; a GListModel of SmeltPlugin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <gio/gio.h>
#include <smelt/smelt-plugin.h>
#include <smelt/smelt-format.h>
#include <smelt/smelt-destination.h>

G_BEGIN_DECLS

#define SMELT_TYPE_REGISTRY (smelt_registry_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltRegistry, smelt_registry, SMELT, REGISTRY, GObject)

/**
 * SmeltRegistryClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltRegistry, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltRegistry    *smelt_registry_get_default      (void);
SMELT_AVAILABLE_IN_ALL
SmeltRegistry    *smelt_registry_new              (const char * const *paths);
SMELT_AVAILABLE_IN_ALL
char            **smelt_registry_get_paths        (SmeltRegistry      *self);
SMELT_AVAILABLE_IN_ALL
SmeltPlugin      *smelt_registry_lookup_plugin    (SmeltRegistry      *self,
                                                   const char         *name);
SMELT_AVAILABLE_IN_ALL
SmeltPlugin      *smelt_registry_lookup_feature   (SmeltRegistry      *self,
                                                   SmeltFeatureKind    kind,
                                                   const char         *name);
SMELT_AVAILABLE_IN_ALL
char            **smelt_registry_list_features    (SmeltRegistry      *self,
                                                   SmeltFeatureKind    kind);
SMELT_AVAILABLE_IN_ALL
SmeltFormat      *smelt_registry_create_format    (SmeltRegistry      *self,
                                                   const char         *name,
                                                   GError            **error);
SMELT_AVAILABLE_IN_ALL
SmeltDestination *smelt_registry_create_destination (SmeltRegistry    *self,
                                                   const char         *name,
                                                   GError            **error);

G_END_DECLS
