/* smelt-hf-put.c: PUT of a file slice to object storage, in large writes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "smelt-hf-put.h"

/* Why not libsoup here: libsoup 3 sends a request body by splicing the
 * body stream into the connection through GLib's generic splice, 8 KiB at
 * a time, with a signal per block; on a fast link that halves the
 * throughput of a multi-GB upload (1.0 GB/s against curl's 2.1 GB/s on
 * loopback). The bulk of the bytes go to pre-signed storage URLs, which
 * need nothing libsoup adds (no cookies, no token, no redirects, no
 * HTTP/2: S3 speaks HTTP/1.1), so they take this short path: one
 * GSocketClient connection per upload thread (TLS through GIO, proxies
 * through GIO's resolver), kept alive between PUTs, a Content-Length and
 * the body in 1 MiB writes straight from pread(). The reply is read as
 * HTTP/1.1 says (Content-Length, chunked, or until close). The Hub API
 * itself stays on libsoup. */

#define WRITE_SIZE (1u << 20)
#define MAX_LINE   (64u << 10)
#define MAX_BODY   (16u << 20)

struct _SmeltHfPut
{
  guint              timeout;
  GSocketClient     *client;
  GIOStream         *io;        /* NULL: no connection */
  GDataInputStream  *in;
  char              *key;       /* scheme://host:port of io */
  guint8            *buf;
};

SmeltHfPut *
smelt_hf_put_new (guint timeout)
{
  SmeltHfPut *self = g_new0 (SmeltHfPut, 1);

  self->timeout = timeout;
  self->buf = g_malloc (WRITE_SIZE);
  return self;
}

static void
drop_connection (SmeltHfPut *self)
{
  if (self->io)
    g_io_stream_close (self->io, NULL, NULL);
  g_clear_object (&self->in);
  g_clear_object (&self->io);
  g_clear_pointer (&self->key, g_free);
}

void
smelt_hf_put_free (SmeltHfPut *self)
{
  if (self == NULL)
    return;
  drop_connection (self);
  g_clear_object (&self->client);
  g_free (self->buf);
  g_free (self);
}

/* A kept-alive connection is only reused while nothing is waiting to be
 * read on it: storage that closed an idle connection (S3 does after a few
 * seconds) left an end of stream there, and a PUT sent into it would fail
 * and cost a retry with its back-off. (curl checks the same way.) */
static gboolean
connection_is_idle (SmeltHfPut *self)
{
  GSocket *socket = g_socket_connection_get_socket (G_SOCKET_CONNECTION (self->io));

  if (g_buffered_input_stream_get_available (G_BUFFERED_INPUT_STREAM (self->in)) > 0)
    return FALSE;
  return socket != NULL &&
         g_socket_condition_check (socket, G_IO_IN | G_IO_HUP | G_IO_ERR) == 0;
}

