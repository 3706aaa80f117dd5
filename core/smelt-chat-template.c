/* smelt-chat-template.c: a model's chat template, recognized among the
 * known families, and what an Ollama Modelfile needs of it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-chat-private.h"
#include "smelt-private.h"

/**
 * SmeltChatTemplate:
 *
 * The chat template of a model (chat_template.jinja, or the
 * "chat_template" of tokenizer_config.json), recognized among the
 * families of smelt's table (doc/chat-templates.md), with the Ollama Go
 * template, stop strings and default system prompt of that family.
 *
 * A template is recognized when its normalized text
 * (smelt_chat_template_normalize()) equals a known variant of a family
 * (%SMELT_CHAT_MATCH_EXACT). An unknown template falls back to the family
 * whose marker tokens it uses, else to a generic template, and says so in
 * a warning (%SMELT_CHAT_MATCH_FALLBACK). A model without a template gives
 * %SMELT_CHAT_MATCH_NONE and no Ollama template.
 */

/* a template file bigger than this is not a chat template */
#define MAX_TEMPLATE_BYTES (4 * 1024 * 1024)

struct _SmeltChatTemplate
{
  GObject parent_instance;

  char                   *jinja;
  char                   *source;       /* the file it came from */
  char                   *bos_token;
  char                   *eos_token;    /* the tokenizer's, as Jinja's eos_token */
  GPtrArray              *eos_tokens;   /* of char *, the model's own */
  SmeltChatMatch          match;
  const SmeltChatFamily  *family;       /* the table's, static */
  const SmeltChatVariant *variant;
  const SmeltChatFamily  *detected;     /* what auto-detection found, kept across set_family() */
  char                   *reason;
  char                   *warning;
  GPtrArray              *stops;        /* NULL-terminated */
  char                   *ollama;       /* the family's Go template with the tokens filled in */
};

G_DEFINE_FINAL_TYPE (SmeltChatTemplate, smelt_chat_template, G_TYPE_OBJECT)

static void
smelt_chat_template_finalize (GObject *object)
{
  SmeltChatTemplate *self = SMELT_CHAT_TEMPLATE (object);

  g_free (self->jinja);
  g_free (self->source);
  g_free (self->bos_token);
  g_free (self->eos_token);
  g_free (self->ollama);
  g_clear_pointer (&self->eos_tokens, g_ptr_array_unref);
  g_free (self->reason);
  g_free (self->warning);
  g_clear_pointer (&self->stops, g_ptr_array_unref);
  G_OBJECT_CLASS (smelt_chat_template_parent_class)->finalize (object);
}

static void
smelt_chat_template_class_init (SmeltChatTemplateClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_chat_template_finalize;
}

static void
smelt_chat_template_init (SmeltChatTemplate *self)
{
  self->eos_tokens = g_ptr_array_new_with_free_func (g_free);
}

/* ---- reading the model's files ------------------------------------------ */

static gboolean
add_unique (GPtrArray  *list,
            const char *s)
{
  if (s == NULL || *s == '\0')
    return FALSE;
  for (guint i = 0; i < list->len; i++)
    if (g_ptr_array_index (list, i) && g_str_equal (g_ptr_array_index (list, i), s))
      return FALSE;
  g_ptr_array_add (list, g_strdup (s));
  return TRUE;
}

static char *
read_template_file (const char  *path,
                    GError     **error)
{
  g_autofree char *text = NULL;
  gsize len;
  const char *bad;

  if (!g_file_get_contents (path, &text, &len, error))
    return NULL;
  if (len > MAX_TEMPLATE_BYTES || memchr (text, '\0', len) != NULL ||
      !g_utf8_validate_len (text, len, &bad))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a chat template (%s)", path,
                   len > MAX_TEMPLATE_BYTES ? "over 4 MiB" : "not UTF-8 text");
      return NULL;
    }
  return g_steal_pointer (&text);
}

