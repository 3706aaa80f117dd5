/* smelt-localfs.c: the localfs destination
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>
#include "smelt-localfs-stream.h"

#include <smelt/smelt.h>

/* Files are written as NAME.partial and renamed to NAME only at commit,
 * after an fsync, so a crash, a full disk or Ctrl-C never leaves a file
 * that looks complete. abort() removes the partial files and the
 * directories this destination created. */

#define SMELT_TYPE_LOCALFS (smelt_localfs_get_type ())
G_DECLARE_FINAL_TYPE (SmeltLocalfs, smelt_localfs, SMELT, LOCALFS, SmeltDestination)

typedef struct {
  char *final;
  char *partial;
} Entry;

struct _SmeltLocalfs
{
  SmeltDestination parent_instance;

  char      *path;
  gboolean   overwrite;
  gboolean   fsync;
  GPtrArray *entries;       /* Entry */
  GPtrArray *created_dirs;  /* char*, in creation order */
  gboolean   committed;
};

enum {
  PROP_0,
  PROP_PATH,
  PROP_OVERWRITE,
  PROP_FSYNC,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltLocalfs, smelt_localfs, SMELT_TYPE_DESTINATION)

static void
entry_free (gpointer data)
{
  Entry *e = data;

  g_free (e->final);
  g_free (e->partial);
  g_free (e);
}

static void
smelt_localfs_finalize (GObject *object)
{
  SmeltLocalfs *self = SMELT_LOCALFS (object);

  if (!self->committed)
    smelt_destination_abort (SMELT_DESTINATION (self));
  g_free (self->path);
  g_ptr_array_unref (self->entries);
  g_ptr_array_unref (self->created_dirs);
  G_OBJECT_CLASS (smelt_localfs_parent_class)->finalize (object);
}

static void
smelt_localfs_get_property (GObject    *object,
                            guint       prop_id,
                            GValue     *value,
                            GParamSpec *pspec)
{
  SmeltLocalfs *self = SMELT_LOCALFS (object);

  switch (prop_id)
    {
    case PROP_PATH:
      g_value_set_string (value, self->path);
      break;
    case PROP_OVERWRITE:
      g_value_set_boolean (value, self->overwrite);
      break;
    case PROP_FSYNC:
      g_value_set_boolean (value, self->fsync);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_localfs_set_property (GObject      *object,
                            guint         prop_id,
                            const GValue *value,
                            GParamSpec   *pspec)
{
  SmeltLocalfs *self = SMELT_LOCALFS (object);

  switch (prop_id)
    {
    case PROP_PATH:
      g_free (self->path);
      self->path = g_value_dup_string (value);
      break;
    case PROP_OVERWRITE:
      self->overwrite = g_value_get_boolean (value);
      break;
    case PROP_FSYNC:
      self->fsync = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static gboolean
dir_is_empty (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);

  return dir == NULL || g_dir_read_name (dir) == NULL;
}

static gboolean
smelt_localfs_check_options (SmeltDestination *dest,
                             GError          **error)
{
  SmeltLocalfs *self = SMELT_LOCALFS (dest);

  if (self->path == NULL || *self->path == '\0')
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "localfs needs a Path= key (the output directory)");
      return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_localfs_prepare (SmeltDestination *dest,
                       GCancellable     *cancellable,
                       GError          **error)
{
  SmeltLocalfs *self = SMELT_LOCALFS (dest);

  if (self->path == NULL || *self->path == '\0')
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "destination “%s”: localfs needs a Path= key",
                   smelt_destination_get_name (dest));
      return FALSE;
    }
  if (g_file_test (self->path, G_FILE_TEST_EXISTS) && !g_file_test (self->path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_EXISTS,
                   "%s: exists and is not a directory", self->path);
      return FALSE;
    }
  if (!self->overwrite && !dir_is_empty (self->path))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_EXISTS,
                   "%s: the directory is not empty; set Overwrite=true in [Destination %s] "
                   "(or --set %s.Overwrite=true) to replace files in it",
                   self->path, smelt_destination_get_name (dest), smelt_destination_get_name (dest));
      return FALSE;
    }
  return TRUE;
}

/* Creates missing parents one by one, remembering them for abort(). */
static gboolean
make_parents (SmeltLocalfs  *self,
              const char    *file,
              GError       **error)
{
  g_autofree char *dir = g_path_get_dirname (file);
  g_autoptr(GPtrArray) missing = g_ptr_array_new_with_free_func (g_free);
  char *p = g_strdup (dir);

  while (!g_file_test (p, G_FILE_TEST_EXISTS))
    {
      char *parent = g_path_get_dirname (p);

      g_ptr_array_insert (missing, 0, p);
      if (g_str_equal (parent, p))
        {
          g_free (parent);
          p = NULL;
          break;
        }
      p = parent;
    }
  g_free (p);
  for (guint i = 0; i < missing->len; i++)
    {
      const char *d = g_ptr_array_index (missing, i);

      if (g_mkdir (d, 0755) != 0 && errno != EEXIST)
        {
          int saved = errno;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "%s: cannot create directory: %s", d, g_strerror (saved));
          return FALSE;
        }
      g_ptr_array_add (self->created_dirs, g_strdup (d));
    }
  return TRUE;
}

static GOutputStream *
smelt_localfs_create_file (SmeltDestination *dest,
                           const char       *path,
                           GCancellable     *cancellable,
                           GError          **error)
{
  SmeltLocalfs *self = SMELT_LOCALFS (dest);
  Entry *e;
  int fd;

  e = g_new0 (Entry, 1);
  e->final = g_build_filename (self->path, path, NULL);
  e->partial = g_strconcat (e->final, ".partial", NULL);
  if (!make_parents (self, e->final, error))
    {
      entry_free (e);
      return NULL;
    }
  fd = g_open (e->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      int saved = errno;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot create: %s", e->partial, g_strerror (saved));
      entry_free (e);
      return NULL;
    }
  g_ptr_array_add (self->entries, e);
  return smelt_localfs_stream_new (fd, e->partial);
}

