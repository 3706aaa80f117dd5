/* smelt-gguf-bpe.c: tokenizer.json as transformers' AutoTokenizer sees it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "smelt-gguf-vocab-private.h"

/* The reference converter identifies a byte-level BPE pre-tokenizer by
 * encoding a fixed text with transformers' AutoTokenizer (which runs the
 * Hugging Face `tokenizers` library on tokenizer.json) and hashing the
 * ids. Reproducing that hash means reproducing the library's encode():
 *
 *   1. split out added tokens that match the raw text (normalized=false),
 *      leftmost-longest, honouring lstrip/rstrip/single_word;
 *   2. normalize the other pieces, then split out added tokens that match
 *      the normalized text;
 *   3. pre-tokenize each remaining piece (Split with a regex, ByteLevel,
 *      Metaspace, Digits, …), each piece on its own;
 *   4. BPE each word: characters (or <0xXX> byte fallbacks) merged by
 *      merge rank, leftmost first among equal ranks, with ignore_merges
 *      taking whole words found in the vocabulary;
 *   5. the post-processor adds BOS/EOS as its template says.
 *
 * Regular expressions run on GRegex (PCRE2 with Unicode properties) where
 * tokenizers uses Oniguruma; the two agree on the patterns tokenizer.json
 * files use (\p{L}, \p{N}, \s, lookahead, (?i:…)) except that Oniguruma's
 * \s also matches U+0085, which the fixed text does not contain.
 *
 * transformers adds three things on top: the special tokens named in
 * tokenizer_config.json (and special_tokens_map.json) become added special
 * tokens; the Llama and Gemma tokenizer classes rebuild the post-processor
 * from add_bos_token/add_eos_token; and a top-level pre-tokenizer with an
 * add_prefix_space option gets tokenizer_config.json's value (False when
 * absent). */

/* ------------------------------------------------------------------ */
/* string → id and pair → merge tables (open addressing) */

typedef struct {
  const char *s;      /* NULL: empty slot */
  guint32     len;
  guint32     id;
  guint64     hash;
} StrSlot;

typedef struct {
  StrSlot *slots;
  gsize    mask;
  gsize    n;
} StrMap;

static guint64
hash_bytes (const char *s,
            gsize       len)
{
  guint64 h = 0xcbf29ce484222325ull;

  for (gsize i = 0; i < len; i++)
    h = (h ^ (guchar) s[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static void
str_map_init (StrMap *m,
              gsize   expected)
{
  gsize cap = 16;

  while (cap < expected * 2)
    cap <<= 1;
  m->slots = g_new0 (StrSlot, cap);
  m->mask = cap - 1;
  m->n = 0;
}

static void str_map_insert (StrMap *m, const char *s, gsize len, guint32 id);

static void
str_map_grow (StrMap *m)
{
  StrSlot *old = m->slots;
  gsize cap = (m->mask + 1) * 2;

  m->slots = g_new0 (StrSlot, cap);
  m->mask = cap - 1;
  m->n = 0;
  for (gsize i = 0; i < cap / 2; i++)
    if (old[i].s)
      {
        gsize k;

        for (k = old[i].hash & m->mask; m->slots[k].s; k = (k + 1) & m->mask)
          ;
        m->slots[k] = old[i];
        m->n++;
      }
  g_free (old);
}

/* Inserts or overwrites (a later duplicate wins, like a Rust HashMap
 * collected from the same sequence). */
static void
str_map_insert (StrMap     *m,
                const char *s,
                gsize       len,
                guint32     id)
{
  guint64 h = hash_bytes (s, len);
  gsize i;

  if ((m->n + 1) * 2 > m->mask + 1)
    str_map_grow (m);
  for (i = h & m->mask; m->slots[i].s; i = (i + 1) & m->mask)
    if (m->slots[i].hash == h && m->slots[i].len == len && memcmp (m->slots[i].s, s, len) == 0)
      {
        m->slots[i].id = id;
        return;
      }
  m->slots[i].s = s;
  m->slots[i].len = len;
  m->slots[i].id = id;
  m->slots[i].hash = h;
  m->n++;
}

static gboolean
str_map_lookup (const StrMap *m,
                const char   *s,
                gsize         len,
                guint32      *id)
{
  guint64 h;

  if (!m->slots)
    return FALSE;
  h = hash_bytes (s, len);
  for (gsize i = h & m->mask; m->slots[i].s; i = (i + 1) & m->mask)
    if (m->slots[i].hash == h && m->slots[i].len == len && memcmp (m->slots[i].s, s, len) == 0)
      {
        *id = m->slots[i].id;
        return TRUE;
      }
  return FALSE;
}

typedef struct {
  guint64 key;        /* G_MAXUINT64: empty */
  guint32 rank;
  guint32 new_id;
} MergeSlot;

typedef struct {
  MergeSlot *slots;
  gsize      mask;
} MergeMap;

static guint64
mix64 (guint64 x)
{
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static void
merge_map_insert (MergeMap *m,
                  guint64   key,
                  guint32   rank,
                  guint32   new_id)
{
  gsize i;

  for (i = mix64 (key) & m->mask; m->slots[i].key != G_MAXUINT64; i = (i + 1) & m->mask)
    if (m->slots[i].key == key)
      break;
  m->slots[i].key = key;
  m->slots[i].rank = rank;
  m->slots[i].new_id = new_id;
}

static const MergeSlot *
merge_map_lookup (const MergeMap *m,
                  guint32         a,
                  guint32         b)
{
  guint64 key = (guint64) a << 32 | b;

  for (gsize i = mix64 (key) & m->mask; m->slots[i].key != G_MAXUINT64; i = (i + 1) & m->mask)
    if (m->slots[i].key == key)
      return &m->slots[i];
  return NULL;
}

/* ------------------------------------------------------------------ */

struct _SmeltHfTokenizer {
  char        *path;
  SmeltJson   *json;
  SmeltJson   *config;
  SmeltJson   *model;
  const char  *model_type;
  const char  *tokenizer_class;   /* without "Fast" */

  StrMap       model_vocab;       /* model.vocab */
  guint32      base_size;
  guint32      id_end;
  const char **model_tokens;      /* id → model.vocab string (or NULL) */
  guint32      model_span;        /* entries of model_tokens */
  const char  *special_attr[7];   /* bos, eos, unk, sep, pad, cls, mask */

  GArray      *added;             /* SmeltHfAddedToken, by id */
  GHashTable  *added_by_id;       /* id → index + 1 */
  GHashTable  *added_by_content;  /* content → index + 1 */
  GHashTable  *special_ids;       /* ids of all_special_tokens */
  GStringChunk *strings;

  /* transformers' changes to the tokenizer.json pipeline */
  gboolean     rebuild_post;      /* Llama/Gemma: bos $A eos template */
  gboolean     add_bos;
  gboolean     add_eos;
  int          add_prefix_space;  /* for the top-level pre-tokenizer */
  gboolean     cleanup_spaces;

  /* the BPE encoder, built on first use */
  gboolean     merges_ready;
  MergeMap     merges;
  const char  *prefix;            /* continuing_subword_prefix */
  const char  *suffix;            /* end_of_word_suffix */
  gboolean     byte_fallback;
  gboolean     ignore_merges;
  gboolean     fuse_unk;
  gint64       unk_id;
  GHashTable  *regexes;           /* pattern → GRegex */
};

static gboolean
json_bool (SmeltJson *obj,
           const char *key,
           gboolean    dflt)
{
  SmeltJson *v = smelt_json_get (obj, key);

  if (!v || v->type == SMELT_JSON_NULL)
    return dflt;
  return smelt_json_truthy (v);
}

static void
set_unsupported (GError    **error,
                 const char *path,
                 const char *what,
                 const char *name)
{
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
               "%s: %s \"%s\" is not supported", path, what, name ? name : "(none)");
}

static const char *
token_content (SmeltJson *v)
{
  if (!v)
    return NULL;
  if (v->type == SMELT_JSON_STRING)
    return v->u.s;
  if (v->type == SMELT_JSON_OBJECT)
    return smelt_json_get_string (v, "content");
  return NULL;
}

static void
add_added_token (SmeltHfTokenizer        *tok,
                 const SmeltHfAddedToken *t)
{
  guint index = GPOINTER_TO_UINT (g_hash_table_lookup (tok->added_by_id, GUINT_TO_POINTER (t->id)));

  if (index)
    g_array_index (tok->added, SmeltHfAddedToken, index - 1) = *t;
  else
    {
      g_array_append_val (tok->added, *t);
      index = tok->added->len;
      g_hash_table_insert (tok->added_by_id, GUINT_TO_POINTER (t->id), GUINT_TO_POINTER (index));
    }
  g_hash_table_insert (tok->added_by_content, (gpointer) t->content, GUINT_TO_POINTER (index));
  if (t->id >= tok->id_end)
    tok->id_end = t->id + 1;
}

static gboolean
load_vocab (SmeltHfTokenizer  *tok,
            GError           **error)
{
  SmeltJson *vocab = smelt_json_get (tok->model, "vocab");

  if (vocab && vocab->type == SMELT_JSON_OBJECT)
    {
      gint64 max_id = -1;

      str_map_init (&tok->model_vocab, vocab->n);
      for (gsize i = 0; i < vocab->n; i++)
        {
          SmeltJsonMember *m = &vocab->u.members[i];

          if (m->value->type != SMELT_JSON_INT || m->value->u.i < 0 || m->value->u.i > G_MAXINT32)
            {
              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                           "%s: vocabulary entry \"%s\" has no valid id", tok->path, m->key);
              return FALSE;
            }
          str_map_insert (&tok->model_vocab, m->key, m->key_len, (guint32) m->value->u.i);
          max_id = MAX (max_id, m->value->u.i);
        }
      tok->base_size = tok->model_vocab.n;
      tok->id_end = (guint32) (max_id + 1);
      tok->model_span = tok->id_end;
      tok->model_tokens = g_new0 (const char *, MAX (tok->id_end, 1));
      /* the map holds the last duplicate; list the strings it kept */
      for (gsize i = 0; i <= tok->model_vocab.mask; i++)
        if (tok->model_vocab.slots[i].s)
          tok->model_tokens[tok->model_vocab.slots[i].id] = tok->model_vocab.slots[i].s;
      return TRUE;
    }
  if (vocab && vocab->type == SMELT_JSON_ARRAY)
    {
      /* Unigram: [[piece, score], …], the index is the id */
      str_map_init (&tok->model_vocab, vocab->n);
      tok->model_tokens = g_new0 (const char *, MAX (vocab->n, 1));
      for (gsize i = 0; i < vocab->n; i++)
        {
          SmeltJson *e = vocab->u.items[i];

          if (e->type != SMELT_JSON_ARRAY || e->n < 1 || e->u.items[0]->type != SMELT_JSON_STRING)
            {
              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                           "%s: vocabulary entry %" G_GSIZE_FORMAT " is malformed", tok->path, i);
              return FALSE;
            }
          str_map_insert (&tok->model_vocab, e->u.items[0]->u.s, e->u.items[0]->n, i);
          tok->model_tokens[i] = e->u.items[0]->u.s;
        }
      tok->base_size = vocab->n;
      tok->id_end = vocab->n;
      tok->model_span = vocab->n;
      return TRUE;
    }
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
               "%s: model.vocab is missing", tok->path);
  return FALSE;
}

