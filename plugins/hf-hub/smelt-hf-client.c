/* smelt-hf-client.c: HTTP requests to the Hub, with retries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <string.h>

#include "smelt-hf-client.h"
#include "smelt-hf-stage.h"

/* The retry policy is huggingface_hub's (utils/_http.py): 408, 429, 500,
 * 502, 503 and 504 and transport errors are retried, five times, after
 * 1, 2, 4, 8, 8 s; a 429 whose RateLimit header says r=0 waits t + 1 s,
 * a Retry-After of N seconds waits N + 1 s. On top of that, the time one
 * request may spend waiting is capped, so a Hub that keeps answering 429
 * ends the upload with a clear error instead of hanging. */

struct _SmeltHfClient
{
  char          *endpoint;       /* no trailing slash */
  char          *scheme;
  char          *host;
  int            port;
  char          *token;
  char          *token_source;
  SmeltHfPolicy  policy;
};

static int
default_port (const char *scheme)
{
  return g_ascii_strcasecmp (scheme, "https") == 0 ? 443 : 80;
}

SmeltHfClient *
smelt_hf_client_new (const char          *endpoint,
                     const char          *token,
                     const char          *token_source,
                     const SmeltHfPolicy *policy)
{
  SmeltHfClient *self = g_new0 (SmeltHfClient, 1);
  g_autoptr(GUri) uri = g_uri_parse (endpoint, SOUP_HTTP_URI_FLAGS, NULL);

  self->endpoint = g_strdup (endpoint);
  if (uri != NULL)
    {
      self->scheme = g_ascii_strdown (g_uri_get_scheme (uri), -1);
      self->host = g_ascii_strdown (g_uri_get_host (uri) ? g_uri_get_host (uri) : "", -1);
      self->port = g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : default_port (self->scheme);
    }
  self->token = g_strdup (token);
  self->token_source = g_strdup (token_source);
  self->policy = *policy;
  return self;
}

void
smelt_hf_client_free (SmeltHfClient *self)
{
  if (self == NULL)
    return;
  g_free (self->endpoint);
  g_free (self->scheme);
  g_free (self->host);
  if (self->token)
    memset (self->token, 0, strlen (self->token));
  g_free (self->token);
  g_free (self->token_source);
  g_free (self);
}

const char *
smelt_hf_client_get_endpoint (SmeltHfClient *self)
{
  return self->endpoint;
}

const char *
smelt_hf_client_get_token_source (SmeltHfClient *self)
{
  return self->token_source;
}

guint
smelt_hf_client_get_max_wait (SmeltHfClient *self)
{
  return self->policy.max_wait;
}

guint
smelt_hf_client_get_timeout (SmeltHfClient *self)
{
  return self->policy.timeout;
}

/* The token goes to the endpoint's origin only: same scheme, host and
 * port. Storage URLs from the LFS batch (pre-signed S3 URLs on the real
 * Hub, another listener in the tests) never see it. */
gboolean
smelt_hf_client_is_endpoint_url (SmeltHfClient *self,
                                 const char    *url)
{
  g_autoptr(GUri) uri = g_uri_parse (url, SOUP_HTTP_URI_FLAGS, NULL);
  int port;

  if (uri == NULL || self->host == NULL || g_uri_get_host (uri) == NULL)
    return FALSE;
  port = g_uri_get_port (uri) > 0 ? g_uri_get_port (uri) : default_port (g_uri_get_scheme (uri));
  return g_ascii_strcasecmp (g_uri_get_scheme (uri), self->scheme) == 0 &&
         g_ascii_strcasecmp (g_uri_get_host (uri), self->host) == 0 &&
         port == self->port;
}

SoupSession *
smelt_hf_client_new_session (SmeltHfClient *self)
{
  g_autofree char *ua = g_strdup_printf ("smelt/%s; hf-hub", SMELT_VERSION_S);

  return soup_session_new_with_options ("user-agent", ua,
                                        "timeout", self->policy.timeout,
                                        "idle-timeout", 60,
                                        NULL);
}

