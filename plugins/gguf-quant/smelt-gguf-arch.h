/* smelt-gguf-arch.h: Hugging Face architectures → GGUF (names, KVs, layout)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* What happens to a source tensor's float32 rows before they are encoded. */
typedef enum {
  SMELT_GGUF_XFORM_NONE,
  /* llama-arch Q/K rows: HF rotate-half → interleaved, per head of
   * rows/n_head rows (row groups of one head are delivered whole) */
  SMELT_GGUF_XFORM_PERMUTE,
  /* gemma norms: x + 1, in float32 (or in float16 arithmetic when the
   * source is F16, as the converter does) */
  SMELT_GGUF_XFORM_NORM_PLUS_ONE,
} SmeltGgufTransform;

/* One tensor of the GGUF file. ne[] is authoritative: it may cover fewer
 * rows than @tensor holds (gemma3 drops the token_embd rows beyond the
 * tokenizer's vocabulary, as the converter does), so read the first
 * ne[n_dims - 1] rows of a 2-D tensor, or ne[0] elements of a 1-D one. */
typedef struct {
  char              *name;         /* GGUF name, ≤ 63 bytes */
  SmeltTensor       *tensor;       /* source tensor (owned ref), or NULL when generated */
  GBytes            *data;         /* generated tensors: float32 values */
  guint              n_dims;       /* GGUF order: ne[0] is the row length */
  guint64            ne[4];
  SmeltGgufTransform transform;
  guint              n_head;       /* SMELT_GGUF_XFORM_PERMUTE: effective heads */
  gboolean           source_f16;   /* SMELT_GGUF_XFORM_NORM_PLUS_ONE in f16 arithmetic */
  gboolean           force_f32;    /* converter rule: 1-D, *_norm.weight, not *.weight, … */
  SmeltGgmlType      source_type;  /* a GGUF source's stored type (plan->from_gguf) */
} SmeltGgufTensor;

typedef struct {
  char      *arch;                 /* "llama", "qwen2", … */
  GPtrArray *tensors;              /* SmeltGgufTensor, in file order */
  GHashTable *by_source;           /* source tensor name → SmeltGgufTensor (borrowed) */
  guint64    n_vocab;              /* rows of token_embd */
  gboolean   tied_output;          /* no output.weight */
  guint      n_head;
  guint      n_head_kv;
  guint      n_layer;
  char      *source_dtype;         /* "bf16", "f16" or "f32": first ≥2-D tensor (for auto) */
  /* What the converter's --outtype auto picks: the dtype of the first ≥2-D
   * tensor that is BF16 or F16 (F32 tensors are skipped), "f16" when there
   * is none. Not simply source_dtype: an all-F32 model gets "f16". */
  const char *auto_outtype;        /* "bf16" or "f16" (static string) */
  /* a GGUF source (smelt-gguf-requant.c): tensors keep their names and
   * types, and these hyperparameters come from its metadata */
  gboolean   from_gguf;
  guint      n_expert;
  guint      n_layer_nextn;
} SmeltGgufArchPlan;

void                 smelt_gguf_arch_plan_free     (SmeltGgufArchPlan *plan);
/* A plan with no tensors and no KVs, for callers that fill it in. */
SmeltGgufArchPlan   *smelt_gguf_arch_plan_new_empty (const char       *arch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltGgufArchPlan, smelt_gguf_arch_plan_free)

/* The architectures smelt converts, as a NULL-terminated list of HF class
 * names ("LlamaForCausalLM", …). */
const char * const  *smelt_gguf_arch_supported     (void);

/* Checks config.json and the tensors (without reading data): an unknown
 * architecture lists the supported ones; a tensor llama.cpp needs but the
 * model lacks, or a tensor the converter cannot map, names the tensor.
 * Hyperparameters are config.json plus transformers 4.57's class defaults
 * (chosen by model_type), as the converter's AutoConfig sees them.
 * Tensors come in the converter's order: generated ones first, then the
 * base's shards by file name and each shard's names sorted (a source with
 * adapters: all names sorted, as smelt's merged export lays them out).
 * gemma3 also reads the tokenizer's vocabulary size (config vocab_size
 * with a tokenizer.model, else tokenizer.json). */
SmeltGgufArchPlan   *smelt_gguf_arch_plan          (SmeltSource        *source,
                                                    GError            **error);

/* Appends the KVs the converter adds while it prepares the tensors, before
 * general.type and the authorship keys: call right after writing
 * `general.architecture`. Only phi3 with long-rope factors has one
 * (`phi3.rope.scaling.attn_factor`); for every other plan this does
 * nothing. */
void                 smelt_gguf_arch_write_early_kvs (SmeltGgufArchPlan *plan,
                                                      SmeltGgufLayout   *layout);

/* Appends the architecture block (`{arch}.*` keys and a placeholder
 * `general.file_type` = u32 0, in the converter's order) to @layout.
 * `general.architecture` itself is written by the caller, first. */
void                 smelt_gguf_arch_write_kvs     (SmeltGgufArchPlan *plan,
                                                    SmeltSource       *source,
                                                    SmeltGgufLayout   *layout);

/* Applies @tensor's transform to @n_rows float32 rows starting at
 * @first_row, in place (@rows holds @n_rows × ne[0] floats). For
 * SMELT_GGUF_XFORM_PERMUTE, @first_row and @n_rows are multiples of the
 * head size (see smelt_gguf_tensor_row_group()); a permuted 1-D bias is
 * one row, whose elements move. */
void                 smelt_gguf_tensor_transform   (const SmeltGgufTensor *tensor,
                                                    guint64            first_row,
                                                    guint64            n_rows,
                                                    float             *rows);

/* Rows that must be delivered together (1 unless permuted). */
guint64              smelt_gguf_tensor_row_group   (const SmeltGgufTensor *tensor);

G_END_DECLS