/* A special token as tokenizer_config.json writes it: a string, an
 * AddedToken object {"content": …}, or null. */
static gboolean
token_of_node (JsonNode    *node,
               const char  *path,
               const char  *key,
               char       **out,
               GError     **error)
{
  *out = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      *out = g_strdup (json_node_get_string (node));
      return TRUE;
    }
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonNode *c = json_object_get_member (json_node_get_object (node), "content");

      if (c && JSON_NODE_HOLDS_VALUE (c) && json_node_get_value_type (c) == G_TYPE_STRING)
        {
          *out = g_strdup (json_node_get_string (c));
          return TRUE;
        }
    }
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: “%s” is neither a string nor a token object", path, key);
  return FALSE;
}

/* "chat_template": a string, or a list of {"name", "template"} of which
 * transformers uses "default". */
static gboolean
template_of_node (JsonNode    *node,
                  const char  *path,
                  char       **out,
                  GError     **error)
{
  JsonArray *list;

  *out = NULL;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      *out = g_strdup (json_node_get_string (node));
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “chat_template” is neither a string nor a list of named templates",
                   path);
      return FALSE;
    }
  list = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonNode *e = json_array_get_element (list, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (e) ? json_node_get_object (e) : NULL;
      const char *name = o ? json_object_get_string_member_with_default (o, "name", NULL) : NULL;
      const char *tmpl = o ? json_object_get_string_member_with_default (o, "template", NULL) : NULL;

      if (name == NULL || tmpl == NULL)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: “chat_template” entry %u is not a {\"name\", \"template\"} object",
                       path, i);
          return FALSE;
        }
      if (g_str_equal (name, "default"))
        {
          *out = g_strdup (tmpl);
          return TRUE;
        }
    }
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: “chat_template” lists named templates but none named “default”", path);
  return FALSE;
}

static JsonObject *
load_object (const char  *path,
             JsonNode   **root,
             GError     **error)
{
  *root = smelt_json_load_file (path, error);
  if (*root == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT (*root))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a JSON object", path);
      g_clear_pointer (root, json_node_unref);
      return NULL;
    }
  return json_node_get_object (*root);
}

/* The content of token @id among a tokenizer file's added tokens:
 * tokenizer_config.json's {"id": {"content"}} map, or tokenizer.json's
 * [{"id", "content"}] list and, failing that, its vocabulary. */
static const char *
lookup_added_decoder (JsonObject *config,
                      gint64      id)
{
  JsonObject *dec;
  JsonNode *e;
  char key[24];

  if (config == NULL || !json_object_has_member (config, "added_tokens_decoder"))
    return NULL;
  e = json_object_get_member (config, "added_tokens_decoder");
  if (!JSON_NODE_HOLDS_OBJECT (e))
    return NULL;
  dec = json_node_get_object (e);
  g_snprintf (key, sizeof key, "%" G_GINT64_FORMAT, id);
  e = json_object_get_member (dec, key);
  if (e == NULL || !JSON_NODE_HOLDS_OBJECT (e))
    return NULL;
  return json_object_get_string_member_with_default (json_node_get_object (e), "content", NULL);
}

static const char *
lookup_tokenizer_json (JsonObject *tok,
                       gint64      id)
{
  JsonNode *e;

  if (tok == NULL)
    return NULL;
  e = json_object_get_member (tok, "added_tokens");
  if (e && JSON_NODE_HOLDS_ARRAY (e))
    {
      JsonArray *a = json_node_get_array (e);

      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *t = json_array_get_element (a, i);
          JsonObject *o = JSON_NODE_HOLDS_OBJECT (t) ? json_node_get_object (t) : NULL;

          if (o && json_object_get_int_member_with_default (o, "id", -1) == id)
            return json_object_get_string_member_with_default (o, "content", NULL);
        }
    }
  e = json_object_get_member (tok, "model");
  if (e && JSON_NODE_HOLDS_OBJECT (e) &&
      (e = json_object_get_member (json_node_get_object (e), "vocab")) &&
      JSON_NODE_HOLDS_OBJECT (e))
    {
      JsonObject *vocab = json_node_get_object (e);
      g_autoptr(GList) names = json_object_get_members (vocab);

      for (GList *l = names; l; l = l->next)
        {
          JsonNode *v = json_object_get_member (vocab, l->data);

          if (JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_INT64 &&
              json_node_get_int (v) == id)
            return l->data;
        }
    }
  return NULL;
}

