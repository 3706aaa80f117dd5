/* smelt-gguf-mixture.h: llama-quantize's file types and per-tensor types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* What smelt can do with a file type. */
typedef enum {
  SMELT_GGUF_FTYPE_SUPPORTED,      /* smelt writes it */
  SMELT_GGUF_FTYPE_NEEDS_IMATRIX,  /* llama-quantize refuses it without an importance matrix */
  SMELT_GGUF_FTYPE_UNSUPPORTED,    /* a real type smelt cannot write yet */
} SmeltGgufFtypeSupport;

/* One llama.cpp file type (llama_ftype). */
typedef struct {
  const char           *name;          /* llama-quantize's spelling: "Q4_K_M" */
  guint32               ftype;         /* llama_ftype = general.file_type */
  /* llama_ftype_get_default_type(); meaningful only when has_default */
  SmeltGgmlType         default_type;
  gboolean              has_default;   /* FALSE: smelt knows no ggml type for it */
  SmeltGgufFtypeSupport support;
  const char           *note;          /* why not, for the error message; or NULL */
} SmeltGgufFtype;

/* The file types, in llama_ftype order; @n_out receives the count. */
const SmeltGgufFtype *smelt_gguf_mixture_ftypes       (gsize           *n_out);

/* A file type by name, any case: llama-quantize's names and aliases
 * (Q4_K = Q4_K_M, …) and Unsloth's (not_quantized = F16, fast_quantized =
 * Q8_0, quantized = Q4_K_M). NULL if the name means nothing. Does not
 * check support. */
const SmeltGgufFtype *smelt_gguf_mixture_lookup_ftype (const char      *name);

/* Like lookup, but only types smelt writes: an unknown name lists the
 * names smelt accepts; a type that needs an importance matrix or that
 * smelt cannot write says so (SMELT_RECIPE_ERROR_BAD_VALUE). */
gboolean              smelt_gguf_mixture_parse_ftype  (const char            *name,
                                                       const SmeltGgufFtype **out,
                                                       GError               **error);

/* One tensor of the input file, as llama-quantize sees it. */
typedef struct {
  const char    *name;
  guint64        ne[4];        /* unused dimensions are 1 */
  SmeltGgmlType  type;         /* input type */
} SmeltGgufMixTensor;

/* The hyperparameters llama-quantize's rules read. */
typedef struct {
  const char *arch;            /* general.architecture: "llama", "qwen2", … */
  guint       n_head;          /* {arch}.attention.head_count (layer 0's) */
  guint       n_head_kv;       /* {arch}.attention.head_count_kv (layer 0's; n_head when absent) */
  guint       n_layer;         /* {arch}.block_count */
  guint       n_layer_nextn;   /* {arch}.nextn_predict_layers, 0 when absent */
  guint       n_expert;        /* {arch}.expert_count, 0 when absent */
} SmeltGgufMixHparams;

/* llama-quantize's tensor order (llama_model_loader's weights_map): by
 * the number after "blk." (-1 without one), then by name, bytewise. */
int       smelt_gguf_mixture_compare_names (const char *a,
                                            const char *b);

/* Sorts @tensors into that order. */
void      smelt_gguf_mixture_sort          (SmeltGgufMixTensor *tensors,
                                            gsize               n_tensors);

/* Whether llama-quantize converts this tensor at all (2-D or more, a
 * "weight" that is not a norm, router, position embedding, …); if not it
 * is copied in its input type. */
gboolean  smelt_gguf_mixture_allows_quantization (const char    *name,
                                                  const guint64  ne[4]);

/* The type llama_model_quantize() gives every tensor for @ftype with its
 * default parameters (no importance matrix, no overrides, output tensor
 * quantized, not pure). @tensors may come in any order: the counters run
 * in weights_map order, as llama-quantize's do. types_out[i] is the type
 * of tensors[i]. Fails where llama-quantize fails: a type that needs an
 * importance matrix for some tensor, a quantized input that would have to
 * be requantized, a MoE tensor without a layer number, a file type smelt
 * has no ggml type for. */
gboolean  smelt_gguf_mixture_choose        (const SmeltGgufFtype      *ftype,
                                            const SmeltGgufMixHparams *hparams,
                                            const SmeltGgufMixTensor  *tensors,
                                            gsize                      n_tensors,
                                            SmeltGgmlType             *types_out,
                                            GError                   **error);

G_END_DECLS
