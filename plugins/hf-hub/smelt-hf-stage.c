/* smelt-hf-stage.c: staged files, hashed while they are written
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#ifdef HAVE_GNUTLS
# include <gnutls/crypto.h>
#endif

#include "smelt-hf-stage.h"

/* ---- SHA-256 ----
 * GnuTLS's SHA-256 runs at about twice GChecksum's speed (it has
 * assembly for x86-64), which matters because the hash is computed on the
 * job's writing thread. GChecksum is the fallback. */

typedef struct {
#ifdef HAVE_GNUTLS
  gnutls_hash_hd_t h;
#else
  GChecksum *h;
#endif
} Hasher;

static void
hasher_init (Hasher *hs)
{
#ifdef HAVE_GNUTLS
  if (gnutls_hash_init (&hs->h, GNUTLS_DIG_SHA256) != 0)
    g_error ("GnuTLS has no SHA-256");
#else
  hs->h = g_checksum_new (G_CHECKSUM_SHA256);
#endif
}

static void
hasher_update (Hasher     *hs,
               const void *data,
               gsize       len)
{
#ifdef HAVE_GNUTLS
  gnutls_hash (hs->h, data, len);
#else
  /* GChecksum takes a gssize */
  while (len > 0)
    {
      gsize n = MIN (len, (gsize) G_MAXINT32);

      g_checksum_update (hs->h, data, n);
      data = (const guint8 *) data + n;
      len -= n;
    }
#endif
}

/* Finishes and frees the hasher; @hex gets 64 hex digits and a NUL. */
static void
hasher_finish (Hasher *hs,
               char    hex[65])
{
#ifdef HAVE_GNUTLS
  guint8 digest[32];

  gnutls_hash_deinit (hs->h, digest);
  hs->h = NULL;
  for (guint i = 0; i < 32; i++)
    g_snprintf (hex + 2 * i, 3, "%02x", digest[i]);
#else
  g_strlcpy (hex, g_checksum_get_string (hs->h), 65);
  g_clear_pointer (&hs->h, g_checksum_free);
#endif
}

static void
hasher_discard (Hasher *hs)
{
  if (hs->h != NULL)
    {
      char hex[65];
      hasher_finish (hs, hex);
    }
}

void
smelt_hf_sha256_hex (const void *data,
                     gsize       len,
                     char        hex[65])
{
  Hasher hs;

  hasher_init (&hs);
  hasher_update (&hs, data, len);
  hasher_finish (&hs, hex);
}

/* ---- SmeltHfStaged ---- */

SmeltHfStaged *
smelt_hf_staged_new (const char *path,
                     const char *local)
{
  SmeltHfStaged *s = g_atomic_rc_box_new0 (SmeltHfStaged);

  s->path = g_strdup (path);
  s->local = g_strdup (local);
  return s;
}

SmeltHfStaged *
smelt_hf_staged_ref (SmeltHfStaged *staged)
{
  return g_atomic_rc_box_acquire (staged);
}

static void
staged_clear (gpointer data)
{
  SmeltHfStaged *s = data;

  g_free (s->path);
  g_free (s->local);
}

void
smelt_hf_staged_unref (SmeltHfStaged *staged)
{
  g_atomic_rc_box_release_full (staged, staged_clear);
}

/* ---- the writing stream ---- */

#define SMELT_TYPE_HF_STAGE_STREAM (smelt_hf_stage_stream_get_type ())
G_DECLARE_FINAL_TYPE (SmeltHfStageStream, smelt_hf_stage_stream, SMELT, HF_STAGE_STREAM, GOutputStream)

struct _SmeltHfStageStream
{
  GOutputStream  parent_instance;

  int            fd;
  SmeltHfStaged *staged;
  Hasher         hasher;
};

G_DEFINE_FINAL_TYPE (SmeltHfStageStream, smelt_hf_stage_stream, G_TYPE_OUTPUT_STREAM)

