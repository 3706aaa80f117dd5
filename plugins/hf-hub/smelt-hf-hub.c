/* smelt-hf-hub.c: the hf-hub destination
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "smelt-hf-api.h"
#include "smelt-hf-card.h"
#include "smelt-hf-client.h"
#include "smelt-hf-stage.h"
#include "smelt-hf-token.h"
#include "smelt-hf-transfer.h"

/* Pushes an export to a Hugging Face Hub repo in one commit.
 *
 * Formats write into staged files in a private temporary folder; the
 * stream hashes every byte as it passes (SHA-256, size, the first 512
 * bytes), so at commit nothing is read back to hash. prepare() checks,
 * before any tensor is touched, that uploading is possible at all: not
 * offline, a token, and an account that may write to the repo's
 * namespace (whoami, called once). commit() then creates the repo if
 * needed (409: it exists), reads the branch head, asks which files go
 * through LFS (preupload), asks LFS storage where to send each object
 * (objects the Hub already holds are skipped, so a re-run after a failed
 * upload resumes), sends them several at a time, completes multipart
 * uploads and verifies, and makes a single commit with every file, a
 * model card and the removal of stale shards. The token only ever goes
 * to the endpoint's own origin and never appears in a message. */

typedef enum {
  SMELT_HF_REPO_TYPE_MODEL,
  SMELT_HF_REPO_TYPE_DATASET,
} SmeltHfRepoType;

static const GEnumValue repo_type_values[] = {
  { SMELT_HF_REPO_TYPE_MODEL, "SMELT_HF_REPO_TYPE_MODEL", "model" },
  { SMELT_HF_REPO_TYPE_DATASET, "SMELT_HF_REPO_TYPE_DATASET", "dataset" },
  { 0, NULL, NULL }
};

static GType
smelt_hf_repo_type_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltHfRepoType", repo_type_values));
  return type;
}

#define DEFAULT_ENDPOINT "https://huggingface.co"

#define SMELT_TYPE_HF_HUB (smelt_hf_hub_get_type ())
G_DECLARE_FINAL_TYPE (SmeltHfHub, smelt_hf_hub, SMELT, HF_HUB, SmeltDestination)

struct _SmeltHfHub
{
  SmeltDestination  parent_instance;

  /* options */
  char             *repo_id;
  SmeltHfRepoType   repo_type;
  gboolean          is_private;
  gboolean          private_set;
  char             *revision;
  gboolean          create_pr;
  char             *commit_message;
  char             *commit_description;
  char             *endpoint;
  char            **tags;
  char             *license;
  char             *base_model;
  char             *model_card;
  gboolean          generate_card;
  gboolean          verify;
  guint             connections;
  guint             retries;
  guint             max_retry_wait;
  guint             timeout;
  char             *staging_dir;
  gboolean          token_in_recipe;

  /* state */
  SmeltHfClient    *client;
  SmeltHfRepo      *repo;
  char             *staging;      /* our temporary folder */
  GPtrArray        *staged;       /* SmeltHfStaged */
  gboolean          committed;
  SmeltHfCommitResult result;
  char             *outcome;      /* for describe() after commit */
};

enum {
  PROP_0,
  PROP_REPO,
  PROP_REPO_TYPE,
  PROP_PRIVATE,
  PROP_REVISION,
  PROP_CREATE_PR,
  PROP_COMMIT_MESSAGE,
  PROP_COMMIT_DESCRIPTION,
  PROP_ENDPOINT,
  PROP_TAGS,
  PROP_LICENSE,
  PROP_BASE_MODEL,
  PROP_MODEL_CARD,
  PROP_GENERATE_CARD,
  PROP_VERIFY,
  PROP_CONNECTIONS,
  PROP_RETRIES,
  PROP_MAX_RETRY_WAIT,
  PROP_TIMEOUT,
  PROP_STAGING_DIR,
  PROP_TOKEN,
  PROP_COMMIT_URL,
  PROP_PULL_REQUEST_URL,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltHfHub, smelt_hf_hub, SMELT_TYPE_DESTINATION)

/* ---- staging ---- */

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    while ((name = g_dir_read_name (dir)))
      {
        g_autofree char *child = g_build_filename (path, name, NULL);

        if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
          remove_tree (child);
        else
          g_unlink (child);
      }
  g_rmdir (path);
}

static void
drop_staging (SmeltHfHub *self)
{
  g_ptr_array_set_size (self->staged, 0);
  if (self->staging)
    remove_tree (self->staging);
  g_clear_pointer (&self->staging, g_free);
}

static char *
default_staging_parent (void)
{
  return g_build_filename (g_get_user_cache_dir (), "smelt", "hf-hub", NULL);
}

/* A private folder for this upload's files: in the user's cache by
 * default, not /tmp, which is often a small tmpfs */
static gboolean
ensure_staging (SmeltHfHub  *self,
                GError     **error)
{
  g_autofree char *parent = NULL;
  g_autofree char *tmpl = NULL;

  if (self->staging)
    return TRUE;
  parent = self->staging_dir && *self->staging_dir ? g_strdup (self->staging_dir)
                                                   : default_staging_parent ();
  if (g_mkdir_with_parents (parent, 0700) != 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot create the staging folder: %s", parent, g_strerror (saved));
      return FALSE;
    }
  tmpl = g_build_filename (parent, "upload-XXXXXX", NULL);
  if (g_mkdtemp_full (tmpl, 0700) == NULL)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot create a staging folder: %s", parent, g_strerror (saved));
      return FALSE;
    }
  self->staging = g_steal_pointer (&tmpl);
  return TRUE;
}

