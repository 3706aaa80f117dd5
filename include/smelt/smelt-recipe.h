/* smelt-recipe.h: key-file recipes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-registry.h>

G_BEGIN_DECLS

#define SMELT_TYPE_RECIPE (smelt_recipe_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltRecipe, smelt_recipe, SMELT, RECIPE, GObject)

/**
 * SmeltRecipeClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltRecipe, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltRecipe *smelt_recipe_new               (void);
SMELT_AVAILABLE_IN_ALL
SmeltRecipe *smelt_recipe_new_from_file     (const char   *path,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
SmeltRecipe *smelt_recipe_new_from_data     (const char   *data,
                                             gssize        length,
                                             const char   *base_dir,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
const char  *smelt_recipe_get_filename      (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
const char  *smelt_recipe_get_base_dir      (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_get_name          (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
void         smelt_recipe_set_name          (SmeltRecipe  *self,
                                             const char   *name);
SMELT_AVAILABLE_IN_ALL
void         smelt_recipe_set_model         (SmeltRecipe  *self,
                                             const char   *path);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_get_model         (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
void         smelt_recipe_add_adapter       (SmeltRecipe  *self,
                                             const char   *path,
                                             double        weight);
SMELT_AVAILABLE_IN_ALL
char       **smelt_recipe_get_adapters      (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_recipe_get_adapter_weights (SmeltRecipe *self,
                                             GArray      **weights,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
void         smelt_recipe_add_destination   (SmeltRecipe  *self,
                                             const char   *name,
                                             const char   *plugin);
SMELT_AVAILABLE_IN_ALL
void         smelt_recipe_add_export        (SmeltRecipe  *self,
                                             const char   *name,
                                             const char   *format,
                                             const char   *destination);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_recipe_set_option        (SmeltRecipe  *self,
                                             const char   *target,
                                             const char   *key,
                                             const char   *value,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_recipe_override          (SmeltRecipe  *self,
                                             const char   *assignment,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
char       **smelt_recipe_list_exports      (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
char       **smelt_recipe_list_destinations (SmeltRecipe  *self);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_get_export_format (SmeltRecipe  *self,
                                             const char   *name);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_get_export_destination (SmeltRecipe *self,
                                             const char   *name);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_resolve_path      (SmeltRecipe  *self,
                                             const char   *path);
SMELT_AVAILABLE_IN_ALL
gboolean     smelt_recipe_validate          (SmeltRecipe  *self,
                                             SmeltRegistry *registry,
                                             GError      **error);
SMELT_AVAILABLE_IN_ALL
char        *smelt_recipe_to_data           (SmeltRecipe  *self,
                                             gsize        *length);

G_END_DECLS
