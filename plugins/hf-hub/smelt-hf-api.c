/* smelt-hf-api.c: the Hub's upload protocol, one call at a time
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <string.h>

#include "smelt-hf-api.h"

/* Every call here follows ../shared/reference/hub.md, which was read from
 * huggingface_hub (hf_api.py, _commit_api.py, lfs.py) and huggingface.js:
 * the URLs, bodies, headers and status codes are the real Hub's. */

#define LFS_JSON "application/vnd.git-lfs+json"
#define BATCH_MAX 256   /* files per preupload call and objects per LFS batch, as Python */

/* ---- the repo ---- */

SmeltHfRepo *
smelt_hf_repo_new (SmeltHfClient *client,
                   const char    *repo_id,
                   const char    *repo_type,
                   const char    *revision,
                   gboolean       create_pr)
{
  SmeltHfRepo *repo = g_new0 (SmeltHfRepo, 1);
  const char *endpoint = smelt_hf_client_get_endpoint (client);
  const char *prefix = g_str_equal (repo_type, "dataset") ? "datasets/" : "";

  repo->client = client;
  repo->repo_id = g_strdup (repo_id);
  repo->repo_type = g_strdup (repo_type);
  repo->revision = g_strdup (revision);
  repo->create_pr = create_pr;
  repo->api_base = g_strdup_printf ("%s/api/%ss/%s", endpoint, repo_type, repo_id);
  repo->web_url = g_strdup_printf ("%s/%s%s", endpoint, prefix, repo_id);
  repo->lfs_batch = g_strdup_printf ("%s/%s%s.git/info/lfs/objects/batch", endpoint, prefix, repo_id);
  /* one path segment: refs/pr/3 travels as refs%2Fpr%2F3 */
  repo->rev_segment = g_uri_escape_string (revision, NULL, FALSE);
  repo->orgs = g_ptr_array_new_with_free_func (g_free);
  return repo;
}

void
smelt_hf_repo_free (SmeltHfRepo *repo)
{
  if (repo == NULL)
    return;
  g_free (repo->repo_id);
  g_free (repo->repo_type);
  g_free (repo->revision);
  g_free (repo->api_base);
  g_free (repo->web_url);
  g_free (repo->lfs_batch);
  g_free (repo->rev_segment);
  g_free (repo->account);
  g_free (repo->token_role);
  g_ptr_array_unref (repo->orgs);
  g_free (repo);
}

SmeltHfFile *
smelt_hf_file_new (SmeltHfStaged *staged)
{
  SmeltHfFile *f = g_new0 (SmeltHfFile, 1);

  f->staged = smelt_hf_staged_ref (staged);
  f->etags = g_ptr_array_new_with_free_func (g_free);
  f->part_hrefs = g_ptr_array_new_with_free_func (g_free);
  f->upload_headers = g_ptr_array_new_with_free_func (g_free);
  f->verify_headers = g_ptr_array_new_with_free_func (g_free);
  return f;
}

static void
file_clear_actions (SmeltHfFile *f)
{
  g_clear_pointer (&f->upload_href, g_free);
  g_clear_pointer (&f->verify_href, g_free);
  g_ptr_array_set_size (f->etags, 0);
  g_ptr_array_set_size (f->part_hrefs, 0);
  g_ptr_array_set_size (f->upload_headers, 0);
  g_ptr_array_set_size (f->verify_headers, 0);
  f->chunk_size = 0;
  f->stored = FALSE;
  f->expired = FALSE;
}

void
smelt_hf_file_free (SmeltHfFile *f)
{
  if (f == NULL)
    return;
  file_clear_actions (f);
  g_ptr_array_unref (f->etags);
  g_ptr_array_unref (f->part_hrefs);
  g_ptr_array_unref (f->upload_headers);
  g_ptr_array_unref (f->verify_headers);
  g_free (f->skip_reason);
  smelt_hf_staged_unref (f->staged);
  g_free (f);
}

void
smelt_hf_revision_free (SmeltHfRevision *rev)
{
  if (rev == NULL)
    return;
  g_free (rev->sha);
  g_clear_pointer (&rev->files, g_hash_table_unref);
  g_free (rev);
}

void
smelt_hf_commit_result_clear (SmeltHfCommitResult *result)
{
  g_clear_pointer (&result->oid, g_free);
  g_clear_pointer (&result->url, g_free);
  g_clear_pointer (&result->pr_url, g_free);
}

/* ---- small JSON helpers ---- */

static const char *
member_string (JsonObject *obj,
               const char *name)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : NULL;

  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
    ? json_node_get_string (n) : NULL;
}

static JsonObject *
member_object (JsonObject *obj,
               const char *name)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : NULL;

  return n && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

static JsonArray *
member_array (JsonObject *obj,
              const char *name)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : NULL;

  return n && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

static gboolean
member_int (JsonObject *obj,
            const char *name,
            gint64     *value)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : NULL;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return FALSE;
  *value = json_node_get_int (n);
  return TRUE;
}

static gboolean
member_bool (JsonObject *obj,
             const char *name,
             gboolean    fallback)
{
  JsonNode *n = obj ? json_object_get_member (obj, name) : NULL;

  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    return fallback;
  return json_node_get_boolean (n);
}

static GBytes *
json_bytes (JsonBuilder *b)
{
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  gsize len;
  char *text;

  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, &len);
  return g_bytes_new_take (text, len);
}

/* Parses a 2xx reply's JSON object. */
static JsonNode *
reply_object (SmeltHfReply *reply,
              const char   *step,
              GError      **error)
{
  JsonNode *root = smelt_hf_reply_json (reply, error);

  if (root && !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the Hub's reply to %s is not a JSON object", reply->what, step);
      json_node_unref (root);
      return NULL;
    }
  if (root == NULL)
    g_prefix_error (error, "%s: ", step);
  return root;
}

static gboolean
is_2xx (SmeltHfReply *reply)
{
  return reply->status >= 200 && reply->status < 300;
}

/* ---- errors ---- */

static char *
who (SmeltHfRepo *repo)
{
  return repo->account ? g_strdup_printf ("account “%s”", repo->account)
                       : g_strdup ("this token's account");
}

static char *
namespace_of (const char *repo_id)
{
  const char *slash = strchr (repo_id, '/');

  return slash ? g_strndup (repo_id, slash - repo_id) : g_strdup (repo_id);
}

/* A status the Hub answered, as an error that says what to do, naming the
 * repo (and never the token). */
