/* test-gguf-vocab.c: tokenizer metadata for GGUF
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Hand-made tokenizer files (a SentencePiece protobuf built here, small
 * tokenizer.json files) go through smelt_gguf_vocab_load() and
 * smelt_gguf_vocab_write_kvs(); the keys are read back from the GGUF bytes
 * with SmeltGgufFile. The expected values were worked out by hand from
 * the reference converter's code (llama.cpp de3ff81: conversion/base.py
 * _create_vocab_sentencepiece, get_vocab_base, llama.py, gemma.py,
 * gguf-py/gguf/vocab.py SpecialVocab) and, for the encoder, from the
 * Hugging Face tokenizers algorithms (BPE merges by rank, added-token
 * splitting before and after normalization).
 *
 * With SMELT_TEST_DEPS pointing at the cache of tests/llama/fetch-test-deps.sh
 * the real tokenizers of four models are loaded too: the pre-tokenizer each
 * gets must be the one convert_hf_to_gguf.py picks (whose hash table was made
 * with Hugging Face's own code), and loading must be fast.
 */
#include <glib/gstdio.h>
#include <string.h>

#include "smelt-gguf-vocab.h"
#include "smelt-gguf-vocab-private.h"

/* ------------------------------------------------------------------ */
/* model folders                                                       */

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (!dir)
    {
      g_remove (path);
      return;
    }
  while ((name = g_dir_read_name (dir)))
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      remove_tree (child);
    }
  g_rmdir (path);
}

typedef struct {
  char *dir;
} Folder;

static Folder *
folder_new (void)
{
  Folder *f = g_new0 (Folder, 1);

  f->dir = g_dir_make_tmp ("smelt-vocab-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  return f;
}

static void
folder_free (Folder *f)
{
  remove_tree (f->dir);
  g_free (f->dir);
  g_free (f);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Folder, folder_free)

static void
put_file (Folder     *f,
          const char *name,
          const void *data,
          gssize      len)
{
  g_autofree char *path = g_build_filename (f->dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, data, len, &error);
  g_assert_no_error (error);
}

/* config.json and a one-tensor model.safetensors */
static void
put_model (Folder     *f,
           const char *config)
{
  static const char header[] = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  GByteArray *st = g_byte_array_new ();
  guint64 n = strlen (header);
  guint8 zero[4] = { 0 };

  put_file (f, "config.json", config, -1);
  g_byte_array_append (st, (const guint8 *) &n, 8);
  g_byte_array_append (st, (const guint8 *) header, n);
  g_byte_array_append (st, zero, 4);
  put_file (f, "model.safetensors", st->data, st->len);
  g_byte_array_unref (st);
}

/* ------------------------------------------------------------------ */
/* a SentencePiece ModelProto, written by hand                          */

static void
pb_varint (GByteArray *b,
           guint64     v)
{
  do
    {
      guint8 c = v & 0x7f;

      v >>= 7;
      if (v)
        c |= 0x80;
      g_byte_array_append (b, &c, 1);
    }
  while (v);
}

static void
pb_bytes (GByteArray *b,
          guint       field,
          const void *data,
          gsize       len)
{
  pb_varint (b, field << 3 | 2);
  pb_varint (b, len);
  g_byte_array_append (b, data, len);
}

typedef struct {
  const char *piece;
  float       score;
  int         type;   /* 0: leave the field out (NORMAL) */
} TestPiece;

static GByteArray *
spm_bytes (const TestPiece *pieces,
           gsize            n)
{
  GByteArray *model = g_byte_array_new ();
  /* a trainer_spec (field 2) before the pieces, to be skipped */
  static const guint8 trainer[] = { 0x10, 0x01 };

  pb_bytes (model, 2, trainer, sizeof trainer);
  for (gsize i = 0; i < n; i++)
    {
      GByteArray *p = g_byte_array_new ();

      pb_bytes (p, 1, pieces[i].piece, strlen (pieces[i].piece));
      pb_varint (p, 2 << 3 | 5);
      g_byte_array_append (p, (const guint8 *) &pieces[i].score, 4);
      if (pieces[i].type)
        {
          pb_varint (p, 3 << 3 | 0);
          pb_varint (p, pieces[i].type);
        }
      pb_bytes (model, 1, p->data, p->len);
      g_byte_array_unref (p);
    }
  /* a normalizer_spec (field 3) after them */
  pb_bytes (model, 3, "\x0a\x03nfc", 5);
  return model;
}

static const TestPiece pieces[] = {
  { "<unk>", 0.0f, 2 },
  { "<s>", 0.0f, 3 },
  { "</s>", 0.0f, 3 },
  { "<0x0A>", 0.0f, 6 },
  { "\xe2\x96\x81the", -1.5f, 1 },
  { "user", -2.25f, 4 },     /* USER_DEFINED in the model: NORMAL for the converter */
  { "gone", -3.0f, 5 },
  { "x", -4.0f, 0 },
};

static void
put_spm (Folder *f)
{
  GByteArray *b = spm_bytes (pieces, G_N_ELEMENTS (pieces));

  put_file (f, "tokenizer.model", b->data, b->len);
  g_byte_array_unref (b);
}

/* ------------------------------------------------------------------ */
/* loading and reading back                                            */

typedef struct {
  SmeltGgufVocab *vocab;
  SmeltGgufFile  *file;
  char           *path;
  GVariant       *tokens;   /* read on first use */
  GVariant       *types;
} Loaded;

static void
loaded_free (Loaded *l)
{
  if (l->path)
    g_remove (l->path);
  g_free (l->path);
  g_clear_pointer (&l->tokens, g_variant_unref);
  g_clear_pointer (&l->types, g_variant_unref);
  g_clear_object (&l->file);
  g_clear_pointer (&l->vocab, smelt_gguf_vocab_free);
  g_free (l);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Loaded, loaded_free)

static SmeltSource *
open_source (Folder *f)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (f->dir, &error);
  SmeltSource *source;

  g_assert_no_error (error);
  source = smelt_source_new (model, NULL, NULL, 0, &error);
  g_assert_no_error (error);
  return source;
}

static SmeltGgufVocab *
try_load (Folder      *f,
          const char  *arch,
          guint64      n_vocab,
          GError     **error)
{
  g_autoptr(SmeltSource) source = open_source (f);

  return smelt_gguf_vocab_load (source, arch, n_vocab, error);
}