static GOutputStream *
stage_file (SmeltHfHub     *self,
            const char     *path,
            SmeltHfStaged **out,
            GError        **error)
{
  g_autofree char *local = NULL;
  g_autofree char *dir = NULL;
  g_autoptr(SmeltHfStaged) staged = NULL;
  int fd;

  if (!ensure_staging (self, error))
    return NULL;
  local = g_build_filename (self->staging, path, NULL);
  dir = g_path_get_dirname (local);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot create: %s", dir, g_strerror (saved));
      return NULL;
    }
  fd = g_open (local, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                   "%s: cannot create the staged copy of %s: %s", local, path, g_strerror (saved));
      return NULL;
    }
  staged = smelt_hf_staged_new (path, local);
  g_ptr_array_add (self->staged, smelt_hf_staged_ref (staged));
  if (out)
    *out = smelt_hf_staged_ref (staged);
  return smelt_hf_stage_stream_new (fd, staged);
}

static gboolean
stage_bytes (SmeltHfHub  *self,
             const char  *path,
             GBytes      *content,
             GError     **error)
{
  g_autoptr(GOutputStream) out = stage_file (self, path, NULL, error);

  return out != NULL &&
         g_output_stream_write_all (out, g_bytes_get_data (content, NULL), g_bytes_get_size (content),
                                    NULL, NULL, error) &&
         g_output_stream_close (out, NULL, error);
}

static SmeltHfStaged *
find_staged (SmeltHfHub *self,
             const char *path)
{
  for (guint i = 0; i < self->staged->len; i++)
    {
      SmeltHfStaged *s = g_ptr_array_index (self->staged, i);

      if (g_str_equal (s->path, path))
        return s;
    }
  return NULL;
}

/* ---- options ---- */

/* huggingface_hub's validator (utils/_validators.py): 1 to 96 characters
 * of [A-Za-z0-9_.-] per part, no -- or .., no leading or trailing - or .,
 * no .git suffix. The namespace is required: a bare name would land in
 * whichever account the token belongs to. */
static gboolean
check_repo_part (const char  *part,
                 const char  *what,
                 const char  *repo,
                 GError     **error)
{
  gsize n = strlen (part);
  const char *why = NULL;

  if (n == 0 || n > 96)
    why = "must have 1 to 96 characters";
  else if (!g_regex_match_simple ("^[A-Za-z0-9_.-]+$", part, 0, 0))
    why = "may only hold letters, digits, _, . and -";
  else if (strstr (part, "--") || strstr (part, ".."))
    why = "may not contain -- or ..";
  else if (part[0] == '-' || part[0] == '.' || part[n - 1] == '-' || part[n - 1] == '.')
    why = "may not start or end with - or .";
  else if (g_str_has_suffix (part, ".git"))
    why = "may not end with .git";
  if (why == NULL)
    return TRUE;
  g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
               "Repo=%s: the %s “%s” %s", repo, what, part, why);
  return FALSE;
}

static gboolean
is_loopback (const char *host)
{
  return g_ascii_strcasecmp (host, "localhost") == 0 || g_str_has_prefix (host, "127.") ||
         g_str_equal (host, "::1") || g_str_equal (host, "[::1]");
}

static char *
effective_endpoint (SmeltHfHub *self)
{
  const char *e = self->endpoint && *self->endpoint ? self->endpoint : g_getenv ("HF_ENDPOINT");
  g_autofree char *copy = g_strdup (e && *e ? e : DEFAULT_ENDPOINT);
  gsize n = strlen (copy);

  while (n > 0 && copy[n - 1] == '/')
    copy[--n] = '\0';
  return g_steal_pointer (&copy);
}

