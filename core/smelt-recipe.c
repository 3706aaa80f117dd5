/* smelt-recipe.c: key-file recipes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "smelt-private.h"

/**
 * SmeltRecipe:
 *
 * What to export, from what, to where: a #GKeyFile with the groups
 * `[Recipe]` (Name, Description), `[Source]` (Model, Adapters,
 * AdapterWeights, MergeInto, Original), `[Destination NAME]` (Plugin
 * plus the destination's options) and `[Export NAME]` (Format,
 * Destination plus the format's options). Option keys are the nicks of
 * the plugins' properties.
 *
 * Every error names the recipe file, the group and the key, and an unknown
 * key comes with the nearest valid one.
 */

struct _SmeltRecipe
{
  GObject   parent_instance;

  GKeyFile *kf;
  char     *filename;
  char     *base_dir;
};

G_DEFINE_FINAL_TYPE (SmeltRecipe, smelt_recipe, G_TYPE_OBJECT)

static const char * const recipe_keys[] = { "Name", "Description", NULL };
static const char * const source_keys[] = { "Model", "Adapters", "AdapterWeights", "MergeInto",
                                             "Original", NULL };
static const char * const destination_reserved[] = { "Plugin", NULL };
static const char * const export_reserved[] = { "Format", "Destination", NULL };

static void
smelt_recipe_finalize (GObject *object)
{
  SmeltRecipe *self = SMELT_RECIPE (object);

  g_key_file_unref (self->kf);
  g_free (self->filename);
  g_free (self->base_dir);
  G_OBJECT_CLASS (smelt_recipe_parent_class)->finalize (object);
}

static void
smelt_recipe_class_init (SmeltRecipeClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_recipe_finalize;
}

static void
smelt_recipe_init (SmeltRecipe *self)
{
  self->kf = g_key_file_new ();
}

static const char *
where (SmeltRecipe *self)
{
  return self->filename ? self->filename : "(recipe)";
}

static gboolean
check_groups (SmeltRecipe  *self,
              GError      **error)
{
  g_auto(GStrv) groups = g_key_file_get_groups (self->kf, NULL);
  static const char * const known[] = { "Recipe", "Source", "Destination NAME", "Export NAME", NULL };

  for (guint i = 0; groups[i]; i++)
    {
      const char *g = groups[i];

      if (g_str_equal (g, "Recipe") || g_str_equal (g, "Source"))
        continue;
      if ((g_str_has_prefix (g, "Destination ") && g[12] != '\0') ||
          (g_str_has_prefix (g, "Export ") && g[7] != '\0'))
        {
          const char *name = strchr (g, ' ') + 1;

          if (strchr (name, '.') || strchr (name, '=') || g_ascii_isspace (*name))
            {
              g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_UNKNOWN_GROUP,
                           "%s: [%s]: names may not contain “.” or “=”", where (self), g);
              return FALSE;
            }
          continue;
        }
      {
        const char *best = NULL;
        guint best_d = G_MAXUINT;

        for (guint k = 0; known[k]; k++)
          {
            guint d = smelt_levenshtein (g, known[k]);
            if (d < best_d)
              best_d = d, best = known[k];
          }
        g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_UNKNOWN_GROUP,
                     "%s: unknown group [%s]; did you mean [%s]? (groups are [Recipe], "
                     "[Source], [Destination NAME] and [Export NAME])", where (self), g, best);
        return FALSE;
      }
    }
  return TRUE;
}

/* GKeyFile silently merges a repeated group and keeps the last of a
 * repeated key; in a recipe both are almost always a copy-paste mistake
 * (two [Export gguf] groups, Types= given twice), so they are errors. */
static gboolean
check_duplicates (const char  *data,
                  gsize        length,
                  const char  *where,
                  GError     **error)
{
  g_autoptr(GHashTable) groups = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) keys = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *copy = g_strndup (data, length);
  g_auto(GStrv) lines = g_strsplit (copy, "\n", -1);
  g_autofree char *group = NULL;

  for (guint i = 0; lines[i]; i++)
    {
      char *line = g_strstrip (lines[i]);
      char *eq;
      gpointer first;

      if (*line == '\0' || *line == '#')
        continue;
      if (*line == '[' && line[strlen (line) - 1] == ']')
        {
          g_free (group);
          group = g_strndup (line + 1, strlen (line) - 2);
          if (g_hash_table_lookup_extended (groups, group, NULL, &first))
            {
              g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_PARSE,
                           "%s:%u: group [%s] appears again (first at line %u)",
                           where, i + 1, group, GPOINTER_TO_UINT (first));
              return FALSE;
            }
          g_hash_table_insert (groups, g_strdup (group), GUINT_TO_POINTER (i + 1));
          continue;
        }
      eq = strchr (line, '=');
      if (eq == NULL || group == NULL)
        continue;   /* GKeyFile reports these itself */
      *eq = '\0';
      g_strchomp (line);
      {
        g_autofree char *id = g_strdup_printf ("%s\n%s", group, line);

        if (g_hash_table_lookup_extended (keys, id, NULL, &first))
          {
            g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_PARSE,
                         "%s:%u: [%s] %s is set again (first at line %u)",
                         where, i + 1, group, line, GPOINTER_TO_UINT (first));
            return FALSE;
          }
        g_hash_table_insert (keys, g_steal_pointer (&id), GUINT_TO_POINTER (i + 1));
      }
    }
  return TRUE;
}

