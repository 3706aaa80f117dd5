/* smelt-bnb4.h: bitsandbytes 4-bit (NF4/FP4) blockwise quantization
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-version.h>
#include <smelt/smelt-tensor.h>

G_BEGIN_DECLS

/**
 * SmeltBnb4Type:
 * @SMELT_BNB4_NF4: NormalFloat4, the 16 normal quantiles (QLoRA's type)
 * @SMELT_BNB4_FP4: bitsandbytes' 4-bit float (sign, 2 exponent bits, 1 mantissa bit)
 *
 * The two bitsandbytes 4-bit data types.
 */
typedef enum {
  SMELT_BNB4_NF4,
  SMELT_BNB4_FP4,
} SmeltBnb4Type;

/**
 * SMELT_BNB4_NESTED_BLOCKSIZE:
 *
 * The block size of double quantization (the absmax values are quantized
 * to 8 bits in blocks of this many).
 */
#define SMELT_BNB4_NESTED_BLOCKSIZE 256

SMELT_AVAILABLE_IN_ALL
const char   *smelt_bnb4_type_to_string   (SmeltBnb4Type  type);
SMELT_AVAILABLE_IN_ALL
gboolean      smelt_bnb4_type_from_string (const char     *name,
                                           SmeltBnb4Type  *type);
SMELT_AVAILABLE_IN_ALL
gboolean      smelt_bnb4_blocksize_is_valid (guint         blocksize);

SMELT_AVAILABLE_IN_ALL
const float  *smelt_bnb4_get_code         (SmeltBnb4Type  type);
SMELT_AVAILABLE_IN_ALL
const float  *smelt_bnb4_get_quant_map    (SmeltBnb4Type  type);
SMELT_AVAILABLE_IN_ALL
const float  *smelt_bnb4_get_nested_map   (void);

SMELT_AVAILABLE_IN_ALL
void          smelt_bnb4_quantize         (SmeltBnb4Type  type,
                                           const float   *x,
                                           gsize          n,
                                           guint          blocksize,
                                           guint8        *packed,
                                           float         *absmax);
SMELT_AVAILABLE_IN_ALL
gssize        smelt_bnb4_quantize_as      (SmeltBnb4Type  type,
                                           SmeltDType     dtype,
                                           const float   *x,
                                           gsize          n,
                                           guint          blocksize,
                                           guint8        *packed,
                                           float         *absmax);
SMELT_AVAILABLE_IN_ALL
void          smelt_bnb4_absmax           (const float   *x,
                                           gsize          n,
                                           guint          blocksize,
                                           float         *absmax);
SMELT_AVAILABLE_IN_ALL
float         smelt_bnb4_nested_offset    (const float   *absmax,
                                           gsize          n_blocks);
SMELT_AVAILABLE_IN_ALL
void          smelt_bnb4_quantize_nested  (const float   *absmax,
                                           gsize          n_blocks,
                                           float          offset,
                                           guint8        *codes,
                                           float         *nested_absmax);
SMELT_AVAILABLE_IN_ALL
void          smelt_bnb4_dequantize_nested (const guint8 *codes,
                                            gsize         n_blocks,
                                            const float  *nested_absmax,
                                            const float  *nested_map,
                                            float         offset,
                                            float        *absmax);
SMELT_AVAILABLE_IN_ALL
void          smelt_bnb4_dequantize       (SmeltBnb4Type  type,
                                           const guint8  *packed,
                                           const float   *absmax,
                                           gsize          first,
                                           gsize          n,
                                           guint          blocksize,
                                           float         *out);

SMELT_AVAILABLE_IN_ALL
char         *smelt_bnb4_format_python_float (double       value);

/**
 * SmeltBnb4Part:
 * @SMELT_BNB4_PART_WEIGHT: `weight`: the packed codes
 * @SMELT_BNB4_PART_ABSMAX: `weight.absmax`: float32, or 8-bit codes when nested
 * @SMELT_BNB4_PART_QUANT_MAP: `weight.quant_map`
 * @SMELT_BNB4_PART_NESTED_ABSMAX: `weight.nested_absmax` (nested only)
 * @SMELT_BNB4_PART_NESTED_QUANT_MAP: `weight.nested_quant_map` (nested only)
 * @SMELT_BNB4_PART_QUANT_STATE: `weight.quant_state.bitsandbytes__nf4|fp4`: the JSON
 *
 * The stored pieces of one bitsandbytes 4-bit weight, in the order
 * bitsandbytes writes them.
 */
typedef enum {
  SMELT_BNB4_PART_WEIGHT,
  SMELT_BNB4_PART_ABSMAX,
  SMELT_BNB4_PART_QUANT_MAP,
  SMELT_BNB4_PART_NESTED_ABSMAX,
  SMELT_BNB4_PART_NESTED_QUANT_MAP,
  SMELT_BNB4_PART_QUANT_STATE,
} SmeltBnb4Part;

/* A bitsandbytes 4-bit weight of a model, seen as its dequantized rows
 * (core/smelt-bnb4-tensor.c). */
#define SMELT_TYPE_BNB4_TENSOR (smelt_bnb4_tensor_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltBnb4Tensor, smelt_bnb4_tensor, SMELT, BNB4_TENSOR, GObject)

/**
 * SmeltBnb4TensorClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltBnb4Tensor, a final type: it adds nothing
 * to #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltBnb4Type smelt_bnb4_tensor_get_quant_type (SmeltBnb4Tensor *self);
SMELT_AVAILABLE_IN_ALL
guint         smelt_bnb4_tensor_get_blocksize  (SmeltBnb4Tensor *self);
SMELT_AVAILABLE_IN_ALL
gboolean      smelt_bnb4_tensor_is_nested      (SmeltBnb4Tensor *self);
SMELT_AVAILABLE_IN_ALL
float         smelt_bnb4_tensor_get_offset     (SmeltBnb4Tensor *self);
SMELT_AVAILABLE_IN_ALL
GBytes       *smelt_bnb4_tensor_get_part       (SmeltBnb4Tensor *self,
                                                SmeltBnb4Part    part);

G_END_DECLS