typedef struct {
  const char *dir;
  JsonNode   *config_root;     /* tokenizer_config.json */
  JsonObject *config;
  JsonNode   *tok_root;        /* tokenizer.json, read only when needed */
  JsonObject *tok;
  gboolean    tok_tried;
} Files;

static void
files_clear (Files *f)
{
  g_clear_pointer (&f->config_root, json_node_unref);
  g_clear_pointer (&f->tok_root, json_node_unref);
}

/* Token @id of generation_config.json as a string; NULL without error
 * when the model has no tokenizer.json to look in. */
static gboolean
resolve_token_id (Files       *f,
                  const char  *from,
                  gint64       id,
                  const char **out,
                  GError     **error)
{
  g_autofree char *tok_path = g_build_filename (f->dir, "tokenizer.json", NULL);

  *out = lookup_added_decoder (f->config, id);
  if (*out)
    return TRUE;
  if (!f->tok_tried)
    {
      f->tok_tried = TRUE;
      if (g_file_test (tok_path, G_FILE_TEST_EXISTS))
        {
          f->tok = load_object (tok_path, &f->tok_root, error);
          if (f->tok == NULL)
            return FALSE;
        }
    }
  if (f->tok == NULL)
    return TRUE;
  *out = lookup_tokenizer_json (f->tok, id);
  if (*out == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: eos_token_id %" G_GINT64_FORMAT " is no token of %s", from, id,
                   tok_path);
      return FALSE;
    }
  return TRUE;
}

/* generation_config.json's eos_token_id: one id or a list of them; else
 * config.json's. */
static gboolean
add_eos_ids (SmeltChatTemplate  *self,
             SmeltModel         *model,
             Files              *f,
             GError            **error)
{
  JsonObject *gen = smelt_model_get_generation_config (model);
  JsonObject *from = gen;
  g_autofree char *from_path = NULL;
  JsonNode *node;
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (gint64));

  if (from == NULL || !json_object_has_member (from, "eos_token_id"))
    from = smelt_model_get_config (model);
  if (from == NULL || !json_object_has_member (from, "eos_token_id"))
    return TRUE;
  from_path = g_build_filename (f->dir, from == gen ? "generation_config.json" : "config.json",
                                NULL);
  node = json_object_get_member (from, "eos_token_id");
  if (JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    {
      gint64 id = json_node_get_int (node);
      g_array_append_val (ids, id);
    }
  else if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);

      for (guint i = 0; i < json_array_get_length (a); i++)
        {
          JsonNode *e = json_array_get_element (a, i);
          gint64 id;

          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64)
            goto bad;
          id = json_node_get_int (e);
          g_array_append_val (ids, id);
        }
    }
  else
    goto bad;

  for (guint i = 0; i < ids->len; i++)
    {
      const char *s = NULL;

      if (g_array_index (ids, gint64, i) < 0)
        goto bad;
      if (!resolve_token_id (f, from_path, g_array_index (ids, gint64, i), &s, error))
        return FALSE;
      add_unique (self->eos_tokens, s);
    }
  return TRUE;

bad:
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: “eos_token_id” is neither a token id nor a list of them", from_path);
  return FALSE;
}