static SmeltRecipe *
new_from_keyfile (GKeyFile    *kf,
                  const char  *filename,
                  const char  *base_dir,
                  GError     **error)
{
  g_autoptr(SmeltRecipe) self = g_object_new (SMELT_TYPE_RECIPE, NULL);

  g_key_file_unref (self->kf);
  self->kf = g_key_file_ref (kf);
  self->filename = g_strdup (filename);
  self->base_dir = base_dir ? g_canonicalize_filename (base_dir, NULL) : g_get_current_dir ();
  if (!check_groups (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

/**
 * smelt_recipe_new:
 *
 * Creates an empty recipe to fill in code. Relative paths resolve against
 * the current directory.
 *
 * Returns: (transfer full): a new #SmeltRecipe
 */
SmeltRecipe *
smelt_recipe_new (void)
{
  SmeltRecipe *self = g_object_new (SMELT_TYPE_RECIPE, NULL);

  self->base_dir = g_get_current_dir ();
  return self;
}

/**
 * smelt_recipe_new_from_file:
 * @path: (type filename): a `.smelt` recipe
 * @error: return location for a #GError
 *
 * Loads a recipe. Relative paths in it resolve against its folder.
 *
 * Returns: (transfer full): a new #SmeltRecipe, or %NULL with @error set
 */
SmeltRecipe *
smelt_recipe_new_from_file (const char  *path,
                            GError     **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autofree char *abs = g_canonicalize_filename (path, NULL);
  g_autofree char *dir = g_path_get_dirname (abs);
  g_autofree char *text = NULL;
  gsize length;
  GError *local = NULL;

  if (!g_file_get_contents (path, &text, &length, &local) ||
      !g_key_file_load_from_data (kf, text, length, G_KEY_FILE_KEEP_COMMENTS, &local))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_PARSE,
                   "%s: %s", path, local->message);
      g_error_free (local);
      return NULL;
    }
  if (!check_duplicates (text, length, path, error))
    return NULL;
  return new_from_keyfile (kf, path, dir, error);
}

/**
 * smelt_recipe_new_from_data:
 * @data: recipe text
 * @length: length of @data, or -1 if nul-terminated
 * @base_dir: (type filename) (nullable): folder for relative paths
 *   (default: the current directory)
 * @error: return location for a #GError
 *
 * Parses a recipe from memory.
 *
 * Returns: (transfer full): a new #SmeltRecipe, or %NULL with @error set
 */
SmeltRecipe *
smelt_recipe_new_from_data (const char  *data,
                            gssize       length,
                            const char  *base_dir,
                            GError     **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  GError *local = NULL;

  if (!g_key_file_load_from_data (kf, data, length < 0 ? (gsize) -1 : (gsize) length,
                                  G_KEY_FILE_KEEP_COMMENTS, &local))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_PARSE,
                   "(recipe): %s", local->message);
      g_error_free (local);
      return NULL;
    }
  if (!check_duplicates (data, length < 0 ? strlen (data) : (gsize) length, "(recipe)", error))
    return NULL;
  return new_from_keyfile (kf, NULL, base_dir, error);
}

/**
 * smelt_recipe_get_filename:
 * @self: a #SmeltRecipe
 *
 * Gets the file the recipe came from.
 *
 * Returns: (type filename) (nullable): the file the recipe came from
 */
const char *
smelt_recipe_get_filename (SmeltRecipe *self)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return self->filename;
}

/**
 * smelt_recipe_get_base_dir:
 * @self: a #SmeltRecipe
 *
 * Gets the folder relative paths resolve against.
 *
 * Returns: (type filename): the folder relative paths resolve against
 */
const char *
smelt_recipe_get_base_dir (SmeltRecipe *self)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return self->base_dir;
}

/**
 * smelt_recipe_resolve_path:
 * @self: a #SmeltRecipe
 * @path: (type filename): a path from the recipe
 *
 * Gets @path made absolute against the recipe's folder (`~/` expands to the
 * home directory).
 *
 * Returns: (transfer full) (type filename): @path made absolute against
 *   the recipe's folder (`~/` expands to the home directory)
 */
char *
smelt_recipe_resolve_path (SmeltRecipe *self,
                           const char  *path)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  if (g_str_has_prefix (path, "~/"))
    return g_build_filename (g_get_home_dir (), path + 2, NULL);
  return g_canonicalize_filename (path, self->base_dir);
}

/**
 * smelt_recipe_get_name:
 * @self: a #SmeltRecipe
 *
 * Gets [Recipe] Name, else the file's stem, else "smelt".
 *
 * Returns: (transfer full): [Recipe] Name, else the file's stem, else "smelt"
 */
char *
smelt_recipe_get_name (SmeltRecipe *self)
{
  char *name;

  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  name = g_key_file_get_string (self->kf, "Recipe", "Name", NULL);
  if (name && *name)
    return name;
  g_free (name);
  if (self->filename)
    {
      g_autofree char *base = g_path_get_basename (self->filename);
      char *dot = strrchr (base, '.');

      if (dot && dot != base)
        *dot = '\0';
      return g_strdup (base);
    }
  return g_strdup ("smelt");
}

/**
 * smelt_recipe_set_name:
 * @self: a #SmeltRecipe
 * @name: a name
 *
 * Sets [Recipe] Name.
 */