GError *
smelt_hf_repo_http_error (SmeltHfRepo  *repo,
                          SmeltHfReply *reply,
                          const char   *step)
{
  g_autofree char *server = smelt_hf_reply_message (repo->client, reply);
  g_autofree char *account = who (repo);
  g_autofree char *ns = namespace_of (repo->repo_id);
  g_autofree char *detail = server ? g_strdup_printf (": %s", server) : g_strdup ("");
  const char *code = smelt_hf_reply_error_code (reply);
  const char *src = smelt_hf_client_get_token_source (repo->client);
  gboolean bad_token = server && strstr (server, "Invalid credentials") != NULL;
  GError *error;

  if (reply->status == 401 && (bad_token || g_str_equal (step, "whoami")))
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                         "%s: the Hub rejected the token from %s (HTTP 401%s): it is invalid, "
                         "expired or revoked. Set HF_TOKEN to a write token, or log in again with "
                         "“hf auth login”", repo->repo_id, src ? src : "?", detail);
  else if (code && g_str_equal (code, "RevisionNotFound"))
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                         "%s: the branch “%s” does not exist (HTTP %u%s); create it on the Hub "
                         "first, or set Revision to an existing branch", repo->repo_id,
                         repo->revision, reply->status, detail);
  else if (reply->status == 404 || reply->status == 401 ||
           (code && g_str_equal (code, "RepoNotFound")))
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                         "%s: the %s repo does not exist, or %s cannot see it (HTTP %u during %s%s)",
                         repo->repo_id, repo->repo_type, account, reply->status, step, detail);
  else if (reply->status == 403)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                         "%s: %s may not write to this repo (HTTP 403 during %s%s). The token "
                         "from %s needs write access to “%s”: a write token, or a fine-grained "
                         "one with repo write permission there", repo->repo_id, account, step,
                         detail, src ? src : "?", ns);
  else if (reply->status == 412)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_WRONG_ETAG,
                         "%s: the branch “%s” moved while this export was uploading: its head is "
                         "no longer the commit the upload started from (HTTP 412%s). Nothing was "
                         "committed; run the export again (uploaded files are not sent twice)",
                         repo->repo_id, repo->revision, detail);
  else if (reply->status == 429)
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_BUSY,
                         "%s: the Hub's rate limit stopped %s (HTTP 429%s); wait a few minutes "
                         "and run the export again", repo->repo_id, step, detail);
  else
    error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s failed: HTTP %u%s (%s)",
                         repo->repo_id, step, reply->status, detail, reply->what);
  smelt_hf_client_scrub_error (repo->client, error);
  return error;
}

static gboolean
fail_reply (SmeltHfRepo  *repo,
            SmeltHfReply *reply,
            const char   *step,
            GError      **error)
{
  g_propagate_error (error, smelt_hf_repo_http_error (repo, reply, step));
  return FALSE;
}

/* ---- whoami ---- */

gboolean
smelt_hf_whoami (SmeltHfRepo   *repo,
                 SoupSession   *session,
                 GCancellable  *cancellable,
                 GError       **error)
{
  g_autofree char *url = g_strdup_printf ("%s/api/whoami-v2", smelt_hf_client_get_endpoint (repo->client));
  g_autoptr(SmeltHfReply) reply = NULL;
  g_autoptr(JsonNode) root = NULL;
  JsonObject *obj, *auth, *token;
  JsonArray *orgs;
  const char *name;

  reply = smelt_hf_client_request (repo->client, session, "GET", url, NULL, "application/json",
                                   SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    return FALSE;
  if (!is_2xx (reply))
    return fail_reply (repo, reply, "whoami", error);
  root = reply_object (reply, "whoami", error);
  if (root == NULL)
    return FALSE;
  obj = json_node_get_object (root);
  name = member_string (obj, "name");
  if (name == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the Hub's whoami reply names no account", reply->what);
      return FALSE;
    }
  g_free (repo->account);
  repo->account = g_strdup (name);
  g_ptr_array_set_size (repo->orgs, 0);
  orgs = member_array (obj, "orgs");
  for (guint i = 0; orgs && i < json_array_get_length (orgs); i++)
    {
      JsonNode *o = json_array_get_element (orgs, i);
      const char *org = JSON_NODE_HOLDS_OBJECT (o) ? member_string (json_node_get_object (o), "name") : NULL;
      const char *role = JSON_NODE_HOLDS_OBJECT (o) ? member_string (json_node_get_object (o), "roleInOrg") : NULL;

      /* a member with the read role cannot push to the organization */
      if (org && g_strcmp0 (role, "read") != 0)
        g_ptr_array_add (repo->orgs, g_strdup (org));
    }
  auth = member_object (obj, "auth");
  token = member_object (auth, "accessToken");
  g_free (repo->token_role);
  repo->token_role = g_strdup (member_string (token, "role"));
  return TRUE;
}

/* Before computing anything: a token that cannot write where the repo
 * goes fails now, naming the account, not after an hour of quantizing.
 * (Uploads landing in the wrong account is a classic: the namespace is
 * always explicit, and checked against the token's account.) */
gboolean
smelt_hf_check_namespace (SmeltHfRepo  *repo,
                          GError      **error)
{
  g_autofree char *ns = namespace_of (repo->repo_id);
  const char *src = smelt_hf_client_get_token_source (repo->client);

  if (g_strcmp0 (repo->token_role, "read") == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   "%s: the token from %s (account “%s”) is a read-only token; uploading needs a "
                   "write token (https://huggingface.co/settings/tokens)", repo->repo_id, src,
                   repo->account);
      return FALSE;
    }
  /* anyone may open a pull request on a public repo */
  if (repo->create_pr || g_str_equal (ns, repo->account))
    return TRUE;
  for (guint i = 0; i < repo->orgs->len; i++)
    if (g_str_equal (ns, g_ptr_array_index (repo->orgs, i)))
      return TRUE;
  {
    g_autofree char *list = NULL;

    g_ptr_array_add (repo->orgs, NULL);
    list = g_strjoinv (", ", (char **) repo->orgs->pdata);
    g_ptr_array_remove_index (repo->orgs, repo->orgs->len - 1);
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                 "%s: the token from %s belongs to account “%s”, which cannot write to “%s”: it "
                 "is neither that account nor one of its organizations with write access (%s%s). "
                 "Use a token of an account that can, or push to %s/…, or set CreatePR=true to "
                 "propose the change", repo->repo_id, src, repo->account, ns,
                 *list ? "organizations: " : "no organizations", list, repo->account);
  }
  return FALSE;
}