static gboolean
load_added_tokens (SmeltHfTokenizer  *tok,
                   GError           **error)
{
  SmeltJson *list = smelt_json_get (tok->json, "added_tokens");

  if (!list || list->type != SMELT_JSON_ARRAY)
    return TRUE;
  for (gsize i = 0; i < list->n; i++)
    {
      SmeltJson *e = list->u.items[i];
      SmeltJson *id = smelt_json_get (e, "id");
      SmeltHfAddedToken t = { 0 };

      t.content = smelt_json_get_string (e, "content");
      if (!t.content || !id || id->type != SMELT_JSON_INT || id->u.i < 0 || id->u.i > G_MAXINT32)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: added token %" G_GSIZE_FORMAT " has no content or id", tok->path, i);
          return FALSE;
        }
      t.id = (guint32) id->u.i;
      t.special = json_bool (e, "special", FALSE);
      t.normalized = json_bool (e, "normalized", !t.special);
      t.lstrip = json_bool (e, "lstrip", FALSE);
      t.rstrip = json_bool (e, "rstrip", FALSE);
      t.single_word = json_bool (e, "single_word", FALSE);
      add_added_token (tok, &t);
    }
  return TRUE;
}

/* The special tokens transformers knows for a tokenizer: the *_token
 * attributes and additional_special_tokens, from special_tokens_map.json
 * over tokenizer_config.json over the class's defaults. */
static void
collect_special_tokens (SmeltHfTokenizer *tok,
                        SmeltJson        *stmap,
                        GPtrArray        *out)
{
  static const char * const attrs[] = {
    "bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token",
  };
  const char *cls = tok->tokenizer_class ? tok->tokenizer_class : "";
  SmeltJson *extra;

  for (guint i = 0; i < G_N_ELEMENTS (attrs); i++)
    {
      SmeltJson *v = smelt_json_get (stmap, attrs[i]);
      const char *s = NULL;

      if (!smelt_json_truthy (v))
        v = smelt_json_get (tok->config, attrs[i]);
      if (v)
        s = token_content (v);
      else if (g_str_equal (cls, "LlamaTokenizer") || g_str_equal (cls, "CodeLlamaTokenizer"))
        s = g_str_equal (attrs[i], "bos_token") ? "<s>" :
            g_str_equal (attrs[i], "eos_token") ? "</s>" :
            g_str_equal (attrs[i], "unk_token") ? "<unk>" : NULL;
      else if (g_str_equal (cls, "GemmaTokenizer"))
        s = g_str_equal (attrs[i], "bos_token") ? "<bos>" :
            g_str_equal (attrs[i], "eos_token") ? "<eos>" :
            g_str_equal (attrs[i], "unk_token") ? "<unk>" :
            g_str_equal (attrs[i], "pad_token") ? "<pad>" : NULL;
      else if (g_str_equal (cls, "Qwen2Tokenizer"))
        s = g_str_equal (attrs[i], "eos_token") || g_str_equal (attrs[i], "unk_token") ||
            g_str_equal (attrs[i], "pad_token") ? "<|endoftext|>" : NULL;
      else if (g_str_equal (cls, "GPT2Tokenizer"))
        s = g_str_equal (attrs[i], "bos_token") || g_str_equal (attrs[i], "eos_token") ||
            g_str_equal (attrs[i], "unk_token") ? "<|endoftext|>" : NULL;
      tok->special_attr[i] = s;
      if (s && *s)
        g_ptr_array_add (out, (gpointer) s);
    }

  extra = smelt_json_get (stmap, "additional_special_tokens");
  if (!extra)
    extra = smelt_json_get (tok->config, "additional_special_tokens");
  if (extra && extra->type == SMELT_JSON_ARRAY)
    for (gsize i = 0; i < extra->n; i++)
      {
        const char *s = token_content (extra->u.items[i]);

        if (s && *s)
          g_ptr_array_add (out, (gpointer) s);
      }
}

static void
setup_transformers (SmeltHfTokenizer *tok,
                    SmeltJson        *stmap,
                    const char       *model_type)
{
  g_autoptr(GPtrArray) specials = g_ptr_array_new ();
  const char *cls = smelt_json_get_string (tok->config, "tokenizer_class");
  SmeltJson *v;

  if (cls)
    tok->tokenizer_class = g_string_chunk_insert_len (tok->strings, cls,
                                                      g_str_has_suffix (cls, "Fast") ? strlen (cls) - 4 : strlen (cls));
  else if (model_type)
    {
      /* AutoTokenizer falls back on the model type's tokenizer */
      if (g_str_equal (model_type, "llama") || g_str_equal (model_type, "mistral") ||
          g_str_equal (model_type, "phi3"))
        tok->tokenizer_class = "LlamaTokenizer";
      else if (g_str_has_prefix (model_type, "gemma"))
        tok->tokenizer_class = "GemmaTokenizer";
      else if (g_str_has_prefix (model_type, "qwen2") || g_str_has_prefix (model_type, "qwen3"))
        tok->tokenizer_class = "Qwen2Tokenizer";
    }

  collect_special_tokens (tok, stmap, specials);
  for (guint i = 0; i < specials->len; i++)
    {
      const char *s = specials->pdata[i];
      const SmeltHfAddedToken *known = smelt_hf_tokenizer_find_added (tok, s);
      SmeltHfAddedToken t = { 0 };
      guint32 id;

      /* one already added keeps its flags (transformers only adds the
       * special tokens its encoder does not know) */
      if (known)
        {
          g_hash_table_add (tok->special_ids, GUINT_TO_POINTER (known->id));
          continue;
        }
      /* transformers adds it; one that exists in the vocabulary keeps its
       * id (a new token would grow the vocabulary, which no model this
       * converter handles does) */
      if (!str_map_lookup (&tok->model_vocab, s, strlen (s), &id))
        continue;
      t.content = s;
      t.id = id;
      t.special = TRUE;
      t.normalized = FALSE;
      add_added_token (tok, &t);
      g_hash_table_add (tok->special_ids, GUINT_TO_POINTER (id));
    }

  cls = tok->tokenizer_class ? tok->tokenizer_class : "";
  if (g_str_equal (cls, "LlamaTokenizer") || g_str_equal (cls, "CodeLlamaTokenizer") ||
      g_str_equal (cls, "GemmaTokenizer"))
    {
      tok->rebuild_post = TRUE;
      tok->add_bos = json_bool (tok->config, "add_bos_token", TRUE);
      tok->add_eos = json_bool (tok->config, "add_eos_token", FALSE);
    }
  v = smelt_json_get (tok->config, "add_prefix_space");
  tok->add_prefix_space = v && v->type != SMELT_JSON_NULL ? smelt_json_truthy (v) : FALSE;
  tok->cleanup_spaces = json_bool (tok->config, "clean_up_tokenization_spaces", FALSE);
}