char *
smelt_hf_url_for_humans (const char *url)
{
  const char *q = strpbrk (url, "?#");

  return q ? g_strndup (url, q - url) : g_strdup (url);
}

char *
smelt_hf_client_scrub (SmeltHfClient *self,
                       const char    *text)
{
  g_autoptr(GString) s = NULL;

  if (text == NULL)
    return NULL;
  s = g_string_new (text);
  if (self->token && *self->token)
    g_string_replace (s, self->token, "hf_***", 0);
  return g_string_free (g_steal_pointer (&s), FALSE);
}

void
smelt_hf_client_scrub_error (SmeltHfClient *self,
                             GError        *error)
{
  char *clean;

  if (error == NULL || self == NULL)
    return;
  clean = smelt_hf_client_scrub (self, error->message);
  g_free (error->message);
  error->message = clean;
}

void
smelt_hf_reply_free (SmeltHfReply *reply)
{
  if (reply == NULL)
    return;
  g_clear_pointer (&reply->headers, soup_message_headers_unref);
  g_clear_pointer (&reply->body, g_bytes_unref);
  g_free (reply->what);
  g_free (reply);
}

gboolean
smelt_hf_status_is_retriable (guint status)
{
  return status == 408 || status == 429 || status == 500 || status == 502 ||
         status == 503 || status == 504;
}

/* Transport failures worth another try: a dropped or refused connection,
 * a timeout, a reply cut short. Not: cancellation, TLS certificate
 * problems, bad URLs. */
gboolean
smelt_hf_error_is_retriable (const GError *error)
{
  if (error == NULL)
    return FALSE;
  if (error->domain == G_IO_ERROR)
    return error->code != G_IO_ERROR_CANCELLED && error->code != G_IO_ERROR_INVALID_ARGUMENT &&
           error->code != G_IO_ERROR_NOT_SUPPORTED && error->code != G_IO_ERROR_NOT_FOUND &&
           error->code != G_IO_ERROR_PERMISSION_DENIED;
  if (error->domain == SOUP_SESSION_ERROR)
    return error->code == SOUP_SESSION_ERROR_PARSING ||
           error->code == SOUP_SESSION_ERROR_ENCODING;
  if (error->domain == G_RESOLVER_ERROR)
    return error->code == G_RESOLVER_ERROR_TEMPORARY_FAILURE;
  return FALSE;
}

double
smelt_hf_client_backoff (SmeltHfClient *self,
                         guint          attempt)
{
  double d = self->policy.first_delay;

  for (guint i = 0; i < attempt && d < 8.0; i++)
    d *= 2;
  return MIN (d, MAX (8.0, self->policy.first_delay));
}

/* RateLimit: "api";r=0;t=55 (IETF draft, what the Hub sends), then
 * Retry-After: <seconds> (an HTTP date is ignored, as Python does). */
double
smelt_hf_reply_retry_after (SmeltHfReply *reply)
{
  const char *rl = soup_message_headers_get_one (reply->headers, "RateLimit");
  const char *ra = soup_message_headers_get_one (reply->headers, "Retry-After");

  if (reply->status == 429 && rl != NULL)
    {
      g_auto(GStrv) parts = g_strsplit (rl, ";", -1);
      gint64 r = -1, t = -1;

      for (guint i = 0; parts[i]; i++)
        {
          char *p = g_strstrip (parts[i]);

          if (g_str_has_prefix (p, "r="))
            r = g_ascii_strtoll (p + 2, NULL, 10);
          else if (g_str_has_prefix (p, "t="))
            t = g_ascii_strtoll (p + 2, NULL, 10);
        }
      if (r == 0 && t >= 0)
        return (double) t + 1;
    }
  if (ra != NULL)
    {
      char *end = NULL;
      gint64 v;

      while (g_ascii_isspace (*ra))
        ra++;
      v = g_ascii_strtoll (ra, &end, 10);
      if (end != ra && v >= 0 && (*end == '\0' || g_ascii_isspace (*end)))
        return (double) v + 1;
    }
  return -1;
}

