/* smelt-private.h: internal declarations of libsmelt
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* ---- dtype conversion back ends (smelt-dtype.c) ----
 * The public converters dispatch at run time to the best of these. Tests
 * call every one of them and compare with the portable path. */
typedef enum {
  SMELT_SIMD_PORTABLE,
  SMELT_SIMD_AVX2,      /* AVX2 + F16C */
  SMELT_SIMD_AVX512,    /* AVX-512 F/BW/VL (+ F16C) */
  SMELT_SIMD_N_LEVELS
} SmeltSimdLevel;

/* The best level this CPU supports, capped by $SMELT_SIMD
 * ("portable", "avx2", "avx512") so users and tests can force a path. */
SmeltSimdLevel _smelt_simd_level (void);
gboolean       _smelt_simd_supported (SmeltSimdLevel level);
const char    *_smelt_simd_level_name (SmeltSimdLevel level);

void  _smelt_convert_bf16_to_f32_at (SmeltSimdLevel level, const guint16 *src, float *dst, gsize n);
void  _smelt_convert_f16_to_f32_at  (SmeltSimdLevel level, const guint16 *src, float *dst, gsize n);
void  _smelt_convert_f32_to_bf16_at (SmeltSimdLevel level, const float *src, guint16 *dst, gsize n);
gsize _smelt_convert_f32_to_f16_at  (SmeltSimdLevel level, const float *src, guint16 *dst, gsize n);

/* ggml row encoders by back end (smelt-ggml-type.c): @n floats, a
 * multiple of 32 */
void  _smelt_ggml_encode_q8_0_at    (SmeltSimdLevel level, const float *src, guint64 n, guint8 *dst);
/* one finite value, non-negative, to IEEE half (round to nearest even) */
guint16 _smelt_ggml_fp16           (float f);

/* Python's repr() of a float, as json.dumps writes it (smelt-utils.c) */
void _smelt_append_python_float (GString *out,
                                 double   value);

/* ---- destinations (smelt-destination.c): the formats writing into one ---- */
void _smelt_destination_add_format    (SmeltDestination *self,
                                       SmeltFormat      *format);
void _smelt_destination_remove_format (SmeltDestination *self,
                                       SmeltFormat      *format);

/* ---- formats (smelt-format.c) ---- */
#define _SMELT_FORMAT_PASS_IDLE G_MAXUINT
void _smelt_format_set_pass (SmeltFormat *self,
                             guint        pass);
void _smelt_format_set_siblings (SmeltFormat *self,
                                 GPtrArray   *formats);

/* ---- bitsandbytes 4-bit (smelt-bnb4.c), per SIMD level for the tests ---- */
void _smelt_bnb4_absmax_at   (SmeltSimdLevel level, const float *x, gsize n, guint blocksize,
                              float *absmax);
void _smelt_bnb4_quantize_at (SmeltSimdLevel level, SmeltBnb4Type type, const float *x, gsize n,
                              guint blocksize, guint8 *packed, float *absmax);
gssize _smelt_bnb4_quantize_as_at (SmeltSimdLevel level, SmeltBnb4Type type, SmeltDType dtype,
                                   const float *x, gsize n, guint blocksize, guint8 *packed,
                                   float *absmax);
void _smelt_bnb4_quantize_nested_at (SmeltSimdLevel level, const float *absmax, gsize n_blocks,
                                     float offset, guint8 *codes, float *nested_absmax);

/* ---- GGUF files (smelt-gguf-file.c) ---- */
const guint8 *_smelt_gguf_file_get_raw_value (SmeltGgufFile *self,
                                              guint          index,
                                              gsize         *size);
GMappedFile  *_smelt_gguf_file_get_mapping   (SmeltGgufFile *self);
gboolean      _smelt_is_gguf_path            (const char    *path);

/* ---- stored tensors (smelt-stored-tensor.c) ----
 * A tensor stored in a mapped file: @mapping covers the whole file,
 * [@offset, @offset + @size) is the tensor's data. Keeps a ref on @mapping. */
#define SMELT_TYPE_STORED_TENSOR (_smelt_stored_tensor_get_type ())
G_DECLARE_FINAL_TYPE (SmeltStoredTensor, _smelt_stored_tensor, SMELT, STORED_TENSOR, GObject)