SmeltHfTokenizer *
smelt_hf_tokenizer_new (SmeltJson   *tokenizer_json,
                        SmeltJson   *tokenizer_config,
                        SmeltJson   *special_tokens_map,
                        const char  *model_type,
                        const char  *path,
                        GError     **error)
{
  g_autoptr(SmeltHfTokenizer) tok = g_new0 (SmeltHfTokenizer, 1);

  tok->path = g_strdup (path);
  tok->json = tokenizer_json;
  tok->config = tokenizer_config;
  tok->added = g_array_new (FALSE, FALSE, sizeof (SmeltHfAddedToken));
  tok->added_by_id = g_hash_table_new (NULL, NULL);
  tok->added_by_content = g_hash_table_new (g_str_hash, g_str_equal);
  tok->special_ids = g_hash_table_new (NULL, NULL);
  tok->strings = g_string_chunk_new (256);
  tok->regexes = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_regex_unref);
  tok->unk_id = -1;

  if (!tokenizer_json || tokenizer_json->type != SMELT_JSON_OBJECT)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a tokenizer (the top level is not an object)", path);
      return NULL;
    }
  tok->model = smelt_json_get (tokenizer_json, "model");
  if (!tok->model || tok->model->type != SMELT_JSON_OBJECT)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a tokenizer (no \"model\" object)", path);
      return NULL;
    }
  tok->model_type = smelt_json_get_string (tok->model, "type");
  if (!tok->model_type)
    {
      /* tokenizers infers the type of untagged models from their fields */
      if (smelt_json_get (tok->model, "merges"))
        tok->model_type = "BPE";
      else if (smelt_json_get (tok->model, "vocab") &&
               smelt_json_get (tok->model, "vocab")->type == SMELT_JSON_ARRAY)
        tok->model_type = "Unigram";
      else
        tok->model_type = "WordLevel";
    }
  if (!load_vocab (tok, error) || !load_added_tokens (tok, error))
    return NULL;
  setup_transformers (tok, special_tokens_map, model_type);
  return g_steal_pointer (&tok);
}

void
smelt_hf_tokenizer_free (SmeltHfTokenizer *tok)
{
  if (!tok)
    return;
  g_free (tok->path);
  g_free (tok->model_vocab.slots);
  g_free (tok->model_tokens);
  g_free (tok->merges.slots);
  g_clear_pointer (&tok->added, g_array_unref);
  g_clear_pointer (&tok->added_by_id, g_hash_table_unref);
  g_clear_pointer (&tok->added_by_content, g_hash_table_unref);
  g_clear_pointer (&tok->special_ids, g_hash_table_unref);
  g_clear_pointer (&tok->regexes, g_hash_table_unref);
  if (tok->strings)
    g_string_chunk_free (tok->strings);
  g_free (tok);
}

const char *
smelt_hf_tokenizer_get_model_type (SmeltHfTokenizer *tok)
{
  return tok->model_type;
}

guint32
smelt_hf_tokenizer_get_base_size (SmeltHfTokenizer *tok)
{
  return tok->base_size;
}

guint32
smelt_hf_tokenizer_get_id_end (SmeltHfTokenizer *tok)
{
  return tok->id_end;
}

const SmeltHfAddedToken *
smelt_hf_tokenizer_get_added (SmeltHfTokenizer *tok,
                              guint32           id)
{
  guint index = GPOINTER_TO_UINT (g_hash_table_lookup (tok->added_by_id, GUINT_TO_POINTER (id)));

  return index ? &g_array_index (tok->added, SmeltHfAddedToken, index - 1) : NULL;
}

const SmeltHfAddedToken *
smelt_hf_tokenizer_find_added (SmeltHfTokenizer *tok,
                               const char       *content)
{
  guint index = GPOINTER_TO_UINT (g_hash_table_lookup (tok->added_by_content, content));

  return index ? &g_array_index (tok->added, SmeltHfAddedToken, index - 1) : NULL;
}

const char *
smelt_hf_tokenizer_id_to_token (SmeltHfTokenizer *tok,
                                guint32           id)
{
  const SmeltHfAddedToken *t = smelt_hf_tokenizer_get_added (tok, id);

  if (t)
    return t->content;
  return id < tok->model_span ? tok->model_tokens[id] : NULL;
}

gboolean
smelt_hf_tokenizer_token_to_id (SmeltHfTokenizer *tok,
                                const char       *token,
                                guint32          *id)
{
  const SmeltHfAddedToken *t = smelt_hf_tokenizer_find_added (tok, token);

  if (t)
    {
      *id = t->id;
      return TRUE;
    }
  return str_map_lookup (&tok->model_vocab, token, strlen (token), id);
}

GHashTable *
smelt_hf_tokenizer_get_special_ids (SmeltHfTokenizer *tok)
{
  return tok->special_ids;
}

/* ------------------------------------------------------------------ */
/* pieces of text on their way through the pipeline */

typedef struct {
  char     *text;
  gsize     len;
  gint64    id;        /* an added token's id, or -1 */
  gboolean  at_start;  /* begins at offset 0 of the input */
} Piece;

typedef struct {
  gsize    start;
  gsize    end;
  gboolean is_match;
} Span;

static void
piece_clear (gpointer p)
{
  g_free (((Piece *) p)->text);
}

static GArray *
pieces_new (void)
{
  GArray *a = g_array_new (FALSE, FALSE, sizeof (Piece));

  g_array_set_clear_func (a, piece_clear);
  return a;
}

static void
pieces_add (GArray     *a,
            const char *text,
            gsize       len,
            gint64      id,
            gboolean    at_start)
{
  Piece p = { g_strndup (text, len), len, id, at_start };

  g_array_append_val (a, p);
}

/* Replaces @pieces[i] (not an added token) with the non-empty spans of
 * @spans that are not removed; used by every split. */
typedef enum {
  BEHAVIOR_REMOVED,
  BEHAVIOR_ISOLATED,
  BEHAVIOR_MERGED_WITH_PREVIOUS,
  BEHAVIOR_MERGED_WITH_NEXT,
  BEHAVIOR_CONTIGUOUS,
} Behavior;

/* tokenizers' NormalizedString::split: turns the matches into the pieces
 * to keep (is_match then means "remove"). */
static GArray *
apply_behavior (GArray   *spans,
                Behavior  behavior)
{
  GArray *out = g_array_new (FALSE, FALSE, sizeof (Span));
  gboolean prev_match = FALSE;

  switch (behavior)
    {
    case BEHAVIOR_REMOVED:
      for (guint i = 0; i < spans->len; i++)
        {
          Span s = g_array_index (spans, Span, i);

          g_array_append_val (out, s);
        }
      break;
    case BEHAVIOR_ISOLATED:
      for (guint i = 0; i < spans->len; i++)
        {
          Span s = g_array_index (spans, Span, i);

          s.is_match = FALSE;
          g_array_append_val (out, s);
        }
      break;
    case BEHAVIOR_MERGED_WITH_PREVIOUS:
      for (guint i = 0; i < spans->len; i++)
        {
          Span s = g_array_index (spans, Span, i);

          if (s.is_match && !prev_match && out->len > 0)
            g_array_index (out, Span, out->len - 1).end = s.end;
          else
            {
              Span k = { s.start, s.end, FALSE };

              g_array_append_val (out, k);
            }
          prev_match = s.is_match;
        }
      break;
    case BEHAVIOR_MERGED_WITH_NEXT:
      for (guint i = spans->len; i-- > 0;)
        {
          Span s = g_array_index (spans, Span, i);

          if (s.is_match && !prev_match && out->len > 0)
            g_array_index (out, Span, out->len - 1).start = s.start;
          else
            {
              Span k = { s.start, s.end, FALSE };

              g_array_append_val (out, k);
            }
          prev_match = s.is_match;
        }
      for (guint i = 0; i < out->len / 2; i++)
        {
          Span t = g_array_index (out, Span, i);

          g_array_index (out, Span, i) = g_array_index (out, Span, out->len - 1 - i);
          g_array_index (out, Span, out->len - 1 - i) = t;
        }
      break;
    case BEHAVIOR_CONTIGUOUS:
      for (guint i = 0; i < spans->len; i++)
        {
          Span s = g_array_index (spans, Span, i);

          if (s.is_match == prev_match && out->len > 0)
            g_array_index (out, Span, out->len - 1).end = s.end;
          else
            {
              Span k = { s.start, s.end, FALSE };

              g_array_append_val (out, k);
            }
          prev_match = s.is_match;
        }
      break;
    }
  return out;
}

/* Splits every non-added piece with @find (which lists the matches of
 * one piece as spans covering it) and @behavior. */
typedef GArray *(*FindFunc) (SmeltHfTokenizer *tok, const char *text, gsize len, gpointer data);

static GArray *
split_pieces (SmeltHfTokenizer *tok,
              GArray           *pieces,
              FindFunc          find,
              gpointer          data,
              Behavior          behavior,
              gboolean          invert)
{
  GArray *out = pieces_new ();

  for (guint i = 0; i < pieces->len; i++)
    {
      Piece *p = &g_array_index (pieces, Piece, i);
      g_autoptr(GArray) spans = NULL;
      g_autoptr(GArray) kept = NULL;

      if (p->id >= 0)
        {
          pieces_add (out, p->text, p->len, p->id, p->at_start);
          continue;
        }
      spans = find (tok, p->text, p->len, data);
      if (invert)
        for (guint k = 0; k < spans->len; k++)
          g_array_index (spans, Span, k).is_match = !g_array_index (spans, Span, k).is_match;
      kept = apply_behavior (spans, behavior);
      for (guint k = 0; k < kept->len; k++)
        {
          Span s = g_array_index (kept, Span, k);

          if (!s.is_match && s.end > s.start)
            pieces_add (out, p->text + s.start, s.end - s.start, -1, p->at_start && s.start == 0);
        }
    }
  return out;
}

static void
push_span (GArray   *spans,
           gsize     start,
           gsize     end,
           gboolean  is_match)
{
  Span s = { start, end, is_match };

  g_array_append_val (spans, s);
}