static gboolean
ensure_connection (SmeltHfPut    *self,
                   GUri          *uri,
                   const char    *url,
                   GCancellable  *cancellable,
                   GError       **error)
{
  gboolean tls = g_ascii_strcasecmp (g_uri_get_scheme (uri), "https") == 0;
  int port = g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : (tls ? 443 : 80);
  g_autofree char *key = g_strdup_printf ("%s://%s:%d", tls ? "https" : "http", g_uri_get_host (uri), port);
  GSocketConnection *conn;

  if (self->io && g_strcmp0 (self->key, key) == 0 && !g_io_stream_is_closed (self->io) &&
      connection_is_idle (self))
    return TRUE;
  drop_connection (self);
  if (self->client == NULL)
    {
      self->client = g_socket_client_new ();
      g_socket_client_set_timeout (self->client, self->timeout);
    }
  g_socket_client_set_tls (self->client, tls);
  conn = g_socket_client_connect_to_uri (self->client, url, tls ? 443 : 80, cancellable, error);
  if (conn == NULL)
    return FALSE;
  if (!tls)
    g_socket_set_option (g_socket_connection_get_socket (conn), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  self->io = G_IO_STREAM (conn);
  self->in = g_data_input_stream_new (g_io_stream_get_input_stream (self->io));
  g_data_input_stream_set_newline_type (self->in, G_DATA_STREAM_NEWLINE_TYPE_LF);
  g_filter_input_stream_set_close_base_stream (G_FILTER_INPUT_STREAM (self->in), FALSE);
  self->key = g_steal_pointer (&key);
  return TRUE;
}

/* A line without its CR LF; NULL with an error at the end of the stream */
static char *
read_line (SmeltHfPut    *self,
           GCancellable  *cancellable,
           GError       **error)
{
  gsize len = 0;
  GError *local = NULL;
  char *line = g_data_input_stream_read_line (self->in, &len, cancellable, &local);

  if (line == NULL)
    {
      if (local)
        g_propagate_error (error, local);
      else
        g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                             "storage closed the connection before its reply was complete");
      return NULL;
    }
  if (len > MAX_LINE)
    {
      g_free (line);
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "storage sent an overlong line");
      return NULL;
    }
  if (len > 0 && line[len - 1] == '\r')
    line[len - 1] = '\0';
  return line;
}

static gboolean
read_exactly (SmeltHfPut    *self,
              GByteArray    *body,
              guint64        n,
              GCancellable  *cancellable,
              GError       **error)
{
  gsize start = body->len;
  gsize got = 0;

  if (n == 0)
    return TRUE;   /* an empty body: g_input_stream_read_all() wants a buffer */
  if (n > MAX_BODY || body->len + n > MAX_BODY)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "storage sent an oversized reply");
      return FALSE;
    }
  g_byte_array_set_size (body, start + n);
  if (!g_input_stream_read_all (G_INPUT_STREAM (self->in), body->data + start, n, &got, cancellable, error))
    return FALSE;
  if (got != n)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                           "storage closed the connection in the middle of its reply");
      return FALSE;
    }
  return TRUE;
}

static gboolean
read_chunked (SmeltHfPut    *self,
              GByteArray    *body,
              GCancellable  *cancellable,
              GError       **error)
{
  for (;;)
    {
      g_autofree char *line = read_line (self, cancellable, error);
      char *end = NULL;
      guint64 n;

      if (line == NULL)
        return FALSE;
      n = g_ascii_strtoull (line, &end, 16);
      if (end == line)
        {
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "storage sent a bad chunk size");
          return FALSE;
        }
      if (n == 0)
        break;
      if (!read_exactly (self, body, n, cancellable, error))
        return FALSE;
      g_free (read_line (self, cancellable, NULL));   /* the CR LF after the chunk */
    }
  /* trailers, up to the empty line */
  for (;;)
    {
      g_autofree char *line = read_line (self, cancellable, error);

      if (line == NULL)
        return FALSE;
      if (*line == '\0')
        return TRUE;
    }
}

/* Status line, headers and body of one reply; *keep says whether the
 * connection may carry the next request. */
