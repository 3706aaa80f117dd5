/* smelt-gguf-vocab-private.h: the pieces behind smelt-gguf-vocab.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------ */
/* A read-only JSON tree (smelt-gguf-vocab-json.c). tokenizer.json files
 * hold 100k–500k strings; json-glib needs half a second to two seconds
 * for them, this parser a few tens of milliseconds. Values follow Python's
 * json module, which is what the reference converter reads them with:
 * integers and floats are told apart, strings may hold NUL bytes, and
 * with duplicate keys the last one wins. */

typedef enum {
  SMELT_JSON_NULL,
  SMELT_JSON_FALSE,
  SMELT_JSON_TRUE,
  SMELT_JSON_INT,
  SMELT_JSON_FLOAT,
  SMELT_JSON_STRING,
  SMELT_JSON_ARRAY,
  SMELT_JSON_OBJECT,
} SmeltJsonType;

typedef struct _SmeltJson SmeltJson;

typedef struct {
  const char *key;        /* NUL-terminated */
  gsize       key_len;
  SmeltJson  *value;
} SmeltJsonMember;

struct _SmeltJson {
  SmeltJsonType type;
  gsize         n;        /* string bytes, array items, object members */
  union {
    gint64            i;
    double            f;
    const char       *s;  /* NUL-terminated */
    SmeltJson       **items;
    SmeltJsonMember  *members;
  } u;
};

typedef struct _SmeltJsonDoc SmeltJsonDoc;

SmeltJsonDoc *smelt_json_doc_load    (const char    *path,
                                      GError       **error);
SmeltJsonDoc *smelt_json_doc_parse   (const char    *data,
                                      gsize          len,
                                      const char    *name,
                                      GError       **error);
SmeltJson    *smelt_json_doc_get_root (SmeltJsonDoc *doc);
/* A string value that lives as long as @doc. */
SmeltJson    *smelt_json_doc_new_string (SmeltJsonDoc *doc,
                                         const char   *s);
void          smelt_json_doc_free    (SmeltJsonDoc  *doc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltJsonDoc, smelt_json_doc_free)

/* Member @key of an object (NULL when @object is not an object or has
 * no such key). */
SmeltJson   *smelt_json_get          (const SmeltJson *object,
                                      const char      *key);
/* The string member @key, or NULL when absent or not a string. */
const char  *smelt_json_get_string   (const SmeltJson *object,
                                      const char      *key);
/* Python's bool(): null, false, 0, "", [] and {} are false. */
gboolean     smelt_json_truthy       (const SmeltJson *value);
gboolean     smelt_json_is_string    (const SmeltJson *value,
                                      const char      *s);

/* ------------------------------------------------------------------ */
/* SentencePiece tokenizer.model (smelt-gguf-vocab-spm.c) */

/* sentencepiece_model.proto ModelProto.SentencePiece.Type */
typedef enum {
  SMELT_SPM_NORMAL       = 1,
  SMELT_SPM_UNKNOWN      = 2,
  SMELT_SPM_CONTROL      = 3,
  SMELT_SPM_USER_DEFINED = 4,
  SMELT_SPM_UNUSED       = 5,
  SMELT_SPM_BYTE         = 6,
} SmeltSpmType;

typedef struct {
  char  *piece;
  float  score;
  int    type;
} SmeltSpmPiece;

typedef struct {
  SmeltSpmPiece *pieces;
  gsize          n_pieces;
  GStringChunk  *strings;
} SmeltSpmModel;

SmeltSpmModel *smelt_spm_model_load   (const char     *path,
                                       GError        **error);
SmeltSpmModel *smelt_spm_model_parse  (const guint8   *data,
                                       gsize           len,
                                       const char     *name,
                                       GError        **error);
void           smelt_spm_model_free   (SmeltSpmModel  *model);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltSpmModel, smelt_spm_model_free)

/* ------------------------------------------------------------------ */
/* Hugging Face tokenizer.json, as transformers' AutoTokenizer loads it
 * (smelt-gguf-bpe.c): the vocabulary the converter iterates and the
 * encoder whose output it hashes. */