void
smelt_recipe_set_name (SmeltRecipe *self,
                       const char  *name)
{
  g_return_if_fail (SMELT_IS_RECIPE (self));
  g_key_file_set_string (self->kf, "Recipe", "Name", name);
}

/**
 * smelt_recipe_set_model:
 * @self: a #SmeltRecipe
 * @path: (type filename): the base model directory
 *
 * Sets [Source] Model.
 */
void
smelt_recipe_set_model (SmeltRecipe *self,
                        const char  *path)
{
  g_return_if_fail (SMELT_IS_RECIPE (self));
  g_key_file_set_string (self->kf, "Source", "Model", path);
}

/**
 * smelt_recipe_get_model:
 * @self: a #SmeltRecipe
 *
 * Gets the absolute base model directory.
 *
 * Returns: (transfer full) (type filename) (nullable): the absolute base
 *   model directory
 */
char *
smelt_recipe_get_model (SmeltRecipe *self)
{
  g_autofree char *raw = NULL;

  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  raw = g_key_file_get_string (self->kf, "Source", "Model", NULL);
  return raw && *raw ? smelt_recipe_resolve_path (self, raw) : NULL;
}

/**
 * smelt_recipe_add_adapter:
 * @self: a #SmeltRecipe
 * @path: (type filename): an adapter directory
 * @weight: its weight in the merge (1.0 for a plain merge)
 *
 * Appends an adapter to [Source] Adapters and AdapterWeights.
 */
void
smelt_recipe_add_adapter (SmeltRecipe *self,
                          const char  *path,
                          double       weight)
{
  g_auto(GStrv) adapters = NULL;
  g_autoptr(GArray) weights = NULL;
  g_autoptr(GPtrArray) list = g_ptr_array_new ();
  g_autofree double *w = NULL;
  gsize n = 0;

  g_return_if_fail (SMELT_IS_RECIPE (self));
  adapters = g_key_file_get_string_list (self->kf, "Source", "Adapters", &n, NULL);
  if (!smelt_recipe_get_adapter_weights (self, &weights, NULL))
    weights = g_array_new (FALSE, FALSE, sizeof (double));
  for (gsize i = 0; i < n; i++)
    g_ptr_array_add (list, adapters[i]);
  g_ptr_array_add (list, (gpointer) path);
  g_array_set_size (weights, n);
  g_array_append_val (weights, weight);
  g_key_file_set_string_list (self->kf, "Source", "Adapters",
                              (const char * const *) list->pdata, list->len);
  g_key_file_set_double_list (self->kf, "Source", "AdapterWeights",
                              (double *) weights->data, weights->len);
}

/**
 * smelt_recipe_get_adapters:
 * @self: a #SmeltRecipe
 *
 * Gets absolute adapter directories, in merge order.
 *
 * Returns: (transfer full) (array zero-terminated=1): absolute adapter
 *   directories, in merge order
 */
char **
smelt_recipe_get_adapters (SmeltRecipe *self)
{
  g_auto(GStrv) raw = NULL;
  GPtrArray *out = g_ptr_array_new ();

  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  raw = g_key_file_get_string_list (self->kf, "Source", "Adapters", NULL, NULL);
  for (guint i = 0; raw && raw[i]; i++)
    {
      g_strstrip (raw[i]);
      if (*raw[i])
        g_ptr_array_add (out, smelt_recipe_resolve_path (self, raw[i]));
    }
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/**
 * smelt_recipe_get_adapter_weights:
 * @self: a #SmeltRecipe
 * @weights: (out) (transfer full) (element-type gdouble): one weight per adapter
 * @error: return location for a #GError
 *
 * Reads [Source] AdapterWeights, defaulting every weight to 1.0.
 *
 * Returns: %TRUE if the weights are valid and as many as the adapters
 */
gboolean
smelt_recipe_get_adapter_weights (SmeltRecipe  *self,
                                  GArray      **weights,
                                  GError      **error)
{
  g_auto(GStrv) adapters = smelt_recipe_get_adapters (self);
  guint n_adapters = g_strv_length (adapters);
  g_auto(GStrv) raw = NULL;
  GArray *out = g_array_new (FALSE, FALSE, sizeof (double));
  gsize n = 0;

  raw = g_key_file_get_string_list (self->kf, "Source", "AdapterWeights", &n, NULL);
  if (raw == NULL)
    {
      for (guint i = 0; i < n_adapters; i++)
        {
          double one = 1.0;
          g_array_append_val (out, one);
        }
      *weights = out;
      return TRUE;
    }
  for (gsize i = 0; i < n; i++)
    {
      char *end = NULL;
      double v;

      g_strstrip (raw[i]);
      v = g_ascii_strtod (raw[i], &end);
      if (*raw[i] == '\0' || *end != '\0' || !isfinite (v))
        {
          g_array_unref (out);
          g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                       "%s: [Source] AdapterWeights: “%s” is not a number", where (self), raw[i]);
          return FALSE;
        }
      g_array_append_val (out, v);
    }
  if (out->len != n_adapters)
    {
      g_array_unref (out);
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [Source] AdapterWeights has %zu weights for %u adapters",
                   where (self), n, n_adapters);
      return FALSE;
    }
  *weights = out;
  return TRUE;
}