/* The token travels in a header: only https, except to this machine. */
static gboolean
check_endpoint (const char  *endpoint,
                const char  *origin,
                GError     **error)
{
  g_autoptr(GUri) uri = g_uri_parse (endpoint, G_URI_FLAGS_NONE, NULL);
  const char *scheme = uri ? g_uri_get_scheme (uri) : NULL;
  const char *host = uri ? g_uri_get_host (uri) : NULL;

  if (uri == NULL || host == NULL || *host == '\0' ||
      (g_strcmp0 (scheme, "https") != 0 && g_strcmp0 (scheme, "http") != 0) ||
      g_uri_get_query (uri) != NULL || g_uri_get_fragment (uri) != NULL ||
      g_uri_get_userinfo (uri) != NULL)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "%s=%s is not an http(s) URL such as https://huggingface.co", origin, endpoint);
      return FALSE;
    }
  if (g_str_equal (scheme, "http") && !is_loopback (host))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "%s=%s: plain http would send the token in clear text; use https (http is "
                   "only accepted for this machine, e.g. a test Hub on 127.0.0.1)", origin, endpoint);
      return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_hf_hub_check_options (SmeltDestination *dest,
                            GError          **error)
{
  SmeltHfHub *self = SMELT_HF_HUB (dest);
  const char *slash;

  if (self->token_in_recipe)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "Token: a token never goes in a recipe (recipes are shared and kept); "
                   "set HF_TOKEN, or log in with “hf auth login”, and remove the key");
      return FALSE;
    }
  if (self->repo_id == NULL || *self->repo_id == '\0')
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "hf-hub needs a Repo= key: the repo as owner/name, e.g. my-user/my-model");
      return FALSE;
    }
  slash = strchr (self->repo_id, '/');
  if (slash == NULL || strchr (slash + 1, '/') != NULL)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "Repo=%s: give the repo as owner/name (exactly one /), e.g. my-user/my-model; "
                   "the owner is never guessed from the token", self->repo_id);
      return FALSE;
    }
  {
    g_autofree char *owner = g_strndup (self->repo_id, slash - self->repo_id);

    if (!check_repo_part (owner, "owner", self->repo_id, error) ||
        !check_repo_part (slash + 1, "name", self->repo_id, error))
      return FALSE;
  }
  if (self->revision == NULL || *self->revision == '\0' || strstr (self->revision, "..") ||
      g_str_has_prefix (self->revision, "/") || g_str_has_suffix (self->revision, "/") ||
      strpbrk (self->revision, " ~^:?*[\\") != NULL)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "Revision=%s is not a branch name", self->revision ? self->revision : "");
      return FALSE;
    }
  for (const char *p = self->revision; *p; p++)
    if ((guchar) *p < 0x20 || *p == 0x7f)
      {
        g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                     "Revision has control characters: not a branch name");
        return FALSE;
      }
  if (self->create_pr && !g_str_equal (self->revision, "main"))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "CreatePR=true opens a pull request against main; leave Revision unset "
                   "(it is %s)", self->revision);
      return FALSE;
    }
  if (self->endpoint && *self->endpoint && !check_endpoint (self->endpoint, "Endpoint", error))
    return FALSE;
  if (self->commit_message && strspn (self->commit_message, " \t\r\n") == strlen (self->commit_message))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "CommitMessage may not be empty");
      return FALSE;
    }
  if (self->model_card && *self->model_card && !g_file_test (self->model_card, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "ModelCard=%s: no such file", self->model_card);
      return FALSE;
    }
  for (guint i = 0; self->tags && self->tags[i]; i++)
    if (*self->tags[i] == '\0' || strpbrk (self->tags[i], "\n\r") != NULL)
      {
        g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                     "Tags: “%s” is not a tag", self->tags[i]);
        return FALSE;
      }
  return TRUE;
}

/* ---- preparing: before any data is computed ---- */

static const char *
repo_type_name (SmeltHfHub *self)
{
  return self->repo_type == SMELT_HF_REPO_TYPE_DATASET ? "dataset" : "model";
}

static gboolean
ensure_client (SmeltHfHub  *self,
               GError     **error)
{
  g_autofree char *endpoint = NULL;
  g_autofree char *token = NULL;
  g_autofree char *source = NULL;
  const char *offline = NULL;
  SmeltHfPolicy policy;

  if (smelt_hf_offline (&offline))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "%s: %s is set, so nothing may be sent to the Hub; unset it to upload, or "
                   "export to a local folder (Plugin=localfs) and upload later",
                   self->repo_id, offline);
      return FALSE;
    }
  if (self->client)
    return TRUE;
  endpoint = effective_endpoint (self);
  if (!check_endpoint (endpoint, self->endpoint && *self->endpoint ? "Endpoint" : "HF_ENDPOINT", error))
    return FALSE;
  if (!smelt_hf_find_token (&token, &source, error))
    {
      g_prefix_error (error, "%s: ", self->repo_id);
      return FALSE;
    }
  policy.retries = self->retries;
  policy.max_wait = self->max_retry_wait;
  policy.timeout = self->timeout;
  policy.first_delay = 1.0;
  self->client = smelt_hf_client_new (endpoint, token, source, &policy);
  memset (token, 0, strlen (token));
  self->repo = smelt_hf_repo_new (self->client, self->repo_id, repo_type_name (self),
                                  self->revision, self->create_pr);
  return TRUE;
}

static gboolean
smelt_hf_hub_prepare (SmeltDestination *dest,
                      GCancellable     *cancellable,
                      GError          **error)
{
  SmeltHfHub *self = SMELT_HF_HUB (dest);
  g_autoptr(SoupSession) session = NULL;

  if (!smelt_hf_hub_check_options (dest, error) || !ensure_client (self, error))
    return FALSE;
  if (self->repo->account != NULL)
    return TRUE;   /* whoami is rate-limited: once */
  session = smelt_hf_client_new_session (self->client);
  return smelt_hf_whoami (self->repo, session, cancellable, error) &&
         smelt_hf_check_namespace (self->repo, error);
}

static GOutputStream *
smelt_hf_hub_create_file (SmeltDestination *dest,
                          const char       *path,
                          GCancellable     *cancellable,
                          GError          **error)
{
  return stage_file (SMELT_HF_HUB (dest), path, NULL, error);
}

/* ---- the model card ---- */

static const char *
json_string (JsonObject *obj,
             const char *member)
{
  JsonNode *n = obj ? json_object_get_member (obj, member) : NULL;

  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING
    ? json_node_get_string (n) : NULL;
}