static gboolean
read_hf_files (SmeltChatTemplate  *self,
               SmeltModel         *model,
               GError            **error)
{
  Files f = { .dir = smelt_model_get_path (model) };
  g_autofree char *jinja_path = g_build_filename (f.dir, "chat_template.jinja", NULL);
  g_autofree char *config_path = g_build_filename (f.dir, "tokenizer_config.json", NULL);
  g_autofree char *processor_path = g_build_filename (f.dir, "chat_template.json", NULL);
  gboolean ok = FALSE;

  if (g_file_test (config_path, G_FILE_TEST_EXISTS))
    {
      f.config = load_object (config_path, &f.config_root, error);
      if (f.config == NULL ||
          !token_of_node (json_object_get_member (f.config, "bos_token"), config_path,
                          "bos_token", &self->bos_token, error) ||
          !token_of_node (json_object_get_member (f.config, "eos_token"), config_path,
                          "eos_token", &self->eos_token, error))
        goto out;
      add_unique (self->eos_tokens, self->eos_token);
    }

  /* transformers reads chat_template.jinja first, over the config's */
  if (g_file_test (jinja_path, G_FILE_TEST_EXISTS))
    {
      self->jinja = read_template_file (jinja_path, error);
      if (self->jinja == NULL)
        goto out;
      self->source = g_strdup ("chat_template.jinja");
    }
  else if (f.config)
    {
      if (!template_of_node (json_object_get_member (f.config, "chat_template"), config_path,
                             &self->jinja, error))
        goto out;
      if (self->jinja)
        self->source = g_strdup ("tokenizer_config.json");
    }
  if (self->jinja == NULL && g_file_test (processor_path, G_FILE_TEST_EXISTS))
    {
      g_autoptr(JsonNode) root = NULL;
      JsonObject *o = load_object (processor_path, &root, error);

      if (o == NULL ||
          !template_of_node (json_object_get_member (o, "chat_template"), processor_path,
                             &self->jinja, error))
        goto out;
      if (self->jinja)
        self->source = g_strdup ("chat_template.json");
    }
  ok = add_eos_ids (self, model, &f, error);

out:
  files_clear (&f);
  return ok;
}

/* A GGUF model carries its template and token list in its metadata. */
static char *
gguf_token (SmeltGgufFile *gguf,
            const char    *key)
{
  int i = smelt_gguf_file_find_key (gguf, key);
  int t = smelt_gguf_file_find_key (gguf, "tokenizer.ggml.tokens");
  g_autoptr(GVariant) idv = NULL;
  g_autoptr(GVariant) tokens = NULL;
  g_autoptr(GVariant) tok = NULL;
  g_autoptr(GVariant) inner = NULL;
  guint64 id;

  if (i < 0 || t < 0)
    return NULL;
  idv = smelt_gguf_file_get_value (gguf, i);
  if (g_variant_is_of_type (idv, G_VARIANT_TYPE_UINT32))
    id = g_variant_get_uint32 (idv);
  else if (g_variant_is_of_type (idv, G_VARIANT_TYPE_INT32) && g_variant_get_int32 (idv) >= 0)
    id = (guint64) g_variant_get_int32 (idv);
  else
    return NULL;
  tokens = smelt_gguf_file_get_value (gguf, t);
  if (!g_variant_is_of_type (tokens, G_VARIANT_TYPE ("av")) || id >= g_variant_n_children (tokens))
    return NULL;
  tok = g_variant_get_child_value (tokens, id);
  inner = g_variant_get_variant (tok);
  return g_variant_is_of_type (inner, G_VARIANT_TYPE_STRING) ? g_variant_dup_string (inner, NULL)
                                                              : NULL;
}

static void
read_gguf (SmeltChatTemplate *self,
           SmeltGgufFile     *gguf)
{
  static const char * const eos_keys[] = {
    "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id", NULL
  };
  int i = smelt_gguf_file_find_key (gguf, "tokenizer.chat_template");

  if (i >= 0 && smelt_gguf_file_get_kv_type (gguf, i) == SMELT_GGUF_VALUE_STRING)
    {
      g_autoptr(GVariant) v = smelt_gguf_file_get_value (gguf, i);

      self->jinja = g_variant_dup_string (v, NULL);
      self->source = g_strdup ("tokenizer.chat_template");
    }
  self->bos_token = gguf_token (gguf, "tokenizer.ggml.bos_token_id");
  self->eos_token = gguf_token (gguf, eos_keys[0]);
  for (guint k = 0; eos_keys[k]; k++)
    {
      g_autofree char *s = gguf_token (gguf, eos_keys[k]);

      add_unique (self->eos_tokens, s);
    }
}