static GRegex *
get_regex (SmeltHfTokenizer *tok,
           const char       *pattern,
           GError          **error)
{
  GRegex *re = g_hash_table_lookup (tok->regexes, pattern);

  if (!re)
    {
      g_autoptr(GError) local = NULL;

      re = g_regex_new (pattern, 0, 0, &local);
      if (!re)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                       "%s: the pattern /%s/ does not compile: %s", tok->path, pattern, local->message);
          return NULL;
        }
      g_hash_table_insert (tok->regexes, g_strdup (pattern), re);
    }
  return re;
}

/* Matches of a regex as spans covering the text (tokenizers'
 * Pattern::find_matches). */
static GArray *
find_regex (SmeltHfTokenizer *tok,
            const char       *text,
            gsize             len,
            gpointer          data)
{
  GArray *spans = g_array_new (FALSE, FALSE, sizeof (Span));
  GMatchInfo *info = NULL;
  gsize prev = 0;

  g_regex_match_full (data, text, len, 0, 0, &info, NULL);
  while (g_match_info_matches (info))
    {
      int s, e;

      g_match_info_fetch_pos (info, 0, &s, &e);
      if ((gsize) s != prev)
        push_span (spans, prev, s, FALSE);
      push_span (spans, s, e, TRUE);
      prev = e;
      if (!g_match_info_next (info, NULL))
        break;
    }
  g_match_info_free (info);
  if (prev != len)
    push_span (spans, prev, len, FALSE);
  return spans;
}

/* Matches of a literal string. */
static GArray *
find_literal (SmeltHfTokenizer *tok,
              const char       *text,
              gsize             len,
              gpointer          data)
{
  GArray *spans = g_array_new (FALSE, FALSE, sizeof (Span));
  const char *lit = data;
  gsize n = strlen (lit), prev = 0, i = 0;

  if (n == 0)
    {
      push_span (spans, 0, len, FALSE);
      return spans;
    }
  while (i + n <= len)
    {
      if (memcmp (text + i, lit, n) == 0)
        {
          if (i != prev)
            push_span (spans, prev, i, FALSE);
          push_span (spans, i, i + n, TRUE);
          i += n;
          prev = i;
        }
      else
        i++;
    }
  if (prev != len)
    push_span (spans, prev, len, FALSE);
  return spans;
}

typedef gboolean (*CharPredicate) (gunichar c);

/* Matches of a character predicate: every matching character is its own
 * match. */
static GArray *
find_chars (SmeltHfTokenizer *tok,
            const char       *text,
            gsize             len,
            gpointer          data)
{
  CharPredicate pred = (CharPredicate) data;
  GArray *spans = g_array_new (FALSE, FALSE, sizeof (Span));
  gsize last = 0;

  for (const char *q = text; q < text + len; q = g_utf8_next_char (q))
    if (pred (g_utf8_get_char (q)))
      {
        gsize b = q - text, e = g_utf8_next_char (q) - text;

        if (last < b)
          push_span (spans, last, b, FALSE);
        push_span (spans, b, e, TRUE);
        last = e;
      }
  if (last < len)
    push_span (spans, last, len, FALSE);
  return spans;
}

static gboolean
is_whitespace (gunichar c)
{
  /* Rust's char::is_whitespace: the White_Space property */
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

static gboolean
is_numeric (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);

  return t == G_UNICODE_DECIMAL_NUMBER || t == G_UNICODE_LETTER_NUMBER || t == G_UNICODE_OTHER_NUMBER;
}

static gboolean
is_punctuation (gunichar c)
{
  GUnicodeType t = g_unichar_type (c);

  if (c < 0x80)
    return g_ascii_ispunct (c);
  return t == G_UNICODE_CONNECT_PUNCTUATION || t == G_UNICODE_DASH_PUNCTUATION ||
         t == G_UNICODE_CLOSE_PUNCTUATION || t == G_UNICODE_FINAL_PUNCTUATION ||
         t == G_UNICODE_INITIAL_PUNCTUATION || t == G_UNICODE_OTHER_PUNCTUATION ||
         t == G_UNICODE_OPEN_PUNCTUATION;
}

/* ------------------------------------------------------------------ */
/* added tokens */

static gboolean
is_word_char (gunichar c)
{
  return g_unichar_isalnum (c) || c == '_';
}

/* AddedVocabulary::find_matches over one piece, for the added tokens
 * with normalized == @normalized (their content normalized by
 * @normalize for the second pass). */
typedef struct {
  const char        *pattern;
  gsize              len;
  const SmeltHfAddedToken *token;
} Pattern;

static gint
pattern_cmp (gconstpointer a,
             gconstpointer b)
{
  const Pattern *x = a, *y = b;

  /* longest first so the first hit at a position is the longest */
  if (x->len != y->len)
    return x->len > y->len ? -1 : 1;
  return x->token->id < y->token->id ? -1 : x->token->id > y->token->id;
}

static void
split_added (GArray       *out,
             const Piece  *p,
             GArray       *patterns)
{
  const char *s = p->text;
  gsize len = p->len, start_offset = 0, i = 0;

  while (i < len)
    {
      const Pattern *hit = NULL;

      for (guint k = 0; k < patterns->len; k++)
        {
          const Pattern *pt = &g_array_index (patterns, Pattern, k);

          if (pt->len <= len - i && (guchar) pt->pattern[0] == (guchar) s[i] &&
              memcmp (s + i, pt->pattern, pt->len) == 0)
            {
              hit = pt;
              break;
            }
        }
      if (!hit)
        {
          i++;
          continue;
        }
      {
        gsize start = i, stop = i + hit->len;
        const SmeltHfAddedToken *t = hit->token;

        i = stop;
        if (t->single_word)
          {
            gboolean start_ok = start == 0 ||
              !is_word_char (g_utf8_get_char (g_utf8_find_prev_char (s, s + start)));
            gboolean stop_ok = stop == len || !is_word_char (g_utf8_get_char (s + stop));

            if (!start_ok || !stop_ok)
              continue;
          }
        if (t->lstrip)
          {
            gsize ns = start;

            while (ns > 0)
              {
                const char *prev = g_utf8_find_prev_char (s, s + ns);

                if (!is_whitespace (g_utf8_get_char (prev)))
                  break;
                ns = prev - s;
              }
            start = MAX (ns, start_offset);
          }
        if (t->rstrip)
          while (stop < len && is_whitespace (g_utf8_get_char (s + stop)))
            stop = g_utf8_next_char (s + stop) - s;
        if (start_offset < start)
          pieces_add (out, s + start_offset, start - start_offset, -1, p->at_start && start_offset == 0);
        pieces_add (out, s + start, stop - start, t->id, p->at_start && start == 0);
        start_offset = stop;
        i = MAX (i, stop);
      }
    }
  if (start_offset < len)
    pieces_add (out, s + start_offset, len - start_offset, -1, p->at_start && start_offset == 0);
}

static GArray *
split_added_pieces (GArray *pieces,
                    GArray *patterns)
{
  GArray *out = pieces_new ();

  for (guint i = 0; i < pieces->len; i++)
    {
      Piece *p = &g_array_index (pieces, Piece, i);

      if (p->id >= 0 || patterns->len == 0)
        pieces_add (out, p->text, p->len, p->id, p->at_start);
      else
        split_added (out, p, patterns);
    }
  return out;
}

/* ------------------------------------------------------------------ */
/* normalizers */

static char *
replace_all (SmeltHfTokenizer *tok,
             const char       *text,
             SmeltJson        *pattern,
             const char       *content,
             GError          **error)
{
  const char *lit = smelt_json_get_string (pattern, "String");
  const char *rx = smelt_json_get_string (pattern, "Regex");
  g_autoptr(GArray) spans = NULL;
  GString *out;

  if (lit)
    spans = find_literal (tok, text, strlen (text), (gpointer) lit);
  else if (rx)
    {
      GRegex *re = get_regex (tok, rx, error);

      if (!re)
        return NULL;
      spans = find_regex (tok, text, strlen (text), re);
    }
  else
    {
      set_unsupported (error, tok->path, "a Replace pattern", "(neither String nor Regex)");
      return NULL;
    }
  out = g_string_new (NULL);
  for (guint i = 0; i < spans->len; i++)
    {
      Span s = g_array_index (spans, Span, i);

      if (s.is_match)
        g_string_append (out, content ? content : "");
      else
        g_string_append_len (out, text + s.start, s.end - s.start);
    }
  return g_string_free (out, FALSE);
}

