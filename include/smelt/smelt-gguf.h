/* smelt-gguf.h: GGUF v3 layout planner, validating reader and ggml types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib-object.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

/**
 * SMELT_GGUF_ALIGNMENT:
 *
 * The data alignment of every file smelt writes: llama.cpp's default,
 * used when `general.alignment` is absent (smelt never writes it).
 */
#define SMELT_GGUF_ALIGNMENT 32

/**
 * SMELT_GGUF_MAX_NAME:
 *
 * The longest tensor name ggml accepts, in bytes (GGML_MAX_NAME - 1).
 */
#define SMELT_GGUF_MAX_NAME 63

/**
 * SMELT_GGUF_QUANTIZATION_VERSION:
 *
 * The value of `general.quantization_version` (GGML_QNT_VERSION).
 */
#define SMELT_GGUF_QUANTIZATION_VERSION 2

/**
 * SmeltGgufValueType:
 * @SMELT_GGUF_VALUE_UINT8: unsigned 8-bit integer
 * @SMELT_GGUF_VALUE_INT8: signed 8-bit integer
 * @SMELT_GGUF_VALUE_UINT16: unsigned 16-bit integer
 * @SMELT_GGUF_VALUE_INT16: signed 16-bit integer
 * @SMELT_GGUF_VALUE_UINT32: unsigned 32-bit integer
 * @SMELT_GGUF_VALUE_INT32: signed 32-bit integer
 * @SMELT_GGUF_VALUE_FLOAT32: IEEE binary32
 * @SMELT_GGUF_VALUE_BOOL: one byte, 0 or 1
 * @SMELT_GGUF_VALUE_STRING: u64 length and UTF-8 bytes
 * @SMELT_GGUF_VALUE_ARRAY: element type, u64 count, elements
 * @SMELT_GGUF_VALUE_UINT64: unsigned 64-bit integer
 * @SMELT_GGUF_VALUE_INT64: signed 64-bit integer
 * @SMELT_GGUF_VALUE_FLOAT64: IEEE binary64
 *
 * The type tags of GGUF metadata values, with their on-disk numbers.
 */
typedef enum {
  SMELT_GGUF_VALUE_UINT8   = 0,
  SMELT_GGUF_VALUE_INT8    = 1,
  SMELT_GGUF_VALUE_UINT16  = 2,
  SMELT_GGUF_VALUE_INT16   = 3,
  SMELT_GGUF_VALUE_UINT32  = 4,
  SMELT_GGUF_VALUE_INT32   = 5,
  SMELT_GGUF_VALUE_FLOAT32 = 6,
  SMELT_GGUF_VALUE_BOOL    = 7,
  SMELT_GGUF_VALUE_STRING  = 8,
  SMELT_GGUF_VALUE_ARRAY   = 9,
  SMELT_GGUF_VALUE_UINT64  = 10,
  SMELT_GGUF_VALUE_INT64   = 11,
  SMELT_GGUF_VALUE_FLOAT64 = 12,
} SmeltGgufValueType;