static gboolean
smelt_localfs_has_seekable_files (SmeltDestination *dest)
{
  return TRUE;
}

static gboolean
sync_path (const char  *path,
           int          flags,
           GError     **error)
{
  int fd = g_open (path, flags | O_CLOEXEC, 0);
  int saved;

  if (fd >= 0 && fsync (fd) == 0)
    {
      close (fd);
      return TRUE;
    }
  saved = errno;
  if (fd >= 0)
    close (fd);
  g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
               "%s: cannot sync to disk: %s", path, g_strerror (saved));
  return FALSE;
}

/* Files an earlier export left that this one replaces (old shards, an old
 * index). Only top-level names are considered, and only after the new
 * files are in place. */
static gboolean
remove_stale (SmeltLocalfs  *self,
              GError       **error)
{
  g_autoptr(GDir) dir = g_dir_open (self->path, 0, NULL);
  g_autoptr(GPtrArray) doomed = g_ptr_array_new_with_free_func (g_free);
  const char *name;

  if (dir == NULL)
    return TRUE;
  while ((name = g_dir_read_name (dir)))
    if (!g_str_has_suffix (name, ".partial") &&
        smelt_destination_is_stale (SMELT_DESTINATION (self), name))
      g_ptr_array_add (doomed, g_build_filename (self->path, name, NULL));
  for (guint i = 0; i < doomed->len; i++)
    {
      const char *p = g_ptr_array_index (doomed, i);

      if (g_file_test (p, G_FILE_TEST_IS_REGULAR) && g_unlink (p) != 0)
        {
          int saved = errno;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "%s: cannot remove the stale file: %s", p, g_strerror (saved));
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
smelt_localfs_commit (SmeltDestination *dest,
                      const char       *message,
                      GCancellable     *cancellable,
                      GError          **error)
{
  SmeltLocalfs *self = SMELT_LOCALFS (dest);

  /* Data first, then names: after a crash either the old file or the
   * complete new one is there. */
  for (guint i = 0; i < self->entries->len; i++)
    {
      Entry *e = g_ptr_array_index (self->entries, i);

      if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
          (self->fsync && !sync_path (e->partial, O_RDONLY, error)))
        return FALSE;
    }
  for (guint i = 0; i < self->entries->len; i++)
    {
      Entry *e = g_ptr_array_index (self->entries, i);

      if (g_rename (e->partial, e->final) != 0)
        {
          int saved = errno;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "%s: cannot rename to %s: %s", e->partial, e->final, g_strerror (saved));
          return FALSE;
        }
      g_clear_pointer (&e->partial, g_free);
    }
  self->committed = TRUE;
  return remove_stale (self, error) &&
         (!self->fsync || sync_path (self->path, O_RDONLY | O_DIRECTORY, error));
}

static void
smelt_localfs_abort (SmeltDestination *dest)
{
  SmeltLocalfs *self = SMELT_LOCALFS (dest);

  for (guint i = 0; i < self->entries->len; i++)
    {
      Entry *e = g_ptr_array_index (self->entries, i);

      if (e->partial)
        g_unlink (e->partial);
    }
  g_ptr_array_set_size (self->entries, 0);
  /* only directories we made, deepest first, and only if empty */
  for (guint i = self->created_dirs->len; i > 0; i--)
    g_rmdir (g_ptr_array_index (self->created_dirs, i - 1));
  g_ptr_array_set_size (self->created_dirs, 0);
}

static char *
smelt_localfs_describe (SmeltDestination *dest)
{
  return g_strdup (SMELT_LOCALFS (dest)->path);
}

static void
smelt_localfs_class_init (SmeltLocalfsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltDestinationClass *dest_class = SMELT_DESTINATION_CLASS (klass);

  object_class->finalize = smelt_localfs_finalize;
  object_class->get_property = smelt_localfs_get_property;
  object_class->set_property = smelt_localfs_set_property;
  dest_class->prepare = smelt_localfs_prepare;
  dest_class->create_file = smelt_localfs_create_file;
  dest_class->has_seekable_files = smelt_localfs_has_seekable_files;
  dest_class->commit = smelt_localfs_commit;
  dest_class->abort = smelt_localfs_abort;
  dest_class->describe = smelt_localfs_describe;
  dest_class->check_options = smelt_localfs_check_options;

  properties[PROP_PATH] =
    g_param_spec_string ("path", "Path",
                         "The output directory (relative paths: against the recipe's folder)",
                         NULL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | SMELT_PARAM_PATH);
  properties[PROP_OVERWRITE] =
    g_param_spec_boolean ("overwrite", "Overwrite",
                          "Write into a directory that already holds files, replacing "
                          "the ones the export writes",
                          FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_FSYNC] =
    g_param_spec_boolean ("fsync", "Fsync",
                          "Flush every file to disk before renaming it into place, so a "
                          "crash cannot leave a complete-looking but empty file; false "
                          "leaves flushing to the kernel (faster, like cp)",
                          TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_localfs_init (SmeltLocalfs *self)
{
  self->fsync = TRUE;
  self->entries = g_ptr_array_new_with_free_func (entry_free);
  self->created_dirs = g_ptr_array_new_with_free_func (g_free);
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_destination (plugin, "localfs", SMELT_TYPE_LOCALFS, error);
}

SMELT_PLUGIN_DEFINE ("localfs", "Write exports to a local directory, atomically",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