static SmeltSource *
find_source (SmeltHfHub *self)
{
  g_autoptr(GPtrArray) formats = smelt_destination_list_formats (SMELT_DESTINATION (self));

  for (guint i = 0; i < formats->len; i++)
    {
      SmeltSource *s = smelt_format_get_source (g_ptr_array_index (formats, i));

      if (s)
        return s;
    }
  return NULL;
}

static void
add_tag (GPtrArray  *tags,
         const char *tag)
{
  if (tag && *tag && !g_ptr_array_find_with_equal_func (tags, tag, g_str_equal, NULL))
    g_ptr_array_add (tags, g_strdup (tag));
}

static SmeltHfCardFile *
describe_file (SmeltHfHub    *self,
               SmeltHfStaged *s)
{
  SmeltHfCardFile *f = g_new0 (SmeltHfCardFile, 1);
  g_autofree char *base = g_path_get_basename (s->path);

  f->path = g_strdup (s->path);
  f->size = s->size;
  if (g_str_has_suffix (s->path, ".gguf"))
    {
      f->kind = SMELT_HF_KIND_GGUF;
      f->type = smelt_hf_gguf_type (s->local);
    }
  else if (g_str_has_suffix (s->path, ".safetensors"))
    {
      gboolean bnb4 = FALSE;

      f->kind = g_str_has_prefix (base, "adapter_") ? SMELT_HF_KIND_ADAPTER : SMELT_HF_KIND_SAFETENSORS;
      f->type = smelt_hf_safetensors_type (s->local, &bnb4);
    }
  return f;
}

static char *
inherited_license (SmeltSource *source)
{
  SmeltModel *model = smelt_source_get_model (source);
  g_autofree char *readme = g_build_filename (smelt_model_get_path (model), "README.md", NULL);
  char *license = smelt_hf_card_license (readme);
  JsonObject *config = smelt_model_get_config (model);

  for (guint i = 0; license == NULL && i < smelt_source_get_n_adapters (source); i++)
    {
      g_autofree char *path = g_build_filename (smelt_adapter_get_path (smelt_source_get_adapter (source, i)),
                                                "README.md", NULL);
      license = smelt_hf_card_license (path);
    }
  if (license == NULL && json_string (config, "license"))
    license = g_strdup (json_string (config, "license"));
  return license;
}

static GBytes *
build_card (SmeltHfHub *self)
{
  SmeltSource *source = find_source (self);
  JsonObject *config = source ? smelt_model_get_config (smelt_source_get_model (source)) : NULL;
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func ((GDestroyNotify) smelt_hf_card_file_free);
  g_autoptr(GPtrArray) tags = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *license = NULL;
  g_autofree char *base = NULL;
  gboolean st = FALSE, adapter = FALSE, gguf = FALSE, bnb4 = FALSE, has_config = FALSE;
  const char *pipeline = NULL;
  SmeltHfCard card = { 0, };
  guint n_adapters = source ? smelt_source_get_n_adapters (source) : 0;

  for (guint i = 0; i < self->staged->len; i++)
    {
      SmeltHfStaged *s = g_ptr_array_index (self->staged, i);
      SmeltHfCardFile *f = describe_file (self, s);

      st |= f->kind == SMELT_HF_KIND_SAFETENSORS;
      adapter |= f->kind == SMELT_HF_KIND_ADAPTER;
      gguf |= f->kind == SMELT_HF_KIND_GGUF;
      bnb4 |= f->kind == SMELT_HF_KIND_SAFETENSORS && f->type &&
              (g_str_equal (f->type, "NF4") || g_str_equal (f->type, "FP4"));
      has_config |= g_str_equal (s->path, "config.json");
      g_ptr_array_add (files, f);
    }

  /* base_model: the recipe's, else the adapters' base, else the model's
   * own id; only a Hub id, never a local path */
  if (self->base_model && *self->base_model)
    base = g_strdup (self->base_model);
  for (guint i = n_adapters; base == NULL && i > 0; i--)
    {
      JsonObject *ac = smelt_adapter_get_config (smelt_source_get_adapter (source, i - 1));
      const char *id = json_string (ac, "base_model_name_or_path");

      if (smelt_hf_is_repo_id (id))
        base = g_strdup (id);
    }
  if (base == NULL && smelt_hf_is_repo_id (json_string (config, "_name_or_path")))
    base = g_strdup (json_string (config, "_name_or_path"));

  if (self->license && *self->license)
    license = g_strdup (self->license);
  else if (source)
    license = inherited_license (source);

  if (config && json_object_has_member (config, "architectures") &&
      JSON_NODE_HOLDS_ARRAY (json_object_get_member (config, "architectures")))
    {
      JsonArray *archs = json_object_get_array_member (config, "architectures");

      for (guint i = 0; i < json_array_get_length (archs); i++)
        {
          JsonNode *a = json_array_get_element (archs, i);

          if (JSON_NODE_HOLDS_VALUE (a) && json_node_get_value_type (a) == G_TYPE_STRING &&
              g_str_has_suffix (json_node_get_string (a), "ForCausalLM"))
            pipeline = "text-generation";
        }
    }
  for (guint i = 0; pipeline == NULL && i < n_adapters; i++)
    if (g_strcmp0 (json_string (smelt_adapter_get_config (smelt_source_get_adapter (source, i)),
                                "task_type"), "CAUSAL_LM") == 0)
      pipeline = "text-generation";

  for (guint i = 0; self->tags && self->tags[i]; i++)
    add_tag (tags, self->tags[i]);
  add_tag (tags, "smelt");
  if (gguf)
    {
      add_tag (tags, "gguf");
      add_tag (tags, "llama.cpp");
    }
  if (st)
    add_tag (tags, "safetensors");
  if (bnb4)
    {
      add_tag (tags, "bitsandbytes");
      add_tag (tags, "4-bit");
    }
  if (adapter)
    {
      add_tag (tags, "peft");
      add_tag (tags, "lora");
    }
  add_tag (tags, json_string (config, "model_type"));
  g_ptr_array_add (tags, NULL);

  card.repo_id = self->repo_id;
  card.base_model = base;
  card.license = license;
  card.pipeline_tag = pipeline;
  card.library_name = st && has_config ? "transformers" : adapter ? "peft" : gguf ? "gguf" : NULL;
  card.model_type = json_string (config, "model_type");
  card.tags = (char **) tags->pdata;
  card.n_adapters = st || gguf ? n_adapters : 0;
  card.files = files;
  return smelt_hf_card_render (&card);
}