static Loaded *
load (Folder     *f,
      const char *arch,
      guint64     n_vocab)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltGgufLayout) layout = smelt_gguf_layout_new ();
  g_autoptr(GBytes) header = NULL;
  Loaded *l = g_new0 (Loaded, 1);
  int fd;

  l->vocab = try_load (f, arch, n_vocab, &error);
  g_assert_no_error (error);
  g_assert_nonnull (l->vocab);

  /* the way the format plugin uses it: after general.architecture */
  smelt_gguf_layout_set_string (layout, "general.architecture", arch);
  smelt_gguf_vocab_write_kvs (l->vocab, layout);
  header = smelt_gguf_layout_get_header (layout);
  fd = g_file_open_tmp ("smelt-vocab-XXXXXX.gguf", &l->path, &error);
  g_assert_no_error (error);
  close (fd);
  g_file_set_contents (l->path, g_bytes_get_data (header, NULL), g_bytes_get_size (header), &error);
  g_assert_no_error (error);
  l->file = smelt_gguf_file_new (l->path, &error);
  g_assert_no_error (error);
  return l;
}

/* the tokenizer.* keys, in file order, joined with spaces */
static char *
keys (Loaded *l)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < smelt_gguf_file_get_n_kv (l->file); i++)
    {
      const char *k = smelt_gguf_file_get_key (l->file, i);

      if (!g_str_has_prefix (k, "tokenizer."))
        continue;
      if (s->len)
        g_string_append_c (s, ' ');
      g_string_append (s, k + strlen ("tokenizer."));
    }
  return g_string_free (s, FALSE);
}

static GVariant *
value (Loaded     *l,
       const char *key,
       SmeltGgufValueType type)
{
  int i = smelt_gguf_file_find_key (l->file, key);

  if (i < 0)
    g_error ("no key %s", key);
  g_assert_cmpint (smelt_gguf_file_get_kv_type (l->file, i), ==, type);
  return smelt_gguf_file_get_value (l->file, i);
}

static gboolean
has_key (Loaded *l, const char *key)
{
  return smelt_gguf_file_find_key (l->file, key) >= 0;
}

static char *
get_str (Loaded *l, const char *key)
{
  g_autoptr(GVariant) v = value (l, key, SMELT_GGUF_VALUE_STRING);

  return g_variant_dup_string (v, NULL);
}

static guint32
get_u32 (Loaded *l, const char *key)
{
  g_autoptr(GVariant) v = value (l, key, SMELT_GGUF_VALUE_UINT32);

  return g_variant_get_uint32 (v);
}

static gboolean
get_bool (Loaded *l, const char *key)
{
  g_autoptr(GVariant) v = value (l, key, SMELT_GGUF_VALUE_BOOL);

  return g_variant_get_boolean (v);
}

static GVariant *
get_array (Loaded *l, const char *key, SmeltGgufValueType element_type)
{
  int i = smelt_gguf_file_find_key (l->file, key);

  if (i < 0)
    g_error ("no key %s", key);
  g_assert_cmpint (smelt_gguf_file_get_kv_type (l->file, i), ==, SMELT_GGUF_VALUE_ARRAY);
  g_assert_cmpint (smelt_gguf_file_get_array_type (l->file, i), ==, element_type);
  return smelt_gguf_file_get_value (l->file, i);
}

static char *
str_at (GVariant *array, gsize i)
{
  g_autoptr(GVariant) v = g_variant_get_child_value (array, i);
  g_autoptr(GVariant) inner = g_variant_get_variant (v);

  return g_variant_dup_string (inner, NULL);
}

static gint32
i32_at (GVariant *array, gsize i)
{
  g_autoptr(GVariant) v = g_variant_get_child_value (array, i);
  g_autoptr(GVariant) inner = g_variant_get_variant (v);

  return g_variant_get_int32 (inner);
}

static double
f32_at (GVariant *array, gsize i)
{
  g_autoptr(GVariant) v = g_variant_get_child_value (array, i);
  g_autoptr(GVariant) inner = g_variant_get_variant (v);

  return g_variant_get_double (inner);
}

static void
assert_token (Loaded *l, gsize id, const char *text, gint32 type)
{
  g_autofree char *t = NULL;

  if (!l->tokens)
    {
      l->tokens = get_array (l, "tokenizer.ggml.tokens", SMELT_GGUF_VALUE_STRING);
      l->types = get_array (l, "tokenizer.ggml.token_type", SMELT_GGUF_VALUE_INT32);
    }
  t = str_at (l->tokens, id);
  g_assert_cmpstr (t, ==, text);
  g_assert_cmpint (i32_at (l->types, id), ==, type);
}

/* ------------------------------------------------------------------ */
/* SentencePiece                                                       */

static const char llama_config[] =
  "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 12,"
  " \"bos_token_id\": 1, \"eos_token_id\": 2, \"pad_token_id\": 0}";

static const char spm_tokenizer_config[] =
  "{\"add_bos_token\": true, \"add_eos_token\": false, \"add_prefix_space\": false,"
  " \"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\", \"__type\": \"AddedToken\"},"
  " \"unk_token\": \"<unk>\", \"chat_template\": \"{{ messages }}\","
  " \"added_tokens_decoder\": {"
  "   \"7\": {\"content\": \"<|im_start|>\", \"special\": false},"
  "   \"9\": {\"content\": \"\\u2581a\\u2581b\", \"special\": false},"
  "   \"10\": {\"content\": \"<ctl>\", \"special\": true},"
  "   \"40\": {\"content\": \"<far>\", \"special\": true}}}";

