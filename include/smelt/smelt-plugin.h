/* smelt-plugin.h: plugins and the entry point they export
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

#define SMELT_TYPE_PLUGIN (smelt_plugin_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltPlugin, smelt_plugin, SMELT, PLUGIN, GObject)

/**
 * SmeltPluginClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltPlugin, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

/**
 * SmeltPluginState:
 * @SMELT_PLUGIN_STATE_LISTED: its .plugin file was read; no code loaded
 * @SMELT_PLUGIN_STATE_LOADED: the module is loaded and its features registered
 * @SMELT_PLUGIN_STATE_ERROR: loading failed; see smelt_plugin_get_error()
 *
 * Where a plugin is in its life.
 */
typedef enum {
  SMELT_PLUGIN_STATE_LISTED,
  SMELT_PLUGIN_STATE_LOADED,
  SMELT_PLUGIN_STATE_ERROR,
} SmeltPluginState;

/**
 * SmeltFeatureKind:
 * @SMELT_FEATURE_FORMAT: a #SmeltFormat subclass
 * @SMELT_FEATURE_DESTINATION: a #SmeltDestination subclass
 *
 * The kinds of feature a plugin provides.
 */
typedef enum {
  SMELT_FEATURE_FORMAT,
  SMELT_FEATURE_DESTINATION,
} SmeltFeatureKind;

/**
 * SmeltPluginInitFunc:
 * @plugin: the plugin being loaded
 * @error: return location for an error
 *
 * Registers the plugin's features.
 *
 * Returns: %TRUE on success
 */
typedef gboolean (*SmeltPluginInitFunc) (SmeltPlugin *plugin,
                                         GError     **error);

/**
 * SmeltPluginDesc:
 * @abi_major: %SMELT_PLUGIN_ABI_MAJOR at build time
 * @abi_minor: %SMELT_PLUGIN_ABI_MINOR at build time
 * @name: the plugin name; must equal the Name of its .plugin file
 * @description: one line
 * @init: registers the features
 * @version: the plugin's version
 * @license: SPDX license identifier
 * @origin: where the plugin comes from (URL or vendor)
 *
 * What SMELT_PLUGIN_DEFINE() exports.
 */
typedef struct {
  guint                abi_major;
  guint                abi_minor;
  const char          *name;
  const char          *description;
  SmeltPluginInitFunc  init;
  const char          *version;
  const char          *license;
  const char          *origin;
  /*< private >*/
  gpointer             _reserved[8];
} SmeltPluginDesc;

/**
 * SMELT_PLUGIN_ENTRY_SYMBOL:
 *
 * The symbol the loader looks up in every plugin module.
 */
#define SMELT_PLUGIN_ENTRY_SYMBOL "smelt_plugin_get_desc"

/**
 * SMELT_PLUGIN_DEFINE:
 * @name: the plugin name, a string literal
 * @description: a string literal
 * @init: a #SmeltPluginInitFunc
 * @version: a string literal
 * @license: a string literal
 * @origin: a string literal
 *
 * Defines the entry point of a plugin module. Use it once per module.
 */
#define SMELT_PLUGIN_DEFINE(name, description, init, version, license, origin) \
  G_BEGIN_DECLS \
  __attribute__((visibility ("default"))) const SmeltPluginDesc *smelt_plugin_get_desc (void); \
  G_END_DECLS \
  const SmeltPluginDesc * \
  smelt_plugin_get_desc (void) \
  { \
    static const SmeltPluginDesc desc = { \
      SMELT_PLUGIN_ABI_MAJOR, SMELT_PLUGIN_ABI_MINOR, \
      name, description, init, version, license, origin, { NULL, } \
    }; \
    return &desc; \
  }

SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_name        (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_description (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_version     (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_license     (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_filename    (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
SmeltPluginState   smelt_plugin_get_state       (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
const GError      *smelt_plugin_get_error       (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
gboolean           smelt_plugin_load            (SmeltPlugin  *self,
                                                 GError      **error);
SMELT_AVAILABLE_IN_ALL
char             **smelt_plugin_list_features   (SmeltPlugin  *self);
SMELT_AVAILABLE_IN_ALL
gboolean           smelt_plugin_get_feature_kind (SmeltPlugin     *self,
                                                  const char      *feature,
                                                  SmeltFeatureKind *kind);
SMELT_AVAILABLE_IN_ALL
const char        *smelt_plugin_get_feature_description (SmeltPlugin *self,
                                                         const char  *feature);
SMELT_AVAILABLE_IN_ALL
GType              smelt_plugin_get_feature_type (SmeltPlugin *self,
                                                  const char  *feature);
SMELT_AVAILABLE_IN_ALL
gboolean           smelt_plugin_register_format (SmeltPlugin  *self,
                                                 const char   *name,
                                                 GType         type,
                                                 GError      **error);
SMELT_AVAILABLE_IN_ALL
gboolean           smelt_plugin_register_destination (SmeltPlugin *self,
                                                      const char  *name,
                                                      GType        type,
                                                      GError     **error);

G_END_DECLS