/* ---- create ---- */

static gboolean
repo_exists (SmeltHfRepo   *repo,
             SoupSession   *session,
             GCancellable  *cancellable)
{
  g_autoptr(SmeltHfReply) reply =
    smelt_hf_client_request (repo->client, session, "GET", repo->api_base, NULL, "application/json",
                             SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, NULL);

  return reply && reply->status == 200;
}

gboolean
smelt_hf_create_repo (SmeltHfRepo   *repo,
                      SoupSession   *session,
                      gboolean       set_private,
                      gboolean       is_private,
                      gboolean      *created,
                      GCancellable  *cancellable,
                      GError       **error)
{
  g_autofree char *url = g_strdup_printf ("%s/api/repos/create", smelt_hf_client_get_endpoint (repo->client));
  g_autofree char *ns = namespace_of (repo->repo_id);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;
  SmeltHfBody req = { 0, };

  *created = FALSE;
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, strchr (repo->repo_id, '/') + 1);
  json_builder_set_member_name (b, "organization");
  json_builder_add_string_value (b, ns);
  /* Python leaves the type out for models */
  if (!g_str_equal (repo->repo_type, "model"))
    {
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, repo->repo_type);
    }
  /* unset: the namespace's default visibility (some organizations make
   * every new repo private) */
  if (set_private)
    {
      json_builder_set_member_name (b, "private");
      json_builder_add_boolean_value (b, is_private);
    }
  json_builder_end_object (b);
  body = json_bytes (b);
  req.bytes = body;
  req.content_type = "application/json";

  for (guint n = 0;; n++)
    {
      g_autoptr(SmeltHfReply) reply =
        smelt_hf_client_request (repo->client, session, "POST", url, &req, "application/json",
                                 SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
      g_autofree char *server = NULL;

      if (reply == NULL)
        return FALSE;
      if (is_2xx (reply))
        {
          *created = TRUE;
          return TRUE;
        }
      server = smelt_hf_reply_message (repo->client, reply);
      if (reply->status == 409 && server && strstr (server, "conflicting operation") && n < 10)
        {
          /* another creation by the same user is in flight: the Hub asks to retry */
          if (!smelt_hf_client_sleep (repo->client, 1.0, cancellable, error))
            return FALSE;
          continue;
        }
      if (reply->status == 409)
        return TRUE;   /* exists: fine */
      /* A token may lack the right to create repos but still write to an
       * existing one (huggingface_hub#2955): look before failing. */
      if ((reply->status == 401 || reply->status == 402 || reply->status == 403) &&
          repo_exists (repo, session, cancellable))
        return TRUE;
      return fail_reply (repo, reply, "repo creation", error);
    }
}

/* ---- what is there ---- */