typedef struct {
  const char *content;
  guint32     id;
  gboolean    special;
  gboolean    normalized;
  gboolean    lstrip;
  gboolean    rstrip;
  gboolean    single_word;
} SmeltHfAddedToken;

typedef struct _SmeltHfTokenizer SmeltHfTokenizer;

/* @tokenizer_json is the root of tokenizer.json, @tokenizer_config that of
 * tokenizer_config.json (or NULL), @special_tokens_map that of
 * special_tokens_map.json (or NULL), @model_type config.json's
 * model_type (or NULL); all must outlive the tokenizer. @path names
 * tokenizer.json in errors. */
SmeltHfTokenizer  *smelt_hf_tokenizer_new          (SmeltJson         *tokenizer_json,
                                                    SmeltJson         *tokenizer_config,
                                                    SmeltJson         *special_tokens_map,
                                                    const char        *model_type,
                                                    const char        *path,
                                                    GError           **error);
void               smelt_hf_tokenizer_free         (SmeltHfTokenizer  *tok);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfTokenizer, smelt_hf_tokenizer_free)

/* "BPE", "Unigram", "WordPiece", … */
const char        *smelt_hf_tokenizer_get_model_type (SmeltHfTokenizer *tok);
/* len(model.vocab): transformers' vocab_size */
guint32            smelt_hf_tokenizer_get_base_size (SmeltHfTokenizer *tok);
/* one more than the largest id of the vocabulary and the added tokens */
guint32            smelt_hf_tokenizer_get_id_end   (SmeltHfTokenizer  *tok);
/* get_vocab()'s string for @id (added tokens win), or NULL for a gap */
const char        *smelt_hf_tokenizer_id_to_token  (SmeltHfTokenizer  *tok,
                                                    guint32            id);
gboolean           smelt_hf_tokenizer_token_to_id  (SmeltHfTokenizer  *tok,
                                                    const char        *token,
                                                    guint32           *id);
/* the added token with @id (from tokenizer.json, or a special token of
 * tokenizer_config.json that transformers adds), or NULL */
const SmeltHfAddedToken *smelt_hf_tokenizer_get_added (SmeltHfTokenizer *tok,
                                                       guint32           id);
/* the added token whose content is @content, or NULL */
const SmeltHfAddedToken *smelt_hf_tokenizer_find_added (SmeltHfTokenizer *tok,
                                                        const char       *content);
/* ids of transformers' all_special_tokens present in the vocabulary */
GHashTable        *smelt_hf_tokenizer_get_special_ids (SmeltHfTokenizer *tok);

/* tokenizer.encode(text, add_special_tokens=…): the token ids. Fails for
 * models, normalizers or pre-tokenizers this encoder does not know. */
GArray            *smelt_hf_tokenizer_encode       (SmeltHfTokenizer  *tok,
                                                    const char        *text,
                                                    gboolean           add_special_tokens,
                                                    GError           **error);
/* tokenizer.decode(ids): the decoder chain, then transformers' clean-up
 * of tokenization spaces when tokenizer_config.json asks for it. */
char              *smelt_hf_tokenizer_decode       (SmeltHfTokenizer  *tok,
                                                    const guint32     *ids,
                                                    gsize              n_ids);

/* For each id below smelt_hf_tokenizer_get_id_end(), the rank of the
 * first merge that produces the token, or -1 (an array of that length). */
gint64            *smelt_hf_tokenizer_merge_ranks  (SmeltHfTokenizer  *tok,
                                                    GError           **error);

/* The converter's fingerprint of a BPE pre-tokenizer: sha256 of Python's
 * str() of tokenizer.encode(chktxt), hex. */
char              *smelt_hf_tokenizer_pre_hash     (SmeltHfTokenizer  *tok,
                                                    GError           **error);

/* ------------------------------------------------------------------ */
/* The converter's table of pre-tokenizer fingerprints
 * (smelt-gguf-vocab-pre.c): the name for @hash, or NULL. */
const char        *smelt_gguf_vocab_pre_lookup     (const char        *hash);
gboolean           smelt_gguf_vocab_pre_is_known   (const char        *name);

G_END_DECLS
