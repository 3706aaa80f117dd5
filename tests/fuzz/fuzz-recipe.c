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

#ifndef SMELT_LIBFUZZER
static void
run_file (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;
  g_autoptr(GError) error = NULL;

  if (!g_file_get_contents (path, &data, &len, &error))
    g_error ("%s", error->message);
  LLVMFuzzerTestOneInput ((const guint8 *) data, len);
  g_print ("ok %s\n", path);
}

/* Arguments are files or directories of files (a corpus). */
int
main (int    argc,
      char **argv)
{
  guint n = 0;

  for (int i = 1; i < argc; i++)
    {
      g_autoptr(GDir) dir = g_dir_open (argv[i], 0, NULL);
      const char *name;

      if (dir == NULL)
        {
          run_file (argv[i]);
          n++;
          continue;
        }
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *p = g_build_filename (argv[i], name, NULL);

          if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
            {
              run_file (p);
              n++;
            }
        }
    }
  g_print ("%u inputs replayed\n", n);
  return n > 0 ? 0 : 1;
}
#endif