SmeltHfRevision *
smelt_hf_get_revision (SmeltHfRepo   *repo,
                       SoupSession   *session,
                       GCancellable  *cancellable,
                       GError       **error)
{
  g_autofree char *url = g_strdup_printf ("%s/revision/%s", repo->api_base, repo->rev_segment);
  g_autoptr(SmeltHfReply) reply = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(SmeltHfRevision) rev = g_new0 (SmeltHfRevision, 1);
  JsonObject *obj;
  JsonArray *siblings;
  JsonNode *priv;

  reply = smelt_hf_client_request (repo->client, session, "GET", url, NULL, "application/json",
                                   SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    return NULL;
  if (!is_2xx (reply))
    {
      fail_reply (repo, reply, "reading the branch head", error);
      return NULL;
    }
  root = reply_object (reply, "the revision info", error);
  if (root == NULL)
    return NULL;
  obj = json_node_get_object (root);
  rev->sha = g_strdup (member_string (obj, "sha"));
  priv = json_object_get_member (obj, "private");
  if (priv && JSON_NODE_HOLDS_VALUE (priv) && json_node_get_value_type (priv) == G_TYPE_BOOLEAN)
    {
      rev->has_private = TRUE;
      rev->is_private = json_node_get_boolean (priv);
    }
  rev->files = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  siblings = member_array (obj, "siblings");
  for (guint i = 0; siblings && i < json_array_get_length (siblings); i++)
    {
      JsonNode *s = json_array_get_element (siblings, i);
      JsonObject *so = JSON_NODE_HOLDS_OBJECT (s) ? json_node_get_object (s) : NULL;
      const char *name = member_string (so, "rfilename");
      JsonObject *lfs = member_object (so, "lfs");
      const char *oid = member_string (lfs, "sha256");

      if (name)
        g_hash_table_insert (rev->files, g_strdup (name), g_strdup (oid ? oid : ""));
    }
  if (rev->sha == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the Hub did not say which commit “%s” points at", repo->repo_id, repo->revision);
      return NULL;
    }
  return g_steal_pointer (&rev);
}

GBytes *
smelt_hf_download (SmeltHfRepo   *repo,
                   SoupSession   *session,
                   const char    *path,
                   GCancellable  *cancellable,
                   GError       **error)
{
  g_autofree char *escaped = g_uri_escape_string (path, "/", FALSE);
  g_autofree char *url = g_strdup_printf ("%s/resolve/%s/%s", repo->web_url, repo->rev_segment, escaped);
  g_autoptr(SmeltHfReply) reply = NULL;

  /* The Hub answers resolve with a redirect: a relative one to its own
   * resolve cache for a regular file, one to storage for an LFS file.
   * They are followed here, a few at most; the client only ever adds the
   * token for the endpoint's own origin. */
  for (guint hops = 0;; hops++)
    {
      const char *location;
      char *next;

      g_clear_pointer (&reply, smelt_hf_reply_free);
      reply = smelt_hf_client_request (repo->client, session, "GET", url, NULL, NULL,
                                       SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
      if (reply == NULL)
        return NULL;
      location = soup_message_headers_get_one (reply->headers, "Location");
      if (!SOUP_STATUS_IS_REDIRECTION (reply->status) || location == NULL || hops >= 5)
        break;
      next = g_uri_resolve_relative (url, location, SOUP_HTTP_URI_FLAGS, NULL);
      if (next == NULL)
        break;
      g_free (url);
      url = next;
    }
  if (reply->status != 200)
    {
      fail_reply (repo, reply, path, error);
      return NULL;
    }
  return g_bytes_ref (reply->body);
}

/* Fails before gigabytes are sent when README.md's metadata would make
 * the commit fail (the Hub validates it at commit). A Hub without the
 * endpoint (a self-hosted one) is taken at its word. */
gboolean
smelt_hf_validate_yaml (SmeltHfRepo   *repo,
                        SoupSession   *session,
                        GBytes        *readme,
                        GCancellable  *cancellable,
                        GError       **error)
{
  g_autofree char *url = g_strdup_printf ("%s/api/validate-yaml", smelt_hf_client_get_endpoint (repo->client));
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;
  g_autoptr(SmeltHfReply) reply = NULL;
  g_autofree char *text = g_strndup (g_bytes_get_data (readme, NULL), g_bytes_get_size (readme));
  SmeltHfBody req = { 0, };

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "content");
  json_builder_add_string_value (b, text);
  json_builder_set_member_name (b, "repoType");
  json_builder_add_string_value (b, repo->repo_type);
  json_builder_end_object (b);
  body = json_bytes (b);
  req.bytes = body;
  req.content_type = "application/json";
  reply = smelt_hf_client_request (repo->client, session, "POST", url, &req, "application/json",
                                   SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    return FALSE;
  if (is_2xx (reply) || reply->status == 404 || reply->status == 405 || reply->status == 501)
    return TRUE;
  if (reply->status == 400 || reply->status == 422)
    {
      g_autofree char *server = smelt_hf_reply_message (repo->client, reply);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the Hub rejects the metadata of README.md: %s (set ModelCard to a card of "
                   "your own, or GenerateCard=false)", repo->repo_id, server ? server : "no reason given");
      return FALSE;
    }
  return fail_reply (repo, reply, "README.md validation", error);
}

/* ---- preupload: which files go through LFS ---- */

static void
git_blob_sha1 (GBytes *content,
               char    hex[41])
{
  g_autoptr(GChecksum) c = g_checksum_new (G_CHECKSUM_SHA1);
  g_autofree char *head = g_strdup_printf ("blob %" G_GSIZE_FORMAT, g_bytes_get_size (content));

  g_checksum_update (c, (const guchar *) head, strlen (head) + 1);   /* with its NUL */
  g_checksum_update (c, g_bytes_get_data (content, NULL), g_bytes_get_size (content));
  g_strlcpy (hex, g_checksum_get_string (c), 41);
}

static GBytes *
read_staged (SmeltHfStaged  *s,
             GError        **error)
{
  char *data = NULL;
  gsize len = 0;

  if (!g_file_get_contents (s->local, &data, &len, error))
    return NULL;
  if (len != s->size)
    {
      g_free (data);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%s: the staged copy of %s changed size since it was written", s->local, s->path);
      return NULL;
    }
  return g_bytes_new_take (data, len);
}

static gboolean
preupload_batch (SmeltHfRepo   *repo,
                 SoupSession   *session,
                 GPtrArray     *files,
                 guint          first,
                 guint          n,
                 GCancellable  *cancellable,
                 GError       **error)
{
  g_autofree char *url = g_strdup_printf ("%s/preupload/%s%s", repo->api_base, repo->rev_segment,
                                          repo->create_pr ? "?create_pr=1" : "");
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;
  g_autoptr(SmeltHfReply) reply = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GHashTable) by_path = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GHashTable) answered = g_hash_table_new (g_str_hash, g_str_equal);
  JsonArray *answers;
  SmeltHfBody req = { 0, };

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "files");
  json_builder_begin_array (b);
  for (guint i = first; i < first + n; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);
      g_autofree char *sample = g_base64_encode (f->staged->sample, f->staged->sample_len);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, f->staged->path);
      json_builder_set_member_name (b, "sample");
      json_builder_add_string_value (b, sample);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, (gint64) f->staged->size);
      json_builder_end_object (b);
      g_hash_table_insert (by_path, f->staged->path, f);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  body = json_bytes (b);
  req.bytes = body;
  req.content_type = "application/json";

  reply = smelt_hf_client_request (repo->client, session, "POST", url, &req, "application/json",
                                   SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    return FALSE;
  if (!is_2xx (reply))
    return fail_reply (repo, reply, "preupload", error);
  root = reply_object (reply, "preupload", error);
  if (root == NULL)
    return FALSE;
  answers = member_array (json_node_get_object (root), "files");
  for (guint i = 0; answers && i < json_array_get_length (answers); i++)
    {
      JsonNode *a = json_array_get_element (answers, i);
      JsonObject *ao = JSON_NODE_HOLDS_OBJECT (a) ? json_node_get_object (a) : NULL;
      const char *path = member_string (ao, "path");
      const char *mode = member_string (ao, "uploadMode");
      const char *oid = member_string (ao, "oid");
      SmeltHfFile *f = path ? g_hash_table_lookup (by_path, path) : NULL;

      if (f == NULL)
        continue;
      if (g_strcmp0 (mode, "lfs") != 0 && g_strcmp0 (mode, "regular") != 0)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s: the Hub's preupload reply gives %s the upload mode “%s”, not lfs or regular",
                       repo->repo_id, path, mode ? mode : "(none)");
          return FALSE;
        }
      /* an empty file always goes as a regular file: storage refuses an
       * empty PUT (Python does the same) */
      f->lfs = g_str_equal (mode, "lfs") && f->staged->size > 0;
      if (member_bool (ao, "shouldIgnore", FALSE))
        {
          f->skip = TRUE;
          f->skip_reason = g_strdup ("ignored by the repo's .gitignore");
        }
      else if (oid != NULL)
        {
          /* the path exists: unchanged content need not be committed */
          if (f->lfs && g_ascii_strcasecmp (oid, f->staged->sha256) == 0)
            {
              f->skip = TRUE;
              f->skip_reason = g_strdup ("unchanged");
            }
          else if (!f->lfs)
            {
              g_autoptr(GBytes) content = read_staged (f->staged, error);
              char sha1[41];

              if (content == NULL)
                return FALSE;
              git_blob_sha1 (content, sha1);
              if (g_ascii_strcasecmp (oid, sha1) == 0)
                {
                  f->skip = TRUE;
                  f->skip_reason = g_strdup ("unchanged");
                }
            }
        }
      g_hash_table_add (answered, (gpointer) path);
      g_hash_table_add (answered, f->staged->path);
    }
  for (guint i = first; i < first + n; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);

      if (!g_hash_table_contains (answered, f->staged->path))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s: the Hub's preupload reply says nothing about %s", repo->repo_id,
                       f->staged->path);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