/* ---- matching ------------------------------------------------------------- */

/* A token for the Go template: the model's own, unless it could be
 * mistaken for template syntax; then the family's. */
static const char *
usable_token (const char *model_token,
              const char *family_token)
{
  if (model_token && *model_token && !strstr (model_token, "{{") && !strstr (model_token, "}}"))
    return model_token;
  return family_token ? family_token : "";
}

/* The family's Go template with @BOS_TOKEN@ and @EOS_TOKEN@ (the
 * templates that write Jinja's bos_token/eos_token between turns) replaced
 * by the model's tokens. */
static void
fill_template (SmeltChatTemplate *self)
{
  g_autoptr(GString) s = NULL;

  g_clear_pointer (&self->ollama, g_free);
  if (self->family == NULL)
    return;
  s = g_string_new (self->family->ollama);
  g_string_replace (s, "@BOS_TOKEN@", usable_token (self->bos_token, self->family->bos_token), 0);
  g_string_replace (s, "@EOS_TOKEN@", usable_token (self->eos_token, self->family->eos_token), 0);
  self->ollama = g_string_free (g_steal_pointer (&s), FALSE);
}

static void
build_stops (SmeltChatTemplate *self)
{
  const char * const *family_stops = self->family ? (const char * const *) self->family->stops
                                                  : NULL;

  if (self->match == SMELT_CHAT_MATCH_FALLBACK && self->family == NULL)
    family_stops = _smelt_chat_generic_stops ();
  g_clear_pointer (&self->stops, g_ptr_array_unref);
  self->stops = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; family_stops && family_stops[i]; i++)
    add_unique (self->stops, family_stops[i]);
  for (guint i = 0; i < self->eos_tokens->len; i++)
    add_unique (self->stops, g_ptr_array_index (self->eos_tokens, i));
  g_ptr_array_add (self->stops, NULL);
  fill_template (self);
}

static gboolean
find_exact (const char              *normalized,
            const SmeltChatFamily  **family,
            const SmeltChatVariant **variant)
{
  GPtrArray *all = _smelt_chat_families ();

  for (guint i = 0; i < all->len; i++)
    {
      SmeltChatFamily *f = g_ptr_array_index (all, i);

      for (guint j = 0; j < f->variants->len; j++)
        {
          SmeltChatVariant *v = g_ptr_array_index (f->variants, j);

          if (g_str_equal (v->normalized, normalized))
            {
              *family = f;
              *variant = v;
              return TRUE;
            }
        }
    }
  return FALSE;
}

/* The first family (in table order, the more specific first) all of
 * whose markers the template contains. */
static const SmeltChatFamily *
find_by_markers (const char *jinja)
{
  GPtrArray *all = _smelt_chat_families ();

  for (guint i = 0; i < all->len; i++)
    {
      SmeltChatFamily *f = g_ptr_array_index (all, i);
      gboolean all_found = f->markers[0] != NULL;

      for (guint m = 0; all_found && f->markers[m]; m++)
        all_found = strstr (jinja, f->markers[m]) != NULL;
      if (all_found)
        return f;
    }
  return NULL;
}