/**
 * smelt_recipe_add_destination:
 * @self: a #SmeltRecipe
 * @name: the destination's name
 * @plugin: the destination feature, e.g. "localfs"
 *
 * Adds a [Destination NAME] group.
 */
void
smelt_recipe_add_destination (SmeltRecipe *self,
                              const char  *name,
                              const char  *plugin)
{
  g_autofree char *group = g_strconcat ("Destination ", name, NULL);

  g_return_if_fail (SMELT_IS_RECIPE (self));
  g_key_file_set_string (self->kf, group, "Plugin", plugin);
}

/**
 * smelt_recipe_add_export:
 * @self: a #SmeltRecipe
 * @name: the export's name
 * @format: the format feature, e.g. "merged16"
 * @destination: (nullable): the destination's name
 *
 * Adds an [Export NAME] group.
 */
void
smelt_recipe_add_export (SmeltRecipe *self,
                         const char  *name,
                         const char  *format,
                         const char  *destination)
{
  g_autofree char *group = g_strconcat ("Export ", name, NULL);

  g_return_if_fail (SMELT_IS_RECIPE (self));
  g_key_file_set_string (self->kf, group, "Format", format);
  if (destination)
    g_key_file_set_string (self->kf, group, "Destination", destination);
}

static char **
list_named (SmeltRecipe *self,
            const char  *prefix)
{
  g_auto(GStrv) groups = g_key_file_get_groups (self->kf, NULL);
  GPtrArray *out = g_ptr_array_new ();

  for (guint i = 0; groups[i]; i++)
    if (g_str_has_prefix (groups[i], prefix))
      g_ptr_array_add (out, g_strdup (groups[i] + strlen (prefix)));
  g_ptr_array_add (out, NULL);
  return (char **) g_ptr_array_free (out, FALSE);
}

/**
 * smelt_recipe_list_exports:
 * @self: a #SmeltRecipe
 *
 * Gets export names, in recipe order.
 *
 * Returns: (transfer full) (array zero-terminated=1): export names, in
 *   recipe order
 */
char **
smelt_recipe_list_exports (SmeltRecipe *self)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return list_named (self, "Export ");
}

/**
 * smelt_recipe_list_destinations:
 * @self: a #SmeltRecipe
 *
 * Gets destination names.
 *
 * Returns: (transfer full) (array zero-terminated=1): destination names
 */
char **
smelt_recipe_list_destinations (SmeltRecipe *self)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return list_named (self, "Destination ");
}

/**
 * smelt_recipe_get_export_format:
 * @self: a #SmeltRecipe
 * @name: an export name
 *
 * Gets the export's Format.
 *
 * Returns: (transfer full) (nullable): the export's Format
 */
char *
smelt_recipe_get_export_format (SmeltRecipe *self,
                                const char  *name)
{
  g_autofree char *group = g_strconcat ("Export ", name, NULL);

  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return g_key_file_get_string (self->kf, group, "Format", NULL);
}

/**
 * smelt_recipe_get_export_destination:
 * @self: a #SmeltRecipe
 * @name: an export name
 *
 * Gets the export's Destination, or the only destination of the recipe when
 * the export names none.
 *
 * Returns: (transfer full) (nullable): the export's Destination, or the
 *   only destination of the recipe when the export names none
 */
char *
smelt_recipe_get_export_destination (SmeltRecipe *self,
                                     const char  *name)
{
  g_autofree char *group = g_strconcat ("Export ", name, NULL);
  char *dest;

  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  dest = g_key_file_get_string (self->kf, group, "Destination", NULL);
  if (dest == NULL)
    {
      g_auto(GStrv) all = smelt_recipe_list_destinations (self);

      if (g_strv_length (all) == 1)
        dest = g_strdup (all[0]);
    }
  return dest;
}

static gboolean
group_exists (SmeltRecipe *self,
              const char  *prefix,
              const char  *name)
{
  g_autofree char *group = g_strconcat (prefix, name, NULL);

  return g_key_file_has_group (self->kf, group);
}

/**
 * smelt_recipe_set_option:
 * @self: a #SmeltRecipe
 * @target: "Recipe", "Source", or an export or destination name
 * @key: the key
 * @value: the value, as it would be written in the recipe
 * @error: return location for a #GError
 *
 * Sets a key. Unknown keys are reported when the recipe is validated.
 *
 * Returns: %TRUE if @target exists and is unambiguous
 */
gboolean
smelt_recipe_set_option (SmeltRecipe *self,
                         const char  *target,
                         const char  *key,
                         const char  *value,
                         GError     **error)
{
  gboolean is_export, is_dest;
  g_autofree char *group = NULL;

  g_return_val_if_fail (SMELT_IS_RECIPE (self), FALSE);

  if (g_str_equal (target, "Recipe") || g_str_equal (target, "Source"))
    group = g_strdup (target);
  else
    {
      is_export = group_exists (self, "Export ", target);
      is_dest = group_exists (self, "Destination ", target);
      if (is_export && is_dest)
        {
          g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                       "%s: “%s” is both an export and a destination; rename one to set “%s.%s”",
                       where (self), target, target, key);
          return FALSE;
        }
      if (!is_export && !is_dest)
        {
          g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_GROUP,
                       "%s: no export or destination named “%s” (to set “%s”)",
                       where (self), target, key);
          return FALSE;
        }
      group = g_strconcat (is_export ? "Export " : "Destination ", target, NULL);
    }
  g_key_file_set_value (self->kf, group, key, value);
  return TRUE;
}