smelt_hf_preupload (SmeltHfRepo   *repo,
                    SoupSession   *session,
                    GPtrArray     *files,
                    GCancellable  *cancellable,
                    GError       **error)
{
  for (guint first = 0; first < files->len; first += BATCH_MAX)
    if (!preupload_batch (repo, session, files, first, MIN (BATCH_MAX, files->len - first),
                          cancellable, error))
      return FALSE;
  return TRUE;
}

/* ---- the LFS batch: where each object goes ---- */

static gboolean
parse_headers (JsonObject *header,
               GPtrArray  *out)
{
  GList *names = header ? json_object_get_members (header) : NULL;

  for (GList *l = names; l; l = l->next)
    {
      const char *v = member_string (header, l->data);

      if (v == NULL)
        continue;
      g_ptr_array_add (out, g_strdup (l->data));
      g_ptr_array_add (out, g_strdup (v));
    }
  g_list_free (names);
  return TRUE;
}

static gint
compare_part (gconstpointer a,
              gconstpointer b)
{
  guint64 x = *(const guint64 *) a, y = *(const guint64 *) b;

  return x < y ? -1 : x > y;
}

/* Multipart: header has chunk_size and one key per part, "1".."n" (or
 * zero-padded), whose values are the part URLs. */
static gboolean
parse_multipart (SmeltHfRepo  *repo,
                 SmeltHfFile  *f,
                 JsonObject   *header,
                 GError      **error)
{
  const char *cs = member_string (header, "chunk_size");
  g_autoptr(GArray) numbers = g_array_new (FALSE, FALSE, sizeof (guint64) * 2);
  GList *names = json_object_get_members (header);
  guint64 chunk, expected;
  char *end = NULL;

  chunk = cs ? g_ascii_strtoull (cs, &end, 10) : 0;
  if (cs == NULL || *end != '\0' || chunk == 0)
    {
      g_list_free (names);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the LFS batch gives %s an invalid chunk_size “%s”", repo->repo_id,
                   f->staged->path, cs ? cs : "");
      return FALSE;
    }
  for (GList *l = names; l; l = l->next)
    {
      const char *key = l->data;
      guint64 pair[2];

      if (g_str_equal (key, "chunk_size"))
        continue;
      pair[0] = g_ascii_strtoull (key, &end, 10);
      if (*key == '\0' || *end != '\0' || pair[0] == 0 || member_string (header, key) == NULL)
        continue;
      pair[1] = (guint64) (guintptr) key;
      g_array_append_vals (numbers, pair, 1);
    }
  g_array_sort (numbers, compare_part);
  expected = (f->staged->size + chunk - 1) / chunk;
  if (numbers->len != expected)
    {
      g_list_free (names);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the LFS batch splits %s (%" G_GUINT64_FORMAT " bytes) into %u parts of %"
                   G_GUINT64_FORMAT " bytes; %" G_GUINT64_FORMAT " were expected", repo->repo_id,
                   f->staged->path, f->staged->size, numbers->len, chunk, expected);
      return FALSE;
    }
  for (guint i = 0; i < numbers->len; i++)
    {
      guint64 *pair = &g_array_index (numbers, guint64, 2 * i);

      if (pair[0] != i + 1)
        {
          g_list_free (names);
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s: the LFS batch's part numbers for %s are not 1 to %u", repo->repo_id,
                       f->staged->path, numbers->len);
          return FALSE;
        }
      g_ptr_array_add (f->part_hrefs, g_strdup (member_string (header, (const char *) (guintptr) pair[1])));
    }
  g_list_free (names);
  f->chunk_size = chunk;
  return TRUE;
}

static gboolean
apply_object (SmeltHfRepo  *repo,
              SmeltHfFile  *f,
              JsonObject   *o,
              GError      **error)
{
  JsonObject *err = member_object (o, "error");
  JsonObject *actions = member_object (o, "actions");
  JsonObject *upload = member_object (actions, "upload");
  JsonObject *verify = member_object (actions, "verify");
  JsonObject *header = member_object (upload, "header");
  gint64 size = -1;

  file_clear_actions (f);
  if (err != NULL)
    {
      gint64 code = 0;

      member_int (err, "code", &code);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%s: the Hub refuses to store %s (LFS error %" G_GINT64_FORMAT ": %s)", repo->repo_id,
                   f->staged->path, code, member_string (err, "message") ? member_string (err, "message") : "?");
      smelt_hf_client_scrub_error (repo->client, *error);
      return FALSE;
    }
  if (!member_int (o, "size", &size) || (guint64) size != f->staged->size)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the LFS batch answers for %s with a size other than its %" G_GUINT64_FORMAT " bytes",
                   repo->repo_id, f->staged->path, f->staged->size);
      return FALSE;
    }
  if (upload == NULL)
    {
      /* the Hub has this object: a resumed export does not send it again */
      f->stored = TRUE;
      return TRUE;
    }
  if (member_string (upload, "href") == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the LFS batch gives %s an upload action without href", repo->repo_id,
                   f->staged->path);
      return FALSE;
    }
  f->upload_href = g_strdup (member_string (upload, "href"));
  if (header && json_object_has_member (header, "chunk_size"))
    {
      if (!parse_multipart (repo, f, header, error))
        return FALSE;
    }
  else
    parse_headers (header, f->upload_headers);
  if (verify && member_string (verify, "href"))
    {
      f->verify_href = g_strdup (member_string (verify, "href"));
      parse_headers (member_object (verify, "header"), f->verify_headers);
    }
  return TRUE;
}

