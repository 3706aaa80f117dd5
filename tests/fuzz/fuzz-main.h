/* fuzz-main.h: replays a corpus through LLVMFuzzerTestOneInput()
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Included last by each fuzz target, so the same target runs under
 * libFuzzer (-DSMELT_LIBFUZZER) or as a test over its corpus.
 */
#pragma once

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
