/* smelt-plugin.c: one plugin: its .plugin keyfile and, once loaded, its module
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltPlugin:
 *
 * A plugin as the registry knows it. Listing plugins reads only their
 * `.plugin` keyfiles; smelt_plugin_load() loads the module, checks its ABI
 * and name, and runs its init function, which registers the features the
 * keyfile declared. A plugin that fails to load keeps its #GError and
 * stays in %SMELT_PLUGIN_STATE_ERROR; the rest of smelt goes on.
 */

typedef struct {
  SmeltFeatureKind kind;
  char            *description;
  GType            type;
} Feature;

struct _SmeltPlugin
{
  GObject           parent_instance;

  GMutex            lock;
  char             *filename;
  char             *module_path;
  char             *name;
  char             *description;
  char             *version;
  char             *license;
  SmeltPluginState  state;
  GError           *error;
  GHashTable       *features;   /* name -> Feature */
  GPtrArray        *feature_order;
  /* where #SmeltPlugin:state is notified: the thread that made the plugin
   * (the registry's, a UI's main thread) and its main context */
  GThread          *owner;
  GMainContext     *context;
};

enum {
  PROP_0,
  PROP_NAME,
  PROP_DESCRIPTION,
  PROP_VERSION,
  PROP_LICENSE,
  PROP_FILENAME,
  PROP_STATE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltPlugin, smelt_plugin, G_TYPE_OBJECT)

static void
feature_free (gpointer data)
{
  Feature *f = data;

  g_free (f->description);
  g_free (f);
}

static void
smelt_plugin_finalize (GObject *object)
{
  SmeltPlugin *self = SMELT_PLUGIN (object);

  g_mutex_clear (&self->lock);
  g_free (self->filename);
  g_free (self->module_path);
  g_free (self->name);
  g_free (self->description);
  g_free (self->version);
  g_free (self->license);
  g_clear_error (&self->error);
  g_thread_unref (self->owner);
  g_main_context_unref (self->context);
  g_hash_table_unref (self->features);
  g_ptr_array_unref (self->feature_order);

  G_OBJECT_CLASS (smelt_plugin_parent_class)->finalize (object);
}