SmeltTensor *_smelt_stored_tensor_new (GMappedFile   *mapping,
                                       const char    *file_path,
                                       const char    *name,
                                       SmeltDType     dtype,
                                       const guint64 *shape,
                                       guint          n_dims,
                                       guint64        offset,
                                       guint64        size);
const char  *_smelt_stored_tensor_get_file_path (SmeltStoredTensor *self);
guint64      _smelt_stored_tensor_get_offset    (SmeltStoredTensor *self);
/* Gives the tensor another name (the adapter's key stripped to a base name)
 * without copying anything. */
SmeltTensor *_smelt_stored_tensor_new_alias (SmeltStoredTensor *self,
                                             const char        *name);

/* ---- bitsandbytes 4-bit weights (smelt-bnb4-tensor.c) ----
 * @parts: the stored pieces of weight @name indexed by SmeltBnb4Part, NULL
 * where absent (the quant state is required). Validates the quant state's
 * JSON and every piece against it; takes references. */
SmeltTensor *_smelt_bnb4_tensor_new (const char   *name,
                                     SmeltTensor **parts,
                                     GError      **error);

int   _smelt_natural_compare      (const char *a, const char *b);
/* For g_ptr_array_sort() of arrays of strings (it passes char **). */
int   _smelt_compare_strv_items   (gconstpointer a, gconstpointer b);
GStrv _smelt_find_tokenizer_files (const char *dir);

guint _smelt_adapter_get_expected_rank (SmeltAdapter *self, const char *module);

/* Shape helpers shared by tensor implementations. */
gboolean _smelt_shape_n_elements (const guint64 *shape,
                                  guint          n_dims,
                                  guint64       *n_elements);
char    *_smelt_shape_to_string  (const guint64 *shape,
                                  guint          n_dims);

G_END_DECLS

G_BEGIN_DECLS

/* ---- the merge engine (smelt-merged-tensor.c) ---- */

/* How B·A lines up with the stored base tensor. */
typedef enum {
  SMELT_LORA_LINEAR,      /* base [out, in]: delta = B·A */
  SMELT_LORA_TRANSPOSED,  /* base [in, out] (fan_in_fan_out) or an
                           * embedding [vocab, dim]: delta = (B·A)ᵀ */
} SmeltLoraLayout;

/* One adapter's low-rank update of one tensor. */
typedef struct {
  SmeltTensor     *a;          /* [r, x] */
  SmeltTensor     *b;          /* [y, r] */
  SmeltTensor     *magnitude;  /* DoRA magnitude, or NULL */
  SmeltLoraLayout  layout;
  guint            rank;
  float            factor;     /* float32 (scale × adapter weight) */
} SmeltLoraTerm;

#define SMELT_TYPE_MERGED_TENSOR (_smelt_merged_tensor_get_type ())
G_DECLARE_FINAL_TYPE (SmeltMergedTensor, _smelt_merged_tensor, SMELT, MERGED_TENSOR, GObject)

/* @base holds the rows before any delta (a stored base tensor, or a
 * replacement from an adapter); @dtype is the tensor's natural type. */
SmeltTensor *_smelt_merged_tensor_new      (const char          *name,
                                            SmeltTensor         *base,
                                            SmeltDType           dtype);
/* Takes the term's tensor references. */
void         _smelt_merged_tensor_add_term (SmeltMergedTensor   *self,
                                            const SmeltLoraTerm *term);
/* For 1-D bias tensors: adds factor × @vector (lora_B.bias). */
void         _smelt_merged_tensor_add_bias (SmeltMergedTensor   *self,
                                            SmeltTensor         *vector,
                                            float                factor);

/* Rows per block for a tensor: about @target_bytes of float32, at least 1.
 * Depends only on the tensor, so output is identical at any thread count. */
guint64      _smelt_rows_per_block (SmeltTensor *tensor,
                                    gsize        target_bytes);

G_END_DECLS

G_BEGIN_DECLS

/* ---- adapter key names (smelt-lora-target.c) ---- */
typedef enum {
  SMELT_ADAPTER_KEY_LORA_A,       /* <module>.lora_A.weight */
  SMELT_ADAPTER_KEY_LORA_B,       /* <module>.lora_B.weight */
  SMELT_ADAPTER_KEY_LORA_B_BIAS,  /* <module>.lora_B.bias */
  SMELT_ADAPTER_KEY_EMBEDDING_A,  /* <module>.lora_embedding_A */
  SMELT_ADAPTER_KEY_EMBEDDING_B,  /* <module>.lora_embedding_B */
  SMELT_ADAPTER_KEY_MAGNITUDE,    /* <module>.lora_magnitude_vector */
  SMELT_ADAPTER_KEY_FULL,         /* a whole tensor replacing the base's */
} SmeltAdapterKeyKind;