/* README.md: the export's own, else the one ModelCard names, else a
 * generated card, unless the repo holds a card a person wrote (one
 * without smelt's marker line). Returns FALSE only on errors; *note says
 * what was decided, for the summary. */
static gboolean
decide_card (SmeltHfHub       *self,
             SoupSession      *session,
             SmeltHfRevision  *rev,
             gboolean         *validate,
             GCancellable     *cancellable,
             GError          **error)
{
  *validate = FALSE;
  if (find_staged (self, "README.md"))
    {
      *validate = TRUE;
      return TRUE;
    }
  if (self->model_card && *self->model_card)
    {
      g_autoptr(GBytes) content = NULL;
      char *data = NULL;
      gsize len = 0;

      if (!g_file_get_contents (self->model_card, &data, &len, error))
        return FALSE;
      content = g_bytes_new_take (data, len);
      *validate = TRUE;
      return stage_bytes (self, "README.md", content, error);
    }
  if (!self->generate_card || self->repo_type != SMELT_HF_REPO_TYPE_MODEL)
    return TRUE;
  if (g_hash_table_contains (rev->files, "README.md"))
    {
      g_autoptr(GError) local = NULL;
      g_autoptr(GBytes) theirs = smelt_hf_download (self->repo, session, "README.md", cancellable, &local);

      if (theirs == NULL)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            {
              g_propagate_error (error, g_steal_pointer (&local));
              return FALSE;
            }
          return TRUE;   /* cannot tell whose it is: keep it */
        }
      if (g_strstr_len (g_bytes_get_data (theirs, NULL), g_bytes_get_size (theirs),
                        SMELT_HF_CARD_MARKER) == NULL)
        return TRUE;     /* written by a person: never overwritten */
    }
  {
    g_autoptr(GBytes) card = build_card (self);

    *validate = TRUE;
    return stage_bytes (self, "README.md", card, error);
  }
}

/* ---- commit ---- */

typedef struct {
  SmeltHfHub *self;
} ProgressData;

static void
on_transfer_progress (const char *file,
                      guint64     done,
                      guint64     total,
                      gpointer    user_data)
{
  SmeltHfHub *self = user_data;

  smelt_destination_report_progress (SMELT_DESTINATION (self), "uploading", file, done, total);
}

static char *
default_description (SmeltHfHub *self,
                     GPtrArray  *files,
                     GPtrArray  *deleted)
{
  GString *s = g_string_new (NULL);
  guint64 total = 0;
  guint n = 0;
  g_autofree char *size = NULL;

  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);

      if (f->skip)
        continue;
      total += f->staged->size;
      n++;
    }
  size = smelt_format_size (total);
  g_string_append_printf (s, "Uploaded by smelt %s: %u file%s, %s", SMELT_VERSION_S, n,
                          n == 1 ? "" : "s", size);
  if (deleted->len)
    g_string_append_printf (s, "; %u stale file%s removed", deleted->len, deleted->len == 1 ? "" : "s");
  g_string_append_c (s, '.');
  return g_string_free (s, FALSE);
}