gboolean
smelt_hf_client_sleep (SmeltHfClient *self,
                       double         seconds,
                       GCancellable  *cancellable,
                       GError       **error)
{
  gint64 end = g_get_monotonic_time () + (gint64) (seconds * G_USEC_PER_SEC);

  for (;;)
    {
      gint64 now = g_get_monotonic_time ();

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      if (now >= end)
        return TRUE;
      g_usleep (MIN (end - now, G_USEC_PER_SEC / 20));
    }
}

static GInputStream *
body_stream (const SmeltHfBody *body,
             GError           **error)
{
  return smelt_hf_slice_stream_new (body->local, body->offset, body->length, body->counter, error);
}

/* One attempt. Returns the reply, or NULL with @error for a transport
 * failure. @sent gets the bytes of a file body read during the attempt. */
static SmeltHfReply *
attempt (SmeltHfClient      *self,
         SoupSession        *session,
         const char         *method,
         const char         *url,
         const SmeltHfBody  *body,
         const char         *accept,
         SmeltHfRequestFlags flags,
         guint64            *sent,
         GCancellable       *cancellable,
         GError            **error)
{
  g_autoptr(SoupMessage) msg = soup_message_new (method, url);
  g_autoptr(GInputStream) stream = NULL;
  g_autoptr(GBytes) data = NULL;
  SoupMessageHeaders *h;
  SmeltHfReply *reply;

  *sent = 0;
  if (msg == NULL)
    {
      g_autofree char *shown = smelt_hf_url_for_humans (url);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "not a valid URL: %s", shown);
      return NULL;
    }
  /* a redirect could carry the token elsewhere: none is followed */
  soup_message_add_flags (msg, SOUP_MESSAGE_NO_REDIRECT);
  if (flags & SMELT_HF_REQUEST_RETRY)
    soup_message_add_flags (msg, SOUP_MESSAGE_IDEMPOTENT);
  h = soup_message_get_request_headers (msg);
  if ((flags & SMELT_HF_REQUEST_AUTH) && self->token && smelt_hf_client_is_endpoint_url (self, url))
    {
      g_autofree char *value = g_strconcat ("Bearer ", self->token, NULL);

      soup_message_headers_replace (h, "Authorization", value);
      memset (value, 0, strlen (value));
    }
  if (accept)
    soup_message_headers_replace (h, "Accept", accept);
  for (guint i = 0; body && body->headers && i + 1 < body->headers->len; i += 2)
    {
      const char *name = g_ptr_array_index (body->headers, i);

      /* the action's own headers (git-lfs spec); never a second token */
      if (g_ascii_strcasecmp (name, "Authorization") == 0 &&
          soup_message_headers_get_one (h, "Authorization") != NULL)
        continue;
      soup_message_headers_replace (h, name, g_ptr_array_index (body->headers, i + 1));
    }
  if (body && body->bytes)
    soup_message_set_request_body_from_bytes (msg, body->content_type, body->bytes);
  else if (body && body->local)
    {
      stream = body_stream (body, error);
      if (stream == NULL)
        return NULL;
      soup_message_set_request_body (msg, body->content_type, stream, (gssize) body->length);
    }

  data = soup_session_send_and_read (session, msg, cancellable, error);
  if (stream)
    *sent = (guint64) g_seekable_tell (G_SEEKABLE (stream));
  if (data == NULL)
    return NULL;
  reply = g_new0 (SmeltHfReply, 1);
  reply->status = soup_message_get_status (msg);
  reply->headers = soup_message_headers_ref (soup_message_get_response_headers (msg));
  reply->body = g_steal_pointer (&data);
  {
    g_autofree char *shown = smelt_hf_url_for_humans (url);
    reply->what = g_strdup_printf ("%s %s", method, shown);
  }
  return reply;
}

typedef struct {
  SmeltHfClient       *self;
  SoupSession         *session;
  const char          *method;
  const char          *url;
  const SmeltHfBody   *body;
  const char          *accept;
  SmeltHfRequestFlags  flags;
} SoupAttempt;

static SmeltHfReply *
soup_attempt (gpointer       data,
              guint64       *sent,
              GCancellable  *cancellable,
              GError       **error)
{
  SoupAttempt *a = data;

  return attempt (a->self, a->session, a->method, a->url, a->body, a->accept, a->flags, sent,
                  cancellable, error);
}