static void
smelt_plugin_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  SmeltPlugin *self = SMELT_PLUGIN (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_DESCRIPTION:
      g_value_set_string (value, self->description);
      break;
    case PROP_VERSION:
      g_value_set_string (value, self->version);
      break;
    case PROP_LICENSE:
      g_value_set_string (value, self->license);
      break;
    case PROP_FILENAME:
      g_value_set_string (value, self->filename);
      break;
    case PROP_STATE:
      g_mutex_lock (&self->lock);
      g_value_set_enum (value, self->state);
      g_mutex_unlock (&self->lock);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_plugin_class_init (SmeltPluginClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = smelt_plugin_finalize;
  object_class->get_property = smelt_plugin_get_property;

  /**
   * SmeltPlugin:name:
   *
   * The plugin's name.
   */
  properties[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                               G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltPlugin:description:
   *
   * One line about the plugin.
   */
  properties[PROP_DESCRIPTION] = g_param_spec_string ("description", NULL, NULL, NULL,
                                                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltPlugin:version:
   *
   * The plugin's version.
   */
  properties[PROP_VERSION] = g_param_spec_string ("version", NULL, NULL, NULL,
                                                  G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltPlugin:license:
   *
   * The plugin's license.
   */
  properties[PROP_LICENSE] = g_param_spec_string ("license", NULL, NULL, NULL,
                                                  G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltPlugin:filename:
   *
   * The `.plugin` keyfile.
   */
  properties[PROP_FILENAME] = g_param_spec_string ("filename", NULL, NULL, NULL,
                                                   G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltPlugin:state:
   *
   * Whether the plugin is listed, loaded or broken.
   *
   * A plugin is loaded when one of its features is first used, which may
   * be on an export job's worker thread. Change notifications are always
   * emitted on the thread that created the plugin (for the default
   * registry, the thread that first asked for it), from its thread-default
   * main context, so a UI can bind to this property.
   */
  properties[PROP_STATE] = g_param_spec_enum ("state", NULL, NULL,
                                              SMELT_TYPE_PLUGIN_STATE, SMELT_PLUGIN_STATE_LISTED,
                                              G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                                              G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_plugin_init (SmeltPlugin *self)
{
  g_mutex_init (&self->lock);
  self->owner = g_thread_ref (g_thread_self ());
  self->context = g_main_context_ref_thread_default ();
  self->features = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, feature_free);
  self->feature_order = g_ptr_array_new ();
}

static void
set_error (SmeltPlugin *self,
           GError      *error)
{
  g_clear_error (&self->error);
  self->error = error;
  self->state = SMELT_PLUGIN_STATE_ERROR;
}

static gboolean
read_features (SmeltPlugin  *self,
               GKeyFile     *kf,
               GError      **error)
{
  g_auto(GStrv) groups = g_key_file_get_groups (kf, NULL);

  for (guint i = 0; groups[i]; i++)
    {
      const char *fname;
      g_autofree char *kind = NULL;
      Feature *f;

      if (!g_str_has_prefix (groups[i], "Feature "))
        {
          if (!g_str_equal (groups[i], "Plugin"))
            {
              g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE,
                           "%s: unknown group [%s]", self->filename, groups[i]);
              return FALSE;
            }
          continue;
        }
      fname = groups[i] + strlen ("Feature ");
      kind = g_key_file_get_string (kf, groups[i], "Kind", error);
      if (kind == NULL)
        {
          g_prefix_error (error, "%s: ", self->filename);
          return FALSE;
        }
      f = g_new0 (Feature, 1);
      if (g_str_equal (kind, "format"))
        f->kind = SMELT_FEATURE_FORMAT;
      else if (g_str_equal (kind, "destination"))
        f->kind = SMELT_FEATURE_DESTINATION;
      else
        {
          feature_free (f);
          g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE,
                       "%s: [%s] Kind must be “format” or “destination”, not “%s”",
                       self->filename, groups[i], kind);
          return FALSE;
        }
      f->description = g_key_file_get_string (kf, groups[i], "Description", NULL);
      {
        char *key = g_strdup (fname);

        g_hash_table_insert (self->features, key, f);
        g_ptr_array_add (self->feature_order, key);
      }
    }
  return TRUE;
}

SmeltPlugin *
_smelt_plugin_new_from_keyfile (const char  *keyfile_path,
                                GError     **error)
{
  g_autoptr(SmeltPlugin) self = g_object_new (SMELT_TYPE_PLUGIN, NULL);
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autofree char *module = NULL;
  g_autofree char *dir = NULL;
  GError *local = NULL;

  self->filename = g_canonicalize_filename (keyfile_path, NULL);
  {
    g_autofree char *base = g_path_get_basename (keyfile_path);
    self->name = g_strndup (base, strlen (base) - (g_str_has_suffix (base, ".plugin") ? 7 : 0));
  }

  if (!g_key_file_load_from_file (kf, keyfile_path, G_KEY_FILE_NONE, &local))
    goto fail;
  module = g_key_file_get_string (kf, "Plugin", "Module", &local);
  if (module == NULL)
    goto fail;
  g_free (self->name);
  self->name = g_key_file_get_string (kf, "Plugin", "Name", &local);
  if (self->name == NULL)
    goto fail;
  self->description = g_key_file_get_locale_string (kf, "Plugin", "Description", NULL, NULL);
  self->version = g_key_file_get_string (kf, "Plugin", "Version", NULL);
  self->license = g_key_file_get_string (kf, "Plugin", "License", NULL);
  if (strchr (module, '/') != NULL)
    {
      g_set_error (&local, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE,
                   "Module must be a file name beside the .plugin file, not “%s”", module);
      goto fail;
    }
  dir = g_path_get_dirname (self->filename);
  self->module_path = g_build_filename (dir, module, NULL);
  if (!read_features (self, kf, &local))
    goto fail;
  if (g_hash_table_size (self->features) == 0)
    {
      g_set_error (&local, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE,
                   "declares no [Feature NAME] group");
      goto fail;
    }
  return g_steal_pointer (&self);

fail:
  if (local->domain != SMELT_PLUGIN_ERROR)
    {
      GError *wrapped = g_error_new (SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_KEYFILE,
                                     "%s: %s", self->filename, local->message);
      g_error_free (local);
      local = wrapped;
    }
  else if (!g_str_has_prefix (local->message, self->filename))
    g_prefix_error (&local, "%s: ", self->filename);
  if (error)
    *error = g_error_copy (local);
  set_error (self, local);
  return g_steal_pointer (&self);
}

static gboolean
check_desc (SmeltPlugin            *self,
            const SmeltPluginDesc  *desc,
            GError                **error)
{
  if (desc->abi_major != SMELT_PLUGIN_ABI_MAJOR || desc->abi_minor > SMELT_PLUGIN_ABI_MINOR)
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_ABI,
                   "%s: built for plugin ABI %u.%u but this smelt (%s) provides ABI %u.%u; "
                   "rebuild the plugin against this smelt's headers (pkg-config smelt-plugin-1)%s",
                   self->module_path, desc->abi_major, desc->abi_minor, SMELT_VERSION_S,
                   SMELT_PLUGIN_ABI_MAJOR, SMELT_PLUGIN_ABI_MINOR,
                   desc->abi_major == SMELT_PLUGIN_ABI_MAJOR ? ", or upgrade smelt" : "");
      return FALSE;
    }
  if (desc->name == NULL || !g_str_equal (desc->name, self->name))
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_NAME,
                   "%s: the module calls itself “%s” but %s says “%s”",
                   self->module_path, desc->name ? desc->name : "(null)",
                   self->filename, self->name);
      return FALSE;
    }
  if (desc->init == NULL)
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_INIT,
                   "%s: the module has no init function", self->module_path);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_all_registered (SmeltPlugin  *self,
                      GError      **error)
{
  for (guint i = 0; i < self->feature_order->len; i++)
    {
      const char *name = g_ptr_array_index (self->feature_order, i);
      Feature *f = g_hash_table_lookup (self->features, name);

      if (f->type == G_TYPE_INVALID)
        {
          g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_FEATURE,
                       "%s: declares feature “%s” but its init function did not register it",
                       self->filename, name);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
notify_state_cb (gpointer data)
{
  g_object_notify_by_pspec (G_OBJECT (data), properties[PROP_STATE]);
  return G_SOURCE_REMOVE;
}

/* From another thread, through a source on the owner's context: a signal
 * handler of a UI (or of GJS, which must not run on any other thread)
 * never runs on a worker. */
static void
notify_state (SmeltPlugin *self)
{
  GSource *source;

  if (g_thread_self () == self->owner)
    {
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
      return;
    }
  source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, notify_state_cb, g_object_ref (self), g_object_unref);
  g_source_set_static_name (source, "[smelt] plugin state");
  g_source_attach (source, self->context);
  g_source_unref (source);
}

/**
 * smelt_plugin_load:
 * @self: a #SmeltPlugin
 * @error: return location for a #GError
 *
 * Loads the module and registers its features. Loading twice is a no-op;
 * a plugin that failed once keeps failing with the same error.
 *
 * Returns: %TRUE if the plugin is loaded
 */
gboolean
smelt_plugin_load (SmeltPlugin  *self,
                   GError      **error)
{
  const SmeltPluginDesc *desc;
  GError *local = NULL;
  gboolean ok, first_load;

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), FALSE);

  g_mutex_lock (&self->lock);
  first_load = self->state == SMELT_PLUGIN_STATE_LISTED;
  if (first_load)
    {
      desc = _smelt_plugin_loader_open (self->module_path, &local);
      if (desc != NULL && check_desc (self, desc, &local))
        {
          if (!desc->init (self, &local))
            {
              if (local == NULL)
                g_set_error (&local, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_INIT,
                             "%s: init failed without saying why", self->module_path);
              else
                g_prefix_error (&local, "%s: init failed: ", self->module_path);
            }
          else
            check_all_registered (self, &local);
        }
      if (local)
        set_error (self, local);
      else
        self->state = SMELT_PLUGIN_STATE_LOADED;
    }
  ok = self->state == SMELT_PLUGIN_STATE_LOADED;
  if (!ok && error)
    *error = g_error_copy (self->error);
  g_mutex_unlock (&self->lock);
  if (first_load)
    notify_state (self);
  return ok;
}