/**
 * smelt_recipe_override:
 * @self: a #SmeltRecipe
 * @assignment: `TARGET.Key=Value`, as given to `smelt run --set`
 * @error: return location for a #GError
 *
 * Overrides one key.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_recipe_override (SmeltRecipe *self,
                       const char  *assignment,
                       GError     **error)
{
  const char *eq = strchr (assignment, '=');
  g_autofree char *lhs = NULL;
  char *dot;

  g_return_val_if_fail (SMELT_IS_RECIPE (self), FALSE);
  if (eq == NULL)
    goto bad;
  lhs = g_strndup (assignment, eq - assignment);
  dot = strrchr (lhs, '.');
  if (dot == NULL || dot == lhs || dot[1] == '\0')
    goto bad;
  *dot = '\0';
  return smelt_recipe_set_option (self, lhs, dot + 1, eq + 1, error);

bad:
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
               "“%s”: expected NAME.Key=Value (NAME: an export, a destination, "
               "Source or Recipe)", assignment);
  return FALSE;
}

/**
 * smelt_recipe_to_data:
 * @self: a #SmeltRecipe
 * @length: (out) (optional): length of the result
 *
 * Gets the recipe as key-file text.
 *
 * Returns: (transfer full): the recipe as key-file text
 */
char *
smelt_recipe_to_data (SmeltRecipe *self,
                      gsize       *length)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), NULL);
  return g_key_file_to_data (self->kf, length, NULL);
}

/* ---- validation and instantiation ---- */

static const char *
nearest (const char         *key,
         GPtrArray          *candidates)
{
  const char *best = NULL;
  guint best_d = G_MAXUINT;

  for (guint i = 0; i < candidates->len; i++)
    {
      guint d = smelt_levenshtein (key, g_ptr_array_index (candidates, i));
      if (d < best_d)
        best_d = d, best = g_ptr_array_index (candidates, i);
    }
  return best;
}

static gboolean
unknown_key (SmeltRecipe  *self,
             const char   *group,
             const char   *key,
             GPtrArray    *valid,
             GError      **error)
{
  g_autofree char *list = NULL;
  const char *best = nearest (key, valid);

  g_ptr_array_add (valid, NULL);
  list = g_strjoinv (", ", (char **) valid->pdata);
  g_ptr_array_remove_index (valid, valid->len - 1);
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_UNKNOWN_KEY,
               "%s: [%s] unknown key “%s”%s%s%s (valid keys: %s)", where (self), group, key,
               best ? "; did you mean “" : "", best ? best : "", best ? "”?" : "", list);
  return FALSE;
}

static gboolean
check_fixed_keys (SmeltRecipe        *self,
                  const char         *group,
                  const char * const *allowed,
                  GError            **error)
{
  g_auto(GStrv) keys = g_key_file_get_keys (self->kf, group, NULL, NULL);

  for (guint i = 0; keys && keys[i]; i++)
    if (!g_strv_contains (allowed, keys[i]))
      {
        g_autoptr(GPtrArray) valid = g_ptr_array_new ();

        for (guint k = 0; allowed[k]; k++)
          g_ptr_array_add (valid, (gpointer) allowed[k]);
        return unknown_key (self, group, keys[i], valid, error);
      }
  return TRUE;
}

static gboolean
bad_value (SmeltRecipe  *self,
           const char   *group,
           const char   *key,
           const char   *value,
           const char   *expected,
           GError      **error)
{
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
               "%s: [%s] %s=%s: expected %s", where (self), group, key, value, expected);
  return FALSE;
}

/* [Source] MergeInto: what the adapters merge into when Model is a
 * bitsandbytes 4-bit base. QLoRA trained them against the dequantized
 * weights, so that is the default; original16 takes the 16-bit model the
 * 4-bit one was made from (Original=), for those who want the merge on the
 * full-precision weights. */
gboolean
_smelt_recipe_get_merge_into (SmeltRecipe     *self,
                              SmeltMergeInto  *merge_into,
                              GError         **error)
{
  g_autofree char *raw = g_key_file_get_string (self->kf, "Source", "MergeInto", NULL);

  *merge_into = SMELT_MERGE_INTO_DEQUANTIZED;
  if (raw == NULL)
    return TRUE;
  g_strstrip (raw);
  if (g_ascii_strcasecmp (raw, "dequantized") == 0)
    return TRUE;
  if (g_ascii_strcasecmp (raw, "original16") == 0)
    {
      *merge_into = SMELT_MERGE_INTO_ORIGINAL16;
      return TRUE;
    }
  return bad_value (self, "Source", "MergeInto", raw, "dequantized or original16", error);
}

/* [Source] Original, resolved like Model=, or NULL. */
char *
_smelt_recipe_get_original (SmeltRecipe *self)
{
  g_autofree char *raw = g_key_file_get_string (self->kf, "Source", "Original", NULL);

  if (raw != NULL)
    g_strstrip (raw);
  return raw && *raw ? smelt_recipe_resolve_path (self, raw) : NULL;
}

/* MergeInto and Original go together; whether Model is 4-bit is only
 * known once it is opened (smelt-export-job.c). */