static SmeltHfReply *
read_reply (SmeltHfPut    *self,
            gboolean      *keep,
            GCancellable  *cancellable,
            GError       **error)
{
  g_autoptr(SoupMessageHeaders) headers = NULL;
  g_autoptr(GByteArray) body = g_byte_array_new ();
  SmeltHfReply *reply;
  guint status = 0;
  gboolean http11 = FALSE;
  const char *te, *cl, *conn;

  for (;;)
    {
      g_autofree char *line = read_line (self, cancellable, error);
      guint n = 0;

      if (line == NULL)
        return NULL;
      if (!g_str_has_prefix (line, "HTTP/1.") || strlen (line) < 12 ||
          sscanf (line + 9, "%3u", &status) != 1 || status < 100 || status > 599)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "storage replied with something other than HTTP/1.x");
          return NULL;
        }
      http11 = line[7] == '1';
      g_clear_pointer (&headers, soup_message_headers_unref);
      headers = soup_message_headers_new (SOUP_MESSAGE_HEADERS_RESPONSE);
      for (;;)
        {
          g_autofree char *h = read_line (self, cancellable, error);
          char *colon;

          if (h == NULL)
            return NULL;
          if (*h == '\0')
            break;
          colon = strchr (h, ':');
          if (colon == NULL || ++n > 200)
            {
              g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                   "storage sent a malformed header");
              return NULL;
            }
          *colon = '\0';
          soup_message_headers_append (headers, g_strstrip (h), g_strstrip (colon + 1));
        }
      /* 100 Continue and other interim replies: the real one follows */
      if (status >= 200)
        break;
    }

  te = soup_message_headers_get_one (headers, "Transfer-Encoding");
  cl = soup_message_headers_get_one (headers, "Content-Length");
  conn = soup_message_headers_get_one (headers, "Connection");
  *keep = http11 ? !(conn && g_ascii_strcasecmp (conn, "close") == 0)
                 : (conn && g_ascii_strcasecmp (conn, "keep-alive") == 0);
  if (status == 204 || status == 304)
    ;
  else if (te && g_ascii_strcasecmp (te, "chunked") == 0)
    {
      if (!read_chunked (self, body, cancellable, error))
        return NULL;
    }
  else if (cl)
    {
      char *end = NULL;
      guint64 n = g_ascii_strtoull (cl, &end, 10);

      if (end == cl || *end != '\0' || !read_exactly (self, body, n, cancellable, error))
        {
          if (error && *error == NULL)
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                 "storage sent a bad Content-Length");
          return NULL;
        }
    }
  else
    {
      /* until the connection closes */
      for (;;)
        {
          guint8 tmp[8192];
          gssize n = g_input_stream_read (G_INPUT_STREAM (self->in), tmp, sizeof tmp, cancellable, error);

          if (n < 0)
            return NULL;
          if (n == 0)
            break;
          if (body->len + n > MAX_BODY)
            {
              g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                   "storage sent an oversized reply");
              return NULL;
            }
          g_byte_array_append (body, tmp, n);
        }
      *keep = FALSE;
    }
  reply = g_new0 (SmeltHfReply, 1);
  reply->status = status;
  reply->headers = g_steal_pointer (&headers);
  reply->body = g_byte_array_free_to_bytes (g_steal_pointer (&body));
  return reply;
}