static void
test_spm_llama (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autoptr(GVariant) tokens = NULL;
  g_autoptr(GVariant) scores = NULL;
  g_autoptr(GVariant) types = NULL;
  g_autofree char *k = NULL;
  g_autofree char *model = NULL, *pre = NULL, *tmpl = NULL;
  static const gint32 want_types[] = { 2, 3, 3, 6, 1, 1, 5, 3, 4, 4, 3, 5 };
  static const double want_scores[] = { 0, 0, 0, 0, -1.5, -2.25, -3, -1000, -1000, -1000, -1000, -10000 };

  put_model (f, llama_config);
  put_spm (f);
  put_file (f, "tokenizer_config.json", spm_tokenizer_config, -1);
  put_file (f, "added_tokens.json", "{\"<new>\": 8, \"<out>\": 99}", -1);

  l = load (f, "llama", 12);
  g_assert_cmpstr (smelt_gguf_vocab_get_model (l->vocab), ==, "llama");
  g_assert_cmpstr (smelt_gguf_vocab_get_pre (l->vocab), ==, "default");

  /* add_space_prefix comes first (LlamaModel.set_vocab); without
   * tokenizer.json the ids come from config.json only */
  k = keys (l);
  g_assert_cmpstr (k, ==,
                   "ggml.add_space_prefix ggml.model ggml.pre ggml.tokens ggml.scores ggml.token_type "
                   "ggml.bos_token_id ggml.eos_token_id ggml.padding_token_id "
                   "ggml.add_bos_token ggml.add_eos_token chat_template");
  g_assert_false (get_bool (l, "tokenizer.ggml.add_space_prefix"));
  model = get_str (l, "tokenizer.ggml.model");
  pre = get_str (l, "tokenizer.ggml.pre");
  g_assert_cmpstr (model, ==, "llama");
  g_assert_cmpstr (pre, ==, "default");

  tokens = get_array (l, "tokenizer.ggml.tokens", SMELT_GGUF_VALUE_STRING);
  scores = get_array (l, "tokenizer.ggml.scores", SMELT_GGUF_VALUE_FLOAT32);
  types = get_array (l, "tokenizer.ggml.token_type", SMELT_GGUF_VALUE_INT32);
  g_assert_cmpuint (g_variant_n_children (tokens), ==, 12);
  g_assert_cmpuint (g_variant_n_children (scores), ==, 12);
  g_assert_cmpuint (g_variant_n_children (types), ==, 12);
  for (guint i = 0; i < 12; i++)
    {
      g_assert_cmpint (i32_at (types, i), ==, want_types[i]);
      g_assert_cmpfloat (f32_at (scores, i), ==, want_scores[i]);
    }
  assert_token (l, 4, "\xe2\x96\x81the", 1);
  assert_token (l, 7, "<|im_start|>", 3);          /* looks special */
  assert_token (l, 8, "<new>", 4);                 /* added_tokens.json */
  assert_token (l, 9, " a b", 4);                  /* ▁ → space */
  assert_token (l, 10, "<ctl>", 3);
  assert_token (l, 11, "[PAD11]", 5);

  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 1);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 2);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.padding_token_id"), ==, 0);
  g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
  g_assert_false (get_bool (l, "tokenizer.ggml.add_eos_token"));
  tmpl = get_str (l, "tokenizer.chat_template");
  g_assert_cmpstr (tmpl, ==, "{{ messages }}");
}

/* pieces past the embedding are dropped, as the converter does */
static void
test_spm_truncated (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autoptr(GVariant) tokens = NULL;

  put_model (f, llama_config);
  put_spm (f);
  l = load (f, "qwen2", 5);
  tokens = get_array (l, "tokenizer.ggml.tokens", SMELT_GGUF_VALUE_STRING);
  g_assert_cmpuint (g_variant_n_children (tokens), ==, 5);
  assert_token (l, 4, "\xe2\x96\x81the", 1);
  g_assert_false (has_key (l, "tokenizer.ggml.add_space_prefix"));
}

/* gemma: CodeGemma's eot 107 and add_space_prefix=false at the end; the
 * second SpecialVocab does not repeat the chat template */
static void
test_spm_gemma (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autofree char *k = NULL;
  g_autoptr(GError) error = NULL;
  SmeltGgufVocab *v;

  put_model (f, "{\"architectures\": [\"GemmaForCausalLM\"], \"model_type\": \"gemma\","
                " \"bos_token_id\": 2, \"eos_token_id\": 1, \"pad_token_id\": 0}");
  put_spm (f);
  put_file (f, "tokenizer_config.json",
            "{\"add_bos_token\": true, \"add_eos_token\": false, \"chat_template\": \"T\"}", -1);
  l = load (f, "gemma", 120);
  k = keys (l);
  g_assert_cmpstr (k, ==,
                   "ggml.model ggml.pre ggml.tokens ggml.scores ggml.token_type "
                   "ggml.bos_token_id ggml.eos_token_id ggml.padding_token_id "
                   "ggml.add_bos_token ggml.add_eos_token chat_template "
                   "ggml.eot_token_id ggml.add_space_prefix");
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eot_token_id"), ==, 107);
  g_assert_false (get_bool (l, "tokenizer.ggml.add_space_prefix"));

  /* gemma needs tokenizer.model: the error names it */
  g_clear_pointer (&l, loaded_free);
  {
    g_autofree char *p = g_build_filename (f->dir, "tokenizer.model", NULL);
    g_remove (p);
  }
  put_file (f, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", -1);
  v = try_load (f, "gemma", 120, &error);
  g_assert_null (v);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "tokenizer.model"));
}

/* phi3 has its own copy of the SentencePiece code: no "looks special"
 * rule, no ▁ → space, tokenizer.json's added tokens too, and no range
 * check (a token past the embedding is an error there) */
static void
test_spm_phi3 (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) scores = NULL;
  SmeltGgufVocab *v;

  put_model (f, "{\"architectures\": [\"Phi3ForCausalLM\"], \"model_type\": \"phi3\", \"bos_token_id\": 1}");
  put_spm (f);
  put_file (f, "tokenizer_config.json",
            "{\"tokenizer_class\": \"LlamaTokenizer\", \"added_tokens_decoder\": {"
            " \"7\": {\"content\": \"<|user|>\", \"special\": false},"
            " \"9\": {\"content\": \"\\u2581x\", \"special\": false}}}", -1);
  put_file (f, "tokenizer.json",
            "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
            " \"added_tokens\": [{\"id\": 8, \"content\": \"<|end|>\", \"special\": true}]}", -1);
  l = load (f, "phi3", 11);
  assert_token (l, 7, "<|user|>", 4);
  assert_token (l, 8, "<|end|>", 3);
  assert_token (l, 9, "\xe2\x96\x81x", 4);
  assert_token (l, 10, "[PAD10]", 5);
  scores = get_array (l, "tokenizer.ggml.scores", SMELT_GGUF_VALUE_FLOAT32);
  g_assert_cmpfloat (f32_at (scores, 8), ==, -1000.0);
  g_assert_cmpfloat (f32_at (scores, 10), ==, -10000.0);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 1);

  v = try_load (f, "phi3", 9, &error);
  g_assert_null (v);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, "tokenizer_config.json"));
}