static gssize
smelt_hf_stage_stream_write (GOutputStream  *stream,
                             const void     *buffer,
                             gsize           count,
                             GCancellable   *cancellable,
                             GError        **error)
{
  SmeltHfStageStream *self = SMELT_HF_STAGE_STREAM (stream);
  SmeltHfStaged *s = self->staged;
  gssize n;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;
  do
    n = write (self->fd, buffer, MIN (count, (gsize) G_MAXSSIZE));
  while (n < 0 && errno == EINTR);
  if (n < 0)
    {
      int saved = errno;

      s->failed = TRUE;
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot write the staged copy of %s: %s", s->local, s->path,
                   g_strerror (saved));
      return -1;
    }
  /* hash exactly what reached the file, in order */
  hasher_update (&self->hasher, buffer, n);
  if (s->sample_len < SMELT_HF_SAMPLE_SIZE)
    {
      guint take = MIN ((gsize) n, (gsize) (SMELT_HF_SAMPLE_SIZE - s->sample_len));

      memcpy (s->sample + s->sample_len, buffer, take);
      s->sample_len += take;
    }
  s->size += n;
  return n;
}

static gboolean
smelt_hf_stage_stream_close (GOutputStream  *stream,
                             GCancellable   *cancellable,
                             GError        **error)
{
  SmeltHfStageStream *self = SMELT_HF_STAGE_STREAM (stream);
  SmeltHfStaged *s = self->staged;
  int fd = self->fd;

  self->fd = -1;
  if (fd >= 0 && close (fd) != 0 && errno != EINTR)
    {
      int saved = errno;

      s->failed = TRUE;
      hasher_discard (&self->hasher);
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot close the staged copy of %s: %s", s->local, s->path,
                   g_strerror (saved));
      return FALSE;
    }
  if (self->hasher.h != NULL)
    hasher_finish (&self->hasher, s->sha256);
  s->closed = !s->failed;
  return TRUE;
}

static void
smelt_hf_stage_stream_finalize (GObject *object)
{
  SmeltHfStageStream *self = SMELT_HF_STAGE_STREAM (object);

  /* the parent's dispose closed the stream, unless closing failed */
  G_OBJECT_CLASS (smelt_hf_stage_stream_parent_class)->finalize (object);
  if (self->fd >= 0)
    close (self->fd);
  hasher_discard (&self->hasher);
  smelt_hf_staged_unref (self->staged);
}

static void
smelt_hf_stage_stream_class_init (SmeltHfStageStreamClass *klass)
{
  GOutputStreamClass *stream_class = G_OUTPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = smelt_hf_stage_stream_finalize;
  stream_class->write_fn = smelt_hf_stage_stream_write;
  stream_class->close_fn = smelt_hf_stage_stream_close;
}

static void
smelt_hf_stage_stream_init (SmeltHfStageStream *self)
{
  self->fd = -1;
}

GOutputStream *
smelt_hf_stage_stream_new (int            fd,
                           SmeltHfStaged *staged)
{
  SmeltHfStageStream *self = g_object_new (SMELT_TYPE_HF_STAGE_STREAM, NULL);

  self->fd = fd;
  self->staged = smelt_hf_staged_ref (staged);
  hasher_init (&self->hasher);
  return G_OUTPUT_STREAM (self);
}

/* ---- the reading stream: one slice of a staged file ---- */

#define SMELT_TYPE_HF_SLICE_STREAM (smelt_hf_slice_stream_get_type ())
G_DECLARE_FINAL_TYPE (SmeltHfSliceStream, smelt_hf_slice_stream, SMELT, HF_SLICE_STREAM, GInputStream)

struct _SmeltHfSliceStream
{
  GInputStream  parent_instance;

  int           fd;
  char         *local;
  guint64       offset;
  guint64       length;
  guint64       pos;       /* within the slice */
  gint64       *counter;
};

static void smelt_hf_slice_stream_seekable_iface_init (GSeekableIface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltHfSliceStream, smelt_hf_slice_stream, G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_SEEKABLE,
                                                      smelt_hf_slice_stream_seekable_iface_init))

static gssize
smelt_hf_slice_stream_read (GInputStream  *stream,
                            void          *buffer,
                            gsize          count,
                            GCancellable  *cancellable,
                            GError       **error)
{
  SmeltHfSliceStream *self = SMELT_HF_SLICE_STREAM (stream);
  gsize want = (gsize) MIN ((guint64) count, self->length - self->pos);
  gssize n;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return -1;
  if (want == 0)
    return 0;
  do
    n = pread (self->fd, buffer, want, (off_t) (self->offset + self->pos));
  while (n < 0 && errno == EINTR);
  if (n < 0 || (n == 0 && want > 0))
    {
      int saved = n < 0 ? errno : EIO;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot read at offset %" G_GUINT64_FORMAT ": %s", self->local,
                   self->offset + self->pos, n < 0 ? g_strerror (saved) : "the file is shorter than staged");
      return -1;
    }
  self->pos += n;
  if (self->counter)
    __atomic_fetch_add (self->counter, (gint64) n, __ATOMIC_RELAXED);
  return n;
}

