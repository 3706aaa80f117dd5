/* smelt-hf-transfer.c: sending the LFS objects, several at a time
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include "smelt-hf-put.h"
#include "smelt-hf-transfer.h"

/* Each object goes as one PUT, or as the parts the LFS batch asked for
 * (each part to its own pre-signed URL, its ETag kept for the completion
 * call). Units (whole files or parts) are sent by a few threads at once,
 * each with its own storage connection, as huggingface_hub and huggingface.js
 * do: one connection to object storage rarely fills a fast link. The
 * bytes come from the staged files through pread(), never buffered whole,
 * and the token is never attached: these URLs are storage's, not the
 * Hub's. The PUTs themselves go through smelt-hf-put.c, not libsoup (see
 * there why). */

typedef struct {
  SmeltHfFile *file;
  guint        part;       /* 0-based; G_MAXUINT for a single PUT */
  guint64      offset;
  guint64      length;
  const char  *url;
} Unit;

typedef struct {
  SmeltHfRepo   *repo;
  GArray        *units;
  guint          next;
  guint          running;
  GMutex         lock;
  GCond          cond;
  GError        *error;
  GCancellable  *cancellable;   /* cancelled on the first error */
  gint64         sent;          /* bytes, updated atomically by the streams */
  const char    *current;       /* the last file a worker started */
} Transfer;

static void
fail (Transfer *t,
      GError   *error)
{
  g_mutex_lock (&t->lock);
  if (t->error == NULL)
    t->error = error;
  else
    g_error_free (error);
  g_mutex_unlock (&t->lock);
  g_cancellable_cancel (t->cancellable);
}

typedef struct {
  SmeltHfPut        *put;
  const char        *url;
  const SmeltHfBody *body;
} PutAttempt;

static SmeltHfReply *
put_attempt (gpointer       data,
             guint64       *sent,
             GCancellable  *cancellable,
             GError       **error)
{
  PutAttempt *a = data;

  return smelt_hf_put_once (a->put, a->url, a->body, sent, cancellable, error);
}

static void
send_unit (Transfer    *t,
           SmeltHfPut  *put,
           Unit        *u)
{
  SmeltHfRepo *repo = t->repo;
  SmeltHfStaged *s = u->file->staged;
  SmeltHfBody body = { NULL, NULL, s->local, u->offset, u->length, &t->sent,
                       u->part == G_MAXUINT ? u->file->upload_headers : NULL };
  PutAttempt a = { put, u->url, &body };
  GError *error = NULL;
  g_autoptr(SmeltHfReply) reply =
    smelt_hf_client_retry (repo->client, "PUT", u->url, &body, SMELT_HF_REQUEST_RETRY,
                           put_attempt, &a, t->cancellable, &error);
  const char *etag;

  if (reply == NULL)
    {
      g_prefix_error (&error, "%s: uploading %s: ", repo->repo_id, s->path);
      fail (t, error);
      return;
    }
  if (reply->status == 403)
    {
      /* pre-signed URLs expire (15 minutes on the real Hub): ask the LFS
       * batch again for this object */
      g_mutex_lock (&t->lock);
      u->file->expired = TRUE;
      g_mutex_unlock (&t->lock);
      return;
    }
  if (reply->status < 200 || reply->status >= 300)
    {
      g_autofree char *server = smelt_hf_reply_message (repo->client, reply);

      error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED,
                           "%s: uploading %s%s failed: HTTP %u%s%s (%s)", repo->repo_id, s->path,
                           u->part == G_MAXUINT ? "" : " (a part)", reply->status,
                           server ? ": " : "", server ? server : "", reply->what);
      smelt_hf_client_scrub_error (repo->client, error);
      fail (t, error);
      return;
    }
  if (u->part == G_MAXUINT)
    return;
  etag = soup_message_headers_get_one (reply->headers, "ETag");
  if (etag == NULL || *etag == '\0')
    {
      fail (t, g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "%s: uploading part %u of %s: storage returned no ETag (%s)",
                            repo->repo_id, u->part + 1, s->path, reply->what));
      return;
    }
  /* verbatim, quotes included, as S3 wants it back */
  g_mutex_lock (&t->lock);
  g_free (g_ptr_array_index (u->file->etags, u->part));
  g_ptr_array_index (u->file->etags, u->part) = g_strdup (etag);
  g_mutex_unlock (&t->lock);
}

static gpointer
worker (gpointer data)
{
  Transfer *t = data;
  g_autoptr(SmeltHfPut) put = smelt_hf_put_new (smelt_hf_client_get_timeout (t->repo->client));

  for (;;)
    {
      Unit *u = NULL;

      g_mutex_lock (&t->lock);
      if (t->error == NULL && t->next < t->units->len)
        {
          u = &g_array_index (t->units, Unit, t->next++);
          t->current = u->file->staged->path;
        }
      g_mutex_unlock (&t->lock);
      if (u == NULL)
        break;
      send_unit (t, put, u);
    }
  g_mutex_lock (&t->lock);
  t->running--;
  g_cond_broadcast (&t->cond);
  g_mutex_unlock (&t->lock);
  return NULL;
}

static void
plan_units (GPtrArray *files,
            GArray    *units,
            guint64   *total)
{
  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);

      if (!f->lfs || f->skip || f->stored || f->upload_href == NULL)
        continue;
      if (f->chunk_size == 0)
        {
          Unit u = { f, G_MAXUINT, 0, f->staged->size, f->upload_href };

          g_array_append_val (units, u);
        }
      else
        {
          g_ptr_array_set_size (f->etags, 0);
          for (guint p = 0; p < f->part_hrefs->len; p++)
            {
              Unit u = { f, p, (guint64) p * f->chunk_size, 0, g_ptr_array_index (f->part_hrefs, p) };

              u.length = MIN (f->chunk_size, f->staged->size - u.offset);
              g_array_append_val (units, u);
              g_ptr_array_add (f->etags, NULL);
            }
        }
      *total += f->staged->size;
    }
}