/* SpecialVocab reading tokenizer.json's TemplateProcessing: a trailing
 * special token that is not the EOS becomes the EOS, the old EOS the EOT */
static void
test_special_template (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autofree char *k = NULL;

  put_model (f, "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\","
                " \"bos_token_id\": 5, \"unk_token_id\": 0}");
  put_spm (f);
  put_file (f, "tokenizer.json",
            "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
            " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"},"
            "                  {\"type\": \"BertNormalizer\", \"strip_accents\": false}]},"
            " \"added_tokens\": ["
            "   {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
            "   {\"id\": 2, \"content\": \"</s>\", \"special\": true},"
            "   {\"id\": 7, \"content\": \"<|end|>\", \"special\": true},"
            "   {\"id\": 9, \"content\": \"<|end|>\", \"special\": true}],"
            " \"post_processor\": {\"type\": \"TemplateProcessing\","
            "   \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}},"
            "              {\"SpecialToken\": {\"id\": \"</s>\"}}],"
            "   \"pair\": [{\"SpecialToken\": {\"id\": \"<s>\"}}, {\"Sequence\": {\"id\": \"A\"}},"
            "            {\"SpecialToken\": {\"id\": \"</s>\"}}, {\"Sequence\": {\"id\": \"B\"}},"
            "            {\"SpecialToken\": {\"id\": \"</s>\"}}]}}", -1);
  put_file (f, "tokenizer_config.json",
            "{\"bos_token\": \"<s>\", \"eos_token\": \"<|end|>\", \"add_bos_token\": false}", -1);
  l = load (f, "qwen2", 12);
  k = keys (l);
  /* ids: bos and eos from tokenizer_config (looked up in added_tokens,
   * first match), unk from config.json, eot added by the template; config's
   * bos_token_id 5 loses to the first one found. Flags: bos (template,
   * then tokenizer_config's false in place), eos, sep */
  g_assert_cmpstr (k, ==,
                   "ggml.model ggml.pre ggml.tokens ggml.scores ggml.token_type "
                   "ggml.bos_token_id ggml.eos_token_id ggml.eot_token_id ggml.unknown_token_id "
                   "ggml.add_bos_token ggml.add_eos_token ggml.add_sep_token "
                   "ggml.normalizer.lowercase ggml.normalizer.strip_accents");
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 1);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 2);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eot_token_id"), ==, 7);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.unknown_token_id"), ==, 0);
  g_assert_false (get_bool (l, "tokenizer.ggml.add_bos_token"));
  g_assert_true (get_bool (l, "tokenizer.ggml.add_eos_token"));
  g_assert_false (get_bool (l, "tokenizer.ggml.add_sep_token"));
  g_assert_true (get_bool (l, "tokenizer.ggml.normalizer.lowercase"));
  g_assert_false (get_bool (l, "tokenizer.ggml.normalizer.strip_accents"));

  /* without tokenizer_config.json the template alone names BOS and EOS
   * (flags only) and the ids come from config.json */
  {
    g_autofree char *p = g_build_filename (f->dir, "tokenizer_config.json", NULL);
    g_autofree char *k2 = NULL;

    g_remove (p);
    g_clear_pointer (&l, loaded_free);
    l = load (f, "qwen2", 12);
    k2 = keys (l);
    g_assert_cmpstr (k2, ==,
                     "ggml.model ggml.pre ggml.tokens ggml.scores ggml.token_type "
                     "ggml.bos_token_id ggml.unknown_token_id "
                     "ggml.add_bos_token ggml.add_eos_token ggml.add_sep_token "
                     "ggml.normalizer.lowercase ggml.normalizer.strip_accents");
    g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 5);
    g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
    g_assert_true (get_bool (l, "tokenizer.ggml.add_eos_token"));
    g_assert_false (get_bool (l, "tokenizer.ggml.add_sep_token"));
  }
}

/* ------------------------------------------------------------------ */
/* chat templates                                                       */

static void
test_chat_templates (void)
{
  /* list form: named templates, their names, then the default */
  {
    g_autoptr(Folder) f = folder_new ();
    g_autoptr(Loaded) l = NULL;
    g_autoptr(GVariant) names = NULL;
    g_autofree char *k = NULL, *d = NULL, *t = NULL, *n0 = NULL;

    put_model (f, llama_config);
    put_spm (f);
    put_file (f, "tokenizer_config.json",
              "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"},"
              " {\"name\": \"tool use\", \"template\": \"T\"}, {\"name\": \"\", \"template\": \"E\"}]}", -1);
    put_file (f, "chat_template.jinja", "ignored: tokenizer_config.json wins", -1);
    l = load (f, "qwen3", 12);
    k = keys (l);
    g_assert_true (g_str_has_suffix (k, "chat_template.tool_use chat_templates chat_template"));
    d = get_str (l, "tokenizer.chat_template");
    t = get_str (l, "tokenizer.chat_template.tool_use");
    g_assert_cmpstr (d, ==, "D");
    g_assert_cmpstr (t, ==, "T");
    names = get_array (l, "tokenizer.chat_templates", SMELT_GGUF_VALUE_STRING);
    g_assert_cmpuint (g_variant_n_children (names), ==, 1);
    n0 = str_at (names, 0);
    g_assert_cmpstr (n0, ==, "tool_use");
  }
  /* chat_template.jinja read as Python text: CRLF becomes LF */
  {
    g_autoptr(Folder) f = folder_new ();
    g_autoptr(Loaded) l = NULL;
    g_autofree char *d = NULL;

    put_model (f, llama_config);
    put_spm (f);
    put_file (f, "tokenizer_config.json", "{\"bos_token\": \"<s>\"}", -1);
    put_file (f, "chat_template.jinja", "a\r\nb\rc\n", -1);
    put_file (f, "chat_template.json", "{\"chat_template\": \"ignored: the jinja file wins\"}", -1);
    l = load (f, "qwen3", 12);
    d = get_str (l, "tokenizer.chat_template");
    g_assert_cmpstr (d, ==, "a\nb\nc\n");
  }
  /* chat_template.json */
  {
    g_autoptr(Folder) f = folder_new ();
    g_autoptr(Loaded) l = NULL;
    g_autofree char *d = NULL;

    put_model (f, llama_config);
    put_spm (f);
    put_file (f, "tokenizer_config.json", "{\"bos_token\": \"<s>\"}", -1);
    put_file (f, "chat_template.json", "{\"chat_template\": \"J\"}", -1);
    l = load (f, "qwen3", 12);
    d = get_str (l, "tokenizer.chat_template");
    g_assert_cmpstr (d, ==, "J");
  }
  /* an explicit null in tokenizer_config.json wins over the file; with
   * no tokenizer_config.json at all the converter reads no template */
  for (int variant = 0; variant < 2; variant++)
    {
      g_autoptr(Folder) f = folder_new ();
      g_autoptr(Loaded) l = NULL;

      put_model (f, llama_config);
      put_spm (f);
      if (variant == 0)
        put_file (f, "tokenizer_config.json", "{\"chat_template\": null}", -1);
      put_file (f, "chat_template.jinja", "J", -1);
      l = load (f, "qwen3", 12);
      g_assert_false (has_key (l, "tokenizer.chat_template"));
    }
}

