/* smelt-registry.c: finds plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#define _GNU_SOURCE /* dladdr() */
#include "config.h"

#include <dlfcn.h>
#include <string.h>

#include "smelt-private.h"

/**
 * SmeltRegistry:
 *
 * The plugins smelt can use, as a #GListModel of #SmeltPlugin.
 *
 * The registry reads the `.plugin` keyfiles found in `$SMELT_PLUGIN_PATH`
 * (searched first; a colon-separated list), then in
 * `$SMELT_PLUGIN_SYSTEM_PATH` or, when that is unset, the installed plugin
 * directory (`smelt-1/plugins` next to the loaded libsmelt when it exists,
 * so a relocated prefix keeps its own plugins). Each directory and its
 * immediate subdirectories are searched.
 * When two directories hold a plugin of the same name, the first wins.
 * No module is loaded until one of its features is used.
 */

struct _SmeltRegistry
{
  GObject     parent_instance;

  GStrv       paths;
  GPtrArray  *plugins;    /* SmeltPlugin */
};

static void smelt_registry_list_model_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltRegistry, smelt_registry, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL, smelt_registry_list_model_init))

static GType
smelt_registry_get_item_type (GListModel *model)
{
  return SMELT_TYPE_PLUGIN;
}

static guint
smelt_registry_get_n_items (GListModel *model)
{
  return SMELT_REGISTRY (model)->plugins->len;
}

static gpointer
smelt_registry_get_item (GListModel *model,
                         guint       position)
{
  SmeltRegistry *self = SMELT_REGISTRY (model);

  if (position >= self->plugins->len)
    return NULL;
  return g_object_ref (g_ptr_array_index (self->plugins, position));
}

static void
smelt_registry_list_model_init (GListModelInterface *iface)
{
  iface->get_item_type = smelt_registry_get_item_type;
  iface->get_n_items = smelt_registry_get_n_items;
  iface->get_item = smelt_registry_get_item;
}

static void
smelt_registry_finalize (GObject *object)
{
  SmeltRegistry *self = SMELT_REGISTRY (object);

  g_strfreev (self->paths);
  g_ptr_array_unref (self->plugins);
  G_OBJECT_CLASS (smelt_registry_parent_class)->finalize (object);
}

static void
smelt_registry_class_init (SmeltRegistryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_registry_finalize;
}

static void
smelt_registry_init (SmeltRegistry *self)
{
  self->plugins = g_ptr_array_new_with_free_func (g_object_unref);
}

static void
add_keyfile (SmeltRegistry *self,
             const char    *path)
{
  g_autoptr(SmeltPlugin) plugin = _smelt_plugin_new_from_keyfile (path, NULL);

  if (smelt_registry_lookup_plugin (self, smelt_plugin_get_name (plugin)) != NULL)
    return;
  g_ptr_array_add (self->plugins, g_steal_pointer (&plugin));
}