static gboolean
register_feature (SmeltPlugin      *self,
                  SmeltFeatureKind  kind,
                  GType             base,
                  const char       *name,
                  GType             type,
                  GError          **error)
{
  Feature *f = g_hash_table_lookup (self->features, name);

  if (f == NULL || f->kind != kind)
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_FEATURE,
                   "registers %s “%s”, which %s does not declare as [Feature %s] Kind=%s",
                   kind == SMELT_FEATURE_FORMAT ? "format" : "destination", name,
                   self->filename, name, kind == SMELT_FEATURE_FORMAT ? "format" : "destination");
      return FALSE;
    }
  if (!g_type_is_a (type, base) || G_TYPE_IS_ABSTRACT (type))
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_FEATURE,
                   "feature “%s”: type %s is not an instantiable %s", name,
                   g_type_name (type), g_type_name (base));
      return FALSE;
    }
  f->type = type;
  return TRUE;
}

/**
 * smelt_plugin_register_format:
 * @self: the plugin being initialized
 * @name: the feature name, as declared in the .plugin file
 * @type: a #SmeltFormat subclass
 * @error: return location for a #GError
 *
 * Registers a format. Call from the plugin's init function.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_plugin_register_format (SmeltPlugin  *self,
                              const char   *name,
                              GType         type,
                              GError      **error)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), FALSE);
  return register_feature (self, SMELT_FEATURE_FORMAT, SMELT_TYPE_FORMAT, name, type, error);
}

/**
 * smelt_plugin_register_destination:
 * @self: the plugin being initialized
 * @name: the feature name, as declared in the .plugin file
 * @type: a #SmeltDestination subclass
 * @error: return location for a #GError
 *
 * Registers a destination. Call from the plugin's init function.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_plugin_register_destination (SmeltPlugin  *self,
                                   const char   *name,
                                   GType         type,
                                   GError      **error)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), FALSE);
  return register_feature (self, SMELT_FEATURE_DESTINATION, SMELT_TYPE_DESTINATION, name, type, error);
}

/**
 * smelt_plugin_get_name:
 * @self: a #SmeltPlugin
 *
 * Gets the plugin name.
 *
 * Returns: the plugin name
 */