/**
 * SmeltGgmlType:
 * @SMELT_GGML_TYPE_F32: float32
 * @SMELT_GGML_TYPE_F16: IEEE half
 * @SMELT_GGML_TYPE_Q4_0: 4-bit, 32-element blocks, scale
 * @SMELT_GGML_TYPE_Q4_1: 4-bit, 32-element blocks, scale and minimum
 * @SMELT_GGML_TYPE_Q5_0: 5-bit, 32-element blocks, scale
 * @SMELT_GGML_TYPE_Q5_1: 5-bit, 32-element blocks, scale and minimum
 * @SMELT_GGML_TYPE_Q8_0: 8-bit, 32-element blocks, scale
 * @SMELT_GGML_TYPE_Q8_1: 8-bit intermediate (never stored)
 * @SMELT_GGML_TYPE_Q2_K: 2-bit k-quant, 256-element super-blocks
 * @SMELT_GGML_TYPE_Q3_K: 3-bit k-quant
 * @SMELT_GGML_TYPE_Q4_K: 4-bit k-quant
 * @SMELT_GGML_TYPE_Q5_K: 5-bit k-quant
 * @SMELT_GGML_TYPE_Q6_K: 6-bit k-quant
 * @SMELT_GGML_TYPE_Q8_K: 8-bit k-quant intermediate
 * @SMELT_GGML_TYPE_IQ2_XXS: importance-matrix type
 * @SMELT_GGML_TYPE_IQ2_XS: importance-matrix type
 * @SMELT_GGML_TYPE_IQ3_XXS: importance-matrix type
 * @SMELT_GGML_TYPE_IQ1_S: importance-matrix type
 * @SMELT_GGML_TYPE_IQ4_NL: non-linear 4-bit
 * @SMELT_GGML_TYPE_IQ3_S: importance-matrix type
 * @SMELT_GGML_TYPE_IQ2_S: importance-matrix type
 * @SMELT_GGML_TYPE_IQ4_XS: non-linear 4-bit, super-blocks
 * @SMELT_GGML_TYPE_I8: int8
 * @SMELT_GGML_TYPE_I16: int16
 * @SMELT_GGML_TYPE_I32: int32
 * @SMELT_GGML_TYPE_I64: int64
 * @SMELT_GGML_TYPE_F64: float64
 * @SMELT_GGML_TYPE_IQ1_M: importance-matrix type
 * @SMELT_GGML_TYPE_BF16: bfloat16
 * @SMELT_GGML_TYPE_TQ1_0: ternary
 * @SMELT_GGML_TYPE_TQ2_0: ternary
 * @SMELT_GGML_TYPE_MXFP4: microscaling fp4
 *
 * Tensor types, with ggml's numbers. smelt writes F32, F16, BF16 and the
 * block types it can quantize; the reader knows the size of every type so
 * that `smelt inspect` can describe any file.
 */
typedef enum {
  SMELT_GGML_TYPE_F32     = 0,
  SMELT_GGML_TYPE_F16     = 1,
  SMELT_GGML_TYPE_Q4_0    = 2,
  SMELT_GGML_TYPE_Q4_1    = 3,
  SMELT_GGML_TYPE_Q5_0    = 6,
  SMELT_GGML_TYPE_Q5_1    = 7,
  SMELT_GGML_TYPE_Q8_0    = 8,
  SMELT_GGML_TYPE_Q8_1    = 9,
  SMELT_GGML_TYPE_Q2_K    = 10,
  SMELT_GGML_TYPE_Q3_K    = 11,
  SMELT_GGML_TYPE_Q4_K    = 12,
  SMELT_GGML_TYPE_Q5_K    = 13,
  SMELT_GGML_TYPE_Q6_K    = 14,
  SMELT_GGML_TYPE_Q8_K    = 15,
  SMELT_GGML_TYPE_IQ2_XXS = 16,
  SMELT_GGML_TYPE_IQ2_XS  = 17,
  SMELT_GGML_TYPE_IQ3_XXS = 18,
  SMELT_GGML_TYPE_IQ1_S   = 19,
  SMELT_GGML_TYPE_IQ4_NL  = 20,
  SMELT_GGML_TYPE_IQ3_S   = 21,
  SMELT_GGML_TYPE_IQ2_S   = 22,
  SMELT_GGML_TYPE_IQ4_XS  = 23,
  SMELT_GGML_TYPE_I8      = 24,
  SMELT_GGML_TYPE_I16     = 25,
  SMELT_GGML_TYPE_I32     = 26,
  SMELT_GGML_TYPE_I64     = 27,
  SMELT_GGML_TYPE_F64     = 28,
  SMELT_GGML_TYPE_IQ1_M   = 29,
  SMELT_GGML_TYPE_BF16    = 30,
  SMELT_GGML_TYPE_TQ1_0   = 34,
  SMELT_GGML_TYPE_TQ2_0   = 35,
  SMELT_GGML_TYPE_MXFP4   = 39,
} SmeltGgmlType;