/* Applies @normalizer to @text; returns a new string or NULL on error. */
static char *
normalize (SmeltHfTokenizer *tok,
           SmeltJson        *normalizer,
           const char       *text,
           GError          **error)
{
  const char *type;

  if (!normalizer || normalizer->type == SMELT_JSON_NULL)
    return g_strdup (text);
  type = smelt_json_get_string (normalizer, "type");
  if (!type)
    {
      set_unsupported (error, tok->path, "a normalizer without a type", NULL);
      return NULL;
    }
  if (g_str_equal (type, "Sequence"))
    {
      SmeltJson *list = smelt_json_get (normalizer, "normalizers");
      char *cur = g_strdup (text);

      for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
        {
          char *next = normalize (tok, list->u.items[i], cur, error);

          g_free (cur);
          if (!next)
            return NULL;
          cur = next;
        }
      return cur;
    }
  if (g_str_equal (type, "NFC"))
    return g_utf8_normalize (text, -1, G_NORMALIZE_NFC);
  if (g_str_equal (type, "NFD"))
    return g_utf8_normalize (text, -1, G_NORMALIZE_NFD);
  if (g_str_equal (type, "NFKC"))
    return g_utf8_normalize (text, -1, G_NORMALIZE_NFKC);
  if (g_str_equal (type, "NFKD"))
    return g_utf8_normalize (text, -1, G_NORMALIZE_NFKD);
  if (g_str_equal (type, "Replace"))
    return replace_all (tok, text, smelt_json_get (normalizer, "pattern"),
                        smelt_json_get_string (normalizer, "content"), error);
  if (g_str_equal (type, "Prepend"))
    {
      const char *prepend = smelt_json_get_string (normalizer, "prepend");

      return *text ? g_strconcat (prepend ? prepend : "", text, NULL) : g_strdup (text);
    }
  if (g_str_equal (type, "Lowercase"))
    {
      GString *out = g_string_new (NULL);

      /* Rust lowercases character by character with the full mapping;
       * GLib's simple mapping differs only for U+0130 */
      for (const char *q = text; *q; q = g_utf8_next_char (q))
        {
          gunichar c = g_utf8_get_char (q);

          if (c == 0x130)
            g_string_append (out, "i\xcc\x87");
          else
            g_string_append_unichar (out, g_unichar_tolower (c));
        }
      return g_string_free (out, FALSE);
    }
  if (g_str_equal (type, "Strip"))
    {
      const char *b = text, *e = text + strlen (text);

      if (json_bool (normalizer, "left", TRUE))
        while (b < e && is_whitespace (g_utf8_get_char (b)))
          b = g_utf8_next_char (b);
      if (json_bool (normalizer, "right", TRUE))
        while (e > b && is_whitespace (g_utf8_get_char (g_utf8_find_prev_char (b, e))))
          e = g_utf8_find_prev_char (b, e);
      return g_strndup (b, e - b);
    }
  if (g_str_equal (type, "StripAccents"))
    {
      GString *out = g_string_new (NULL);

      for (const char *q = text; *q; q = g_utf8_next_char (q))
        if (g_unichar_type (g_utf8_get_char (q)) != G_UNICODE_NON_SPACING_MARK)
          g_string_append_unichar (out, g_utf8_get_char (q));
      return g_string_free (out, FALSE);
    }
  set_unsupported (error, tok->path, "the normalizer", type);
  return NULL;
}

static gboolean
normalize_pieces (SmeltHfTokenizer *tok,
                  GArray           *pieces,
                  GError          **error)
{
  SmeltJson *normalizer = smelt_json_get (tok->json, "normalizer");

  for (guint i = 0; i < pieces->len; i++)
    {
      Piece *p = &g_array_index (pieces, Piece, i);
      char *n;

      if (p->id >= 0)
        continue;
      n = normalize (tok, normalizer, p->text, error);
      if (!n)
        return FALSE;
      g_free (p->text);
      p->text = n;
      p->len = strlen (n);
    }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* pre-tokenizers */

static const char gpt2_pattern[] =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* GPT-2's bytes_to_unicode(): printable bytes stand for themselves, the
 * others for U+0100 onwards. */
static gunichar
byte_char (guint8 b)
{
  static gunichar map[256];
  static gsize init = 0;

  if (g_once_init_enter (&init))
    {
      guint n = 0;

      for (guint c = 0; c < 256; c++)
        {
          gboolean printable = (c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae);

          map[c] = printable ? c : 256 + n++;
        }
      g_once_init_leave (&init, 1);
    }
  return map[b];
}

static Behavior
parse_behavior (const char *s)
{
  if (!s || g_str_equal (s, "Isolated"))
    return BEHAVIOR_ISOLATED;
  if (g_str_equal (s, "Removed"))
    return BEHAVIOR_REMOVED;
  if (g_str_equal (s, "MergedWithPrevious"))
    return BEHAVIOR_MERGED_WITH_PREVIOUS;
  if (g_str_equal (s, "MergedWithNext"))
    return BEHAVIOR_MERGED_WITH_NEXT;
  if (g_str_equal (s, "Contiguous"))
    return BEHAVIOR_CONTIGUOUS;
  return (Behavior) -1;
}

static void
replace_pieces (GArray **pieces,
                GArray  *next)
{
  g_array_unref (*pieces);
  *pieces = next;
}

static gboolean
pre_tokenize (SmeltHfTokenizer *tok,
              SmeltJson        *pre,
              gboolean          top_level,
              GArray          **pieces,
              GError          **error)
{
  const char *type;

  if (!pre || pre->type == SMELT_JSON_NULL)
    return TRUE;
  type = smelt_json_get_string (pre, "type");
  if (!type)
    {
      set_unsupported (error, tok->path, "a pre-tokenizer without a type", NULL);
      return FALSE;
    }

  if (g_str_equal (type, "Sequence"))
    {
      SmeltJson *list = smelt_json_get (pre, "pretokenizers");

      for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
        if (!pre_tokenize (tok, list->u.items[i], FALSE, pieces, error))
          return FALSE;
      return TRUE;
    }

  if (g_str_equal (type, "Split"))
    {
      SmeltJson *pattern = smelt_json_get (pre, "pattern");
      const char *lit = smelt_json_get_string (pattern, "String");
      const char *rx = smelt_json_get_string (pattern, "Regex");
      Behavior behavior = parse_behavior (smelt_json_get_string (pre, "behavior"));
      gboolean invert = json_bool (pre, "invert", FALSE);

      if ((int) behavior < 0)
        {
          set_unsupported (error, tok->path, "the Split behavior", smelt_json_get_string (pre, "behavior"));
          return FALSE;
        }
      if (lit)
        replace_pieces (pieces, split_pieces (tok, *pieces, find_literal, (gpointer) lit, behavior, invert));
      else if (rx)
        {
          GRegex *re = get_regex (tok, rx, error);

          if (!re)
            return FALSE;
          replace_pieces (pieces, split_pieces (tok, *pieces, find_regex, re, behavior, invert));
        }
      else
        {
          set_unsupported (error, tok->path, "a Split pattern", "(neither String nor Regex)");
          return FALSE;
        }
      return TRUE;
    }

  if (g_str_equal (type, "ByteLevel"))
    {
      gboolean add_prefix_space = json_bool (pre, "add_prefix_space", TRUE);

      if (top_level && smelt_json_get (pre, "add_prefix_space"))
        add_prefix_space = tok->add_prefix_space;
      for (guint i = 0; add_prefix_space && i < (*pieces)->len; i++)
        {
          Piece *p = &g_array_index (*pieces, Piece, i);

          if (p->id < 0 && p->text[0] != ' ')
            {
              char *t = g_strconcat (" ", p->text, NULL);

              g_free (p->text);
              p->text = t;
              p->len++;
            }
        }
      if (json_bool (pre, "use_regex", TRUE))
        {
          GRegex *re = get_regex (tok, gpt2_pattern, error);

          if (!re)
            return FALSE;
          replace_pieces (pieces, split_pieces (tok, *pieces, find_regex, re, BEHAVIOR_ISOLATED, FALSE));
        }
      for (guint i = 0; i < (*pieces)->len; i++)
        {
          Piece *p = &g_array_index (*pieces, Piece, i);
          GString *s;

          if (p->id >= 0)
            continue;
          s = g_string_sized_new (p->len * 2);
          for (gsize k = 0; k < p->len; k++)
            g_string_append_unichar (s, byte_char ((guint8) p->text[k]));
          g_free (p->text);
          p->len = s->len;
          p->text = g_string_free (s, FALSE);
        }
      return TRUE;
    }

  if (g_str_equal (type, "Metaspace"))
    {
      const char *replacement = smelt_json_get_string (pre, "replacement");
      const char *scheme = smelt_json_get_string (pre, "prepend_scheme");
      gboolean split = json_bool (pre, "split", TRUE);
      GArray *next;

      if (!replacement || !*replacement)
        replacement = "\xe2\x96\x81";
      if (!scheme)
        scheme = json_bool (pre, "add_prefix_space", TRUE) ? "always" : "never";
      if (top_level && smelt_json_get (pre, "add_prefix_space"))
        scheme = tok->add_prefix_space ? "always" : "never";

      for (guint i = 0; i < (*pieces)->len; i++)
        {
          Piece *p = &g_array_index (*pieces, Piece, i);
          char *t;
          g_auto(GStrv) parts = NULL;

          if (p->id >= 0)
            continue;
          parts = g_strsplit (p->text, " ", -1);
          t = g_strjoinv (replacement, parts);
          if (!g_str_has_prefix (t, replacement) &&
              (g_str_equal (scheme, "always") || (g_str_equal (scheme, "first") && p->at_start)))
            {
              char *u = g_strconcat (replacement, t, NULL);

              g_free (t);
              t = u;
            }
          g_free (p->text);
          p->text = t;
          p->len = strlen (t);
        }
      if (split)
        {
          next = split_pieces (tok, *pieces, find_literal, (gpointer) replacement, BEHAVIOR_MERGED_WITH_NEXT, FALSE);
          replace_pieces (pieces, next);
        }
      return TRUE;
    }

  if (g_str_equal (type, "Digits"))
    {
      Behavior b = json_bool (pre, "individual_digits", FALSE) ? BEHAVIOR_ISOLATED : BEHAVIOR_CONTIGUOUS;

      replace_pieces (pieces, split_pieces (tok, *pieces, find_chars, (gpointer) is_numeric, b, FALSE));
      return TRUE;
    }

  if (g_str_equal (type, "Punctuation"))
    {
      Behavior b = parse_behavior (smelt_json_get_string (pre, "behavior"));

      if ((int) b < 0)
        b = BEHAVIOR_ISOLATED;
      replace_pieces (pieces, split_pieces (tok, *pieces, find_chars, (gpointer) is_punctuation, b, FALSE));
      return TRUE;
    }

  if (g_str_equal (type, "WhitespaceSplit") || g_str_equal (type, "BertPreTokenizer"))
    {
      replace_pieces (pieces, split_pieces (tok, *pieces, find_chars, (gpointer) is_whitespace,
                                            BEHAVIOR_REMOVED, FALSE));
      if (g_str_equal (type, "BertPreTokenizer"))
        replace_pieces (pieces, split_pieces (tok, *pieces, find_chars, (gpointer) is_punctuation,
                                              BEHAVIOR_ISOLATED, FALSE));
      return TRUE;
    }

  if (g_str_equal (type, "Whitespace"))
    {
      GRegex *re = get_regex (tok, "\\w+|[^\\w\\s]+", error);

      if (!re)
        return FALSE;
      replace_pieces (pieces, split_pieces (tok, *pieces, find_regex, re, BEHAVIOR_REMOVED, TRUE));
      return TRUE;
    }

  set_unsupported (error, tok->path, "the pre-tokenizer", type);
  return FALSE;
}

/* ------------------------------------------------------------------ */
/* the BPE model */

static gboolean
load_merges (SmeltHfTokenizer  *tok,
             GError           **error)
{
  SmeltJson *merges = smelt_json_get (tok->model, "merges");
  gsize n = merges && merges->type == SMELT_JSON_ARRAY ? merges->n : 0;
  gsize cap = 16, prefix_len;
  SmeltJson *v;
  GString *joined = g_string_new (NULL);

  v = smelt_json_get (tok->model, "continuing_subword_prefix");
  tok->prefix = v && v->type == SMELT_JSON_STRING ? v->u.s : NULL;
  v = smelt_json_get (tok->model, "end_of_word_suffix");
  tok->suffix = v && v->type == SMELT_JSON_STRING ? v->u.s : NULL;
  tok->byte_fallback = json_bool (tok->model, "byte_fallback", FALSE);
  tok->ignore_merges = json_bool (tok->model, "ignore_merges", FALSE);
  tok->fuse_unk = json_bool (tok->model, "fuse_unk", FALSE);
  if (smelt_json_get_string (tok->model, "unk_token"))
    {
      guint32 id;

      if (!str_map_lookup (&tok->model_vocab, smelt_json_get_string (tok->model, "unk_token"),
                           strlen (smelt_json_get_string (tok->model, "unk_token")), &id))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: the unknown token is not in the vocabulary", tok->path);
          g_string_free (joined, TRUE);
          return FALSE;
        }
      tok->unk_id = id;
    }
  prefix_len = tok->prefix ? strlen (tok->prefix) : 0;

  while (cap < n * 2)
    cap <<= 1;
  tok->merges.slots = g_new (MergeSlot, cap);
  tok->merges.mask = cap - 1;
  for (gsize i = 0; i < cap; i++)
    tok->merges.slots[i].key = G_MAXUINT64;

  for (gsize i = 0; i < n; i++)
    {
      SmeltJson *m = merges->u.items[i];
      const char *a = NULL, *b = NULL;
      gsize alen = 0, blen = 0;
      guint32 ida, idb, idn;

      if (m->type == SMELT_JSON_STRING)
        {
          const char *sp = memchr (m->u.s, ' ', m->n);

          if (sp && !memchr (sp + 1, ' ', m->n - (sp + 1 - m->u.s)))
            {
              a = m->u.s;
              alen = sp - m->u.s;
              b = sp + 1;
              blen = m->n - alen - 1;
            }
        }
      else if (m->type == SMELT_JSON_ARRAY && m->n == 2 &&
               m->u.items[0]->type == SMELT_JSON_STRING && m->u.items[1]->type == SMELT_JSON_STRING)
        {
          a = m->u.items[0]->u.s;
          alen = m->u.items[0]->n;
          b = m->u.items[1]->u.s;
          blen = m->u.items[1]->n;
        }
      if (!a || blen < prefix_len)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: merge %" G_GSIZE_FORMAT " is malformed", tok->path, i);
          g_string_free (joined, TRUE);
          return FALSE;
        }
      g_string_truncate (joined, 0);
      g_string_append_len (joined, a, alen);
      g_string_append_len (joined, b + prefix_len, blen - prefix_len);
      if (!str_map_lookup (&tok->model_vocab, a, alen, &ida) ||
          !str_map_lookup (&tok->model_vocab, b, blen, &idb) ||
          !str_map_lookup (&tok->model_vocab, joined->str, joined->len, &idn))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: merge %" G_GSIZE_FORMAT " (\"%.*s\" + \"%.*s\") has a token that is not in the vocabulary",
                       tok->path, i, (int) alen, a, (int) blen, b);
          g_string_free (joined, TRUE);
          return FALSE;
        }
      merge_map_insert (&tok->merges, (guint64) ida << 32 | idb, (guint32) i, idn);
    }
  g_string_free (joined, TRUE);
  tok->merges_ready = TRUE;
  return TRUE;
}

