/* smelt-dtype.h: element types and conversions
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

/**
 * SmeltDType:
 * @SMELT_DTYPE_INVALID: not a type
 * @SMELT_DTYPE_F32: IEEE binary32
 * @SMELT_DTYPE_F16: IEEE binary16
 * @SMELT_DTYPE_BF16: bfloat16
 * @SMELT_DTYPE_F64: IEEE binary64
 * @SMELT_DTYPE_I64: signed 64-bit integer
 * @SMELT_DTYPE_I32: signed 32-bit integer
 * @SMELT_DTYPE_I16: signed 16-bit integer
 * @SMELT_DTYPE_I8: signed 8-bit integer
 * @SMELT_DTYPE_U64: unsigned 64-bit integer
 * @SMELT_DTYPE_U32: unsigned 32-bit integer
 * @SMELT_DTYPE_U16: unsigned 16-bit integer
 * @SMELT_DTYPE_U8: unsigned 8-bit integer
 * @SMELT_DTYPE_BOOL: boolean stored in a byte
 * @SMELT_DTYPE_F8_E4M3: float8 e4m3fn
 * @SMELT_DTYPE_F8_E5M2: float8 e5m2
 * @SMELT_DTYPE_F8_E8M0: float8 e8m0fnu
 * @SMELT_DTYPE_F8_E4M3FNUZ: float8 e4m3fnuz
 * @SMELT_DTYPE_F8_E5M2FNUZ: float8 e5m2fnuz
 * @SMELT_DTYPE_F6_E2M3: float6 e2m3
 * @SMELT_DTYPE_F6_E3M2: float6 e3m2
 * @SMELT_DTYPE_F4: float4
 * @SMELT_DTYPE_C64: complex of two binary32
 *
 * Element types, named as safetensors names them. Only F32, F16 and BF16
 * can be converted; the others are carried through untouched.
 */
typedef enum {
  SMELT_DTYPE_INVALID,
  SMELT_DTYPE_F32,
  SMELT_DTYPE_F16,
  SMELT_DTYPE_BF16,
  SMELT_DTYPE_F64,
  SMELT_DTYPE_I64,
  SMELT_DTYPE_I32,
  SMELT_DTYPE_I16,
  SMELT_DTYPE_I8,
  SMELT_DTYPE_U64,
  SMELT_DTYPE_U32,
  SMELT_DTYPE_U16,
  SMELT_DTYPE_U8,
  SMELT_DTYPE_BOOL,
  SMELT_DTYPE_F8_E4M3,
  SMELT_DTYPE_F8_E5M2,
  SMELT_DTYPE_F8_E8M0,
  SMELT_DTYPE_F8_E4M3FNUZ,
  SMELT_DTYPE_F8_E5M2FNUZ,
  SMELT_DTYPE_F6_E2M3,
  SMELT_DTYPE_F6_E3M2,
  SMELT_DTYPE_F4,
  SMELT_DTYPE_C64,
} SmeltDType;

SMELT_AVAILABLE_IN_ALL
const char *smelt_dtype_to_string   (SmeltDType   dtype);
SMELT_AVAILABLE_IN_ALL
SmeltDType  smelt_dtype_from_string (const char  *name);
SMELT_AVAILABLE_IN_ALL
guint       smelt_dtype_get_bits    (SmeltDType   dtype);
SMELT_AVAILABLE_IN_ALL
gboolean    smelt_dtype_is_float    (SmeltDType   dtype);

SMELT_AVAILABLE_IN_ALL
void  smelt_convert_bf16_to_f32 (const guint16 *src,
                                 float         *dst,
                                 gsize          n);
SMELT_AVAILABLE_IN_ALL
void  smelt_convert_f16_to_f32  (const guint16 *src,
                                 float         *dst,
                                 gsize          n);
SMELT_AVAILABLE_IN_ALL
void  smelt_convert_f32_to_bf16 (const float   *src,
                                 guint16       *dst,
                                 gsize          n);
SMELT_AVAILABLE_IN_ALL
gsize smelt_convert_f32_to_f16  (const float   *src,
                                 guint16       *dst,
                                 gsize          n);
SMELT_AVAILABLE_IN_ALL
gboolean smelt_convert (SmeltDType     src_dtype,
                        gconstpointer  src,
                        SmeltDType     dst_dtype,
                        gpointer       dst,
                        gsize          n,
                        gsize         *n_overflow);
SMELT_AVAILABLE_IN_ALL
gssize smelt_find_non_finite (const float *values,
                              gsize        n);
SMELT_AVAILABLE_IN_ALL
gssize smelt_find_overflow   (const float *values,
                              gsize        n,
                              SmeltDType   dtype);
SMELT_AVAILABLE_IN_ALL
gboolean smelt_check_rows_fit (const char  *name,
                               const float *rows,
                               gsize        n,
                               guint64      row_len,
                               guint64      first_row,
                               SmeltDType   dtype,
                               GError     **error);

G_END_DECLS