static gboolean
check_merge_into (SmeltRecipe  *self,
                  GError      **error)
{
  g_autofree char *original = _smelt_recipe_get_original (self);
  SmeltMergeInto merge_into;

  if (!_smelt_recipe_get_merge_into (self, &merge_into, error))
    return FALSE;
  if (merge_into == SMELT_MERGE_INTO_ORIGINAL16 && original == NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_KEY,
                   "%s: [Source] MergeInto=original16 needs an Original= key: the 16-bit "
                   "model the 4-bit Model was quantized from", where (self));
      return FALSE;
    }
  if (merge_into != SMELT_MERGE_INTO_ORIGINAL16 && original != NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [Source] Original= is only used with MergeInto=original16 (by "
                   "default adapters merge into the 4-bit Model's dequantized weights); "
                   "add MergeInto=original16 or remove Original", where (self));
      return FALSE;
    }
  return TRUE;
}

static gboolean
parse_integer (const char *text,
               gboolean    is_signed,
               gint64     *s,
               guint64    *u)
{
  char *end = NULL;

  if (*text == '\0' || g_ascii_isspace (*text))
    return FALSE;
  errno = 0;
  if (is_signed)
    *s = g_ascii_strtoll (text, &end, 10);
  else
    {
      if (*text == '-')
        return FALSE;
      *u = g_ascii_strtoull (text, &end, 10);
    }
  return errno == 0 && *end == '\0';
}

static char *
enum_nicks (GEnumClass *klass)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < klass->n_values; i++)
    g_string_append_printf (s, "%s%s", i ? ", " : "", klass->values[i].value_nick);
  return g_string_free (s, FALSE);
}

/* Converts recipe text to a property value, checking type and range. */
static gboolean
set_property_from_string (SmeltRecipe  *self,
                          GObject      *object,
                          GParamSpec   *pspec,
                          const char   *group,
                          const char   *key,
                          GError      **error)
{
  g_auto(GValue) value = G_VALUE_INIT;
  g_autofree char *text = g_key_file_get_string (self->kf, group, key, NULL);
  GType type = G_PARAM_SPEC_VALUE_TYPE (pspec);
  gint64 s = 0;
  guint64 u = 0;
  g_autofree char *range = NULL;

  if (text == NULL)
    text = g_key_file_get_value (self->kf, group, key, NULL);
  g_strstrip (text);
  g_value_init (&value, type);

  if (type == G_TYPE_STRING)
    {
      if (pspec->flags & SMELT_PARAM_PATH && *text)
        {
          g_autofree char *abs = smelt_recipe_resolve_path (self, text);
          g_value_set_string (&value, abs);
        }
      else
        g_value_set_string (&value, text);
    }
  else if (type == G_TYPE_BOOLEAN)
    {
      if (g_ascii_strcasecmp (text, "true") == 0)
        g_value_set_boolean (&value, TRUE);
      else if (g_ascii_strcasecmp (text, "false") == 0)
        g_value_set_boolean (&value, FALSE);
      else
        return bad_value (self, group, key, text, "true or false", error);
    }
  else if (type == G_TYPE_INT || type == G_TYPE_INT64)
    {
      gint64 lo = type == G_TYPE_INT ? G_PARAM_SPEC_INT (pspec)->minimum : G_PARAM_SPEC_INT64 (pspec)->minimum;
      gint64 hi = type == G_TYPE_INT ? G_PARAM_SPEC_INT (pspec)->maximum : G_PARAM_SPEC_INT64 (pspec)->maximum;

      range = g_strdup_printf ("an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT, lo, hi);
      if (!parse_integer (text, TRUE, &s, &u) || s < lo || s > hi)
        return bad_value (self, group, key, text, range, error);
      if (type == G_TYPE_INT)
        g_value_set_int (&value, (int) s);
      else
        g_value_set_int64 (&value, s);
    }
  else if (type == G_TYPE_UINT || type == G_TYPE_UINT64)
    {
      guint64 lo = type == G_TYPE_UINT ? G_PARAM_SPEC_UINT (pspec)->minimum : G_PARAM_SPEC_UINT64 (pspec)->minimum;
      guint64 hi = type == G_TYPE_UINT ? G_PARAM_SPEC_UINT (pspec)->maximum : G_PARAM_SPEC_UINT64 (pspec)->maximum;

      range = g_strdup_printf ("an integer from %" G_GUINT64_FORMAT " to %" G_GUINT64_FORMAT, lo, hi);
      if (!parse_integer (text, FALSE, &s, &u) || u < lo || u > hi)
        return bad_value (self, group, key, text, range, error);
      if (type == G_TYPE_UINT)
        g_value_set_uint (&value, (guint) u);
      else
        g_value_set_uint64 (&value, u);
    }
  else if (type == G_TYPE_DOUBLE)
    {
      GParamSpecDouble *d = G_PARAM_SPEC_DOUBLE (pspec);
      char *end = NULL;
      double v = g_ascii_strtod (text, &end);

      range = g_strdup_printf ("a number from %g to %g", d->minimum, d->maximum);
      if (*text == '\0' || *end != '\0' || !isfinite (v) || v < d->minimum || v > d->maximum)
        return bad_value (self, group, key, text, range, error);
      g_value_set_double (&value, v);
    }
  else if (G_TYPE_IS_ENUM (type))
    {
      GEnumClass *klass = g_type_class_peek (type);
      GEnumValue *ev = NULL;

      for (guint i = 0; i < klass->n_values && ev == NULL; i++)
        if (g_ascii_strcasecmp (klass->values[i].value_nick, text) == 0)
          ev = &klass->values[i];
      if (ev == NULL)
        {
          g_autofree char *nicks = enum_nicks (klass);
          g_autofree char *expected = g_strdup_printf ("one of %s", nicks);
          return bad_value (self, group, key, text, expected, error);
        }
      g_value_set_enum (&value, ev->value);
    }
  else if (type == G_TYPE_STRV)
    {
      g_auto(GStrv) list = g_key_file_get_string_list (self->kf, group, key, NULL, NULL);

      for (guint i = 0; list && list[i]; i++)
        g_strstrip (list[i]);
      g_value_set_boxed (&value, list);
    }
  else
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [%s] %s: the plugin's property has type %s, which recipes cannot set",
                   where (self), group, key, g_type_name (type));
      return FALSE;
    }

  if (g_param_value_validate (pspec, &value))
    return bad_value (self, group, key, text, "a value the plugin accepts", error);
  g_object_set_property (object, pspec->name, &value);
  return TRUE;
}