typedef struct {
  guint32 id;
  int     prev;
  int     next;
  gsize   len;       /* 0: merged away */
} Symbol;

typedef struct {
  guint32 rank;
  guint32 pos;
  guint32 new_id;
} Merge;

static gboolean
merge_less (const Merge *a,
            const Merge *b)
{
  return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void
heap_push (GArray *heap,
           Merge   m)
{
  guint i;

  g_array_append_val (heap, m);
  for (i = heap->len - 1; i > 0;)
    {
      guint parent = (i - 1) / 2;
      Merge *h = (Merge *) heap->data;

      if (!merge_less (&h[i], &h[parent]))
        break;
      m = h[i];
      h[i] = h[parent];
      h[parent] = m;
      i = parent;
    }
}

static Merge
heap_pop (GArray *heap)
{
  Merge *h = (Merge *) heap->data;
  Merge top = h[0];
  guint n = heap->len - 1, i = 0;

  h[0] = h[n];
  g_array_set_size (heap, n);
  h = (Merge *) heap->data;
  for (;;)
    {
      guint l = 2 * i + 1, r = l + 1, m = i;
      Merge t;

      if (l < n && merge_less (&h[l], &h[m]))
        m = l;
      if (r < n && merge_less (&h[r], &h[m]))
        m = r;
      if (m == i)
        break;
      t = h[i];
      h[i] = h[m];
      h[m] = t;
      i = m;
    }
  return top;
}

static void
push_pair (SmeltHfTokenizer *tok,
           GArray           *heap,
           GArray           *symbols,
           int               left)
{
  Symbol *s = (Symbol *) symbols->data;
  const MergeSlot *m;

  if (left < 0 || s[left].next < 0)
    return;
  m = merge_map_lookup (&tok->merges, s[left].id, s[s[left].next].id);
  if (m)
    heap_push (heap, (Merge) { m->rank, (guint32) left, m->new_id });
}

static void
bpe_word (SmeltHfTokenizer *tok,
          const char       *w,
          gsize             len,
          GArray           *ids)
{
  g_autoptr(GArray) symbols = g_array_new (FALSE, FALSE, sizeof (Symbol));
  g_autoptr(GArray) heap = g_array_new (FALSE, FALSE, sizeof (Merge));
  g_autoptr(GString) s = g_string_new (NULL);
  gint64 unk = -1;
  gsize unk_len = 0;
  guint32 id;

  if (len == 0)
    return;
  if (tok->ignore_merges && str_map_lookup (&tok->model_vocab, w, len, &id))
    {
      g_array_append_val (ids, id);
      return;
    }

#define ADD_SYMBOL(sym_id, sym_len) G_STMT_START {                     \
    Symbol sym = { (sym_id), (int) symbols->len - 1, -1, (sym_len) };   \
    if (symbols->len > 0)                                               \
      g_array_index (symbols, Symbol, symbols->len - 1).next = symbols->len; \
    g_array_append_val (symbols, sym);                                  \
  } G_STMT_END

  for (const char *q = w; q < w + len; q = g_utf8_next_char (q))
    {
      const char *e = g_utf8_next_char (q);
      gsize byte_len = e - q;

      g_string_truncate (s, 0);
      if (q != w && tok->prefix)
        g_string_append (s, tok->prefix);
      g_string_append_len (s, q, byte_len);
      if (e >= w + len && tok->suffix)
        g_string_append (s, tok->suffix);

      if (str_map_lookup (&tok->model_vocab, s->str, s->len, &id))
        {
          if (unk >= 0)
            {
              ADD_SYMBOL ((guint32) unk, unk_len);
              unk = -1;
            }
          ADD_SYMBOL (id, byte_len);
          continue;
        }
      if (tok->byte_fallback)
        {
          guint32 bytes[64];
          gboolean all = s->len <= G_N_ELEMENTS (bytes);

          for (gsize k = 0; all && k < s->len; k++)
            {
              char name[8];

              g_snprintf (name, sizeof name, "<0x%02X>", (guint8) s->str[k]);
              all = str_map_lookup (&tok->model_vocab, name, 6, &bytes[k]);
            }
          if (all)
            {
              if (unk >= 0)
                {
                  ADD_SYMBOL ((guint32) unk, unk_len);
                  unk = -1;
                }
              for (gsize k = 0; k < s->len; k++)
                ADD_SYMBOL (bytes[k], 1);
              continue;
            }
        }
      if (tok->unk_id >= 0)
        {
          if (unk >= 0 && tok->fuse_unk)
            unk_len += byte_len;
          else
            {
              if (unk >= 0)
                ADD_SYMBOL ((guint32) unk, unk_len);
              unk = tok->unk_id;
              unk_len = byte_len;
            }
        }
    }
  if (unk >= 0)
    ADD_SYMBOL ((guint32) unk, unk_len);
#undef ADD_SYMBOL

  for (guint i = 0; i + 1 < symbols->len; i++)
    push_pair (tok, heap, symbols, i);

  while (heap->len > 0)
    {
      Merge top = heap_pop (heap);
      Symbol *sy = (Symbol *) symbols->data;
      const MergeSlot *m;
      int next;

      if (sy[top.pos].len == 0 || sy[top.pos].next < 0)
        continue;
      next = sy[top.pos].next;
      m = merge_map_lookup (&tok->merges, sy[top.pos].id, sy[next].id);
      if (!m || m->new_id != top.new_id)
        continue;   /* stale */

      sy[top.pos].id = top.new_id;
      sy[top.pos].len += sy[next].len;
      sy[top.pos].next = sy[next].next;
      sy[next].len = 0;
      if (sy[top.pos].next >= 0)
        sy[sy[top.pos].next].prev = top.pos;

      push_pair (tok, heap, symbols, sy[top.pos].prev);
      push_pair (tok, heap, symbols, top.pos);
    }

  for (guint i = 0; i < symbols->len; i++)
    if (g_array_index (symbols, Symbol, i).len > 0)
      g_array_append_val (ids, g_array_index (symbols, Symbol, i).id);
}

