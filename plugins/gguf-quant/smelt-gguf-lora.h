/* smelt-gguf-lora.h: PEFT LoRA adapters as a llama.cpp LoRA adapter GGUF
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

#include "smelt-gguf-arch.h"

G_BEGIN_DECLS

/* The recipe's adapters as the `.lora_a` / `.lora_b` tensor pairs that
 * llama_adapter_lora_init() loads on top of the base model's GGUF, named
 * and laid out as convert_lora_to_gguf.py writes them. Built from the
 * adapters' own A and B matrices (never from merged weights); the data is
 * small, so it is assembled tensor by tensor when the file is written. */
typedef struct _SmeltGgufLora SmeltGgufLora;

/* Matches every adapter tensor of @source to a tensor of @base_plan (the
 * plan of the base model alone, i.e. of the GGUF the adapter will be
 * loaded on) and checks that llama.cpp can apply it: DoRA, lora_B biases,
 * trained full tensors that differ from the base (modules_to_save, resized
 * vocabularies), LoRA on the embedding or lm_head of a tied model and
 * modules llama.cpp has no tensor for are refused with the adapter file
 * and the module named. Several adapters become one: their ranks are
 * concatenated, which applies every delta exactly as the merge does. */
SmeltGgufLora *smelt_gguf_lora_new              (SmeltSource        *source,
                                                 SmeltGgufArchPlan  *base_plan,
                                                 GError            **error);
void           smelt_gguf_lora_free             (SmeltGgufLora      *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltGgufLora, smelt_gguf_lora_free)

/* `adapter.lora.alpha`: llama.cpp scales each pair by alpha / r (r its
 * rank); chosen so that this equals the PEFT scale (alpha / r, or
 * alpha / sqrt(r) with rsLoRA) times the adapter's weight. Where one
 * alpha cannot do that for every module (rank_pattern or alpha_pattern
 * with differing scales, several adapters), the remaining factor is
 * folded into the module's B matrix. */
float          smelt_gguf_lora_get_alpha        (SmeltGgufLora      *self);

/* Whether some B matrix had a factor folded in (see get_alpha()). */
gboolean       smelt_gguf_lora_is_rescaled      (SmeltGgufLora      *self);

/* The converter's --outtype auto for this adapter: "bf16" when the first
 * 2-D adapter tensor that is BF16 or F16 is BF16, else "f16". */
const char    *smelt_gguf_lora_get_auto_outtype (SmeltGgufLora      *self);

/* Number of lora_a/lora_b pairs. */
guint          smelt_gguf_lora_get_n_pairs      (SmeltGgufLora      *self);

/* Adds the tensor infos of a file whose 2-D tensors are @file_type (F32,
 * F16, BF16 or Q8_0; Q8_0 tensors whose rows do not split into blocks of
 * 32 are F16, as in the converter). */
gboolean       smelt_gguf_lora_add_tensors      (SmeltGgufLora      *self,
                                                 SmeltGgufLayout    *layout,
                                                 SmeltGgmlType       file_type,
                                                 GError            **error);

/* Writes the data section of a file planned with add_tensors() on
 * @layout with the same @file_type (the header is the caller's), padded
 * as the layout says; @written gets the number of bytes. */
gboolean       smelt_gguf_lora_write_data       (SmeltGgufLora      *self,
                                                 SmeltGgufLayout    *layout,
                                                 SmeltGgmlType       file_type,
                                                 GOutputStream      *out,
                                                 guint64            *written,
                                                 GCancellable       *cancellable,
                                                 GError            **error);

G_END_DECLS