static gboolean
commit_internal (SmeltHfHub    *self,
                 const char    *message,
                 GCancellable  *cancellable,
                 GError       **error)
{
  SmeltDestination *dest = SMELT_DESTINATION (self);
  g_autoptr(SoupSession) session = NULL;
  g_autoptr(SmeltHfRevision) rev = NULL;
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func ((GDestroyNotify) smelt_hf_file_free);
  g_autoptr(GPtrArray) deleted = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GBytes) payload = NULL;
  g_autofree char *description = NULL;
  const char *summary;
  gboolean created = FALSE, validate = FALSE, any = FALSE;
  guint64 regular_bytes = 0, upload_total = 0;

  if (!smelt_hf_hub_prepare (dest, cancellable, error))
    return FALSE;
  for (guint i = 0; i < self->staged->len; i++)
    {
      SmeltHfStaged *s = g_ptr_array_index (self->staged, i);

      if (!s->closed)
        {
          g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                       "%s: %s was not written completely; nothing was uploaded", self->repo_id, s->path);
          return FALSE;
        }
    }
  session = smelt_hf_client_new_session (self->client);
  smelt_destination_report_progress (dest, "uploading", NULL, 0, 0);

  /* 1. the repo: created now, not in prepare(), so a failed export never
   *    leaves an empty repo behind */
  if (!self->create_pr &&
      !smelt_hf_create_repo (self->repo, session, self->private_set, self->is_private, &created,
                             cancellable, error))
    return FALSE;
  /* 2. the branch head: the commit's parent, and the files already there */
  rev = smelt_hf_get_revision (self->repo, session, cancellable, error);
  if (rev == NULL)
    return FALSE;
  if (self->private_set && self->is_private && rev->has_private && !rev->is_private)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "%s: Private=true, but the repo exists and is public; nothing was uploaded. "
                   "Make it private on the Hub first, or set Private=false", self->repo_id);
      return FALSE;
    }
  if (!decide_card (self, session, rev, &validate, cancellable, error))
    return FALSE;
  if (validate)
    {
      SmeltHfStaged *readme = find_staged (self, "README.md");
      g_autoptr(GBytes) text = NULL;
      char *data = NULL;
      gsize len = 0;

      if (!g_file_get_contents (readme->local, &data, &len, error))
        return FALSE;
      text = g_bytes_new_take (data, len);
      if (!smelt_hf_validate_yaml (self->repo, session, text, cancellable, error))
        return FALSE;
    }

  for (guint i = 0; i < self->staged->len; i++)
    g_ptr_array_add (files, smelt_hf_file_new (g_ptr_array_index (self->staged, i)));
  /* shards an earlier export left that this one replaces */
  {
    GHashTableIter iter;
    gpointer key;

    g_hash_table_iter_init (&iter, rev->files);
    while (g_hash_table_iter_next (&iter, &key, NULL))
      if (find_staged (self, key) == NULL && smelt_destination_is_stale (dest, key))
        g_ptr_array_add (deleted, g_strdup (key));
    g_ptr_array_sort (deleted, (GCompareFunc) g_strcmp0);
  }

  /* 3. regular or LFS, and what is unchanged */
  if (!smelt_hf_preupload (self->repo, session, files, cancellable, error))
    return FALSE;
  /* 4. where each LFS object goes; those the Hub has are skipped */
  if (!smelt_hf_lfs_batch (self->repo, session, files, cancellable, error))
    return FALSE;
  for (guint i = 0; i < files->len; i++)
    {
      SmeltHfFile *f = g_ptr_array_index (files, i);

      any |= !f->skip;
      if (!f->skip && !f->lfs)
        regular_bytes += f->staged->size;
      /* what goes over the wire: regular files in the commit, LFS objects
       * the Hub does not have yet */
      if (!f->skip && (!f->lfs || (!f->stored && f->upload_href)))
        upload_total += f->staged->size;
    }
  /* 5. the bytes */
  if (!smelt_hf_transfer (self->repo, session, files, self->connections, self->verify,
                          regular_bytes, on_transfer_progress, self, cancellable, error))
    return FALSE;

  /* 6. one commit */
  if (!any && deleted->len == 0)
    {
      self->outcome = g_strdup_printf ("unchanged: %s already holds these files at %s",
                                       self->repo->revision, rev->sha);
      smelt_destination_report_progress (dest, "uploading", NULL, upload_total, upload_total);
      return TRUE;
    }
  summary = self->commit_message && *self->commit_message ? self->commit_message
          : message && *message ? message : "Upload with smelt";
  description = self->commit_description ? g_strdup (self->commit_description)
                                         : default_description (self, files, deleted);
  payload = smelt_hf_commit_payload (self->repo, files, deleted, summary, description, rev->sha, error);
  if (payload == NULL ||
      !smelt_hf_commit (self->repo, session, payload, summary, rev->sha, &self->result,
                        cancellable, error))
    return FALSE;
  smelt_destination_report_progress (dest, "uploading", NULL, upload_total, upload_total);
  if (self->result.pr_url)
    self->outcome = g_strdup_printf ("commit %s, pull request %s", self->result.url, self->result.pr_url);
  else
    self->outcome = g_strdup_printf ("commit %s%s", self->result.url, created ? " (new repo)" : "");
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_COMMIT_URL]);
  if (self->result.pr_url)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PULL_REQUEST_URL]);
  return TRUE;
}

static gboolean
smelt_hf_hub_commit (SmeltDestination *dest,
                     const char       *message,
                     GCancellable     *cancellable,
                     GError          **error)
{
  SmeltHfHub *self = SMELT_HF_HUB (dest);
  gboolean ok;

  if (self->committed)
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "%s: this destination has already committed", self->repo_id);
      return FALSE;
    }
  ok = commit_internal (self, message, cancellable, error);
  if (!ok && error && *error)
    smelt_hf_client_scrub_error (self->client, *error);
  if (ok)
    {
      self->committed = TRUE;
      drop_staging (self);
    }
  return ok;
}

static void
smelt_hf_hub_abort (SmeltDestination *dest)
{
  drop_staging (SMELT_HF_HUB (dest));
}

