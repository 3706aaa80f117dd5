/* smelt-hf-card.h: the model card (README.md) of an upload
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The line that marks a card as smelt's own: a later export may replace
 * such a card, never one a person wrote */
#define SMELT_HF_CARD_MARKER "<!-- smelt: generated model card; delete this line to keep your edits -->"

typedef enum {
  SMELT_HF_KIND_OTHER,       /* config, tokenizer, index, Modelfile */
  SMELT_HF_KIND_SAFETENSORS, /* weights of a whole model */
  SMELT_HF_KIND_ADAPTER,     /* PEFT adapter weights */
  SMELT_HF_KIND_GGUF,
} SmeltHfFileKind;

typedef struct {
  char            *path;
  guint64          size;
  SmeltHfFileKind  kind;
  char            *type;     /* Q4_K_M, BF16, NF4, ... or NULL */
} SmeltHfCardFile;

void             smelt_hf_card_file_free (SmeltHfCardFile *file);

typedef struct {
  const char  *repo_id;
  const char  *base_model;     /* a Hub id, or NULL */
  const char  *license;
  const char  *pipeline_tag;
  const char  *library_name;
  const char  *model_type;     /* config.json's, e.g. llama */
  char       **tags;
  guint        n_adapters;     /* adapters merged into the weights */
  GPtrArray   *files;          /* SmeltHfCardFile */
} SmeltHfCard;

GBytes   *smelt_hf_card_render         (const SmeltHfCard *card);

/* What a weights file holds, read from its header only (a few KiB, not
 * the data): GGUF's general.file_type, a safetensors file's main dtype */
char     *smelt_hf_gguf_type           (const char        *local);
char     *smelt_hf_safetensors_type    (const char        *local,
                                        gboolean          *bnb4);

/* license: from a model card's YAML front matter, or NULL */
char     *smelt_hf_card_license        (const char        *readme_path);
gboolean  smelt_hf_is_repo_id          (const char        *text);

G_END_DECLS