const char *
smelt_plugin_get_name (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->name;
}

/**
 * smelt_plugin_get_description:
 * @self: a #SmeltPlugin
 *
 * Gets the description.
 *
 * Returns: (nullable): the description
 */
const char *
smelt_plugin_get_description (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->description;
}

/**
 * smelt_plugin_get_version:
 * @self: a #SmeltPlugin
 *
 * Gets the version.
 *
 * Returns: (nullable): the version
 */
const char *
smelt_plugin_get_version (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->version;
}

/**
 * smelt_plugin_get_license:
 * @self: a #SmeltPlugin
 *
 * Gets the license.
 *
 * Returns: (nullable): the license
 */
const char *
smelt_plugin_get_license (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->license;
}

/**
 * smelt_plugin_get_filename:
 * @self: a #SmeltPlugin
 *
 * Gets the .plugin file.
 *
 * Returns: (type filename): the .plugin file
 */
const char *
smelt_plugin_get_filename (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->filename;
}

/**
 * smelt_plugin_get_state:
 * @self: a #SmeltPlugin
 *
 * Gets the state.
 *
 * Returns: the state
 */
SmeltPluginState
smelt_plugin_get_state (SmeltPlugin *self)
{
  SmeltPluginState state;

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), SMELT_PLUGIN_STATE_ERROR);
  g_mutex_lock (&self->lock);
  state = self->state;
  g_mutex_unlock (&self->lock);
  return state;
}

/**
 * smelt_plugin_get_error:
 * @self: a #SmeltPlugin
 *
 * Gets why the plugin failed to load.
 *
 * Returns: (transfer none) (nullable): why the plugin failed to load
 */
const GError *
smelt_plugin_get_error (SmeltPlugin *self)
{
  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  return self->error;
}

/**
 * smelt_plugin_list_features:
 * @self: a #SmeltPlugin
 *
 * Gets feature names, in the order the .plugin file declares them.
 *
 * Returns: (transfer full) (array zero-terminated=1): feature names, in the
 *   order the .plugin file declares them
 */
char **
smelt_plugin_list_features (SmeltPlugin *self)
{
  GPtrArray *out = g_ptr_array_new ();

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  for (guint i = 0; i < self->feature_order->len; i++)
    g_ptr_array_add (out, g_strdup (g_ptr_array_index (self->feature_order, i)));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/**
 * smelt_plugin_get_feature_kind:
 * @self: a #SmeltPlugin
 * @feature: a feature name
 * @kind: (out): the kind
 *
 * Looks up whether @feature is a format or a destination, from the
 * .plugin file (the module need not be loaded).
 *
 * Returns: %TRUE if the plugin declares @feature
 */
gboolean
smelt_plugin_get_feature_kind (SmeltPlugin      *self,
                               const char       *feature,
                               SmeltFeatureKind *kind)
{
  Feature *f;

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), FALSE);
  f = g_hash_table_lookup (self->features, feature);
  if (f && kind)
    *kind = f->kind;
  return f != NULL;
}

/**
 * smelt_plugin_get_feature_description:
 * @self: a #SmeltPlugin
 * @feature: a feature name
 *
 * Gets the feature's description from the .plugin file.
 *
 * Returns: (nullable): the feature's description from the .plugin file
 */
const char *
smelt_plugin_get_feature_description (SmeltPlugin *self,
                                      const char  *feature)
{
  Feature *f;

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), NULL);
  f = g_hash_table_lookup (self->features, feature);
  return f ? f->description : NULL;
}

/**
 * smelt_plugin_get_feature_type:
 * @self: a loaded #SmeltPlugin
 * @feature: a feature name
 *
 * Gets the feature's #GType, or %G_TYPE_INVALID if the plugin is not loaded
 * or has no such feature.
 *
 * Returns: the feature's #GType, or %G_TYPE_INVALID if the plugin is not
 *   loaded or has no such feature
 */
GType
smelt_plugin_get_feature_type (SmeltPlugin *self,
                               const char  *feature)
{
  Feature *f;

  g_return_val_if_fail (SMELT_IS_PLUGIN (self), G_TYPE_INVALID);
  f = g_hash_table_lookup (self->features, feature);
  return f ? f->type : G_TYPE_INVALID;
}