static char *
smelt_hf_hub_describe (SmeltDestination *dest)
{
  SmeltHfHub *self = SMELT_HF_HUB (dest);
  g_autofree char *endpoint = effective_endpoint (self);
  const char *prefix = self->repo_type == SMELT_HF_REPO_TYPE_DATASET ? "datasets/" : "";
  g_autofree char *where = g_strdup_printf ("%s/%s%s", endpoint, prefix, self->repo_id ? self->repo_id : "?");

  if (self->outcome)
    return g_strdup_printf ("%s (%s): %s", where, self->revision, self->outcome);
  if (self->create_pr)
    return g_strdup_printf ("%s (pull request against %s)", where, self->revision);
  return g_strdup_printf ("%s (%s)", where, self->revision);
}

/* ---- GObject ---- */

static void
smelt_hf_hub_finalize (GObject *object)
{
  SmeltHfHub *self = SMELT_HF_HUB (object);

  drop_staging (self);
  g_ptr_array_unref (self->staged);
  smelt_hf_repo_free (self->repo);
  smelt_hf_client_free (self->client);
  smelt_hf_commit_result_clear (&self->result);
  g_free (self->outcome);
  g_free (self->repo_id);
  g_free (self->revision);
  g_free (self->commit_message);
  g_free (self->commit_description);
  g_free (self->endpoint);
  g_strfreev (self->tags);
  g_free (self->license);
  g_free (self->base_model);
  g_free (self->model_card);
  g_free (self->staging_dir);
  G_OBJECT_CLASS (smelt_hf_hub_parent_class)->finalize (object);
}

static char **
string_slot (SmeltHfHub *self,
             guint       prop_id)
{
  switch (prop_id)
    {
    case PROP_REPO: return &self->repo_id;
    case PROP_REVISION: return &self->revision;
    case PROP_COMMIT_MESSAGE: return &self->commit_message;
    case PROP_COMMIT_DESCRIPTION: return &self->commit_description;
    case PROP_ENDPOINT: return &self->endpoint;
    case PROP_LICENSE: return &self->license;
    case PROP_BASE_MODEL: return &self->base_model;
    case PROP_MODEL_CARD: return &self->model_card;
    case PROP_STAGING_DIR: return &self->staging_dir;
    default: return NULL;
    }
}