static void
detect (SmeltChatTemplate *self)
{
  g_autofree char *normalized = NULL;
  g_autofree char *markers = NULL;

  if (self->jinja == NULL)
    {
      self->match = SMELT_CHAT_MATCH_NONE;
      self->reason = g_strdup ("the model has no chat template (no chat_template.jinja, "
                               "no “chat_template” in tokenizer_config.json)");
      self->warning = g_strdup ("the model has no chat template: Ollama will pass prompts "
                                "through unchanged; name a family with Template= if it was "
                                "trained on one");
      build_stops (self);
      return;
    }
  normalized = smelt_chat_template_normalize (self->jinja);
  if (find_exact (normalized, &self->family, &self->variant))
    {
      self->match = SMELT_CHAT_MATCH_EXACT;
      self->detected = self->family;
      self->reason = g_strdup_printf ("%s equals the %s template “%s” after normalization",
                                      self->source, self->family->name, self->variant->file);
      build_stops (self);
      return;
    }
  self->match = SMELT_CHAT_MATCH_FALLBACK;
  self->family = find_by_markers (self->jinja);
  self->detected = self->family;
  if (self->family)
    {
      markers = g_strjoinv (", ", self->family->markers);
      self->reason = g_strdup_printf ("unknown template in %s matched to %s by its markers (%s), "
                                      "not by its text", self->source, self->family->name, markers);
      self->warning = g_strdup_printf ("the chat template in %s is not one smelt knows; it uses "
                                       "the markers of %s (%s), so that family's Ollama template "
                                       "is used: check that it renders as the model expects, or "
                                       "name a family with Template=",
                                       self->source, self->family->name, markers);
    }
  else
    {
      self->reason = g_strdup_printf ("unknown template in %s with no known markers: a generic "
                                      "role-prefixed template", self->source);
      self->warning = g_strdup_printf ("the chat template in %s is not one smelt knows and uses no "
                                       "known family's markers: a generic template is used, which "
                                       "the model was not trained on; name a family with "
                                       "Template= if one fits", self->source);
    }
  build_stops (self);
}

/**
 * smelt_chat_template_new_for_model:
 * @model: a model
 * @error: return location for a #GError
 *
 * Reads the chat template of @model (chat_template.jinja, else the
 * "chat_template" of tokenizer_config.json, a string or the "default" of a
 * list of named templates, else chat_template.json; a GGUF model's
 * tokenizer.chat_template), its special tokens and the end-of-sequence
 * tokens of generation_config.json (resolved to strings through the
 * tokenizer's added tokens), and recognizes the template's family.
 *
 * A model without a chat template is no error: it gives
 * %SMELT_CHAT_MATCH_NONE.
 *
 * Returns: (transfer full): a new #SmeltChatTemplate, or %NULL with
 *   @error set (naming the file) when a file is broken or lies
 */