gint64 *
smelt_hf_tokenizer_merge_ranks (SmeltHfTokenizer  *tok,
                                GError           **error)
{
  gint64 *ranks;

  if (!g_str_equal (tok->model_type, "BPE"))
    {
      set_unsupported (error, tok->path, "merges of the model type", tok->model_type);
      return NULL;
    }
  if (!tok->merges_ready && !load_merges (tok, error))
    return NULL;
  ranks = g_new (gint64, MAX (tok->id_end, 1));
  for (guint32 i = 0; i < tok->id_end; i++)
    ranks[i] = -1;
  for (gsize i = 0; i <= tok->merges.mask; i++)
    {
      const MergeSlot *m = &tok->merges.slots[i];

      if (m->key != G_MAXUINT64 && m->new_id < tok->id_end &&
          (ranks[m->new_id] < 0 || m->rank < ranks[m->new_id]))
        ranks[m->new_id] = m->rank;
    }
  return ranks;
}

/* ------------------------------------------------------------------ */
/* post-processors */

static gboolean
lookup_special (SmeltHfTokenizer *tok,
                const char       *token,
                guint32          *id)
{
  return token && smelt_hf_tokenizer_token_to_id (tok, token, id);
}

static void
append_template (SmeltHfTokenizer *tok,
                 SmeltJson        *proc,
                 GArray           *ids)
{
  SmeltJson *single = smelt_json_get (proc, "single");
  SmeltJson *specials = smelt_json_get (proc, "special_tokens");
  g_autoptr(GArray) out = g_array_new (FALSE, FALSE, sizeof (guint32));

  for (gsize i = 0; single && single->type == SMELT_JSON_ARRAY && i < single->n; i++)
    {
      SmeltJson *item = single->u.items[i];
      SmeltJson *st = smelt_json_get (item, "SpecialToken");
      SmeltJson *seq = smelt_json_get (item, "Sequence");

      if (st)
        {
          SmeltJson *entry = smelt_json_get (specials, smelt_json_get_string (st, "id") ?
                                                       smelt_json_get_string (st, "id") : "");
          SmeltJson *list = smelt_json_get (entry, "ids");

          for (gsize k = 0; list && list->type == SMELT_JSON_ARRAY && k < list->n; k++)
            if (list->u.items[k]->type == SMELT_JSON_INT)
              {
                guint32 id = (guint32) list->u.items[k]->u.i;

                g_array_append_val (out, id);
              }
        }
      else if (seq)
        g_array_append_vals (out, ids->data, ids->len);
    }
  g_array_set_size (ids, 0);
  g_array_append_vals (ids, out->data, out->len);
}

static void
post_process (SmeltHfTokenizer *tok,
              SmeltJson        *proc,
              GArray           *ids)
{
  const char *type = smelt_json_get_string (proc, "type");

  if (!type)
    return;
  if (g_str_equal (type, "Sequence"))
    {
      SmeltJson *list = smelt_json_get (proc, "processors");

      for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
        post_process (tok, list->u.items[i], ids);
    }
  else if (g_str_equal (type, "TemplateProcessing"))
    append_template (tok, proc, ids);
  else if (g_str_equal (type, "RobertaProcessing") || g_str_equal (type, "BertProcessing"))
    {
      SmeltJson *cls = smelt_json_get (proc, "cls");
      SmeltJson *sep = smelt_json_get (proc, "sep");

      if (cls && cls->type == SMELT_JSON_ARRAY && cls->n == 2 && cls->u.items[1]->type == SMELT_JSON_INT)
        {
          guint32 id = (guint32) cls->u.items[1]->u.i;

          g_array_prepend_val (ids, id);
        }
      if (sep && sep->type == SMELT_JSON_ARRAY && sep->n == 2 && sep->u.items[1]->type == SMELT_JSON_INT)
        {
          guint32 id = (guint32) sep->u.items[1]->u.i;

          g_array_append_val (ids, id);
        }
    }
  /* ByteLevel only trims offsets */
}

/* ------------------------------------------------------------------ */

static GArray *
added_patterns (SmeltHfTokenizer *tok,
                gboolean          normalized,
                GError          **error)
{
  SmeltJson *normalizer = smelt_json_get (tok->json, "normalizer");
  GArray *patterns = g_array_new (FALSE, FALSE, sizeof (Pattern));

  for (guint i = 0; i < tok->added->len; i++)
    {
      const SmeltHfAddedToken *t = &g_array_index (tok->added, SmeltHfAddedToken, i);
      Pattern pt;

      if (t->normalized != normalized || !*t->content)
        continue;
      pt.token = t;
      if (normalized)
        {
          char *n = normalize (tok, normalizer, t->content, error);

          if (!n)
            {
              g_array_unref (patterns);
              return NULL;
            }
          pt.pattern = g_string_chunk_insert (tok->strings, n);
          g_free (n);
        }
      else
        pt.pattern = t->content;
      pt.len = strlen (pt.pattern);
      if (pt.len > 0)
        g_array_append_val (patterns, pt);
    }
  g_array_sort (patterns, pattern_cmp);
  return patterns;
}

