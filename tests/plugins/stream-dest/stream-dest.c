/* A destination like localfs whose streams cannot seek: what a format
 * sees when it writes to an upload that hashes the bytes as they come
 * (hf-hub). Tests use it to reach the formats' code for such
 * destinations (bnb4's second pass) on the local disk.
 *
 * Files are written as NAME.partial, renamed by commit and removed by
 * abort.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>

#include <glib/gstdio.h>
#include <gio/gunixoutputstream.h>
#include <smelt/smelt.h>

typedef struct {
  SmeltDestination parent_instance;
  char            *path;
  GPtrArray       *partials;   /* char *: files created, without ".partial" */
} StreamDest;

typedef SmeltDestinationClass StreamDestClass;

GType stream_dest_get_type (void);

G_DEFINE_TYPE (StreamDest, stream_dest, SMELT_TYPE_DESTINATION)

enum { PROP_0, PROP_PATH };

static void
stream_dest_finalize (GObject *object)
{
  StreamDest *self = (StreamDest *) object;

  g_free (self->path);
  g_ptr_array_unref (self->partials);
  G_OBJECT_CLASS (stream_dest_parent_class)->finalize (object);
}

static void
stream_dest_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  StreamDest *self = (StreamDest *) object;

  g_free (self->path);
  self->path = g_value_dup_string (value);
}

static void
stream_dest_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  g_value_set_string (value, ((StreamDest *) object)->path);
}

static gboolean
stream_dest_prepare (SmeltDestination  *dest,
                     GCancellable      *cancellable,
                     GError           **error)
{
  StreamDest *self = (StreamDest *) dest;

  if (self->path == NULL || g_mkdir_with_parents (self->path, 0755) != 0)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "stream-dest: cannot create %s", self->path ? self->path : "(no Path)");
      return FALSE;
    }
  return TRUE;
}

static GOutputStream *
stream_dest_create_file (SmeltDestination  *dest,
                         const char        *path,
                         GCancellable      *cancellable,
                         GError           **error)
{
  StreamDest *self = (StreamDest *) dest;
  g_autofree char *final = g_build_filename (self->path, path, NULL);
  g_autofree char *partial = g_strconcat (final, ".partial", NULL);
  g_autofree char *dir = g_path_get_dirname (final);
  int fd;

  g_mkdir_with_parents (dir, 0755);
  fd = g_open (partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", partial,
                   g_strerror (saved));
      return NULL;
    }
  g_ptr_array_add (self->partials, g_steal_pointer (&final));
  /* GUnixOutputStream is not a GSeekable */
  return g_unix_output_stream_new (fd, TRUE);
}

static gboolean
stream_dest_commit (SmeltDestination  *dest,
                    const char        *message,
                    GCancellable      *cancellable,
                    GError           **error)
{
  StreamDest *self = (StreamDest *) dest;

  for (guint i = 0; i < self->partials->len; i++)
    {
      const char *final = g_ptr_array_index (self->partials, i);
      g_autofree char *partial = g_strconcat (final, ".partial", NULL);

      if (g_rename (partial, final) != 0)
        {
          int saved = errno;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "%s: %s", partial,
                       g_strerror (saved));
          return FALSE;
        }
    }
  g_ptr_array_set_size (self->partials, 0);
  return TRUE;
}

static void
stream_dest_abort (SmeltDestination *dest)
{
  StreamDest *self = (StreamDest *) dest;

  for (guint i = 0; i < self->partials->len; i++)
    {
      g_autofree char *partial = g_strconcat (g_ptr_array_index (self->partials, i), ".partial", NULL);

      g_unlink (partial);
    }
  g_ptr_array_set_size (self->partials, 0);
}

static char *
stream_dest_describe (SmeltDestination *dest)
{
  return g_strdup_printf ("%s (streams)", ((StreamDest *) dest)->path);
}

static void
stream_dest_class_init (StreamDestClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = stream_dest_finalize;
  object_class->set_property = stream_dest_set_property;
  object_class->get_property = stream_dest_get_property;
  klass->prepare = stream_dest_prepare;
  klass->create_file = stream_dest_create_file;
  klass->commit = stream_dest_commit;
  klass->abort = stream_dest_abort;
  klass->describe = stream_dest_describe;
  g_object_class_install_property (object_class, PROP_PATH,
    g_param_spec_string ("path", "Path", "Folder the files go to", NULL,
                         G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS));
}

static void
stream_dest_init (StreamDest *self)
{
  self->partials = g_ptr_array_new_with_free_func (g_free);
}

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_destination (plugin, "stream-dest", stream_dest_get_type (), error);
}

SMELT_PLUGIN_DEFINE ("stream-dest", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