static gboolean
smelt_hf_slice_stream_close (GInputStream  *stream,
                             GCancellable  *cancellable,
                             GError       **error)
{
  SmeltHfSliceStream *self = SMELT_HF_SLICE_STREAM (stream);

  if (self->fd >= 0)
    close (self->fd);
  self->fd = -1;
  return TRUE;
}

static goffset
smelt_hf_slice_stream_tell (GSeekable *seekable)
{
  return (goffset) SMELT_HF_SLICE_STREAM (seekable)->pos;
}

static gboolean
smelt_hf_slice_stream_can_seek (GSeekable *seekable)
{
  return TRUE;
}

/* libsoup rewinds a request body when it has to send a message again on a
 * new connection; the progress counter is wound back with it. */
static gboolean
smelt_hf_slice_stream_seek (GSeekable     *seekable,
                            goffset        offset,
                            GSeekType      type,
                            GCancellable  *cancellable,
                            GError       **error)
{
  SmeltHfSliceStream *self = SMELT_HF_SLICE_STREAM (seekable);
  gint64 target;

  switch (type)
    {
    case G_SEEK_SET:
      target = offset;
      break;
    case G_SEEK_CUR:
      target = (gint64) self->pos + offset;
      break;
    case G_SEEK_END:
      target = (gint64) self->length + offset;
      break;
    default:
      target = -1;
    }
  if (target < 0 || (guint64) target > self->length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: cannot seek outside the slice being sent", self->local);
      return FALSE;
    }
  if (self->counter)
    __atomic_fetch_add (self->counter, target - (gint64) self->pos, __ATOMIC_RELAXED);
  self->pos = (guint64) target;
  return TRUE;
}

static gboolean
smelt_hf_slice_stream_can_truncate (GSeekable *seekable)
{
  return FALSE;
}

static gboolean
smelt_hf_slice_stream_truncate (GSeekable     *seekable,
                                goffset        offset,
                                GCancellable  *cancellable,
                                GError       **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "read-only stream");
  return FALSE;
}

static void
smelt_hf_slice_stream_seekable_iface_init (GSeekableIface *iface)
{
  iface->tell = smelt_hf_slice_stream_tell;
  iface->can_seek = smelt_hf_slice_stream_can_seek;
  iface->seek = smelt_hf_slice_stream_seek;
  iface->can_truncate = smelt_hf_slice_stream_can_truncate;
  iface->truncate_fn = smelt_hf_slice_stream_truncate;
}

static void
smelt_hf_slice_stream_finalize (GObject *object)
{
  SmeltHfSliceStream *self = SMELT_HF_SLICE_STREAM (object);

  G_OBJECT_CLASS (smelt_hf_slice_stream_parent_class)->finalize (object);
  if (self->fd >= 0)
    close (self->fd);
  g_free (self->local);
}

static void
smelt_hf_slice_stream_class_init (SmeltHfSliceStreamClass *klass)
{
  GInputStreamClass *stream_class = G_INPUT_STREAM_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = smelt_hf_slice_stream_finalize;
  stream_class->read_fn = smelt_hf_slice_stream_read;
  stream_class->close_fn = smelt_hf_slice_stream_close;
}

static void
smelt_hf_slice_stream_init (SmeltHfSliceStream *self)
{
  self->fd = -1;
}

GInputStream *
smelt_hf_slice_stream_new (const char  *local,
                           guint64      offset,
                           guint64      length,
                           gint64      *counter,
                           GError     **error)
{
  SmeltHfSliceStream *self;
  int fd = g_open (local, O_RDONLY | O_CLOEXEC, 0);

  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot open the staged file: %s", local, g_strerror (saved));
      return NULL;
    }
#ifdef POSIX_FADV_SEQUENTIAL
  posix_fadvise (fd, (off_t) offset, (off_t) length, POSIX_FADV_SEQUENTIAL);
#endif
  self = g_object_new (SMELT_TYPE_HF_SLICE_STREAM, NULL);
  self->fd = fd;
  self->local = g_strdup (local);
  self->offset = offset;
  self->length = length;
  self->counter = counter;
  return G_INPUT_STREAM (self);
}
