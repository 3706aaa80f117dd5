/* smelt-localfs-stream.c: the output stream of a localfs file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "smelt-localfs-stream.h"

/* A plain write(2) stream. GUnixOutputStream polls the descriptor and the
 * cancellable before every write when given a cancellable, which costs a
 * syscall per block on a regular file (which never blocks); this stream
 * only checks the cancellable's flag. Its errors name the file, so "No
 * space left on device" says which file hit it. */

struct _SmeltLocalfsStream
{
  GOutputStream parent_instance;

  int   fd;
  char *path;
};

static void smelt_localfs_stream_seekable_init (GSeekableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltLocalfsStream, smelt_localfs_stream, G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE,
                                                      smelt_localfs_stream_seekable_init))

static gssize
smelt_localfs_stream_write (GOutputStream  *stream,
                            const void     *buffer,
                            gsize           count,
                            GCancellable   *cancellable,
                            GError        **error)
{
  SmeltLocalfsStream *self = SMELT_LOCALFS_STREAM (stream);
  gssize n;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;
  do
    n = write (self->fd, buffer, MIN (count, (gsize) G_MAXSSIZE));
  while (n < 0 && errno == EINTR);
  if (n < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot write: %s", self->path, g_strerror (saved));
    }
  return n;
}

/* Seeking lets a format rewrite a header it could only complete at the
 * end (a regular file can; truncating is never needed). */
static goffset
smelt_localfs_stream_tell (GSeekable *seekable)
{
  SmeltLocalfsStream *self = SMELT_LOCALFS_STREAM (seekable);

  return self->fd >= 0 ? lseek (self->fd, 0, SEEK_CUR) : -1;
}

static gboolean
smelt_localfs_stream_can_seek (GSeekable *seekable)
{
  return SMELT_LOCALFS_STREAM (seekable)->fd >= 0;
}

static gboolean
smelt_localfs_stream_seek (GSeekable     *seekable,
                           goffset        offset,
                           GSeekType      type,
                           GCancellable  *cancellable,
                           GError       **error)
{
  SmeltLocalfsStream *self = SMELT_LOCALFS_STREAM (seekable);
  int whence = type == G_SEEK_SET ? SEEK_SET : type == G_SEEK_END ? SEEK_END : SEEK_CUR;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return FALSE;
  if (lseek (self->fd, offset, whence) < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot seek: %s", self->path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_localfs_stream_can_truncate (GSeekable *seekable)
{
  return FALSE;
}

static gboolean
smelt_localfs_stream_truncate (GSeekable     *seekable,
                               goffset        offset,
                               GCancellable  *cancellable,
                               GError       **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "%s: cannot truncate",
               SMELT_LOCALFS_STREAM (seekable)->path);
  return FALSE;
}

static void
smelt_localfs_stream_seekable_init (GSeekableIface *iface)
{
  iface->tell = smelt_localfs_stream_tell;
  iface->can_seek = smelt_localfs_stream_can_seek;
  iface->seek = smelt_localfs_stream_seek;
  iface->can_truncate = smelt_localfs_stream_can_truncate;
  iface->truncate_fn = smelt_localfs_stream_truncate;
}

static gboolean
smelt_localfs_stream_close (GOutputStream  *stream,
                            GCancellable   *cancellable,
                            GError        **error)
{
  SmeltLocalfsStream *self = SMELT_LOCALFS_STREAM (stream);
  int fd = self->fd;

  self->fd = -1;
  if (fd >= 0 && close (fd) != 0 && errno != EINTR)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot close: %s", self->path, g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

static void
smelt_localfs_stream_finalize (GObject *object)
{
  SmeltLocalfsStream *self = SMELT_LOCALFS_STREAM (object);

  G_OBJECT_CLASS (smelt_localfs_stream_parent_class)->finalize (object);
  if (self->fd >= 0)
    close (self->fd);
  g_free (self->path);
}

static void
smelt_localfs_stream_class_init (SmeltLocalfsStreamClass *klass)
{
  GOutputStreamClass *stream_class = G_OUTPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = smelt_localfs_stream_finalize;
  stream_class->write_fn = smelt_localfs_stream_write;
  stream_class->close_fn = smelt_localfs_stream_close;
}

static void
smelt_localfs_stream_init (SmeltLocalfsStream *self)
{
  self->fd = -1;
}

GOutputStream *
smelt_localfs_stream_new (int         fd,
                          const char *path)
{
  SmeltLocalfsStream *self = g_object_new (SMELT_TYPE_LOCALFS_STREAM, NULL);

  self->fd = fd;
  self->path = g_strdup (path);
  return G_OUTPUT_STREAM (self);
}