static GPtrArray *
list_keyfiles (const char *dir,
               guint       depth)
{
  GPtrArray *found = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (d == NULL)
    return found;
  while ((name = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (name));
  /* directory order is arbitrary; plugin order should not be */
  g_ptr_array_sort (names, _smelt_compare_strv_items);
  for (guint i = 0; i < names->len; i++)
    {
      const char *n = *(char **) &g_ptr_array_index (names, i);
      g_autofree char *p = g_build_filename (dir, n, NULL);

      if (g_str_has_suffix (n, ".plugin") && g_file_test (p, G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (found, g_steal_pointer (&p));
      else if (depth > 0 && g_file_test (p, G_FILE_TEST_IS_DIR))
        {
          g_autoptr(GPtrArray) sub = list_keyfiles (p, depth - 1);

          for (guint j = 0; j < sub->len; j++)
            g_ptr_array_add (found, g_strdup (g_ptr_array_index (sub, j)));
        }
    }
  return found;
}

static void
scan (SmeltRegistry *self)
{
  for (guint i = 0; self->paths[i]; i++)
    {
      g_autoptr(GPtrArray) files = list_keyfiles (self->paths[i], 1);

      for (guint j = 0; j < files->len; j++)
        add_keyfile (self, g_ptr_array_index (files, j));
    }
}

/**
 * smelt_registry_new:
 * @paths: (array zero-terminated=1): directories to search, first wins
 *
 * Creates a registry over explicit directories (tests and applications
 * that ship their own plugins).
 *
 * Returns: (transfer full): a new #SmeltRegistry
 */
SmeltRegistry *
smelt_registry_new (const char * const *paths)
{
  SmeltRegistry *self = g_object_new (SMELT_TYPE_REGISTRY, NULL);

  self->paths = g_strdupv ((char **) paths);
  scan (self);
  return self;
}

/* The installed plugin directory. It is looked for next to the libsmelt
 * this process loaded first, so that a prefix that was moved as a whole (a
 * tarball, a DESTDIR stage, an application bundle) still finds its own
 * plugins, and not those of another smelt installed at the configured
 * prefix; the configured directory is the fallback. */
static char *
system_plugin_dir (void)
{
  Dl_info info;

  if (dladdr ((void *) system_plugin_dir, &info) != 0 && info.dli_fname != NULL &&
      g_path_is_absolute (info.dli_fname))
    {
      g_autofree char *libdir = g_path_get_dirname (info.dli_fname);
      g_autofree char *dir = g_build_filename (libdir, SMELT_PLUGIN_SUBDIR, NULL);

      if (g_file_test (dir, G_FILE_TEST_IS_DIR))
        return g_steal_pointer (&dir);
    }
  return g_strdup (SMELT_PLUGINDIR);
}

static GStrv
default_paths (void)
{
  GPtrArray *paths = g_ptr_array_new ();
  const char *user = g_getenv ("SMELT_PLUGIN_PATH");
  const char *system = g_getenv ("SMELT_PLUGIN_SYSTEM_PATH");
  g_auto(GStrv) system_parts = NULL;

  if (user && *user)
    {
      g_auto(GStrv) parts = g_strsplit (user, G_SEARCHPATH_SEPARATOR_S, -1);

      for (guint i = 0; parts[i]; i++)
        if (*parts[i])
          g_ptr_array_add (paths, g_strdup (parts[i]));
    }
  if (system != NULL)
    {
      system_parts = g_strsplit (system, G_SEARCHPATH_SEPARATOR_S, -1);
      for (guint i = 0; system_parts[i]; i++)
        if (*system_parts[i])
          g_ptr_array_add (paths, g_strdup (system_parts[i]));
    }
  else
    g_ptr_array_add (paths, system_plugin_dir ());
  g_ptr_array_add (paths, NULL);
  return (GStrv) g_ptr_array_free (paths, FALSE);
}

/**
 * smelt_registry_get_default:
 *
 * The registry of `$SMELT_PLUGIN_PATH`, `$SMELT_PLUGIN_SYSTEM_PATH` and the
 * installed plugins, created on first use.
 *
 * Returns: (transfer none): the default registry
 */
SmeltRegistry *
smelt_registry_get_default (void)
{
  static gsize once;
  static SmeltRegistry *registry;

  if (g_once_init_enter (&once))
    {
      g_auto(GStrv) paths = default_paths ();

      registry = smelt_registry_new ((const char * const *) paths);
      g_once_init_leave (&once, 1);
    }
  return registry;
}

/**
 * smelt_registry_get_paths:
 * @self: a #SmeltRegistry
 *
 * Gets the searched directories, in order.
 *
 * Returns: (transfer full) (array zero-terminated=1): the searched
 *   directories, in order
 */
char **
smelt_registry_get_paths (SmeltRegistry *self)
{
  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  return g_strdupv (self->paths);
}

/**
 * smelt_registry_lookup_plugin:
 * @self: a #SmeltRegistry
 * @name: a plugin name
 *
 * Gets the plugin.
 *
 * Returns: (transfer none) (nullable): the plugin
 */
SmeltPlugin *
smelt_registry_lookup_plugin (SmeltRegistry *self,
                              const char    *name)
{
  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  for (guint i = 0; i < self->plugins->len; i++)
    {
      SmeltPlugin *p = g_ptr_array_index (self->plugins, i);

      if (g_strcmp0 (smelt_plugin_get_name (p), name) == 0)
        return p;
    }
  return NULL;
}

/**
 * smelt_registry_lookup_feature:
 * @self: a #SmeltRegistry
 * @kind: the kind of feature
 * @name: the feature name
 *
 * Finds the plugin that declares a feature, without loading it.
 *
 * Returns: (transfer none) (nullable): the plugin
 */
SmeltPlugin *
smelt_registry_lookup_feature (SmeltRegistry    *self,
                               SmeltFeatureKind  kind,
                               const char       *name)
{
  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  for (guint i = 0; i < self->plugins->len; i++)
    {
      SmeltPlugin *p = g_ptr_array_index (self->plugins, i);
      SmeltFeatureKind k;

      if (smelt_plugin_get_feature_kind (p, name, &k) && k == kind)
        return p;
    }
  return NULL;
}

/**
 * smelt_registry_list_features:
 * @self: a #SmeltRegistry
 * @kind: the kind of feature
 *
 * Gets every feature of that kind, sorted.
 *
 * Returns: (transfer full) (array zero-terminated=1): every feature of
 *   that kind, sorted
 */
char **
smelt_registry_list_features (SmeltRegistry    *self,
                              SmeltFeatureKind  kind)
{
  GPtrArray *out = g_ptr_array_new ();

  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  for (guint i = 0; i < self->plugins->len; i++)
    {
      SmeltPlugin *p = g_ptr_array_index (self->plugins, i);
      g_auto(GStrv) features = smelt_plugin_list_features (p);

      for (guint j = 0; features[j]; j++)
        {
          SmeltFeatureKind k;

          if (smelt_plugin_get_feature_kind (p, features[j], &k) && k == kind &&
              !g_ptr_array_find_with_equal_func (out, features[j], g_str_equal, NULL))
            g_ptr_array_add (out, g_strdup (features[j]));
        }
    }
  g_ptr_array_sort (out, _smelt_compare_strv_items);
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

static GObject *
create (SmeltRegistry     *self,
        SmeltFeatureKind   kind,
        const char        *name,
        GError           **error)
{
  const char *what = kind == SMELT_FEATURE_FORMAT ? "format" : "destination";
  SmeltPlugin *plugin = smelt_registry_lookup_feature (self, kind, name);

  if (plugin == NULL)
    {
      g_auto(GStrv) known = smelt_registry_list_features (self, kind);
      g_autofree char *list = g_strjoinv (", ", known);
      const char *best = NULL;
      guint best_d = G_MAXUINT;

      for (guint i = 0; known[i]; i++)
        {
          guint d = smelt_levenshtein (name, known[i]);
          if (d < best_d)
            best_d = d, best = known[i];
        }
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_UNKNOWN_PLUGIN,
                   "no plugin provides the %s “%s”%s%s%s (available: %s)", what, name,
                   best && best_d <= 3 ? "; did you mean “" : "",
                   best && best_d <= 3 ? best : "", best && best_d <= 3 ? "”?" : "",
                   *list ? list : "none; check SMELT_PLUGIN_PATH");
      return NULL;
    }
  if (!smelt_plugin_load (plugin, error))
    return NULL;
  return g_object_new (smelt_plugin_get_feature_type (plugin, name), NULL);
}

/**
 * smelt_registry_create_format:
 * @self: a #SmeltRegistry
 * @name: a format feature name
 * @error: return location for a #GError
 *
 * Loads the plugin providing @name if needed and creates a format.
 *
 * Returns: (transfer full): a new #SmeltFormat, or %NULL with @error set
 */
SmeltFormat *
smelt_registry_create_format (SmeltRegistry  *self,
                              const char     *name,
                              GError        **error)
{
  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  return (SmeltFormat *) create (self, SMELT_FEATURE_FORMAT, name, error);
}

/**
 * smelt_registry_create_destination:
 * @self: a #SmeltRegistry
 * @name: a destination feature name
 * @error: return location for a #GError
 *
 * Loads the plugin providing @name if needed and creates a destination.
 *
 * Returns: (transfer full): a new #SmeltDestination, or %NULL with @error set
 */
SmeltDestination *
smelt_registry_create_destination (SmeltRegistry  *self,
                                   const char     *name,
                                   GError        **error)
{
  g_return_val_if_fail (SMELT_IS_REGISTRY (self), NULL);
  return (SmeltDestination *) create (self, SMELT_FEATURE_DESTINATION, name, error);
}