/* ------------------------------------------------------------------ */
/* tokenizer.json without tokenizer.model                               */

/* a Llama-2 style tokenizer.json: BPE with byte fallback, read as
 * SentencePiece (LlamaHfVocab) */
static const char llama_hf_json[] =
  "{\"version\": \"1.0\","
  " \"added_tokens\": ["
  "   {\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"
  "   {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
  "   {\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false},"
  "   {\"id\": 10, \"content\": \"<extra>\", \"special\": false, \"normalized\": false},"
  "   {\"id\": 11, \"content\": \"<ctl>\", \"special\": true, \"normalized\": false}],"
  " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
  "   {\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
  "   {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
  " \"pre_tokenizer\": null,"
  " \"post_processor\": {\"type\": \"TemplateProcessing\","
  "   \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
  "   \"pair\": [], \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}},"
  " \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]},"
  " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, \"byte_fallback\": true,"
  "   \"vocab\": {\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"<0x41>\": 3, \"\\u2581\": 4, \"a\": 5, \"b\": 6,"
  "             \"\\u2581a\": 7, \"ab\": 8, \"\\u2581ab\": 9},"
  "   \"merges\": [\"a b\", \"\\u2581 a\", \"\\u2581a b\"]}}";

static void
test_llama_hf (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(Loaded) l = NULL;
  g_autoptr(GVariant) types = NULL;
  g_autoptr(GVariant) scores = NULL;
  g_autofree char *k = NULL;
  /* <ctl> is special in tokenizer.json but not one of transformers'
   * special tokens (bos/eos/unk/…): LlamaHfVocab makes it USER_DEFINED */
  static const gint32 want_types[] = { 3, 3, 3, 6, 1, 1, 1, 1, 1, 1, 4, 4, 5, 5 };
  /* minus the rank of the first merge making the token; -1e9 for tokens
   * no merge makes; -1000 for added tokens and padding */
  static const double want_scores[] = { -1e9, -1e9, -1e9, -1e9, -1e9, -1e9, -1e9,
                                        -1, 0, -2, -1000, -1000, -1000, -1000 };

  put_model (f, llama_config);
  put_file (f, "tokenizer.json", llama_hf_json, -1);
  put_file (f, "tokenizer_config.json",
            "{\"tokenizer_class\": \"LlamaTokenizer\", \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
            " \"unk_token\": \"<unk>\", \"add_bos_token\": true, \"add_eos_token\": false}", -1);
  l = load (f, "llama", 14);
  g_assert_cmpstr (smelt_gguf_vocab_get_model (l->vocab), ==, "llama");
  g_assert_cmpstr (smelt_gguf_vocab_get_pre (l->vocab), ==, "default");
  k = keys (l);
  /* the template parsing sets add_bos, tokenizer_config's flags follow */
  g_assert_cmpstr (k, ==,
                   "ggml.model ggml.pre ggml.tokens ggml.scores ggml.token_type "
                   "ggml.bos_token_id ggml.eos_token_id ggml.unknown_token_id ggml.padding_token_id "
                   "ggml.add_bos_token ggml.add_eos_token");
  types = get_array (l, "tokenizer.ggml.token_type", SMELT_GGUF_VALUE_INT32);
  scores = get_array (l, "tokenizer.ggml.scores", SMELT_GGUF_VALUE_FLOAT32);
  g_assert_cmpuint (g_variant_n_children (types), ==, 14);
  for (guint i = 0; i < 14; i++)
    {
      g_assert_cmpint (i32_at (types, i), ==, want_types[i]);
      g_assert_cmpfloat (f32_at (scores, i), ==, want_scores[i]);
    }
  assert_token (l, 7, "\xe2\x96\x81" "a", 1);
  assert_token (l, 10, "<extra>", 4);
  assert_token (l, 12, "[PAD12]", 5);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 1);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 2);
  g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.unknown_token_id"), ==, 0);
  g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
}

/* a tiny byte-level BPE: the converter hashes its encoding, finds nothing
 * and aborts; smelt says which file and why */
static const char byte_level_json[] =
  "{\"added_tokens\": [{\"id\": 5, \"content\": \"<|endoftext|>\", \"special\": true, \"normalized\": false}],"
  " \"normalizer\": null,"
  " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
  " \"post_processor\": null, \"decoder\": {\"type\": \"ByteLevel\"},"
  " \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"byte_fallback\": false,"
  "   \"vocab\": {\"a\": 0, \"b\": 1, \"\\u0120\": 2, \"ab\": 3, \"\\u0120a\": 4},"
  "   \"merges\": [[\"a\", \"b\"], [\"\\u0120\", \"a\"]]}}";

static void
test_bpe_errors (void)
{
  g_autoptr(Folder) f = folder_new ();
  g_autoptr(GError) error = NULL;
  SmeltGgufVocab *v;

  put_model (f, "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\"}");
  put_file (f, "tokenizer.json", byte_level_json, -1);

  /* llama without tokenizer.model: "Llama 3" style goes the GPT-2 way */
  v = try_load (f, "llama", 8, &error);
  g_assert_null (v);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "tokenizer.json"));
  g_assert_nonnull (strstr (error->message, "pre-tokenizer is not one llama.cpp knows"));
  g_clear_error (&error);

  /* token ids past the embedding */
  v = try_load (f, "qwen2", 5, &error);
  g_assert_null (v);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, "tokenizer.json"));
  g_assert_nonnull (strstr (error->message, "token id 5"));
  g_clear_error (&error);

  /* the same for the LlamaHfVocab path */
  put_file (f, "tokenizer.json", llama_hf_json, -1);
  v = try_load (f, "llama", 11, &error);
  g_assert_null (v);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, "tokenizer.json"));
}