/* Recipe keys are property nicks. Base-class bookkeeping properties
 * ("name") are not options. */
static GParamSpec *
find_option (GObject    *object,
             const char *key,
             GPtrArray  *valid)
{
  guint n;
  g_autofree GParamSpec **specs = g_object_class_list_properties (G_OBJECT_GET_CLASS (object), &n);
  GParamSpec *found = NULL;

  for (guint i = 0; i < n; i++)
    {
      const char *nick = g_param_spec_get_nick (specs[i]);

      if (!(specs[i]->flags & G_PARAM_WRITABLE) || (specs[i]->flags & G_PARAM_CONSTRUCT_ONLY) ||
          g_str_equal (specs[i]->name, "name"))
        continue;
      if (valid)
        g_ptr_array_add (valid, (gpointer) nick);
      if (g_str_equal (nick, key))
        found = specs[i];
    }
  return found;
}

static gboolean
configure (SmeltRecipe        *self,
           GObject            *object,
           const char         *group,
           const char * const *reserved,
           GError            **error)
{
  g_auto(GStrv) keys = g_key_file_get_keys (self->kf, group, NULL, NULL);

  for (guint i = 0; keys && keys[i]; i++)
    {
      g_autoptr(GPtrArray) valid = g_ptr_array_new ();
      GParamSpec *pspec;

      if (g_strv_contains (reserved, keys[i]))
        continue;
      pspec = find_option (object, keys[i], valid);
      if (pspec == NULL)
        {
          for (guint k = 0; reserved[k]; k++)
            g_ptr_array_add (valid, (gpointer) reserved[k]);
          return unknown_key (self, group, keys[i], valid, error);
        }
      if (!set_property_from_string (self, object, pspec, group, keys[i], error))
        return FALSE;
    }
  return TRUE;
}

static char *
require_key (SmeltRecipe  *self,
             const char   *group,
             const char   *key,
             GError      **error)
{
  char *v = g_key_file_get_string (self->kf, group, key, NULL);

  if (v == NULL || *v == '\0')
    {
      g_free (v);
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_KEY,
                   "%s: [%s] needs a %s= key", where (self), group, key);
      return NULL;
    }
  return g_strstrip (v);
}

static SmeltDestination *
make_destination (SmeltRecipe    *self,
                  SmeltRegistry  *registry,
                  const char     *name,
                  GError        **error)
{
  g_autofree char *group = g_strconcat ("Destination ", name, NULL);
  g_autofree char *plugin = require_key (self, group, "Plugin", error);
  g_autoptr(SmeltDestination) dest = NULL;
  GError *local = NULL;

  if (plugin == NULL)
    return NULL;
  dest = smelt_registry_create_destination (registry, plugin, &local);
  if (dest == NULL)
    {
      g_propagate_prefixed_error (error, local, "%s: [%s] Plugin=%s: ", where (self), group, plugin);
      return NULL;
    }
  g_object_set (dest, "name", name, NULL);
  if (!configure (self, G_OBJECT (dest), group, destination_reserved, error))
    return NULL;
  if (!smelt_destination_check_options (dest, &local))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [%s] %s", where (self), group, local->message);
      g_error_free (local);
      return NULL;
    }
  return g_steal_pointer (&dest);
}

static SmeltFormat *
make_format (SmeltRecipe    *self,
             SmeltRegistry  *registry,
             const char     *name,
             GPtrArray      *destinations,
             GError        **error)
{
  g_autofree char *group = g_strconcat ("Export ", name, NULL);
  g_autofree char *format_name = require_key (self, group, "Format", error);
  g_autofree char *dest_name = NULL;
  g_autoptr(SmeltFormat) format = NULL;
  GError *local = NULL;

  if (format_name == NULL)
    return NULL;
  dest_name = smelt_recipe_get_export_destination (self, name);
  if (dest_name == NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_KEY,
                   "%s: [%s] needs a Destination= key naming one of the recipe's "
                   "[Destination NAME] groups", where (self), group);
      return NULL;
    }
  format = smelt_registry_create_format (registry, format_name, &local);
  if (format == NULL)
    {
      g_propagate_prefixed_error (error, local, "%s: [%s] Format=%s: ", where (self), group, format_name);
      return NULL;
    }
  g_object_set (format, "name", name, NULL);
  if (!configure (self, G_OBJECT (format), group, export_reserved, error))
    return NULL;
  if (!smelt_format_check_options (format, &local))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [%s] %s", where (self), group, local->message);
      g_error_free (local);
      return NULL;
    }

  for (guint i = 0; i < destinations->len; i++)
    {
      SmeltDestination *d = g_ptr_array_index (destinations, i);

      if (g_str_equal (smelt_destination_get_name (d), dest_name))
        {
          smelt_format_set_destination (format, d);
          return g_steal_pointer (&format);
        }
    }
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_GROUP,
               "%s: [%s] Destination=%s: the recipe has no [Destination %s]",
               where (self), group, dest_name, dest_name);
  return NULL;
}