SmeltHfReply *
smelt_hf_client_request (SmeltHfClient       *self,
                         SoupSession         *session,
                         const char          *method,
                         const char          *url,
                         const SmeltHfBody   *body,
                         const char          *accept,
                         SmeltHfRequestFlags  flags,
                         GCancellable        *cancellable,
                         GError             **error)
{
  SoupAttempt a = { self, session, method, url, body, accept, flags };

  return smelt_hf_client_retry (self, method, url, body, flags, soup_attempt, &a, cancellable, error);
}

SmeltHfReply *
smelt_hf_client_retry (SmeltHfClient       *self,
                       const char          *method,
                       const char          *url,
                       const SmeltHfBody   *body,
                       SmeltHfRequestFlags  flags,
                       SmeltHfAttemptFunc   try_once,
                       gpointer             try_data,
                       GCancellable        *cancellable,
                       GError             **error)
{
  double waited = 0;

  for (guint n = 0;; n++)
    {
      g_autoptr(GError) local = NULL;
      SmeltHfReply *reply;
      guint64 sent = 0;
      double delay;
      gboolean last = !(flags & SMELT_HF_REQUEST_RETRY) || n >= self->policy.retries;

      reply = try_once (try_data, &sent, cancellable, &local);
      if (reply && !smelt_hf_status_is_retriable (reply->status))
        return reply;
      if (reply == NULL && !smelt_hf_error_is_retriable (local))
        {
          g_propagate_error (error, g_steal_pointer (&local));
          smelt_hf_client_scrub_error (self, *error);
          return NULL;
        }
      /* the bytes of a failed attempt will be sent again */
      if (body && body->counter && sent > 0)
        __atomic_fetch_sub (body->counter, (gint64) sent, __ATOMIC_RELAXED);
      delay = reply ? smelt_hf_reply_retry_after (reply) : -1;
      if (delay < 0)
        delay = smelt_hf_client_backoff (self, n);
      if (!last && waited + delay > self->policy.max_wait)
        {
          g_autofree char *shown = smelt_hf_url_for_humans (url);

          if (reply)
            {
              g_autofree char *server = smelt_hf_reply_message (self, reply);

              g_set_error (error, G_IO_ERROR, G_IO_ERROR_BUSY,
                           "%s: HTTP %u%s%s, and waiting %.0f s more to retry would exceed "
                           "the %u s limit (MaxRetryWait)", reply->what, reply->status,
                           server ? ": " : "", server ? server : "", delay, self->policy.max_wait);
              smelt_hf_reply_free (reply);
              smelt_hf_client_scrub_error (self, *error);
              return NULL;
            }
          g_set_error (error, local->domain, local->code,
                       "%s %s: %s (gave up: retrying would wait more than %u s)", method, shown,
                       local->message, self->policy.max_wait);
          smelt_hf_client_scrub_error (self, *error);
          return NULL;
        }
      if (last)
        {
          if (reply)
            return reply;   /* the caller turns the status into an error */
          {
            g_autofree char *shown = smelt_hf_url_for_humans (url);

            g_set_error (error, local->domain, local->code, "%s %s: %s%s", method, shown,
                         local->message,
                         (flags & SMELT_HF_REQUEST_RETRY) ? " (after retrying)" : "");
            smelt_hf_client_scrub_error (self, *error);
          }
          return NULL;
        }
      g_clear_pointer (&reply, smelt_hf_reply_free);
      if (!smelt_hf_client_sleep (self, delay, cancellable, error))
        return NULL;
      waited += delay;
    }
}