SMELT_AVAILABLE_IN_ALL
const char *smelt_ggml_type_get_name        (SmeltGgmlType  type);
SMELT_AVAILABLE_IN_ALL
gboolean    smelt_ggml_type_is_known        (guint32        type);
SMELT_AVAILABLE_IN_ALL
guint       smelt_ggml_type_get_block_size  (SmeltGgmlType  type);
SMELT_AVAILABLE_IN_ALL
gsize       smelt_ggml_type_get_block_bytes (SmeltGgmlType  type);
SMELT_AVAILABLE_IN_ALL
guint64     smelt_ggml_type_row_size        (SmeltGgmlType  type,
                                             guint64        n_per_row);
SMELT_AVAILABLE_IN_ALL
gboolean    smelt_ggml_type_can_encode      (SmeltGgmlType  type);
SMELT_AVAILABLE_IN_ALL
gboolean    smelt_ggml_encode_rows          (SmeltGgmlType  type,
                                             const float   *src,
                                             guint64        n_rows,
                                             guint64        n_per_row,
                                             void          *dst);
SMELT_AVAILABLE_IN_ALL
gboolean    smelt_ggml_decode_rows          (SmeltGgmlType  type,
                                             const void    *src,
                                             guint64        n_rows,
                                             guint64        n_per_row,
                                             float         *dst);

/* ------------------------------------------------------------------ */

#define SMELT_TYPE_GGUF_LAYOUT (smelt_gguf_layout_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltGgufLayout, smelt_gguf_layout, SMELT, GGUF_LAYOUT, GObject)

/**
 * SmeltGgufLayoutClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltGgufLayout, a final type: it adds nothing
 * to #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltGgufLayout *smelt_gguf_layout_new        (void);
SMELT_AVAILABLE_IN_ALL
SmeltGgufLayout *smelt_gguf_layout_copy       (SmeltGgufLayout   *self);

SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_uint8   (SmeltGgufLayout *self, const char *key, guint8 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_int8    (SmeltGgufLayout *self, const char *key, gint8 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_uint16  (SmeltGgufLayout *self, const char *key, guint16 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_int16   (SmeltGgufLayout *self, const char *key, gint16 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_uint32  (SmeltGgufLayout *self, const char *key, guint32 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_int32   (SmeltGgufLayout *self, const char *key, gint32 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_uint64  (SmeltGgufLayout *self, const char *key, guint64 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_int64   (SmeltGgufLayout *self, const char *key, gint64 value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_float32 (SmeltGgufLayout *self, const char *key, float value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_float64 (SmeltGgufLayout *self, const char *key, double value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_bool    (SmeltGgufLayout *self, const char *key, gboolean value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_string  (SmeltGgufLayout *self, const char *key, const char *value);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_array   (SmeltGgufLayout    *self,
                                         const char         *key,
                                         SmeltGgufValueType  element_type,
                                         gconstpointer       elements,
                                         gsize               n_elements);
SMELT_AVAILABLE_IN_ALL
void      smelt_gguf_layout_set_string_array (SmeltGgufLayout    *self,
                                              const char         *key,
                                              const char * const *strings,
                                              gsize               n_strings);
SMELT_AVAILABLE_IN_ALL
gboolean  smelt_gguf_layout_remove      (SmeltGgufLayout *self,
                                         const char      *key);
SMELT_AVAILABLE_IN_ALL
gboolean  smelt_gguf_layout_has_key     (SmeltGgufLayout *self,
                                         const char      *key);
SMELT_AVAILABLE_IN_ALL
guint     smelt_gguf_layout_get_n_kv    (SmeltGgufLayout *self);
SMELT_AVAILABLE_IN_ALL
const char *smelt_gguf_layout_get_key   (SmeltGgufLayout *self,
                                         guint            index);

SMELT_AVAILABLE_IN_ALL
gboolean  smelt_gguf_layout_add_tensor  (SmeltGgufLayout *self,
                                         const char      *name,
                                         SmeltGgmlType    type,
                                         const guint64   *ne,
                                         guint            n_dims,
                                         GError         **error);
SMELT_AVAILABLE_IN_ALL
guint     smelt_gguf_layout_get_n_tensors     (SmeltGgufLayout *self);
SMELT_AVAILABLE_IN_ALL
const char *smelt_gguf_layout_get_tensor_name (SmeltGgufLayout *self,
                                               guint            index);
SMELT_AVAILABLE_IN_ALL
guint64   smelt_gguf_layout_get_tensor_size   (SmeltGgufLayout *self,
                                               guint            index);
SMELT_AVAILABLE_IN_ALL
guint64   smelt_gguf_layout_get_tensor_offset (SmeltGgufLayout *self,
                                               guint            index);
SMELT_AVAILABLE_IN_ALL
GBytes   *smelt_gguf_layout_get_header        (SmeltGgufLayout *self);
SMELT_AVAILABLE_IN_ALL
guint64   smelt_gguf_layout_get_file_size     (SmeltGgufLayout *self);

/* ------------------------------------------------------------------ */