static gboolean
batch_call (SmeltHfRepo   *repo,
            SoupSession   *session,
            GPtrArray     *objects,      /* SmeltHfFile, one per oid */
            GHashTable    *by_oid,       /* oid -> GPtrArray of SmeltHfFile */
            GCancellable  *cancellable,
            GError       **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;
  g_autoptr(SmeltHfReply) reply = NULL;
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  JsonArray *answers;
  SmeltHfBody req = { 0, };

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "operation");
  json_builder_add_string_value (b, "upload");
  json_builder_set_member_name (b, "transfers");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, "basic");
  json_builder_add_string_value (b, "multipart");
  json_builder_end_array (b);
  json_builder_set_member_name (b, "objects");
  json_builder_begin_array (b);
  for (guint i = 0; i < objects->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (objects, i);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "oid");
      json_builder_add_string_value (b, f->staged->sha256);
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, (gint64) f->staged->size);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "hash_algo");
  json_builder_add_string_value (b, "sha256");
  /* no ref for a pull request: a user without write access to the
   * branch may still open one (as Python) */
  if (!repo->create_pr)
    {
      json_builder_set_member_name (b, "ref");
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, repo->revision);
      json_builder_end_object (b);
    }
  json_builder_end_object (b);
  body = json_bytes (b);
  req.bytes = body;
  req.content_type = LFS_JSON;

  reply = smelt_hf_client_request (repo->client, session, "POST", repo->lfs_batch, &req, LFS_JSON,
                                   SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    return FALSE;
  if (!is_2xx (reply))
    return fail_reply (repo, reply, "the LFS batch request", error);
  root = reply_object (reply, "the LFS batch request", error);
  if (root == NULL)
    return FALSE;
  answers = member_array (json_node_get_object (root), "objects");
  for (guint i = 0; answers && i < json_array_get_length (answers); i++)
    {
      JsonNode *a = json_array_get_element (answers, i);
      JsonObject *ao = JSON_NODE_HOLDS_OBJECT (a) ? json_node_get_object (a) : NULL;
      const char *oid = member_string (ao, "oid");
      GPtrArray *same = oid ? g_hash_table_lookup (by_oid, oid) : NULL;

      if (same == NULL)
        continue;
      /* the first file with this content carries the upload; the others
       * point at the same object */
      if (!apply_object (repo, g_ptr_array_index (same, 0), ao, error))
        return FALSE;
      for (guint k = 1; k < same->len; k++)
        ((SmeltHfFile *) g_ptr_array_index (same, k))->stored = TRUE;
      g_hash_table_add (seen, (gpointer) ((SmeltHfFile *) g_ptr_array_index (same, 0))->staged->sha256);
    }
  for (guint i = 0; i < objects->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (objects, i);

      if (!g_hash_table_contains (seen, f->staged->sha256))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s: the LFS batch reply says nothing about %s (oid %s)", repo->repo_id,
                       f->staged->path, f->staged->sha256);
          return FALSE;
        }
    }
  return TRUE;
}

/* Asks where to send every LFS file of @files that is not skipped (or,
 * on a second call, only those marked expired). */
gboolean
smelt_hf_lfs_batch (SmeltHfRepo   *repo,
                    SoupSession   *session,
                    GPtrArray     *files,
                    GCancellable  *cancellable,
                    GError       **error)
{
  g_autoptr(GHashTable) by_oid = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                                        (GDestroyNotify) g_ptr_array_unref);
  g_autoptr(GPtrArray) objects = g_ptr_array_new ();
  gboolean only_expired = FALSE;

  for (guint i = 0; i < files->len; i++)
    only_expired |= ((SmeltHfFile *) g_ptr_array_index (files, i))->expired;
  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);
      GPtrArray *same;

      if (!f->lfs || f->skip || (only_expired && !f->expired))
        continue;
      same = g_hash_table_lookup (by_oid, f->staged->sha256);
      if (same == NULL)
        {
          same = g_ptr_array_new ();
          g_hash_table_insert (by_oid, f->staged->sha256, same);
          g_ptr_array_add (objects, f);
        }
      g_ptr_array_add (same, f);
    }
  for (guint first = 0; first < objects->len; first += BATCH_MAX)
    {
      g_autoptr(GPtrArray) chunk = g_ptr_array_new ();

      for (guint i = first; i < MIN (objects->len, first + BATCH_MAX); i++)
        g_ptr_array_add (chunk, g_ptr_array_index (objects, i));
      if (!batch_call (repo, session, chunk, by_oid, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- after the bytes ---- */

static gboolean
storage_post (SmeltHfRepo   *repo,
              SoupSession   *session,
              const char    *url,
              GBytes        *body,
              GPtrArray     *headers,
              SmeltHfRequestFlags flags,
              const char    *step,
              SmeltHfFile   *f,
              GCancellable  *cancellable,
              GError       **error)
{
  g_autoptr(SmeltHfReply) reply = NULL;
  SmeltHfBody req = { body, LFS_JSON, NULL, 0, 0, NULL, headers };

  reply = smelt_hf_client_request (repo->client, session, "POST", url, &req, LFS_JSON,
                                   flags | SMELT_HF_REQUEST_RETRY, cancellable, error);
  if (reply == NULL)
    {
      g_prefix_error (error, "%s: %s of %s: ", repo->repo_id, step, f->staged->path);
      return FALSE;
    }
  if (!is_2xx (reply))
    {
      g_autofree char *server = smelt_hf_reply_message (repo->client, reply);

      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s of %s failed: HTTP %u%s%s (%s)",
                   repo->repo_id, step, f->staged->path, reply->status, server ? ": " : "",
                   server ? server : "", reply->what);
      smelt_hf_client_scrub_error (repo->client, *error);
      return FALSE;
    }
  return TRUE;
}

/* The completion URL is signed: it gets the two LFS content types and no
 * token (as Python's _upload_parts_iteratively). */
gboolean
smelt_hf_complete_multipart (SmeltHfRepo   *repo,
                             SoupSession   *session,
                             SmeltHfFile   *f,
                             GCancellable  *cancellable,
                             GError       **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "oid");
  json_builder_add_string_value (b, f->staged->sha256);
  json_builder_set_member_name (b, "parts");
  json_builder_begin_array (b);
  for (guint i = 0; i < f->etags->len; i++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "partNumber");
      json_builder_add_int_value (b, i + 1);
      json_builder_set_member_name (b, "etag");
      json_builder_add_string_value (b, g_ptr_array_index (f->etags, i));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  body = json_bytes (b);
  return storage_post (repo, session, f->upload_href, body, NULL, SMELT_HF_REQUEST_NONE,
                       "completing the multipart upload", f, cancellable, error);
}

gboolean
smelt_hf_verify (SmeltHfRepo   *repo,
                 SoupSession   *session,
                 SmeltHfFile   *f,
                 GCancellable  *cancellable,
                 GError       **error)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(GBytes) body = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "oid");
  json_builder_add_string_value (b, f->staged->sha256);
  json_builder_set_member_name (b, "size");
  json_builder_add_int_value (b, (gint64) f->staged->size);
  json_builder_end_object (b);
  body = json_bytes (b);
  /* the token only if the verify URL is the Hub's own (the client checks) */
  return storage_post (repo, session, f->verify_href, body, f->verify_headers, SMELT_HF_REQUEST_AUTH,
                       "verifying the upload", f, cancellable, error);
}

/* ---- the commit ---- */

static void
append_line (GString     *out,
             const char  *key,
             JsonBuilder *value_builder)
{
  g_autoptr(JsonNode) value = json_builder_get_root (value_builder);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "key");
  json_builder_add_string_value (b, key);
  json_builder_set_member_name (b, "value");
  json_builder_add_value (b, g_steal_pointer (&value));
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = json_to_string (root, FALSE);
  g_string_append (out, text);
  g_string_append_c (out, '\n');
}

