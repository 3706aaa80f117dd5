/* smelt-gguf-requant.h: a GGUF model as the source (llama-quantize's job)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

#include "smelt-gguf-arch.h"

G_BEGIN_DECLS

/* The plan for a source whose model is a GGUF file of F32/F16/BF16
 * tensors: every tensor keeps its name, shape and order, nothing is
 * transformed, and the hyperparameters llama-quantize's rules read come
 * from the file's metadata. */
SmeltGgufArchPlan *smelt_gguf_requant_plan     (SmeltSource    *source,
                                                GError        **error);

/* The file's metadata as llama-quantize copies it: every key in order,
 * without the split.* keys of a split file. */
SmeltGgufLayout   *smelt_gguf_requant_template (SmeltGgufFile  *file);

/* The stem output files are named after: the file name without `.gguf`
 * and without the type it names (`model.F16.gguf`, `ggml-model-f16.gguf`
 * → `model`, `ggml-model`). */
char              *smelt_gguf_requant_stem     (SmeltGgufFile  *file);

G_END_DECLS
