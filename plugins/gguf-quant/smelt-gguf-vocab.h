/* smelt-gguf-vocab.h: tokenizer metadata for GGUF from a model directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

typedef struct _SmeltGgufVocab SmeltGgufVocab;

/* Reads the tokenizer files of @source (tokenizer.model, tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, added_tokens.json,
 * chat_template.jinja, chat_template.json, config.json) the way the
 * reference convert_hf_to_gguf.py does for @arch, padded to @n_vocab
 * tokens (the rows of token_embd). Errors name the file and the problem:
 * no tokenizer, more tokens than @n_vocab, an unknown pre-tokenizer, … */
SmeltGgufVocab *smelt_gguf_vocab_load        (SmeltSource     *source,
                                              const char      *arch,
                                              guint64          n_vocab,
                                              GError         **error);

/* As smelt_gguf_vocab_load(), with the user's choice of
 * tokenizer.ggml.pre for a byte-level BPE vocabulary instead of the
 * converter's fingerprint (NULL: the fingerprint). @pre must be a name
 * llama.cpp knows. */
SmeltGgufVocab *smelt_gguf_vocab_load_with_pre (SmeltSource   *source,
                                                const char    *arch,
                                                guint64        n_vocab,
                                                const char    *pre,
                                                GError       **error);
/* Whether @name is a tokenizer.ggml.pre value llama.cpp implements. */
gboolean        smelt_gguf_vocab_pre_name_is_known (const char *name);
void            smelt_gguf_vocab_free        (SmeltGgufVocab  *vocab);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltGgufVocab, smelt_gguf_vocab_free)

/* "llama" (SentencePiece) or "gpt2" (byte-level BPE) */
const char     *smelt_gguf_vocab_get_model   (SmeltGgufVocab  *vocab);
/* tokenizer.ggml.pre: "default", "llama-bpe", "qwen2", … */
const char     *smelt_gguf_vocab_get_pre     (SmeltGgufVocab  *vocab);

/* Appends every tokenizer.* key, in the converter's order. */
void            smelt_gguf_vocab_write_kvs   (SmeltGgufVocab  *vocab,
                                              SmeltGgufLayout *layout);

G_END_DECLS