static void
smelt_hf_hub_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  SmeltHfHub *self = SMELT_HF_HUB (object);
  char **slot = string_slot (self, prop_id);

  if (slot)
    {
      g_value_set_string (value, *slot);
      return;
    }
  switch (prop_id)
    {
    case PROP_REPO_TYPE: g_value_set_enum (value, self->repo_type); break;
    case PROP_PRIVATE: g_value_set_boolean (value, self->is_private); break;
    case PROP_CREATE_PR: g_value_set_boolean (value, self->create_pr); break;
    case PROP_TAGS: g_value_set_boxed (value, self->tags); break;
    case PROP_GENERATE_CARD: g_value_set_boolean (value, self->generate_card); break;
    case PROP_VERIFY: g_value_set_boolean (value, self->verify); break;
    case PROP_CONNECTIONS: g_value_set_uint (value, self->connections); break;
    case PROP_RETRIES: g_value_set_uint (value, self->retries); break;
    case PROP_MAX_RETRY_WAIT: g_value_set_uint (value, self->max_retry_wait); break;
    case PROP_TIMEOUT: g_value_set_uint (value, self->timeout); break;
    case PROP_COMMIT_URL: g_value_set_string (value, self->result.url); break;
    case PROP_PULL_REQUEST_URL: g_value_set_string (value, self->result.pr_url); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_hf_hub_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  SmeltHfHub *self = SMELT_HF_HUB (object);
  char **slot = string_slot (self, prop_id);

  if (slot)
    {
      g_free (*slot);
      *slot = g_value_dup_string (value);
      return;
    }
  switch (prop_id)
    {
    case PROP_REPO_TYPE: self->repo_type = g_value_get_enum (value); break;
    case PROP_PRIVATE:
      self->is_private = g_value_get_boolean (value);
      self->private_set = TRUE;
      break;
    case PROP_CREATE_PR: self->create_pr = g_value_get_boolean (value); break;
    case PROP_TAGS:
      g_strfreev (self->tags);
      self->tags = g_value_dup_boxed (value);
      break;
    case PROP_GENERATE_CARD: self->generate_card = g_value_get_boolean (value); break;
    case PROP_VERIFY: self->verify = g_value_get_boolean (value); break;
    case PROP_CONNECTIONS: self->connections = g_value_get_uint (value); break;
    case PROP_RETRIES: self->retries = g_value_get_uint (value); break;
    case PROP_MAX_RETRY_WAIT: self->max_retry_wait = g_value_get_uint (value); break;
    case PROP_TIMEOUT: self->timeout = g_value_get_uint (value); break;
    case PROP_TOKEN:
      /* only remembered as "given", never kept */
      self->token_in_recipe = g_value_get_string (value) != NULL;
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

#define RW (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)

/* commit() uploads every staged file and reports it as "uploading" */
static gboolean
smelt_hf_hub_reports_commit_progress (SmeltDestination *dest)
{
  return TRUE;
}

static void
smelt_hf_hub_class_init (SmeltHfHubClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltDestinationClass *dest_class = SMELT_DESTINATION_CLASS (klass);

  object_class->finalize = smelt_hf_hub_finalize;
  object_class->get_property = smelt_hf_hub_get_property;
  object_class->set_property = smelt_hf_hub_set_property;
  dest_class->check_options = smelt_hf_hub_check_options;
  dest_class->prepare = smelt_hf_hub_prepare;
  dest_class->create_file = smelt_hf_hub_create_file;
  dest_class->commit = smelt_hf_hub_commit;
  dest_class->abort = smelt_hf_hub_abort;
  dest_class->describe = smelt_hf_hub_describe;
  dest_class->reports_commit_progress = smelt_hf_hub_reports_commit_progress;

  properties[PROP_REPO] = g_param_spec_string ("repo", "Repo",
    "The repo, as owner/name (the owner is never guessed from the token)", NULL, RW);
  properties[PROP_REPO_TYPE] = g_param_spec_enum ("repo-type", "RepoType",
    "Kind of repo", smelt_hf_repo_type_get_type (), SMELT_HF_REPO_TYPE_MODEL, RW);
  properties[PROP_PRIVATE] = g_param_spec_boolean ("private", "Private",
    "Create the repo private (unset: the namespace's default); with true, an existing public "
    "repo is refused", FALSE, RW);
  properties[PROP_REVISION] = g_param_spec_string ("revision", "Revision",
    "The branch to commit to", "main", RW);
  properties[PROP_CREATE_PR] = g_param_spec_boolean ("create-pr", "CreatePR",
    "Open a pull request instead of committing to the branch", FALSE, RW);
  properties[PROP_COMMIT_MESSAGE] = g_param_spec_string ("commit-message", "CommitMessage",
    "The commit's title (default: “Export NAME with smelt VERSION”)", NULL, RW);
  properties[PROP_COMMIT_DESCRIPTION] = g_param_spec_string ("commit-description", "CommitDescription",
    "The commit's description (default: the number and size of the files)", NULL, RW);
  properties[PROP_ENDPOINT] = g_param_spec_string ("endpoint", "Endpoint",
    "The Hub's URL (default: $HF_ENDPOINT, else https://huggingface.co)", NULL, RW);
  properties[PROP_TAGS] = g_param_spec_boxed ("tags", "Tags",
    "Tags for the model card, besides those naming the formats written", G_TYPE_STRV, RW);
  properties[PROP_LICENSE] = g_param_spec_string ("license", "License",
    "The model card's license, e.g. apache-2.0 (default: the base model's)", NULL, RW);
  properties[PROP_BASE_MODEL] = g_param_spec_string ("base-model", "BaseModel",
    "The model card's base_model, a Hub id (default: from the adapter or config.json)", NULL, RW);
  properties[PROP_MODEL_CARD] = g_param_spec_string ("model-card", "ModelCard",
    "A README.md to upload instead of a generated card", NULL, RW | SMELT_PARAM_PATH);
  properties[PROP_GENERATE_CARD] = g_param_spec_boolean ("generate-card", "GenerateCard",
    "Write a model card when the export has none (never over a card a person wrote)", TRUE, RW);
  properties[PROP_VERIFY] = g_param_spec_boolean ("verify", "Verify",
    "Ask the Hub to verify each LFS upload when it offers to", TRUE, RW);
  properties[PROP_CONNECTIONS] = g_param_spec_uint ("connections", "Connections",
    "Uploads in parallel", 1, 16, 4, RW);
  properties[PROP_RETRIES] = g_param_spec_uint ("retries", "Retries",
    "Retries of a request that failed with 408, 429, 5xx or a dropped connection", 0, 20, 5, RW);
  properties[PROP_MAX_RETRY_WAIT] = g_param_spec_uint ("max-retry-wait", "MaxRetryWait",
    "Seconds one request may spend waiting between retries (rate limits included)", 0, 86400, 600, RW);
  properties[PROP_TIMEOUT] = g_param_spec_uint ("timeout", "Timeout",
    "Seconds without progress before a request fails; 0 = never", 0, 86400, 300, RW);
  properties[PROP_STAGING_DIR] = g_param_spec_string ("staging-dir", "StagingDir",
    "Where files wait for the upload (default: ~/.cache/smelt/hf-hub); needs room for the "
    "whole export", NULL, RW | SMELT_PARAM_PATH);
  /* a key recipes may not use: setting it is an error that says where
   * tokens come from (rather than "unknown key") */
  properties[PROP_TOKEN] = g_param_spec_string ("token", "Token",
    "Refused: a token never goes in a recipe; it comes from HF_TOKEN or the token file of "
    "“hf auth login”", NULL, G_PARAM_WRITABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_COMMIT_URL] = g_param_spec_string ("commit-url", "CommitUrl",
    "The commit made, once committed", NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  properties[PROP_PULL_REQUEST_URL] = g_param_spec_string ("pull-request-url", "PullRequestUrl",
    "The pull request opened, with CreatePR", NULL, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_hf_hub_init (SmeltHfHub *self)
{
  self->revision = g_strdup ("main");
  self->generate_card = TRUE;
  self->verify = TRUE;
  self->connections = 4;
  self->retries = 5;
  self->max_retry_wait = 600;
  self->timeout = 300;
  self->staged = g_ptr_array_new_with_free_func ((GDestroyNotify) smelt_hf_staged_unref);
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_destination (plugin, "hf-hub", SMELT_TYPE_HF_HUB, error);
}

SMELT_PLUGIN_DEFINE ("hf-hub", "Push exports to a Hugging Face Hub repo, in one commit",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