/* Two exports of one format into one destination would write the same
 * file names; that is knowable without the model. (Collisions between
 * different formats are found when the job plans the files.) */
static gboolean
check_shared_destinations (SmeltRecipe  *self,
                           GPtrArray    *formats,
                           GError      **error)
{
  for (guint i = 0; i < formats->len; i++)
    for (guint j = i + 1; j < formats->len; j++)
      {
        SmeltFormat *a = g_ptr_array_index (formats, i);
        SmeltFormat *b = g_ptr_array_index (formats, j);

        if (G_OBJECT_TYPE (a) == G_OBJECT_TYPE (b) &&
            smelt_format_get_destination (a) == smelt_format_get_destination (b))
          {
            g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_CONFLICT,
                         "%s: [Export %s] and [Export %s] are the same format writing into "
                         "the same destination “%s”: their files would collide; give each "
                         "its own [Destination]", where (self), smelt_format_get_name (a),
                         smelt_format_get_name (b),
                         smelt_destination_get_name (smelt_format_get_destination (a)));
            return FALSE;
          }
      }
  return TRUE;
}

/* A destination no export names is checked like the others but never
 * prepared or committed: it would otherwise create (or, for the Hub,
 * create a repo) and then fail to commit a folder nothing was written to.
 * Likely a slip, so say so. */
static void
drop_unused_destinations (SmeltRecipe *self,
                          GPtrArray   *destinations,
                          GPtrArray   *formats)
{
  for (guint i = destinations->len; i > 0; i--)
    {
      SmeltDestination *d = g_ptr_array_index (destinations, i - 1);
      gboolean used = FALSE;

      for (guint j = 0; j < formats->len && !used; j++)
        used = smelt_format_get_destination (g_ptr_array_index (formats, j)) == d;
      if (used)
        continue;
      g_warning ("%s: no export writes to [Destination %s]; it is left alone", where (self),
                 smelt_destination_get_name (d));
      g_ptr_array_remove_index (destinations, i - 1);
    }
}

gboolean
_smelt_recipe_instantiate (SmeltRecipe    *self,
                           SmeltRegistry  *registry,
                           GPtrArray     **formats,
                           GPtrArray     **destinations,
                           GError        **error)
{
  g_autoptr(GPtrArray) fs = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GPtrArray) ds = g_ptr_array_new_with_free_func (g_object_unref);
  g_auto(GStrv) dest_names = smelt_recipe_list_destinations (self);
  g_auto(GStrv) export_names = smelt_recipe_list_exports (self);
  g_autoptr(GArray) weights = NULL;
  g_autofree char *model = NULL;

  if (!check_groups (self, error) ||
      !check_fixed_keys (self, "Recipe", recipe_keys, error) ||
      !check_fixed_keys (self, "Source", source_keys, error))
    return FALSE;
  model = smelt_recipe_get_model (self);
  if (model == NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_KEY,
                   "%s: [Source] needs a Model= key (the base model directory)", where (self));
      return FALSE;
    }
  if (!smelt_recipe_get_adapter_weights (self, &weights, error) ||
      !check_merge_into (self, error))
    return FALSE;
  if (export_names[0] == NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_MISSING_GROUP,
                   "%s: no [Export NAME] group: nothing to do", where (self));
      return FALSE;
    }
  for (guint i = 0; dest_names[i]; i++)
    {
      SmeltDestination *d = make_destination (self, registry, dest_names[i], error);

      if (d == NULL)
        return FALSE;
      g_ptr_array_add (ds, d);
    }
  for (guint i = 0; export_names[i]; i++)
    {
      SmeltFormat *f = make_format (self, registry, export_names[i], ds, error);

      if (f == NULL)
        return FALSE;
      g_ptr_array_add (fs, f);
    }
  if (!check_shared_destinations (self, fs, error))
    return FALSE;
  drop_unused_destinations (self, ds, fs);
  if (formats)
    *formats = g_steal_pointer (&fs);
  if (destinations)
    *destinations = g_steal_pointer (&ds);
  return TRUE;
}

/**
 * smelt_recipe_validate:
 * @self: a #SmeltRecipe
 * @registry: (nullable): where to find plugins (default registry if %NULL)
 * @error: return location for a #GError
 *
 * Checks every group, key and value against the plugins, without opening
 * the model.
 *
 * Returns: %TRUE if the recipe is valid
 */
gboolean
smelt_recipe_validate (SmeltRecipe   *self,
                       SmeltRegistry *registry,
                       GError       **error)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (self), FALSE);
  return _smelt_recipe_instantiate (self, registry ? registry : smelt_registry_get_default (),
                                    NULL, NULL, error);
}