GArray *
smelt_hf_tokenizer_encode (SmeltHfTokenizer  *tok,
                           const char        *text,
                           gboolean           add_special_tokens,
                           GError           **error)
{
  g_autoptr(GArray) pieces = pieces_new ();
  g_autoptr(GArray) raw_patterns = NULL;
  g_autoptr(GArray) norm_patterns = NULL;
  g_autoptr(GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  SmeltJson *post;

  if (!g_str_equal (tok->model_type, "BPE"))
    {
      set_unsupported (error, tok->path, "encoding with the model type", tok->model_type);
      return NULL;
    }
  if (!tok->merges_ready && !load_merges (tok, error))
    return NULL;

  raw_patterns = added_patterns (tok, FALSE, error);
  norm_patterns = raw_patterns ? added_patterns (tok, TRUE, error) : NULL;
  if (!norm_patterns)
    return NULL;

  if (*text)
    pieces_add (pieces, text, strlen (text), -1, TRUE);
  replace_pieces (&pieces, split_added_pieces (pieces, raw_patterns));
  if (!normalize_pieces (tok, pieces, error))
    return NULL;
  replace_pieces (&pieces, split_added_pieces (pieces, norm_patterns));
  /* normalizing may have emptied a piece */
  for (guint i = pieces->len; i-- > 0;)
    if (g_array_index (pieces, Piece, i).len == 0)
      g_array_remove_index (pieces, i);
  if (!pre_tokenize (tok, smelt_json_get (tok->json, "pre_tokenizer"), TRUE, &pieces, error))
    return NULL;

  for (guint i = 0; i < pieces->len; i++)
    {
      Piece *p = &g_array_index (pieces, Piece, i);

      if (p->id >= 0)
        {
          guint32 id = (guint32) p->id;

          g_array_append_val (ids, id);
        }
      else
        bpe_word (tok, p->text, p->len, ids);
    }

  if (!add_special_tokens)
    return g_steal_pointer (&ids);
  if (tok->rebuild_post)
    {
      guint32 id;

      /* special_attr[0] is bos_token, [1] eos_token */
      if (tok->add_bos && lookup_special (tok, tok->special_attr[0], &id))
        g_array_prepend_val (ids, id);
      if (tok->add_eos && lookup_special (tok, tok->special_attr[1], &id))
        g_array_append_val (ids, id);
      return g_steal_pointer (&ids);
    }
  post = smelt_json_get (tok->json, "post_processor");
  if (post && post->type == SMELT_JSON_OBJECT)
    post_process (tok, post, ids);
  return g_steal_pointer (&ids);
}

/* ------------------------------------------------------------------ */
/* decoding */

static void
replace_tokens (SmeltHfTokenizer *tok,
                GPtrArray        *tokens,
                SmeltJson        *pattern,
                const char       *content)
{
  for (guint i = 0; i < tokens->len; i++)
    {
      char *r = replace_all (tok, tokens->pdata[i], pattern, content, NULL);

      if (r)
        {
          g_free (tokens->pdata[i]);
          tokens->pdata[i] = r;
        }
    }
}

static gint
byte_of_char (gunichar c)
{
  for (guint b = 0; b < 256; b++)
    if (byte_char (b) == c)
      return b;
  return -1;
}

static void
decode_chain (SmeltHfTokenizer *tok,
              SmeltJson        *decoder,
              GPtrArray       **tokens)
{
  const char *type = smelt_json_get_string (decoder, "type");
  GPtrArray *out;

  if (!type)
    return;
  if (g_str_equal (type, "Sequence"))
    {
      SmeltJson *list = smelt_json_get (decoder, "decoders");

      for (gsize i = 0; list && list->type == SMELT_JSON_ARRAY && i < list->n; i++)
        decode_chain (tok, list->u.items[i], tokens);
    }
  else if (g_str_equal (type, "Replace"))
    replace_tokens (tok, *tokens, smelt_json_get (decoder, "pattern"),
                    smelt_json_get_string (decoder, "content"));
  else if (g_str_equal (type, "ByteLevel"))
    {
      GByteArray *bytes = g_byte_array_new ();

      for (guint i = 0; i < (*tokens)->len; i++)
        {
          const char *t = (*tokens)->pdata[i];
          gsize before = bytes->len;
          gboolean all = TRUE;

          for (const char *q = t; *q && all; q = g_utf8_next_char (q))
            {
              gint b = byte_of_char (g_utf8_get_char (q));

              if (b < 0)
                all = FALSE;
              else
                {
                  guint8 c = b;

                  g_byte_array_append (bytes, &c, 1);
                }
            }
          /* a token with a character outside the map is kept as it is */
          if (!all)
            {
              g_byte_array_set_size (bytes, before);
              g_byte_array_append (bytes, (const guint8 *) t, strlen (t));
            }
        }
      out = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (out, g_utf8_make_valid ((const char *) bytes->data, bytes->len));
      g_byte_array_unref (bytes);
      g_ptr_array_unref (*tokens);
      *tokens = out;
    }
  else if (g_str_equal (type, "ByteFallback"))
    {
      GByteArray *run = g_byte_array_new ();

      out = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i <= (*tokens)->len; i++)
        {
          const char *t = i < (*tokens)->len ? (*tokens)->pdata[i] : NULL;
          guint8 b = 0;
          gboolean is_byte = t && strlen (t) == 6 && g_str_has_prefix (t, "<0x") && t[5] == '>' &&
                             g_ascii_isxdigit (t[3]) && g_ascii_isxdigit (t[4]);

          if (is_byte)
            {
              b = g_ascii_xdigit_value (t[3]) * 16 + g_ascii_xdigit_value (t[4]);
              g_byte_array_append (run, &b, 1);
              continue;
            }
          if (run->len > 0)
            {
              if (g_utf8_validate_len ((const char *) run->data, run->len, NULL))
                g_ptr_array_add (out, g_strndup ((const char *) run->data, run->len));
              else
                for (guint k = 0; k < run->len; k++)
                  g_ptr_array_add (out, g_strdup ("\xef\xbf\xbd"));
              g_byte_array_set_size (run, 0);
            }
          if (t)
            g_ptr_array_add (out, g_strdup (t));
        }
      g_byte_array_unref (run);
      g_ptr_array_unref (*tokens);
      *tokens = out;
    }
  else if (g_str_equal (type, "Fuse"))
    {
      GString *s = g_string_new (NULL);

      for (guint i = 0; i < (*tokens)->len; i++)
        g_string_append (s, (*tokens)->pdata[i]);
      out = g_ptr_array_new_with_free_func (g_free);
      g_ptr_array_add (out, g_string_free (s, FALSE));
      g_ptr_array_unref (*tokens);
      *tokens = out;
    }
  else if (g_str_equal (type, "Strip"))
    {
      const char *content = smelt_json_get_string (decoder, "content");
      gunichar c = content ? g_utf8_get_char (content) : ' ';
      SmeltJson *sv = smelt_json_get (decoder, "start"), *ev = smelt_json_get (decoder, "stop");
      gint64 start = sv && sv->type == SMELT_JSON_INT ? sv->u.i : 0;
      gint64 stop = ev && ev->type == SMELT_JSON_INT ? ev->u.i : 0;

      for (guint i = 0; i < (*tokens)->len; i++)
        {
          char *t = (*tokens)->pdata[i];
          const char *b = t, *e = t + strlen (t);

          for (gint64 k = 0; k < start && b < e && g_utf8_get_char (b) == c; k++)
            b = g_utf8_next_char (b);
          for (gint64 k = 0; k < stop && e > b && g_utf8_get_char (g_utf8_find_prev_char (b, e)) == c; k++)
            e = g_utf8_find_prev_char (b, e);
          (*tokens)->pdata[i] = g_strndup (b, e - b);
          g_free (t);
        }
    }
  else if (g_str_equal (type, "Metaspace"))
    {
      const char *replacement = smelt_json_get_string (decoder, "replacement");
      const char *scheme = smelt_json_get_string (decoder, "prepend_scheme");
      gboolean strip;

      if (!replacement || !*replacement)
        replacement = "\xe2\x96\x81";
      strip = scheme ? !g_str_equal (scheme, "never") : json_bool (decoder, "add_prefix_space", TRUE);
      for (guint i = 0; i < (*tokens)->len; i++)
        {
          g_auto(GStrv) parts = g_strsplit ((*tokens)->pdata[i], replacement, -1);
          char *t = g_strjoinv (" ", parts);

          if (i == 0 && strip && t[0] == ' ')
            memmove (t, t + 1, strlen (t));
          g_free ((*tokens)->pdata[i]);
          (*tokens)->pdata[i] = t;
        }
    }
  /* other decoders (WordPiece, BPEDecoder, CTC) leave the tokens alone:
   * they only matter for added tokens of models this converter does not
   * turn into GGUF */
}

char *
smelt_hf_tokenizer_decode (SmeltHfTokenizer *tok,
                           const guint32    *ids,
                           gsize             n_ids)
{
  GPtrArray *tokens = g_ptr_array_new_with_free_func (g_free);
  SmeltJson *decoder = smelt_json_get (tok->json, "decoder");
  GString *text = g_string_new (NULL);

  for (gsize i = 0; i < n_ids; i++)
    {
      const char *t = smelt_hf_tokenizer_id_to_token (tok, ids[i]);

      if (t)
        g_ptr_array_add (tokens, g_strdup (t));
    }
  if (decoder && decoder->type == SMELT_JSON_OBJECT)
    {
      decode_chain (tok, decoder, &tokens);
      for (guint i = 0; i < tokens->len; i++)
        g_string_append (text, tokens->pdata[i]);
    }
  else
    for (guint i = 0; i < tokens->len; i++)
      {
        if (i)
          g_string_append_c (text, ' ');
        g_string_append (text, tokens->pdata[i]);
      }
  g_ptr_array_unref (tokens);

  if (tok->cleanup_spaces)
    {
      /* transformers' clean_up_tokenization */
      static const char * const pairs[][2] = {
        { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
        { " n't", "n't" }, { " 'm", "'m" }, { " 's", "'s" }, { " 've", "'ve" }, { " 're", "'re" },
      };

      for (guint i = 0; i < G_N_ELEMENTS (pairs); i++)
        g_string_replace (text, pairs[i][0], pairs[i][1], 0);
    }
  return g_string_free (text, FALSE);
}

/* ------------------------------------------------------------------ */

/* The text convert_hf_to_gguf.py's get_vocab_base_pre() encodes. */
static const char chktxt[] =
  "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n"
  "\xf0\x9f\x9a\x80 (normal) \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f "
  "(multiple emojis concatenated) \xe2\x9c\x85 \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99 "
  "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 "
  "\xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82"
  "\xe1\x9e\x96\xe1\x9e\xb7\xe1\x9e\x9f\xe1\x9f\x81\xe1\x9e\x9f\xe1\x9e\xa2"
  "\xe1\x9e\xb6\xe1\x9e\x85\xf0\x9f\x98\x81 "
  "?\xe6\x88\x91\xe6\x83\xb3\xe5\x9c\xa8" "apple\xe5\xb7\xa5\xe4\xbd\x9c"
  "1314151\xe5\xa4\xa9\xef\xbd\x9e ------======= "
  "\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 "
  "\xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8 "
  "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
  "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL";

char *
smelt_hf_tokenizer_pre_hash (SmeltHfTokenizer  *tok,
                             GError           **error)
{
  g_autoptr(GArray) ids = smelt_hf_tokenizer_encode (tok, chktxt, TRUE, error);
  g_autoptr(GString) repr = NULL;

  if (!ids)
    return NULL;
  /* Python's str() of a list of ints */
  repr = g_string_new ("[");
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf (repr, i ? ", %u" : "%u", g_array_index (ids, guint32, i));
  g_string_append_c (repr, ']');
  return g_compute_checksum_for_string (G_CHECKSUM_SHA256, repr->str, repr->len);
}
