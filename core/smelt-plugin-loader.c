/* smelt-plugin-loader.c: the one file that talks to libltdl
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <dlfcn.h>
#include <ltdl.h>

#include "smelt-private.h"

/* libltdl keeps global state (its error string, its handle list) and is not
 * thread-safe, so every call goes through this mutex. Modules stay resident:
 * their GTypes are registered statically and cannot be unloaded. */

static GMutex loader_lock;
static gboolean loader_ready;

typedef const SmeltPluginDesc *(*DescFunc) (void);

/* libltdl tries several loaders and reports only "file not found" when
 * dlopen() fails; asking dlopen() directly gives the reason users need
 * ("undefined symbol: foo", "wrong ELF class", ...). */
static char *
explain_failure (const char *path)
{
  void *h;
  const char *why;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return g_strdup ("no such file");
  h = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (h != NULL)
    {
      dlclose (h);
      return g_strdup (lt_dlerror ());
    }
  why = dlerror ();
  return g_strdup (why ? why : "unknown error");
}

static gboolean
ensure_ltdl (GError **error)
{
  if (loader_ready)
    return TRUE;
  if (lt_dlinit () != 0)
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_LOAD,
                   "cannot initialize libltdl: %s", lt_dlerror ());
      return FALSE;
    }
  loader_ready = TRUE;
  return TRUE;
}

const SmeltPluginDesc *
_smelt_plugin_loader_open (const char  *path,
                           GError     **error)
{
  lt_dladvise advise;
  lt_dlhandle handle = NULL;
  DescFunc get_desc;
  const SmeltPluginDesc *desc = NULL;

  g_return_val_if_fail (g_path_is_absolute (path), NULL);

  g_mutex_lock (&loader_lock);
  if (!ensure_ltdl (error))
    goto out;

  /* Local symbols, so that every module's entry symbol stays its own;
   * resident, because registered GTypes point into the module. */
  lt_dladvise_init (&advise);
  lt_dladvise_local (&advise);
  lt_dladvise_resident (&advise);
  handle = lt_dlopenadvise (path, advise);
  lt_dladvise_destroy (&advise);
  if (handle == NULL)
    {
      g_autofree char *why = explain_failure (path);

      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_LOAD,
                   "%s: cannot load module: %s", path, why);
      goto out;
    }
  get_desc = (DescFunc) lt_dlsym (handle, SMELT_PLUGIN_ENTRY_SYMBOL);
  if (get_desc == NULL)
    {
      g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_NO_ENTRY,
                   "%s: no %s() entry point; was it built with SMELT_PLUGIN_DEFINE?",
                   path, SMELT_PLUGIN_ENTRY_SYMBOL);
      goto out;
    }
  desc = get_desc ();
  if (desc == NULL)
    g_set_error (error, SMELT_PLUGIN_ERROR, SMELT_PLUGIN_ERROR_NO_ENTRY,
                 "%s: %s() returned no descriptor", path, SMELT_PLUGIN_ENTRY_SYMBOL);

out:
  g_mutex_unlock (&loader_lock);
  return desc;
}