static char *
request_head (GUri              *uri,
              const SmeltHfBody *body)
{
  GString *s = g_string_new ("PUT ");
  const char *path = g_uri_get_path (uri);
  const char *host = g_uri_get_host (uri);
  gboolean v6 = strchr (host, ':') != NULL;

  g_string_append (s, *path ? path : "/");
  if (g_uri_get_query (uri))
    g_string_append_printf (s, "?%s", g_uri_get_query (uri));
  g_string_append_printf (s, " HTTP/1.1\r\nHost: %s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
  if (g_uri_get_port (uri) > 0)
    g_string_append_printf (s, ":%d", g_uri_get_port (uri));
  g_string_append_printf (s, "\r\nUser-Agent: smelt/%s; hf-hub\r\nContent-Length: %" G_GUINT64_FORMAT "\r\n",
                          SMELT_VERSION_S, body->length);
  for (guint i = 0; body->headers && i + 1 < body->headers->len; i += 2)
    {
      const char *name = g_ptr_array_index (body->headers, i);
      const char *value = g_ptr_array_index (body->headers, i + 1);

      /* never let a header inject another line, nor override the framing */
      if (strpbrk (name, "\r\n:") || strpbrk (value, "\r\n") ||
          g_ascii_strcasecmp (name, "Content-Length") == 0 || g_ascii_strcasecmp (name, "Host") == 0 ||
          g_ascii_strcasecmp (name, "Transfer-Encoding") == 0)
        continue;
      g_string_append_printf (s, "%s: %s\r\n", name, value);
    }
  g_string_append (s, "\r\n");
  return g_string_free (s, FALSE);
}

static gboolean
write_body (SmeltHfPut         *self,
            GOutputStream      *out,
            const SmeltHfBody  *body,
            guint64            *sent,
            GCancellable       *cancellable,
            GError            **error)
{
  int fd = g_open (body->local, O_RDONLY | O_CLOEXEC, 0);
  guint64 pos = 0;
  gboolean ok = TRUE;

  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot open the staged file: %s", body->local, g_strerror (saved));
      return FALSE;
    }
#ifdef POSIX_FADV_SEQUENTIAL
  posix_fadvise (fd, (off_t) body->offset, (off_t) body->length, POSIX_FADV_SEQUENTIAL);
#endif
  while (ok && pos < body->length)
    {
      gsize want = (gsize) MIN ((guint64) WRITE_SIZE, body->length - pos);
      gssize n;

      do
        n = pread (fd, self->buf, want, (off_t) (body->offset + pos));
      while (n < 0 && errno == EINTR);
      if (n <= 0)
        {
          int saved = n < 0 ? errno : EIO;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "%s: cannot read at offset %" G_GUINT64_FORMAT ": %s", body->local,
                       body->offset + pos, n < 0 ? g_strerror (saved) : "the file is shorter than staged");
          ok = FALSE;
          break;
        }
      ok = g_output_stream_write_all (out, self->buf, (gsize) n, NULL, cancellable, error);
      if (ok)
        {
          pos += (guint64) n;
          *sent += (guint64) n;
          if (body->counter)
            __atomic_fetch_add (body->counter, (gint64) n, __ATOMIC_RELAXED);
        }
    }
  close (fd);
  return ok && g_output_stream_flush (out, cancellable, error);
}

SmeltHfReply *
smelt_hf_put_once (SmeltHfPut         *self,
                   const char         *url,
                   const SmeltHfBody  *body,
                   guint64            *sent,
                   GCancellable       *cancellable,
                   GError            **error)
{
  g_autoptr(GUri) uri = g_uri_parse (url, G_URI_FLAGS_ENCODED | G_URI_FLAGS_NON_DNS, NULL);
  g_autofree char *head = NULL;
  g_autoptr(GError) write_error = NULL;
  GOutputStream *out;
  SmeltHfReply *reply;
  gboolean keep = FALSE;

  *sent = 0;
  if (uri == NULL || g_uri_get_host (uri) == NULL ||
      (g_ascii_strcasecmp (g_uri_get_scheme (uri), "http") != 0 &&
       g_ascii_strcasecmp (g_uri_get_scheme (uri), "https") != 0))
    {
      g_autofree char *shown = smelt_hf_url_for_humans (url);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not an http(s) URL: %s", shown);
      return NULL;
    }
  if (!ensure_connection (self, uri, url, cancellable, error))
    return NULL;
  head = request_head (uri, body);
  out = g_io_stream_get_output_stream (self->io);
  if (!g_output_stream_write_all (out, head, strlen (head), NULL, cancellable, &write_error) ||
      !write_body (self, out, body, sent, cancellable, &write_error))
    {
      /* storage may have answered early (403, 400) and closed: read what
       * it said, if anything */
      if (g_error_matches (write_error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
          write_error->domain != G_IO_ERROR)
        {
          drop_connection (self);
          g_propagate_error (error, g_steal_pointer (&write_error));
          return NULL;
        }
      reply = read_reply (self, &keep, cancellable, NULL);
      drop_connection (self);
      if (reply == NULL)
        {
          g_propagate_error (error, g_steal_pointer (&write_error));
          return NULL;
        }
    }
  else
    {
      reply = read_reply (self, &keep, cancellable, error);
      if (reply == NULL || !keep)
        drop_connection (self);
      if (reply == NULL)
        return NULL;
    }
  {
    g_autofree char *shown = smelt_hf_url_for_humans (url);
    reply->what = g_strdup_printf ("PUT %s", shown);
  }
  return reply;
}