/* Splits a saved PEFT key into the module path (or, for FULL, the tensor
 * name) as the base checkpoint would spell it: strips "base_model.model.",
 * adapter names (".default."), ".base_layer." and ".modules_to_save.<name>.". */
gboolean _smelt_parse_adapter_key (const char           *key,
                                   char                **module,
                                   SmeltAdapterKeyKind  *kind,
                                   GError              **error);

G_END_DECLS

G_BEGIN_DECLS

/* ---- plugins (smelt-plugin.c, smelt-plugin-loader.c) ---- */

/* Reads a .plugin keyfile; no code is loaded. */
SmeltPlugin *_smelt_plugin_new_from_keyfile (const char  *keyfile_path,
                                             GError     **error);
/* The only entry into libltdl: opens @path (absolute) and returns the
 * descriptor, or NULL with @error set. Serialized by one mutex. */
const SmeltPluginDesc *_smelt_plugin_loader_open (const char  *path,
                                                  GError     **error);

G_END_DECLS

G_BEGIN_DECLS

/* ---- recipes (smelt-recipe.c) ---- */

/* Creates and configures every destination and export of the recipe;
 * each format already has its destination set. Exported (but private)
 * for the tests, which must use the shared library when they load
 * plugins: plugins link it, and two copies of the GTypes cannot coexist. */
SMELT_AVAILABLE_IN_ALL
gboolean _smelt_recipe_instantiate (SmeltRecipe    *self,
                                    SmeltRegistry  *registry,
                                    GPtrArray     **formats,
                                    GPtrArray     **destinations,
                                    GError        **error);

/* [Source] MergeInto: what adapters merge into when Model is a
 * bitsandbytes 4-bit base */
typedef enum {
  SMELT_MERGE_INTO_DEQUANTIZED,  /* its dequantized weights (what QLoRA trained against) */
  SMELT_MERGE_INTO_ORIGINAL16,   /* the 16-bit model it was made from ([Source] Original) */
} SmeltMergeInto;

gboolean _smelt_recipe_get_merge_into (SmeltRecipe     *self,
                                       SmeltMergeInto  *merge_into,
                                       GError         **error);
/* [Source] Original, resolved against the recipe's folder, or NULL */
char    *_smelt_recipe_get_original   (SmeltRecipe     *self);

G_END_DECLS

G_BEGIN_DECLS

/* ---- per-thread scratch memory (smelt-utils-private.c) ----
 * Workers reuse these buffers block after block instead of faulting in
 * fresh pages for every 4 MiB block. @slot tells buffers of one thread
 * apart. The memory is valid until the same thread asks for the same slot
 * again. */
typedef enum {
  SMELT_SCRATCH_ROWS,
  SMELT_SCRATCH_DELTA,
  SMELT_SCRATCH_CONVERT,
  SMELT_SCRATCH_N_SLOTS
} SmeltScratchSlot;

gpointer _smelt_scratch_get (SmeltScratchSlot slot,
                             gsize            size);

G_END_DECLS

G_BEGIN_DECLS

/* ---- ggml block quantizers (smelt-ggml-quants.c) ----
 * Portable encoders, byte for byte those of ggml_quantize_chunk() without
 * an importance matrix (ggml's quantize_row_*_ref). @n floats, a multiple
 * of the block size (32 for Q4_0 … Q5_1, 256 for the K types). Thread-safe. */
void     _smelt_ggml_quantize_q4_0 (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q4_1 (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q5_0 (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q5_1 (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q2_k (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q3_k (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q4_k (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q5_k (const float *src, guint64 n, guint8 *dst);
void     _smelt_ggml_quantize_q6_k (const float *src, guint64 n, guint8 *dst);
/* dispatches to the above; FALSE for a type without an encoder here */
gboolean _smelt_ggml_quantize      (SmeltGgmlType type, const float *src, guint64 n, guint8 *dst);
/* the same with the vector searches of @level (same bytes at every level) */
gboolean _smelt_ggml_quantize_at   (SmeltSimdLevel level, SmeltGgmlType type, const float *src,
                                    guint64 n, guint8 *dst);

G_END_DECLS