/* NDJSON, one object per line, every line ending in \n as Python sends:
 * the header, then a "file" line (base64) per regular file, an "lfsFile"
 * line per LFS file and a "deletedFile" line per stale file. */
GBytes *
smelt_hf_commit_payload (SmeltHfRepo  *repo,
                         GPtrArray    *files,
                         GPtrArray    *deleted,
                         const char   *summary,
                         const char   *description,
                         const char   *parent,
                         GError      **error)
{
  GString *out = g_string_new (NULL);

  {
    g_autoptr(JsonBuilder) b = json_builder_new ();

    json_builder_begin_object (b);
    json_builder_set_member_name (b, "summary");
    json_builder_add_string_value (b, summary);
    json_builder_set_member_name (b, "description");
    json_builder_add_string_value (b, description ? description : "");
    if (parent)
      {
        json_builder_set_member_name (b, "parentCommit");
        json_builder_add_string_value (b, parent);
      }
    json_builder_end_object (b);
    append_line (out, "header", b);
  }
  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);
      g_autoptr(JsonBuilder) b = json_builder_new ();

      if (f->skip)
        continue;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, f->staged->path);
      if (f->lfs)
        {
          json_builder_set_member_name (b, "algo");
          json_builder_add_string_value (b, "sha256");
          json_builder_set_member_name (b, "oid");
          json_builder_add_string_value (b, f->staged->sha256);
          json_builder_set_member_name (b, "size");
          json_builder_add_int_value (b, (gint64) f->staged->size);
          json_builder_end_object (b);
          append_line (out, "lfsFile", b);
        }
      else
        {
          g_autoptr(GBytes) content = read_staged (f->staged, error);
          g_autofree char *b64 = NULL;

          if (content == NULL)
            {
              g_string_free (out, TRUE);
              return NULL;
            }
          b64 = g_base64_encode (g_bytes_get_data (content, NULL), g_bytes_get_size (content));
          json_builder_set_member_name (b, "content");
          json_builder_add_string_value (b, b64);
          json_builder_set_member_name (b, "encoding");
          json_builder_add_string_value (b, "base64");
          json_builder_end_object (b);
          append_line (out, "file", b);
        }
    }
  for (guint i = 0; deleted && i < deleted->len; i++)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "path");
      json_builder_add_string_value (b, g_ptr_array_index (deleted, i));
      json_builder_end_object (b);
      append_line (out, "deletedFile", b);
    }
  return g_string_free_to_bytes (out);
}

static gboolean
parse_commit_reply (SmeltHfRepo          *repo,
                    SmeltHfReply         *reply,
                    SmeltHfCommitResult  *result,
                    GError              **error)
{
  g_autoptr(JsonNode) root = reply_object (reply, "the commit", error);
  JsonObject *obj;

  if (root == NULL)
    return FALSE;
  obj = json_node_get_object (root);
  smelt_hf_commit_result_clear (result);
  result->oid = g_strdup (member_string (obj, "commitOid"));
  result->url = g_strdup (member_string (obj, "commitUrl"));
  result->pr_url = g_strdup (member_string (obj, "pullRequestUrl"));
  if (result->url == NULL && result->oid != NULL)
    result->url = g_strdup_printf ("%s/commit/%s", repo->web_url, result->oid);
  if (result->oid == NULL && result->url == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: the Hub accepted the commit but did not say which commit it made", repo->repo_id);
      return FALSE;
    }
  return TRUE;
}

typedef enum {
  LANDED_NO,
  LANDED_YES,
  LANDED_UNKNOWN,
} Landed;

static JsonNode *
get_json (SmeltHfRepo   *repo,
          SoupSession   *session,
          const char    *url,
          GCancellable  *cancellable)
{
  g_autoptr(SmeltHfReply) reply =
    smelt_hf_client_request (repo->client, session, "GET", url, NULL, "application/json",
                             SMELT_HF_REQUEST_AUTH | SMELT_HF_REQUEST_RETRY, cancellable, NULL);

  if (reply == NULL || reply->status != 200)
    return NULL;
  return smelt_hf_reply_json (reply, NULL);
}

/* The PR refs that exist now (GET …/refs?include_prs=1), to tell after a
 * lost reply whether a new one is ours. */
static GHashTable *
pr_refs (SmeltHfRepo   *repo,
         SoupSession   *session,
         GCancellable  *cancellable)
{
  g_autofree char *url = g_strdup_printf ("%s/refs?include_prs=1", repo->api_base);
  g_autoptr(JsonNode) root = get_json (repo, session, url, cancellable);
  JsonArray *prs;
  GHashTable *set;

  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  prs = member_array (json_node_get_object (root), "pullRequests");
  if (prs == NULL)
    return NULL;
  set = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  for (guint i = 0; i < json_array_get_length (prs); i++)
    {
      JsonNode *p = json_array_get_element (prs, i);
      const char *ref = JSON_NODE_HOLDS_OBJECT (p) ? member_string (json_node_get_object (p), "ref") : NULL;

      if (ref)
        g_hash_table_add (set, g_strdup (ref));
    }
  return set;
}

/* The commits of @rev newest first, down to @parent: is one of them the
 * commit titled @summary? */
static Landed
find_commit (SmeltHfRepo   *repo,
             SoupSession   *session,
             const char    *rev_segment,
             const char    *summary,
             const char    *parent,
             char         **oid,
             GCancellable  *cancellable)
{
  g_autofree char *url = g_strdup_printf ("%s/commits/%s", repo->api_base, rev_segment);
  g_autoptr(JsonNode) root = get_json (repo, session, url, cancellable);
  JsonArray *commits;

  if (root == NULL || !JSON_NODE_HOLDS_ARRAY (root))
    return LANDED_UNKNOWN;
  commits = json_node_get_array (root);
  for (guint i = 0; i < json_array_get_length (commits); i++)
    {
      JsonNode *c = json_array_get_element (commits, i);
      JsonObject *co = JSON_NODE_HOLDS_OBJECT (c) ? json_node_get_object (c) : NULL;
      const char *id = member_string (co, "id");

      if (id == NULL || (parent && g_str_equal (id, parent)))
        break;
      if (g_strcmp0 (member_string (co, "title"), summary) == 0)
        {
          *oid = g_strdup (id);
          return LANDED_YES;
        }
    }
  return LANDED_NO;
}