SmeltChatTemplate *
smelt_chat_template_new_for_model (SmeltModel  *model,
                                   GError     **error)
{
  g_autoptr(SmeltChatTemplate) self = NULL;
  SmeltGgufFile *gguf;

  g_return_val_if_fail (SMELT_IS_MODEL (model), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  gguf = smelt_model_get_gguf (model);
  if (gguf != NULL)
    return smelt_chat_template_new_for_gguf (gguf);
  self = g_object_new (SMELT_TYPE_CHAT_TEMPLATE, NULL);
  if (!read_hf_files (self, model, error))
    return NULL;
  g_ptr_array_add (self->eos_tokens, NULL);
  detect (self);
  return g_steal_pointer (&self);
}

/**
 * smelt_chat_template_new_for_gguf:
 * @file: a GGUF file, of any tensor types
 *
 * Reads the tokenizer.chat_template of a GGUF file and its special tokens
 * (tokenizer.ggml.bos_token_id and the EOS, EOT and EOM ids, resolved
 * through tokenizer.ggml.tokens), and recognizes the template's family, as
 * smelt_chat_template_new_for_model() does for a model opened from a GGUF
 * file. A GGUF without a chat template gives %SMELT_CHAT_MATCH_NONE.
 *
 * Returns: (transfer full): a new #SmeltChatTemplate
 */
SmeltChatTemplate *
smelt_chat_template_new_for_gguf (SmeltGgufFile *file)
{
  SmeltChatTemplate *self;

  g_return_val_if_fail (SMELT_IS_GGUF_FILE (file), NULL);

  self = g_object_new (SMELT_TYPE_CHAT_TEMPLATE, NULL);
  read_gguf (self, file);
  g_ptr_array_add (self->eos_tokens, NULL);
  detect (self);
  return self;
}

/**
 * smelt_chat_template_set_family:
 * @self: a #SmeltChatTemplate
 * @family_id: an id of smelt_chat_template_list_families()
 * @error: return location for a #GError
 *
 * Uses the family @family_id whatever the model's template is (the match
 * becomes %SMELT_CHAT_MATCH_CHOSEN). The stop strings stay those of the
 * family plus the model's end-of-sequence tokens.
 *
 * Returns: %TRUE, or %FALSE with @error set when no family has that id
 */
gboolean
smelt_chat_template_set_family (SmeltChatTemplate  *self,
                                const char         *family_id,
                                GError            **error)
{
  const SmeltChatFamily *f;

  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), FALSE);
  g_return_val_if_fail (family_id != NULL, FALSE);

  f = _smelt_chat_family_lookup (family_id);
  if (f == NULL)
    {
      g_auto(GStrv) ids = smelt_chat_template_list_families ();
      g_autofree char *known = g_strjoinv (", ", ids);

      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "no chat-template family “%s”; known families: %s", family_id, known);
      return FALSE;
    }
  self->family = f;
  self->variant = NULL;
  self->match = SMELT_CHAT_MATCH_CHOSEN;
  g_free (self->reason);
  g_clear_pointer (&self->warning, g_free);
  if (self->detected == f)
    self->reason = g_strdup_printf ("family %s chosen (the model's template is of it too)",
                                    f->name);
  else if (self->detected)
    self->reason = g_strdup_printf ("family %s chosen over %s, which the model's template "
                                    "suggests", f->name, self->detected->name);
  else
    self->reason = g_strdup_printf ("family %s chosen (%s)", f->name,
                                    self->jinja ? "the model's template is not a known one"
                                                : "the model has no chat template");
  build_stops (self);
  return TRUE;
}

/**
 * smelt_chat_template_get_match:
 * @self: a #SmeltChatTemplate
 *
 * Gets how the family was found.
 *
 * Returns: how the family was found
 */
SmeltChatMatch
smelt_chat_template_get_match (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), SMELT_CHAT_MATCH_NONE);
  return self->match;
}

/**
 * smelt_chat_template_get_jinja:
 * @self: a #SmeltChatTemplate
 *
 * Gets the model's own chat template.
 *
 * Returns: (nullable): the model's own chat template
 */
const char *
smelt_chat_template_get_jinja (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->jinja;
}

/**
 * smelt_chat_template_get_source:
 * @self: a #SmeltChatTemplate
 *
 * Gets where the template came from: "chat_template.jinja",
 * "tokenizer_config.json", "chat_template.json" or a GGUF model's
 * "tokenizer.chat_template".
 *
 * Returns: (nullable): where the template came from: "chat_template.jinja",
 *   "tokenizer_config.json", "chat_template.json" or a GGUF model's
 *   "tokenizer.chat_template"
 */
const char *
smelt_chat_template_get_source (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->source;
}

/**
 * smelt_chat_template_get_family:
 * @self: a #SmeltChatTemplate
 *
 * Gets the id of the family in use ("llama3.1", …), or %NULL without a
 * template or for the generic fallback.
 *
 * Returns: (nullable): the id of the family in use ("llama3.1", …), or
 *   %NULL without a template or for the generic fallback
 */
const char *
smelt_chat_template_get_family (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->family ? self->family->id : NULL;
}

/**
 * smelt_chat_template_get_family_name:
 * @self: a #SmeltChatTemplate
 *
 * Gets the display name of the family in use ("Llama 3.1/3.2/3.3", …).
 *
 * Returns: (nullable): the display name of the family in use
 *   ("Llama 3.1/3.2/3.3", …)
 */