#define SMELT_TYPE_GGUF_FILE (smelt_gguf_file_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltGgufFile, smelt_gguf_file, SMELT, GGUF_FILE, GObject)

/**
 * SmeltGgufFileClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltGgufFile, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltGgufFile *smelt_gguf_file_new              (const char     *path,
                                                 GError        **error);
SMELT_AVAILABLE_IN_ALL
const char    *smelt_gguf_file_get_path         (SmeltGgufFile  *self);
SMELT_AVAILABLE_IN_ALL
guint32        smelt_gguf_file_get_version      (SmeltGgufFile  *self);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_gguf_file_get_data_offset  (SmeltGgufFile  *self);
SMELT_AVAILABLE_IN_ALL
guint          smelt_gguf_file_get_n_kv         (SmeltGgufFile  *self);
SMELT_AVAILABLE_IN_ALL
const char    *smelt_gguf_file_get_key          (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
int            smelt_gguf_file_find_key         (SmeltGgufFile  *self,
                                                 const char     *key);
SMELT_AVAILABLE_IN_ALL
SmeltGgufValueType smelt_gguf_file_get_kv_type  (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
SmeltGgufValueType smelt_gguf_file_get_array_type (SmeltGgufFile *self,
                                                   guint          index);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_gguf_file_get_array_length (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
GVariant      *smelt_gguf_file_get_value        (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
char          *smelt_gguf_file_format_value     (SmeltGgufFile  *self,
                                                 guint           index,
                                                 guint           max_elements);
SMELT_AVAILABLE_IN_ALL
guint          smelt_gguf_file_get_n_tensors    (SmeltGgufFile  *self);
SMELT_AVAILABLE_IN_ALL
int            smelt_gguf_file_find_tensor      (SmeltGgufFile  *self,
                                                 const char     *name);
SMELT_AVAILABLE_IN_ALL
const char    *smelt_gguf_file_get_tensor_name  (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
SmeltGgmlType  smelt_gguf_file_get_tensor_type  (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
guint          smelt_gguf_file_get_tensor_shape (SmeltGgufFile  *self,
                                                 guint           index,
                                                 guint64         ne[4]);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_gguf_file_get_tensor_offset (SmeltGgufFile *self,
                                                  guint          index);
SMELT_AVAILABLE_IN_ALL
guint64        smelt_gguf_file_get_tensor_size  (SmeltGgufFile  *self,
                                                 guint           index);
SMELT_AVAILABLE_IN_ALL
GBytes        *smelt_gguf_file_get_tensor_data  (SmeltGgufFile  *self,
                                                 guint           index);

/* copying metadata from a file into a layout (llama-quantize's way) */
SMELT_AVAILABLE_IN_ALL
void           smelt_gguf_layout_copy_kv        (SmeltGgufLayout *self,
                                                 SmeltGgufFile   *file,
                                                 guint            index);

G_END_DECLS