JsonNode *
smelt_hf_reply_json (SmeltHfReply *reply,
                     GError      **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  gsize len;
  const char *data = g_bytes_get_data (reply->body, &len);

  if (len == 0 || !json_parser_load_from_data (parser, data, (gssize) len, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: HTTP %u, but the reply is not JSON", reply->what, reply->status);
      return NULL;
    }
  return json_node_ref (json_parser_get_root (parser));
}

const char *
smelt_hf_reply_error_code (SmeltHfReply *reply)
{
  return soup_message_headers_get_one (reply->headers, "X-Error-Code");
}

static void
add_message (GString    *out,
             const char *text)
{
  if (text == NULL || *text == '\0' || strstr (out->str, text) != NULL)
    return;
  if (out->len)
    g_string_append (out, "; ");
  g_string_append (out, text);
}

static void
add_json_messages (GString    *out,
                   JsonObject *obj)
{
  static const char * const keys[] = { "error", "message", "error_description" };

  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      JsonNode *n = json_object_get_member (obj, keys[i]);

      if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
        add_message (out, json_node_get_string (n));
      else if (n && JSON_NODE_HOLDS_ARRAY (n))
        {
          JsonArray *a = json_node_get_array (n);

          for (guint j = 0; j < json_array_get_length (a); j++)
            {
              JsonNode *e = json_array_get_element (a, j);

              if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING)
                add_message (out, json_node_get_string (e));
            }
        }
    }
  if (json_object_has_member (obj, "errors") &&
      JSON_NODE_HOLDS_ARRAY (json_object_get_member (obj, "errors")))
    {
      JsonArray *a = json_object_get_array_member (obj, "errors");

      for (guint j = 0; j < json_array_get_length (a); j++)
        {
          JsonNode *e = json_array_get_element (a, j);

          if (JSON_NODE_HOLDS_OBJECT (e) &&
              json_object_has_member (json_node_get_object (e), "message"))
            add_message (out, json_object_get_string_member_with_default (json_node_get_object (e),
                                                                          "message", NULL));
        }
    }
}

/* Object storage (S3) answers errors in XML: <Error><Code>AccessDenied</Code>
 * <Message>Request has expired</Message>…</Error> */
static gboolean
xml_error (GString    *out,
           const char *data,
           gsize       len)
{
  g_autofree char *text = g_strndup (data, MIN (len, 4096));
  g_autoptr(GMatchInfo) code = NULL;
  g_autoptr(GMatchInfo) message = NULL;
  g_autoptr(GRegex) re_code = g_regex_new ("<Code>([^<]{1,200})</Code>", 0, 0, NULL);
  g_autoptr(GRegex) re_msg = g_regex_new ("<Message>([^<]{1,500})</Message>", 0, 0, NULL);

  if (strstr (text, "<Error>") == NULL || !g_utf8_validate (text, -1, NULL))
    return FALSE;
  if (g_regex_match (re_code, text, 0, &code))
    {
      g_autofree char *c = g_match_info_fetch (code, 1);
      add_message (out, c);
    }
  if (g_regex_match (re_msg, text, 0, &message))
    {
      g_autofree char *m = g_match_info_fetch (message, 1);
      add_message (out, m);
    }
  return out->len > 0;
}

char *
smelt_hf_reply_message (SmeltHfClient *self,
                        SmeltHfReply  *reply)
{
  g_autoptr(GString) out = g_string_new (NULL);
  g_autoptr(JsonNode) root = NULL;
  gsize len;
  const char *data = g_bytes_get_data (reply->body, &len);

  add_message (out, soup_message_headers_get_one (reply->headers, "X-Error-Message"));
  if (len > 0)
    {
      g_autoptr(JsonParser) parser = json_parser_new ();

      if (json_parser_load_from_data (parser, data, (gssize) len, NULL) &&
          JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        add_json_messages (out, json_node_get_object (json_parser_get_root (parser)));
      else if (xml_error (out, data, len))
        ;
      else if (out->len == 0 && g_utf8_validate (data, (gssize) len, NULL))
        {
          g_autofree char *text = g_strndup (data, MIN (len, 300));

          g_strstrip (text);
          add_message (out, text);
        }
    }
  {
    const char *rid = soup_message_headers_get_one (reply->headers, "X-Request-Id");

    if (rid && out->len)
      g_string_append_printf (out, " (request id %s)", rid);
  }
  if (out->len == 0)
    return NULL;
  return smelt_hf_client_scrub (self, out->str);
}