static void
test_errors (void)
{
  g_autoptr(GError) error = NULL;
  SmeltGgufVocab *v;

  /* no tokenizer at all */
  {
    g_autoptr(Folder) f = folder_new ();

    put_model (f, llama_config);
    put_file (f, "tokenizer_config.json", "{}", -1);
    v = try_load (f, "llama", 12, &error);
    g_assert_null (v);
    g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND);
    g_assert_nonnull (strstr (error->message, f->dir));
    g_assert_nonnull (strstr (error->message, "no tokenizer"));
    g_clear_error (&error);
  }
  /* malformed tokenizer.json: file, line and column */
  {
    g_autoptr(Folder) f = folder_new ();

    put_model (f, llama_config);
    put_file (f, "tokenizer.json", "{\"model\": {\n  \"type\": \"BPE\",,}}", -1);
    v = try_load (f, "qwen2", 12, &error);
    g_assert_null (v);
    g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "tokenizer.json"));
    g_assert_nonnull (strstr (error->message, "line 2"));
    g_clear_error (&error);
  }
  /* malformed tokenizer.model */
  {
    g_autoptr(Folder) f = folder_new ();
    GByteArray *b = spm_bytes (pieces, G_N_ELEMENTS (pieces));

    put_model (f, llama_config);
    put_file (f, "tokenizer.model", b->data, b->len - 9);   /* cut inside a piece */
    g_byte_array_unref (b);
    v = try_load (f, "llama", 12, &error);
    g_assert_null (v);
    g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "tokenizer.model"));
    g_clear_error (&error);
  }
  /* a negative special token id in config.json makes the converter raise */
  {
    g_autoptr(Folder) f = folder_new ();

    put_model (f, "{\"architectures\": [\"LlamaForCausalLM\"], \"pad_token_id\": -1}");
    put_spm (f);
    v = try_load (f, "llama", 12, &error);
    g_assert_null (v);
    g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "config.json"));
    g_assert_nonnull (strstr (error->message, "pad"));
    g_clear_error (&error);
  }
}

/* ------------------------------------------------------------------ */
/* the encoder the pre-tokenizer fingerprint needs                       */

typedef struct {
  SmeltJsonDoc     *json;
  SmeltJsonDoc     *config;
  SmeltHfTokenizer *tok;
} Enc;

static void
enc_free (Enc *e)
{
  smelt_hf_tokenizer_free (e->tok);
  smelt_json_doc_free (e->json);
  smelt_json_doc_free (e->config);
  g_free (e);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Enc, enc_free)

static Enc *
enc_new (const char *json,
         const char *config)
{
  g_autoptr(GError) error = NULL;
  Enc *e = g_new0 (Enc, 1);

  e->json = smelt_json_doc_parse (json, strlen (json), "tokenizer.json", &error);
  g_assert_no_error (error);
  if (config)
    {
      e->config = smelt_json_doc_parse (config, strlen (config), "tokenizer_config.json", &error);
      g_assert_no_error (error);
    }
  e->tok = smelt_hf_tokenizer_new (smelt_json_doc_get_root (e->json),
                                   e->config ? smelt_json_doc_get_root (e->config) : NULL,
                                   NULL, NULL, "tokenizer.json", &error);
  g_assert_no_error (error);
  return e;
}

static char *
encode (Enc        *e,
        const char *text,
        gboolean    add_special)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) ids = smelt_hf_tokenizer_encode (e->tok, text, add_special, &error);
  GString *s = g_string_new (NULL);

  g_assert_no_error (error);
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf (s, i ? " %u" : "%u", g_array_index (ids, guint32, i));
  return g_string_free (s, FALSE);
}

#define ASSERT_ENCODES(e, text, special, want) G_STMT_START { \
    g_autofree char *got_ = encode ((e), (text), (special));  \
    g_assert_cmpstr (got_, ==, (want));                       \
  } G_STMT_END

static void
test_encoder_bpe (void)
{
  /* merges apply by rank, not left to right: "abc" merges b+c (rank 0)
   * first, and a+bc has no rule, so a | bc; a greedy left-to-right merge
   * would give ab | c */
  {
    g_autoptr(Enc) e = enc_new ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2,"
                                " \"ab\": 3, \"bc\": 4, \"abc\": 5}, \"merges\": [\"b c\", \"a b\"]}}", NULL);

    ASSERT_ENCODES (e, "abc", TRUE, "0 4");
    ASSERT_ENCODES (e, "abab", TRUE, "3 3");
    /* a character with no token, no unk and no byte fallback vanishes,
     * and its neighbours then merge as if adjacent */
    ASSERT_ENCODES (e, "a b", TRUE, "3");
  }
  /* equal ranks: the leftmost pair first ("aaa" → aa | a) */
  {
    g_autoptr(Enc) e = enc_new ("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"aa\": 1},"
                                " \"merges\": [[\"a\", \"a\"]]}}", NULL);

    ASSERT_ENCODES (e, "aaa", TRUE, "1 0");
  }
  /* ignore_merges takes a whole word found in the vocabulary */
  {
    g_autoptr(Enc) e = enc_new ("{\"model\": {\"type\": \"BPE\", \"ignore_merges\": true,"
                                " \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"abc\": 3}, \"merges\": []}}", NULL);

    ASSERT_ENCODES (e, "abc", TRUE, "3");
  }
  /* byte fallback, and fused unknowns */
  {
    g_autoptr(Enc) e = enc_new ("{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"fuse_unk\": true,"
                                " \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0, \"a\": 1, \"<0xC3>\": 2,"
                                " \"<0xA9>\": 3}, \"merges\": []}}", NULL);

    ASSERT_ENCODES (e, "a\xc3\xa9" "a", TRUE, "1 2 3 1");
    /* ü: <0xC3> exists but <0xBC> does not, so the character is unknown;
     * two unknowns in a row fuse */
    ASSERT_ENCODES (e, "a\xc3\xbc\xc3\xbc" "a", TRUE, "1 0 1");
  }
}