const char *
smelt_chat_template_get_family_name (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->family ? self->family->name : NULL;
}

/**
 * smelt_chat_template_get_variant:
 * @self: a #SmeltChatTemplate
 *
 * For an exact match, gets the file name of the family's variant that
 * the template equals.
 *
 * Returns: (nullable): for an exact match, the file name of the family's
 *   variant the template equals
 */
const char *
smelt_chat_template_get_variant (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->variant ? self->variant->file : NULL;
}

/**
 * smelt_chat_template_get_reason:
 * @self: a #SmeltChatTemplate
 *
 * Says why this family was chosen (or none), in one line.
 *
 * Returns: why this family (or none), in one line
 */
const char *
smelt_chat_template_get_reason (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->reason;
}

/**
 * smelt_chat_template_get_warning:
 * @self: a #SmeltChatTemplate
 *
 * Gets what a user should check: set for %SMELT_CHAT_MATCH_FALLBACK and
 * %SMELT_CHAT_MATCH_NONE.
 *
 * Returns: (nullable): what a user should check: set for
 *   %SMELT_CHAT_MATCH_FALLBACK and %SMELT_CHAT_MATCH_NONE
 */
const char *
smelt_chat_template_get_warning (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->warning;
}

/**
 * smelt_chat_template_get_ollama_template:
 * @self: a #SmeltChatTemplate
 *
 * The family's template in Ollama's Go text/template syntax, for a
 * Modelfile's TEMPLATE. It never writes the leading BOS token: llama.cpp
 * adds it when tokenizing, as the GGUF's tokenizer.ggml.add_bos_token
 * says.
 *
 * Returns: (nullable): the Go template; %NULL for %SMELT_CHAT_MATCH_NONE
 */
const char *
smelt_chat_template_get_ollama_template (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  if (self->family)
    return self->ollama;
  if (self->match == SMELT_CHAT_MATCH_FALLBACK)
    return _smelt_chat_generic_template ();
  return NULL;
}

/**
 * smelt_chat_template_get_default_system:
 * @self: a #SmeltChatTemplate
 *
 * Gets the system prompt the family's template uses when a conversation has
 * none (for a Modelfile's SYSTEM).
 *
 * Returns: (nullable): the system prompt the family's template uses when a
 *   conversation has none (for a Modelfile's SYSTEM)
 */
const char *
smelt_chat_template_get_default_system (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->family ? self->family->default_system : NULL;
}

/**
 * smelt_chat_template_get_stop_tokens:
 * @self: a #SmeltChatTemplate
 *
 * Every string that ends a turn: the family's end-of-turn markers, then
 * the model's own end-of-sequence tokens (tokenizer_config.json's
 * eos_token and generation_config.json's eos_token_id), without
 * duplicates.
 *
 * Returns: (transfer none) (array zero-terminated=1): the stop strings
 */
const char * const *
smelt_chat_template_get_stop_tokens (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return (const char * const *) self->stops->pdata;
}

/**
 * smelt_chat_template_get_eos_tokens:
 * @self: a #SmeltChatTemplate
 *
 * Gets the model's own end-of-sequence tokens, without the family's
 * markers.
 *
 * Returns: (transfer none) (array zero-terminated=1): the model's own
 *   end-of-sequence tokens, without the family's markers
 */
const char * const *
smelt_chat_template_get_eos_tokens (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return (const char * const *) self->eos_tokens->pdata;
}

/**
 * smelt_chat_template_get_bos_token:
 * @self: a #SmeltChatTemplate
 *
 * Gets the model's beginning-of-sequence token.
 *
 * Returns: (nullable): the model's beginning-of-sequence token
 */
const char *
smelt_chat_template_get_bos_token (SmeltChatTemplate *self)
{
  g_return_val_if_fail (SMELT_IS_CHAT_TEMPLATE (self), NULL);
  return self->bos_token;
}