/* After a reply was lost: did the commit land? A commit on a branch
 * landed if the branch moved and one of the commits since @parent is
 * ours; a pull request landed if a PR ref that was not there before
 * holds a commit titled like ours. */
static Landed
check_landed (SmeltHfRepo          *repo,
              SoupSession          *session,
              const char           *summary,
              const char           *parent,
              GHashTable           *prs_before,
              SmeltHfCommitResult  *result,
              GCancellable         *cancellable)
{
  g_autofree char *oid = NULL;

  if (!repo->create_pr)
    {
      g_autoptr(SmeltHfRevision) rev = smelt_hf_get_revision (repo, session, cancellable, NULL);
      Landed landed;

      if (rev == NULL)
        return LANDED_UNKNOWN;
      if (parent && g_str_equal (rev->sha, parent))
        return LANDED_NO;
      landed = find_commit (repo, session, repo->rev_segment, summary, parent, &oid, cancellable);
      if (landed == LANDED_YES)
        {
          smelt_hf_commit_result_clear (result);
          result->oid = g_steal_pointer (&oid);
          result->url = g_strdup_printf ("%s/commit/%s", repo->web_url, result->oid);
        }
      /* moved, but not by us: do not guess */
      return landed == LANDED_NO ? LANDED_UNKNOWN : landed;
    }
  else
    {
      g_autoptr(GHashTable) now = NULL;
      GHashTableIter iter;
      gpointer key;

      if (prs_before == NULL || (now = pr_refs (repo, session, cancellable)) == NULL)
        return LANDED_UNKNOWN;
      g_hash_table_iter_init (&iter, now);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        {
          const char *ref = key;
          g_autofree char *seg = NULL;

          if (g_hash_table_contains (prs_before, ref))
            continue;
          seg = g_uri_escape_string (ref, NULL, FALSE);
          if (find_commit (repo, session, seg, summary, parent, &oid, cancellable) == LANDED_YES)
            {
              const char *num = strrchr (ref, '/');

              smelt_hf_commit_result_clear (result);
              result->oid = g_steal_pointer (&oid);
              result->url = g_strdup_printf ("%s/commit/%s", repo->web_url, result->oid);
              if (num)
                result->pr_url = g_strdup_printf ("%s/discussions/%s", repo->web_url, num + 1);
              return LANDED_YES;
            }
        }
      return LANDED_NO;
    }
}

/* One commit for the whole export. The POST is not retried blindly: a
 * lost reply (dropped connection, timeout, 5xx) may hide a commit that
 * landed, and sending it again would commit twice (or open a second PR).
 * So after a lost reply the branch is read back; only if the commit is
 * certainly not there is it sent again. A 429 was refused before any
 * work, so it is retried after the wait the Hub asks for. */
gboolean
smelt_hf_commit (SmeltHfRepo          *repo,
                 SoupSession          *session,
                 GBytes               *payload,
                 const char           *summary,
                 const char           *parent,
                 SmeltHfCommitResult  *result,
                 GCancellable         *cancellable,
                 GError              **error)
{
  g_autofree char *url = g_strdup_printf ("%s/commit/%s%s", repo->api_base, repo->rev_segment,
                                          repo->create_pr ? "?create_pr=1" : "");
  g_autoptr(GHashTable) prs_before = repo->create_pr ? pr_refs (repo, session, cancellable) : NULL;
  SmeltHfBody req = { payload, "application/x-ndjson", NULL, 0, 0, NULL, NULL };
  double waited = 0;
  guint lost = 0;
  guint max_wait = smelt_hf_client_get_max_wait (repo->client);

  for (guint n = 0;; n++)
    {
      g_autoptr(GError) local = NULL;
      g_autoptr(SmeltHfReply) reply =
        smelt_hf_client_request (repo->client, session, "POST", url, &req, "application/json",
                                 SMELT_HF_REQUEST_AUTH, cancellable, &local);
      double delay;
      Landed landed;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      if (reply && is_2xx (reply))
        return parse_commit_reply (repo, reply, result, error);
      if (reply && reply->status == 429)
        {
          delay = smelt_hf_reply_retry_after (reply);
          if (delay < 0)
            delay = smelt_hf_client_backoff (repo->client, n);
          if (n >= 5 || waited + delay > max_wait)
            return fail_reply (repo, reply, "the commit", error);
          if (!smelt_hf_client_sleep (repo->client, delay, cancellable, error))
            return FALSE;
          waited += delay;
          continue;
        }
      if (reply && reply->status == 412 && lost > 0)
        {
          /* a commit whose reply was lost may have landed meanwhile */
          landed = check_landed (repo, session, summary, parent, prs_before, result, cancellable);
          if (landed == LANDED_YES)
            return TRUE;
        }
      if (reply && !smelt_hf_status_is_retriable (reply->status))
        return fail_reply (repo, reply, "the commit", error);
      if (reply == NULL && !smelt_hf_error_is_retriable (local))
        {
          g_propagate_error (error, g_steal_pointer (&local));
          g_prefix_error (error, "%s: the commit: ", repo->repo_id);
          return FALSE;
        }

      /* the reply was lost */
      lost++;
      delay = smelt_hf_client_backoff (repo->client, lost - 1);
      for (guint look = 0;; look++)
        {
          landed = check_landed (repo, session, summary, parent, prs_before, result, cancellable);
          /* the Hub sometimes finishes a commit after its reply timed out:
           * look once more after a pause before sending again */
          if (landed != LANDED_NO || look > 0)
            break;
          if (!smelt_hf_client_sleep (repo->client, delay, cancellable, error))
            return FALSE;
          waited += delay;
        }
      if (landed == LANDED_YES)
        return TRUE;
      if (landed == LANDED_UNKNOWN || lost > 3 || waited > max_wait)
        {
          g_autofree char *why = reply ? g_strdup_printf ("HTTP %u", reply->status)
                                       : g_strdup (local->message);

          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                       "%s: the reply to the commit was lost (%s) and whether the commit landed "
                       "on “%s” %s; look at %s/commits/%s before running the export again",
                       repo->repo_id, why, repo->revision,
                       landed == LANDED_UNKNOWN ? "cannot be told" : "is still unclear after retrying",
                       repo->web_url, repo->rev_segment);
          smelt_hf_client_scrub_error (repo->client, *error);
          return FALSE;
        }
      /* certainly not there: send it again (the parent commit in the
       * header makes a duplicate impossible: the Hub would answer 412) */
    }
}