static void
test_encoder_pipeline (void)
{
  /* GPT-2 byte level: the regex splits " b" off, bytes map to Ġ… */
  {
    g_autoptr(Enc) e = enc_new (byte_level_json, NULL);

    ASSERT_ENCODES (e, "ab a", TRUE, "3 4");
    ASSERT_ENCODES (e, "b<|endoftext|>a", TRUE, "1 5 0");
  }
  /* Llama 3: Split on \p{N}{1,3} (Isolated), ByteLevel without regex,
   * TemplateProcessing adds the BOS */
  {
    g_autoptr(Enc) e = enc_new (
      "{\"added_tokens\": [{\"id\": 9, \"content\": \"<bos>\", \"special\": true}],"
      " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
      "   {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", \"invert\": false},"
      "   {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]},"
      " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
      "   {\"SpecialToken\": {\"id\": \"<bos>\"}}, {\"Sequence\": {\"id\": \"A\"}}],"
      "   \"special_tokens\": {\"<bos>\": {\"id\": \"<bos>\", \"ids\": [9]}}},"
      " \"model\": {\"type\": \"BPE\", \"ignore_merges\": true, \"vocab\": {\"1\": 0, \"2\": 1, \"3\": 2,"
      "   \"4\": 3, \"5\": 4, \"123\": 5, \"45\": 6, \"12\": 7}, \"merges\": [\"1 2\"]}}", NULL);

    ASSERT_ENCODES (e, "12345", TRUE, "9 5 6");
    ASSERT_ENCODES (e, "12345", FALSE, "5 6");
  }
  /* added tokens: a non-normalized one matches the raw text before the
   * normalizer runs, a normalized one the normalized text; lstrip eats
   * the spaces before it */
  {
    g_autoptr(Enc) e = enc_new (
      "{\"added_tokens\": ["
      "   {\"id\": 10, \"content\": \"<X>\", \"special\": true, \"normalized\": false},"
      "   {\"id\": 11, \"content\": \"HI\", \"special\": false, \"normalized\": true},"
      "   {\"id\": 12, \"content\": \"<m>\", \"special\": true, \"normalized\": false, \"lstrip\": true}],"
      " \"normalizer\": {\"type\": \"Lowercase\"},"
      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"<\": 1, \"x\": 2, \">\": 3, \" \": 4,"
      "   \"h\": 5, \"i\": 6}, \"merges\": []}}", NULL);

    ASSERT_ENCODES (e, "a<X>a", TRUE, "0 10 0");
    ASSERT_ENCODES (e, "aHIa", TRUE, "0 11 0");
    ASSERT_ENCODES (e, "a  <m>a", TRUE, "0 12 0");
  }
  /* gemma 3: Replace " " → "▁", Split " " MergedWithPrevious (a no-op
   * after the replacement), byte fallback, non-normalized "\n" tokens */
  {
    g_autoptr(Enc) e = enc_new (
      "{\"added_tokens\": [{\"id\": 2, \"content\": \"<bos>\", \"special\": true, \"normalized\": false},"
      "   {\"id\": 7, \"content\": \"\\n\", \"special\": false, \"normalized\": false},"
      "   {\"id\": 8, \"content\": \"\\n\\n\", \"special\": false, \"normalized\": false}],"
      " \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"},"
      " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"MergedWithPrevious\"},"
      " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<bos>\"}},"
      "   {\"Sequence\": {\"id\": \"A\"}}], \"special_tokens\": {\"<bos>\": {\"ids\": [2]}}},"
      " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"\\u2581\": 3, \"a\": 4,"
      "   \"\\u2581a\": 5, \"<0x0A>\": 6, \"\\n\": 7, \"\\n\\n\": 8}, \"merges\": [[\"\\u2581\", \"a\"]]}}",
      "{\"tokenizer_class\": \"GemmaTokenizer\", \"bos_token\": \"<bos>\"}");

    ASSERT_ENCODES (e, "a a\n\n\na", TRUE, "2 4 5 8 7 4");
  }
  /* Metaspace with prepend_scheme "first": only the start of the text */
  {
    g_autoptr(Enc) e = enc_new (
      "{\"added_tokens\": [{\"id\": 9, \"content\": \"<s>\", \"special\": true}],"
      " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\","
      "   \"split\": true},"
      " \"model\": {\"type\": \"BPE\", \"vocab\": {\"\\u2581\": 0, \"a\": 1, \"\\u2581a\": 2},"
      "   \"merges\": [\"\\u2581 a\"]}}", NULL);

    ASSERT_ENCODES (e, "a a", TRUE, "2 2");
    ASSERT_ENCODES (e, "<s>a", TRUE, "9 1");
  }
}

/* decode(), which the converter runs over non-normalized added tokens */
static void
test_decode (void)
{
  g_autoptr(Enc) e = enc_new (
    "{\"added_tokens\": [{\"id\": 3, \"content\": \"\\u0120x\\u010a\", \"special\": false, \"normalized\": false}],"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
    "{\"clean_up_tokenization_spaces\": false}");
  guint32 id = 3;
  g_autofree char *text = smelt_hf_tokenizer_decode (e->tok, &id, 1);

  g_assert_cmpstr (text, ==, " x\n");
}

/* ------------------------------------------------------------------ */
/* the real tokenizers (with the test dependencies)                     */

typedef struct {
  const char *name;
  const char *arch;
  const char *config;
  guint64     n_vocab;
  const char *model;
  const char *pre;
} RealCase;

static const RealCase real_cases[] = {
  { "llama2", "llama",
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 32000,"
    " \"bos_token_id\": 1, \"eos_token_id\": 2}",
    32000, "llama", "default" },
  { "llama3_1", "llama",
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 128256,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009]}",
    128256, "gpt2", "llama-bpe" },
  { "qwen3", "qwen3",
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"model_type\": \"qwen3\", \"vocab_size\": 151936,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151645}",
    151936, "gpt2", "qwen2" },
  /* tokenizer.json only: the converter's GPT-2 path, whose fingerprint is
   * that of ibm-granite's multilingual embedding model (same tokenizer) */
  { "gemma3", "gemma3",
    "{\"architectures\": [\"Gemma3ForCausalLM\"], \"model_type\": \"gemma3_text\", \"vocab_size\": 262208,"
    " \"bos_token_id\": 2, \"eos_token_id\": [1, 106], \"pad_token_id\": 0}",
    262208, "gpt2", "granite-embed-multi-311m" },
};

static char *
real_tokenizer_dir (const char *name)
{
  const char *deps = g_getenv ("SMELT_TEST_DEPS");
  char *dir;

  if (!deps || !*deps)
    return NULL;
  dir = g_build_filename (deps, "tokenizers", name, NULL);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    g_clear_pointer (&dir, g_free);
  return dir;
}

