/* fuzz-recipe.c: recipe parsing and validation on arbitrary text
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built as a libFuzzer target with -Dfuzzing=true (clang), and always as
 * a plain program that replays the files given on its command line.
 */
#include "smelt-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltRecipe) recipe = smelt_recipe_new_from_data ((const char *) data, size, "/nonexistent", &error);

  if (recipe == NULL)
    {
      g_assert_nonnull (error);
      return 0;
    }
  if (!smelt_recipe_validate (recipe, NULL, &error))
    g_assert_nonnull (error);
  return 0;
}

#include "fuzz-main.h"