static void
cancel_child (GCancellable *parent,
              gpointer      child)
{
  g_cancellable_cancel (child);
}

static gboolean
send_round (SmeltHfRepo          *repo,
            GPtrArray            *files,
            guint                 n_connections,
            guint64               before,
            guint64               total,
            SmeltHfProgressFunc   progress,
            gpointer              user_data,
            GCancellable         *cancellable,
            guint64              *sent,
            GError              **error)
{
  Transfer t = { repo, g_array_new (FALSE, FALSE, sizeof (Unit)), 0, 0, };
  g_autoptr(GPtrArray) threads = g_ptr_array_new ();
  guint64 round_total = 0;
  gulong handler = 0;

  plan_units (files, t.units, &round_total);
  *sent = 0;
  if (t.units->len == 0)
    {
      g_array_unref (t.units);
      return TRUE;
    }
  g_mutex_init (&t.lock);
  g_cond_init (&t.cond);
  t.cancellable = g_cancellable_new ();
  if (cancellable)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (cancel_child),
                                     g_object_ref (t.cancellable), g_object_unref);

  t.running = MAX (1, MIN (n_connections, t.units->len));
  for (guint i = 0, n = t.running; i < n; i++)
    g_ptr_array_add (threads, g_thread_new ("smelt-hf-upload", worker, &t));

  g_mutex_lock (&t.lock);
  while (t.running > 0)
    {
      gint64 until = g_get_monotonic_time () + G_USEC_PER_SEC / 10;
      const char *current = t.current;

      g_cond_wait_until (&t.cond, &t.lock, until);
      if (progress)
        {
          guint64 done = before + (guint64) MAX (0, __atomic_load_n (&t.sent, __ATOMIC_RELAXED));

          g_mutex_unlock (&t.lock);
          progress (current, MIN (done, total), total, user_data);
          g_mutex_lock (&t.lock);
        }
    }
  g_mutex_unlock (&t.lock);
  for (guint i = 0; i < threads->len; i++)
    g_thread_join (g_ptr_array_index (threads, i));

  if (handler)
    g_cancellable_disconnect (cancellable, handler);
  *sent = (guint64) MAX (0, t.sent);
  g_object_unref (t.cancellable);
  g_mutex_clear (&t.lock);
  g_cond_clear (&t.cond);
  g_array_unref (t.units);
  if (t.error)
    {
      /* a cancellation from the caller, not a failure of ours */
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        g_error_free (t.error);
      else
        g_propagate_error (error, t.error);
      return FALSE;
    }
  return TRUE;
}

gboolean
smelt_hf_transfer (SmeltHfRepo          *repo,
                   SoupSession          *session,
                   GPtrArray            *files,
                   guint                 n_connections,
                   gboolean              verify,
                   guint64               extra_total,
                   SmeltHfProgressFunc   progress,
                   gpointer              user_data,
                   GCancellable         *cancellable,
                   GError              **error)
{
  g_autoptr(GArray) dummy = g_array_new (FALSE, FALSE, sizeof (Unit));
  guint64 total = 0, done = 0;

  plan_units (files, dummy, &total);
  total += extra_total;
  for (guint round = 0;; round++)
    {
      guint64 sent = 0;
      gboolean expired = FALSE;

      if (!send_round (repo, files, n_connections, done, total, progress, user_data,
                       cancellable, &sent, error))
        return FALSE;
      for (guint i = 0; i < files->len; i++)
        {
          SmeltHfFile *f = g_ptr_array_index (files, i);

          if (f->expired)
            {
              expired = TRUE;
              /* whatever was sent for it will be sent again */
              sent -= MIN (sent, f->staged->size);
            }
        }
      done += sent;
      if (!expired)
        break;
      if (round > 0)
        {
          for (guint i = 0; i < files->len; i++)
            {
              SmeltHfFile *f = g_ptr_array_index (files, i);

              if (f->expired)
                {
                  g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                               "%s: storage refused %s (HTTP 403) even with the fresh URLs of a "
                               "second LFS batch", repo->repo_id, f->staged->path);
                  return FALSE;
                }
            }
        }
      /* only the expired ones: the others are done */
      for (guint i = 0; i < files->len; i++)
        {
          SmeltHfFile *f = g_ptr_array_index (files, i);

          if (!f->expired && f->upload_href && !f->stored)
            {
              /* finish these before their actions are asked for again */
              if (f->chunk_size > 0 && !smelt_hf_complete_multipart (repo, session, f, cancellable, error))
                return FALSE;
              if (verify && f->verify_href && !smelt_hf_verify (repo, session, f, cancellable, error))
                return FALSE;
              f->stored = TRUE;
            }
        }
      if (!smelt_hf_lfs_batch (repo, session, files, cancellable, error))
        return FALSE;
    }
  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);

      if (!f->lfs || f->skip || f->stored || f->upload_href == NULL)
        continue;
      if (f->chunk_size > 0 && !smelt_hf_complete_multipart (repo, session, f, cancellable, error))
        return FALSE;
      if (verify && f->verify_href && !smelt_hf_verify (repo, session, f, cancellable, error))
        return FALSE;
    }
  if (progress)
    progress (NULL, total - extra_total, total, user_data);
  return TRUE;
}