static void
link_tokenizer (Folder     *f,
                const char *src)
{
  static const char * const names[] = { "tokenizer.json", "tokenizer_config.json" };

  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *from = g_build_filename (src, names[i], NULL);
      g_autofree char *to = g_build_filename (f->dir, names[i], NULL);

      g_assert_cmpint (symlink (from, to), ==, 0);
    }
}

static void
test_real (gconstpointer data)
{
  const RealCase *c = data;
  g_autofree char *src = real_tokenizer_dir (c->name);
  g_autoptr(Folder) f = NULL;
  g_autoptr(Loaded) l = NULL;
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) tokens = NULL;
  SmeltGgufVocab *v;
  gint64 t0, t1;

  if (!src)
    {
      g_test_skip ("SMELT_TEST_DEPS is not set (tests/llama/fetch-test-deps.sh fills it)");
      return;
    }
  f = folder_new ();
  put_model (f, c->config);
  link_tokenizer (f, src);

  /* time the load alone */
  source = open_source (f);
  t0 = g_get_monotonic_time ();
  v = smelt_gguf_vocab_load (source, c->arch, c->n_vocab, &error);
  t1 = g_get_monotonic_time ();
  g_assert_no_error (error);
  g_print ("# %s: tokenizer.ggml.model=%s pre=%s, loaded in %.3f s\n", c->name,
           smelt_gguf_vocab_get_model (v), smelt_gguf_vocab_get_pre (v), (t1 - t0) / 1e6);
  /* load time is the benchmark's business, not a test's: printed only */
  smelt_gguf_vocab_free (v);

  l = load (f, c->arch, c->n_vocab);
  g_assert_cmpstr (smelt_gguf_vocab_get_model (l->vocab), ==, c->model);
  g_assert_cmpstr (smelt_gguf_vocab_get_pre (l->vocab), ==, c->pre);
  tokens = get_array (l, "tokenizer.ggml.tokens", SMELT_GGUF_VALUE_STRING);
  g_assert_cmpuint (g_variant_n_children (tokens), ==, c->n_vocab);

  if (g_str_equal (c->name, "llama3_1"))
    {
      g_autoptr(GVariant) merges = get_array (l, "tokenizer.ggml.merges", SMELT_GGUF_VALUE_STRING);
      g_autofree char *m0 = str_at (merges, 0);

      g_assert_cmpuint (g_variant_n_children (merges), ==, 280147);
      g_assert_cmpstr (m0, ==, "\xc4\xa0 \xc4\xa0");
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 128000);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 128009);
      g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
      assert_token (l, 128000, "<|begin_of_text|>", 3);
      assert_token (l, 127999, "\xc3\xa9\xc4\xb6\xc2\xa6", 1);
      assert_token (l, 128255, "<|reserved_special_token_250|>", 3);
      g_assert_true (has_key (l, "tokenizer.chat_template"));
    }
  else if (g_str_equal (c->name, "qwen3"))
    {
      g_autoptr(GVariant) merges = get_array (l, "tokenizer.ggml.merges", SMELT_GGUF_VALUE_STRING);
      g_autofree char *m0 = str_at (merges, 0);

      g_assert_cmpuint (g_variant_n_children (merges), ==, 151387);
      g_assert_cmpstr (m0, ==, "\xc4\xa0 \xc4\xa0");
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 151645);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.padding_token_id"), ==, 151643);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 151643);  /* config.json */
      g_assert_false (get_bool (l, "tokenizer.ggml.add_bos_token"));
      assert_token (l, 151644, "<|im_start|>", 3);
      assert_token (l, 151659, "<|fim_prefix|>", 3);   /* special: false, but looks special */
      assert_token (l, 151667, "<think>", 4);
      assert_token (l, 151669, "[PAD151669]", 5);
    }
  else if (g_str_equal (c->name, "gemma3"))
    {
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 2);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.eos_token_id"), ==, 106);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.padding_token_id"), ==, 0);
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.unknown_token_id"), ==, 3);
      g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
      assert_token (l, 106, "<end_of_turn>", 3);
      assert_token (l, 107, "\n", 4);
      assert_token (l, 138, "  ", 4);               /* "▁▁", decoded then ▁ → space */
      assert_token (l, 6, "<unused0>", 3);
      assert_token (l, 5, "[multimodal]", 4);
      assert_token (l, 262207, "[PAD262207]", 5);
    }
  else
    {
      g_assert_cmpuint (get_u32 (l, "tokenizer.ggml.bos_token_id"), ==, 1);
      g_assert_true (get_bool (l, "tokenizer.ggml.add_bos_token"));
      assert_token (l, 13, "<0x0A>", 6);
      assert_token (l, 1, "<s>", 3);
      g_assert_false (has_key (l, "tokenizer.ggml.merges"));
    }

  /* an embedding smaller than the tokenizer: an error that names it */
  if (!g_str_equal (c->name, "llama2"))
    {
      g_clear_object (&source);
      source = open_source (f);
      v = smelt_gguf_vocab_load (source, c->arch, 1000, &error);
      g_assert_null (v);
      g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH);
      g_assert_nonnull (strstr (error->message, "tokenizer.json"));
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/gguf-vocab/spm/llama", test_spm_llama);
  g_test_add_func ("/gguf-vocab/spm/truncated", test_spm_truncated);
  g_test_add_func ("/gguf-vocab/spm/gemma", test_spm_gemma);
  g_test_add_func ("/gguf-vocab/spm/phi3", test_spm_phi3);
  g_test_add_func ("/gguf-vocab/special/template", test_special_template);
  g_test_add_func ("/gguf-vocab/chat-templates", test_chat_templates);
  g_test_add_func ("/gguf-vocab/llama-hf", test_llama_hf);
  g_test_add_func ("/gguf-vocab/bpe-errors", test_bpe_errors);
  g_test_add_func ("/gguf-vocab/errors", test_errors);
  g_test_add_func ("/gguf-vocab/encoder/bpe", test_encoder_bpe);
  g_test_add_func ("/gguf-vocab/encoder/pipeline", test_encoder_pipeline);
  g_test_add_func ("/gguf-vocab/encoder/decode", test_decode);
  for (guint i = 0; i < G_N_ELEMENTS (real_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/gguf-vocab/real/%s", real_cases[i].name);

      g_test_add_data_func (path, &real_cases[i], test_real);
    }
  return g_test_run ();
}
