/* smelt-hf-client.h: HTTP requests to the Hub, with retries
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <libsoup/soup.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _SmeltHfClient SmeltHfClient;

typedef struct {
  guint   retries;       /* retries after the first attempt (huggingface_hub: 5) */
  guint   max_wait;      /* seconds: the most one request may spend waiting to retry */
  guint   timeout;       /* seconds without I/O before a request fails; 0 = none */
  double  first_delay;   /* seconds before the first retry; doubles, up to 8 s */
} SmeltHfPolicy;

typedef enum {
  SMELT_HF_REQUEST_NONE       = 0,
  /* send the token (only ever to the endpoint's own scheme, host and port) */
  SMELT_HF_REQUEST_AUTH       = 1 << 0,
  /* retry 408, 429, 5xx and dropped connections: the step is idempotent */
  SMELT_HF_REQUEST_RETRY      = 1 << 1,
} SmeltHfRequestFlags;

typedef struct {
  guint               status;
  SoupMessageHeaders *headers;
  GBytes             *body;
  char               *what;      /* "POST https://host/path", no query string */
} SmeltHfReply;

void          smelt_hf_reply_free        (SmeltHfReply *reply);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfReply, smelt_hf_reply_free)

/* The request body: either @bytes, or a slice of a local file */
typedef struct {
  GBytes      *bytes;
  const char  *content_type;
  const char  *local;
  guint64      offset;
  guint64      length;
  gint64      *counter;     /* bytes sent, for progress; wound back on retry */
  GPtrArray   *headers;     /* more request headers: name, value, name, value… */
} SmeltHfBody;

SmeltHfClient *smelt_hf_client_new        (const char          *endpoint,
                                           const char          *token,
                                           const char          *token_source,
                                           const SmeltHfPolicy  *policy);
void           smelt_hf_client_free       (SmeltHfClient       *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfClient, smelt_hf_client_free)

const char    *smelt_hf_client_get_endpoint (SmeltHfClient     *self);
const char    *smelt_hf_client_get_token_source (SmeltHfClient *self);
gboolean       smelt_hf_client_is_endpoint_url (SmeltHfClient  *self,
                                                const char     *url);

/* A session for the calling thread (libsoup sessions are used from one
 * thread each) */
SoupSession   *smelt_hf_client_new_session (SmeltHfClient      *self);

SmeltHfReply  *smelt_hf_client_request    (SmeltHfClient       *self,
                                           SoupSession         *session,
                                           const char          *method,
                                           const char          *url,
                                           const SmeltHfBody   *body,
                                           const char          *accept,
                                           SmeltHfRequestFlags  flags,
                                           GCancellable        *cancellable,
                                           GError             **error);

/* One try of a request: the reply, or NULL with @error for a transport
 * failure; @sent gets the bytes of a file body sent */
typedef SmeltHfReply *(*SmeltHfAttemptFunc) (gpointer        data,
                                             guint64        *sent,
                                             GCancellable   *cancellable,
                                             GError        **error);

/* The retry policy around any attempt function */
SmeltHfReply  *smelt_hf_client_retry      (SmeltHfClient       *self,
                                           const char          *method,
                                           const char          *url,
                                           const SmeltHfBody   *body,
                                           SmeltHfRequestFlags  flags,
                                           SmeltHfAttemptFunc   attempt,
                                           gpointer             attempt_data,
                                           GCancellable        *cancellable,
                                           GError             **error);

/* How long the reply asks to wait before trying again (Retry-After,
 * RateLimit), in seconds, or -1 */
double         smelt_hf_reply_retry_after (SmeltHfReply        *reply);
gboolean       smelt_hf_status_is_retriable (guint              status);
gboolean       smelt_hf_error_is_retriable  (const GError      *error);
gboolean       smelt_hf_client_sleep      (SmeltHfClient       *self,
                                           double               seconds,
                                           GCancellable        *cancellable,
                                           GError             **error);
double         smelt_hf_client_backoff    (SmeltHfClient       *self,
                                           guint                attempt);
guint          smelt_hf_client_get_max_wait (SmeltHfClient     *self);
guint          smelt_hf_client_get_timeout  (SmeltHfClient     *self);

/* The server's own words about a failure: X-Error-Message, the JSON
 * body's error/message, or the start of a text body; never the token */
char          *smelt_hf_reply_message     (SmeltHfClient       *self,
                                           SmeltHfReply        *reply);
const char    *smelt_hf_reply_error_code  (SmeltHfReply        *reply);
JsonNode      *smelt_hf_reply_json        (SmeltHfReply        *reply,
                                           GError             **error);

/* Removes the token from a text (a server could echo it) */
char          *smelt_hf_client_scrub      (SmeltHfClient       *self,
                                           const char          *text);
void           smelt_hf_client_scrub_error (SmeltHfClient      *self,
                                            GError             *error);

/* A URL for messages: scheme, host and path, without the query string
 * (pre-signed storage URLs carry credentials there) */
char          *smelt_hf_url_for_humans    (const char          *url);

G_END_DECLS
