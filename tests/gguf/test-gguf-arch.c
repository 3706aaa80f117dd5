/* test-gguf-arch.c: Hugging Face architectures → GGUF names, KVs, layout
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Tiny model directories (config.json + safetensors) go through
 * smelt_gguf_arch_plan(). The expected KV lists were read by hand off the
 * reference converter (conversion/base.py TextModel.set_gguf_parameters,
 * llama.py, gemma.py, phi.py at llama.cpp de3ff81) and the expected
 * defaults off transformers 4.57's config classes; the rope_freqs values
 * were computed with torch from the converter's own formula.
 */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "smelt-gguf-arch.h"

/* ------------------------------------------------------------------ */
/* Building model directories                                          */

typedef struct {
  char       *name;
  SmeltDType  dtype;
  guint       n_dims;
  guint64     shape[2];
} Spec;

typedef struct {
  GArray *specs;   /* Spec */
  char   *dir;
} Builder;

static void
spec_clear (gpointer data)
{
  g_free (((Spec *) data)->name);
}

static Builder *
builder_new (void)
{
  Builder *b = g_new0 (Builder, 1);

  b->specs = g_array_new (FALSE, TRUE, sizeof (Spec));
  g_array_set_clear_func (b->specs, spec_clear);
  b->dir = g_dir_make_tmp ("smelt-arch-XXXXXX", NULL);
  g_assert_nonnull (b->dir);
  return b;
}

static void
remove_tree (const char *path)
{
  g_autoptr(GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir == NULL)
    {
      g_remove (path);
      return;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  g_rmdir (path);
}

static void
builder_free (Builder *b)
{
  remove_tree (b->dir);
  g_free (b->dir);
  g_array_unref (b->specs);
  g_free (b);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Builder, builder_free)

static void
add (Builder    *b,
     const char *name,
     SmeltDType  dtype,
     guint       n_dims,
     guint64     d0,
     guint64     d1)
{
  Spec s = { g_strdup (name), dtype, n_dims, { d0, d1 } };

  g_array_append_val (b->specs, s);
}

static void
add_layer_tensor (Builder    *b,
                  guint       layer,
                  const char *module,
                  SmeltDType  dtype,
                  guint       n_dims,
                  guint64     d0,
                  guint64     d1)
{
  g_autofree char *name = g_strdup_printf ("model.layers.%u.%s", layer, module);

  add (b, name, dtype, n_dims, d0, d1);
}

static gboolean
drop (Builder    *b,
      const char *name)
{
  for (guint i = 0; i < b->specs->len; i++)
    if (strcmp (g_array_index (b->specs, Spec, i).name, name) == 0)
      {
        g_array_remove_index (b->specs, i);
        return TRUE;
      }
  return FALSE;
}

static Spec *
find_spec (Builder    *b,
           const char *name)
{
  for (guint i = 0; i < b->specs->len; i++)
    if (strcmp (g_array_index (b->specs, Spec, i).name, name) == 0)
      return &g_array_index (b->specs, Spec, i);
  return NULL;
}

/* Element k of every tensor: a multiple of 1/64 in [-0.75, 0.75], exact in
 * all three float types. */
static float
test_value (guint64 k)
{
  return (float) ((gint64) (k % 97) - 48) / 64.0f;
}

static void
write_safetensors (Builder    *b,
                   const char *file_name,
                   const char *only_prefix_list)
{
  g_autoptr(SmeltSafetensorsLayout) layout = smelt_safetensors_layout_new ();
  g_autoptr(GBytes) header = NULL;
  g_autoptr(GByteArray) file = g_byte_array_new ();
  g_autofree guint8 *data = NULL;
  g_autofree char *path = g_build_filename (b->dir, file_name, NULL);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) only = only_prefix_list ? g_strsplit (only_prefix_list, ";", -1) : NULL;

  for (guint i = 0; i < b->specs->len; i++)
    {
      Spec *s = &g_array_index (b->specs, Spec, i);
      gboolean take = only == NULL;

      for (guint j = 0; only && only[j]; j++)
        take |= strcmp (s->name, only[j]) == 0;
      if (take)
        {
          smelt_safetensors_layout_add_tensor (layout, s->name, s->dtype, s->shape, s->n_dims, &error);
          g_assert_no_error (error);
        }
    }
  smelt_safetensors_layout_sort (layout);
  data = g_malloc0 (smelt_safetensors_layout_get_data_size (layout) + 1);
  for (guint i = 0; i < smelt_safetensors_layout_get_n_tensors (layout); i++)
    {
      const char *name = smelt_safetensors_layout_get_tensor_name (layout, i);
      Spec *s = find_spec (b, name);
      guint64 begin, end, n = 1;
      g_autofree float *values = NULL;

      g_assert_true (smelt_safetensors_layout_get_span (layout, name, &begin, &end));
      for (guint d = 0; d < s->n_dims; d++)
        n *= s->shape[d];
      values = g_new (float, n + 1);
      for (guint64 k = 0; k < n; k++)
        values[k] = test_value (k);
      g_assert_true (smelt_convert (SMELT_DTYPE_F32, values, s->dtype, data + begin, n, NULL));
    }
  header = smelt_safetensors_layout_get_header (layout);
  g_byte_array_append (file, g_bytes_get_data (header, NULL), g_bytes_get_size (header));
  g_byte_array_append (file, data, smelt_safetensors_layout_get_data_size (layout));
  g_assert_true (g_file_set_contents (path, (const char *) file->data, file->len, &error));
  g_assert_no_error (error);
}

static void
write_text (Builder    *b,
            const char *file_name,
            const char *text)
{
  g_autofree char *path = g_build_filename (b->dir, file_name, NULL);
  g_autoptr(GError) error = NULL;

  g_assert_true (g_file_set_contents (path, text, -1, &error));
  g_assert_no_error (error);
}

static SmeltSource *
open_source (Builder *b)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (b->dir, &error);
  SmeltSource *source;

  g_assert_no_error (error);
  source = smelt_source_new (model, NULL, NULL, 0, &error);
  g_assert_no_error (error);
  return source;
}

typedef enum {
  LAYER_QK_NORM      = 1 << 0,   /* qwen3, gemma3 */
  LAYER_GEMMA2_NORMS = 1 << 1,   /* pre/post feedforward norms */
  LAYER_QKV_BIAS     = 1 << 2,   /* qwen2 */
  LAYER_PHI3_FUSED   = 1 << 3,   /* qkv_proj, gate_up_proj */
} LayerFlags;

typedef struct {
  guint      n_layer;
  guint64    hidden, heads, kv, hd, ff, vocab;
  SmeltDType dtype;
  LayerFlags flags;
  gboolean   lm_head;
} Dims;

/* The tensors of a decoder in the shapes HF stores them ([out, in]). */
static void
add_decoder (Builder    *b,
             const Dims *d)
{
  SmeltDType t = d->dtype;
  guint64 q = d->heads * d->hd, kvd = d->kv * d->hd;

  add (b, "model.embed_tokens.weight", t, 2, d->vocab, d->hidden);
  add (b, "model.norm.weight", t, 1, d->hidden, 0);
  if (d->lm_head)
    add (b, "lm_head.weight", t, 2, d->vocab, d->hidden);
  for (guint l = 0; l < d->n_layer; l++)
    {
      add_layer_tensor (b, l, "input_layernorm.weight", t, 1, d->hidden, 0);
      add_layer_tensor (b, l, "post_attention_layernorm.weight", t, 1, d->hidden, 0);
      add_layer_tensor (b, l, "self_attn.o_proj.weight", t, 2, d->hidden, q);
      add_layer_tensor (b, l, "mlp.down_proj.weight", t, 2, d->hidden, d->ff);
      if (d->flags & LAYER_PHI3_FUSED)
        {
          add_layer_tensor (b, l, "self_attn.qkv_proj.weight", t, 2, q + 2 * kvd, d->hidden);
          add_layer_tensor (b, l, "mlp.gate_up_proj.weight", t, 2, 2 * d->ff, d->hidden);
        }
      else
        {
          add_layer_tensor (b, l, "self_attn.q_proj.weight", t, 2, q, d->hidden);
          add_layer_tensor (b, l, "self_attn.k_proj.weight", t, 2, kvd, d->hidden);
          add_layer_tensor (b, l, "self_attn.v_proj.weight", t, 2, kvd, d->hidden);
          add_layer_tensor (b, l, "mlp.gate_proj.weight", t, 2, d->ff, d->hidden);
          add_layer_tensor (b, l, "mlp.up_proj.weight", t, 2, d->ff, d->hidden);
        }
      if (d->flags & LAYER_QK_NORM)
        {
          add_layer_tensor (b, l, "self_attn.q_norm.weight", t, 1, d->hd, 0);
          add_layer_tensor (b, l, "self_attn.k_norm.weight", t, 1, d->hd, 0);
        }
      if (d->flags & LAYER_GEMMA2_NORMS)
        {
          add_layer_tensor (b, l, "pre_feedforward_layernorm.weight", t, 1, d->hidden, 0);
          add_layer_tensor (b, l, "post_feedforward_layernorm.weight", t, 1, d->hidden, 0);
        }
      if (d->flags & LAYER_QKV_BIAS)
        {
          add_layer_tensor (b, l, "self_attn.q_proj.bias", t, 1, q, 0);
          add_layer_tensor (b, l, "self_attn.k_proj.bias", t, 1, kvd, 0);
          add_layer_tensor (b, l, "self_attn.v_proj.bias", t, 1, kvd, 0);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Reading a plan                                                      */

static SmeltGgufTensor *
plan_tensor (SmeltGgufArchPlan *plan,
             const char        *name)
{
  for (guint i = 0; i < plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);
      if (strcmp (t->name, name) == 0)
        return t;
    }
  g_error ("no tensor %s in the plan", name);
  return NULL;
}

static void
assert_ne (const SmeltGgufTensor *t,
           guint                  n_dims,
           guint64                ne0,
           guint64                ne1)
{
  g_assert_cmpuint (t->n_dims, ==, n_dims);
  g_assert_cmpuint (t->ne[0], ==, ne0);
  if (n_dims > 1)
    g_assert_cmpuint (t->ne[1], ==, ne1);
}

/* Writes general.architecture, the early and the main block to a
 * GGUF with no tensors and reads it back; checks the keys after
 * general.architecture against @expected. */
static SmeltGgufFile *
write_and_check_kvs (Builder            *b,
                     SmeltGgufArchPlan  *plan,
                     SmeltSource        *source,
                     const char * const *expected)
{
  g_autoptr(SmeltGgufLayout) layout = smelt_gguf_layout_new ();
  g_autoptr(GBytes) header = NULL;
  g_autofree char *path = g_build_filename (b->dir, "kvs.gguf", NULL);
  g_autoptr(GError) error = NULL;
  SmeltGgufFile *file;
  guint n = g_strv_length ((char **) expected);

  smelt_gguf_layout_set_string (layout, "general.architecture", plan->arch);
  smelt_gguf_arch_write_early_kvs (plan, layout);
  smelt_gguf_arch_write_kvs (plan, source, layout);
  for (guint i = 0; i < MAX (n, smelt_gguf_layout_get_n_kv (layout) - 1); i++)
    g_assert_cmpstr (i + 1 < smelt_gguf_layout_get_n_kv (layout)
                       ? smelt_gguf_layout_get_key (layout, i + 1) : NULL,
                     ==, i < n ? expected[i] : NULL);

  header = smelt_gguf_layout_get_header (layout);
  g_assert_true (g_file_set_contents (path, g_bytes_get_data (header, NULL),
                                      g_bytes_get_size (header), &error));
  g_assert_no_error (error);
  file = smelt_gguf_file_new (path, &error);
  g_assert_no_error (error);
  return file;
}

static GVariant *
file_value (SmeltGgufFile      *file,
            const char         *key,
            SmeltGgufValueType  type)
{
  int i = smelt_gguf_file_find_key (file, key);

  if (i < 0)
    g_error ("no key %s", key);
  g_assert_cmpint (smelt_gguf_file_get_kv_type (file, (guint) i), ==, type);
  return smelt_gguf_file_get_value (file, (guint) i);
}

static guint32
file_u32 (SmeltGgufFile *file,
          const char    *key)
{
  g_autoptr(GVariant) v = file_value (file, key, SMELT_GGUF_VALUE_UINT32);
  return g_variant_get_uint32 (v);
}

static float
file_f32 (SmeltGgufFile *file,
          const char    *key)
{
  g_autoptr(GVariant) v = file_value (file, key, SMELT_GGUF_VALUE_FLOAT32);
  return (float) g_variant_get_double (v);
}

static char *
file_str (SmeltGgufFile *file,
          const char    *key)
{
  g_autoptr(GVariant) v = file_value (file, key, SMELT_GGUF_VALUE_STRING);
  return g_variant_dup_string (v, NULL);
}

static guint32
float_bits (float f)
{
  guint32 u;
  memcpy (&u, &f, sizeof u);
  return u;
}

static float
bits_float (guint32 u)
{
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

static void
assert_generated (const SmeltGgufTensor *t,
                  const guint32         *bits,
                  gsize                  n)
{
  gsize size;
  const guint8 *data;

  g_assert_null (t->tensor);
  g_assert_nonnull (t->data);
  data = g_bytes_get_data (t->data, &size);
  g_assert_cmpuint (size, ==, n * 4);
  assert_ne (t, 1, n, 1);
  g_assert_true (t->force_f32);
  for (gsize i = 0; i < n; i++)
    {
      guint32 le = (guint32) data[4 * i] | (guint32) data[4 * i + 1] << 8 |
                   (guint32) data[4 * i + 2] << 16 | (guint32) data[4 * i + 3] << 24;
      g_assert_cmphex (le, ==, bits[i]);
    }
}

/* ------------------------------------------------------------------ */

static void
test_supported (void)
{
  const char * const *list = smelt_gguf_arch_supported ();
  const char *want[] = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
    "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM",
  };

  g_assert_cmpuint (g_strv_length ((char **) list), ==, G_N_ELEMENTS (want));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    g_assert_true (g_strv_contains (list, want[i]));
}

/* Llama 3.2 shaped: GQA, tied embeddings, llama3 rope scaling, BF16,
 * config.json without head_dim (LlamaConfig injects hidden/heads = 64). */
static void
test_llama3 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 2, 128, 2, 1, 64, 96, 40, SMELT_DTYPE_BF16, 0, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  SmeltGgufTensor *q, *k;
  /* torch 1.13 on the converter's formula: base 500000, dim 64, factor 32,
   * low 1, high 4, original context 8192 */
  static const guint32 rope_bits[32] = {
    0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000,
    0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3f800000, 0x3fd35ec2,
    0x4052b46f, 0x411aaaee, 0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000,
    0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000, 0x42000000,
  };
  /* converter order: generated first, then the HF names sorted */
  static const char * const names[] = {
    "rope_freqs.weight", "token_embd.weight",
    "blk.0.attn_norm.weight", "blk.0.ffn_down.weight", "blk.0.ffn_gate.weight",
    "blk.0.ffn_up.weight", "blk.0.ffn_norm.weight", "blk.0.attn_k.weight",
    "blk.0.attn_output.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight",
    "blk.1.attn_norm.weight", "blk.1.ffn_down.weight", "blk.1.ffn_gate.weight",
    "blk.1.ffn_up.weight", "blk.1.ffn_norm.weight", "blk.1.attn_k.weight",
    "blk.1.attn_output.weight", "blk.1.attn_q.weight", "blk.1.attn_v.weight",
    "output_norm.weight",
  };
  /* TextModel.set_gguf_parameters, then LlamaModel's two keys; llama3
   * scaling writes no KV */
  static const char * const kvs[] = {
    "llama.block_count", "llama.context_length", "llama.embedding_length",
    "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
    "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
    "llama.attention.key_length", "llama.attention.value_length", "general.file_type",
    "llama.vocab_size", "llama.rope.dimension_count", NULL
  };

  add_decoder (b, &d);
  add_layer_tensor (b, 0, "self_attn.rotary_emb.inv_freq", SMELT_DTYPE_F32, 1, 32, 0);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
              "\"hidden_size\":128,\"intermediate_size\":96,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"vocab_size\":40,"
              "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-05,"
              "\"rope_theta\":500000.0,\"tie_word_embeddings\":true,"
              "\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,"
              "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "llama");
  g_assert_cmpuint (plan->n_layer, ==, 2);
  g_assert_cmpuint (plan->n_head, ==, 2);
  g_assert_cmpuint (plan->n_head_kv, ==, 1);
  g_assert_cmpuint (plan->n_vocab, ==, 40);
  g_assert_true (plan->tied_output);
  g_assert_cmpstr (plan->source_dtype, ==, "bf16");
  g_assert_cmpstr (plan->auto_outtype, ==, "bf16");

  g_assert_cmpuint (plan->tensors->len, ==, G_N_ELEMENTS (names));
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_cmpstr (((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, i))->name, ==, names[i]);

  assert_generated (plan_tensor (plan, "rope_freqs.weight"), rope_bits, 32);
  assert_ne (plan_tensor (plan, "token_embd.weight"), 2, 128, 40);
  assert_ne (plan_tensor (plan, "blk.1.ffn_down.weight"), 2, 96, 128);
  assert_ne (plan_tensor (plan, "blk.1.ffn_up.weight"), 2, 128, 96);
  assert_ne (plan_tensor (plan, "blk.0.attn_norm.weight"), 1, 128, 1);

  q = plan_tensor (plan, "blk.0.attn_q.weight");
  k = plan_tensor (plan, "blk.0.attn_k.weight");
  assert_ne (q, 2, 128, 128);
  assert_ne (k, 2, 128, 64);
  g_assert_cmpint (q->transform, ==, SMELT_GGUF_XFORM_PERMUTE);
  g_assert_cmpuint (q->n_head, ==, 2);
  g_assert_cmpuint (smelt_gguf_tensor_row_group (q), ==, 64);
  g_assert_cmpint (k->transform, ==, SMELT_GGUF_XFORM_PERMUTE);
  g_assert_cmpuint (k->n_head, ==, 1);
  g_assert_cmpuint (smelt_gguf_tensor_row_group (k), ==, 64);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_v.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);
  g_assert_cmpuint (smelt_gguf_tensor_row_group (plan_tensor (plan, "blk.0.attn_v.weight")), ==, 1);

  for (guint i = 1; i < plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);
      gboolean norm = g_str_has_suffix (t->name, "_norm.weight");

      g_assert_cmpint (t->force_f32, ==, norm);
      g_assert_nonnull (t->tensor);
      g_assert_true (g_hash_table_lookup (plan->by_source, smelt_tensor_get_name (t->tensor)) == t);
      if (t->transform != SMELT_GGUF_XFORM_PERMUTE)
        g_assert_cmpint (t->transform, ==, SMELT_GGUF_XFORM_NONE);
    }
  g_assert_null (g_hash_table_lookup (plan->by_source, "model.layers.0.self_attn.rotary_emb.inv_freq"));
  g_assert_true (g_hash_table_lookup (plan->by_source, "model.layers.1.self_attn.q_proj.weight") ==
                 plan_tensor (plan, "blk.1.attn_q.weight"));

  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "llama.block_count"), ==, 2);
  g_assert_cmpuint (file_u32 (file, "llama.context_length"), ==, 131072);
  g_assert_cmpuint (file_u32 (file, "llama.embedding_length"), ==, 128);
  g_assert_cmpuint (file_u32 (file, "llama.feed_forward_length"), ==, 96);
  g_assert_cmpuint (file_u32 (file, "llama.attention.head_count"), ==, 2);
  g_assert_cmpuint (file_u32 (file, "llama.attention.head_count_kv"), ==, 1);
  g_assert_cmpfloat (file_f32 (file, "llama.rope.freq_base"), ==, 500000.0f);
  g_assert_cmpfloat (file_f32 (file, "llama.attention.layer_norm_rms_epsilon"), ==, (float) 1e-05);
  g_assert_cmpuint (file_u32 (file, "llama.attention.key_length"), ==, 64);
  g_assert_cmpuint (file_u32 (file, "llama.attention.value_length"), ==, 64);
  g_assert_cmpuint (file_u32 (file, "llama.vocab_size"), ==, 40);
  g_assert_cmpuint (file_u32 (file, "llama.rope.dimension_count"), ==, 64);
}

/* Mistral: num_key_value_heads, head_dim, rope_theta, rms_norm_eps and
 * max_position_embeddings all absent (MistralConfig: 8, hidden/heads,
 * 10000, 1e-6, 131072); linear rope scaling; q/k biases permuted. */
static void
test_mistral_defaults (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 64, 8, 8, 8, 32, 16, SMELT_DTYPE_F16, 0, TRUE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *type = NULL;
  SmeltGgufTensor *qb, *kb;
  static const char * const kvs[] = {
    "llama.block_count", "llama.context_length", "llama.embedding_length",
    "llama.feed_forward_length", "llama.attention.head_count", "llama.attention.head_count_kv",
    "llama.rope.scaling.type", "llama.rope.scaling.factor",
    "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon",
    "llama.attention.key_length", "llama.attention.value_length", "general.file_type",
    "llama.vocab_size", "llama.rope.dimension_count", NULL
  };

  add_decoder (b, &d);
  add_layer_tensor (b, 0, "self_attn.q_proj.bias", SMELT_DTYPE_F16, 1, 64, 0);
  add_layer_tensor (b, 0, "self_attn.k_proj.bias", SMELT_DTYPE_F16, 1, 64, 0);
  add_layer_tensor (b, 0, "self_attn.o_proj.bias", SMELT_DTYPE_F16, 1, 64, 0);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
              "\"hidden_size\":64,\"intermediate_size\":32,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":8,\"vocab_size\":16,"
              "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "llama");
  g_assert_false (plan->tied_output);
  g_assert_cmpstr (plan->auto_outtype, ==, "f16");
  g_assert_cmpstr (plan->tensors->len ? ((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, 0))->name : "",
                   ==, "output.weight");
  assert_ne (plan_tensor (plan, "output.weight"), 2, 64, 16);
  g_assert_false (plan_tensor (plan, "output.weight")->force_f32);

  qb = plan_tensor (plan, "blk.0.attn_q.bias");
  kb = plan_tensor (plan, "blk.0.attn_k.bias");
  assert_ne (qb, 1, 64, 1);
  g_assert_true (qb->force_f32);
  g_assert_cmpint (qb->transform, ==, SMELT_GGUF_XFORM_PERMUTE);
  g_assert_cmpuint (qb->n_head, ==, 8);
  g_assert_cmpint (kb->transform, ==, SMELT_GGUF_XFORM_PERMUTE);
  g_assert_cmpuint (kb->n_head, ==, 8);
  g_assert_cmpuint (smelt_gguf_tensor_row_group (qb), ==, 1);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_output.bias")->transform, ==, SMELT_GGUF_XFORM_NONE);
  g_assert_true (plan_tensor (plan, "blk.0.attn_output.bias")->force_f32);

  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "llama.context_length"), ==, 131072);
  g_assert_cmpuint (file_u32 (file, "llama.attention.head_count_kv"), ==, 8);
  type = file_str (file, "llama.rope.scaling.type");
  g_assert_cmpstr (type, ==, "linear");
  g_assert_cmpfloat (file_f32 (file, "llama.rope.scaling.factor"), ==, 2.0f);
  g_assert_cmpfloat (file_f32 (file, "llama.rope.freq_base"), ==, 10000.0f);
  g_assert_cmpfloat (file_f32 (file, "llama.attention.layer_norm_rms_epsilon"), ==, (float) 1e-6);
  g_assert_cmpuint (file_u32 (file, "llama.attention.key_length"), ==, 8);
  g_assert_cmpuint (file_u32 (file, "llama.rope.dimension_count"), ==, 8);
}

/* out[h·hd + 2i + j] = in[h·hd + j·hd/2 + i], whole rows */
static void
check_permuted (const float *in,
                const float *out,
                guint64      n_heads,
                guint64      hd,
                guint64      row_len)
{
  for (guint64 h = 0; h < n_heads; h++)
    for (guint64 i = 0; i < hd / 2; i++)
      for (guint64 j = 0; j < 2; j++)
        for (guint64 c = 0; c < row_len; c++)
          g_assert_cmpfloat (out[(h * hd + 2 * i + j) * row_len + c], ==,
                             in[(h * hd + j * (hd / 2) + i) * row_len + c]);
}

static void
test_permutation (void)
{
  static const struct { guint64 row_len, rows, heads; } cases[] = {
    { 3, 16, 2 },     /* two heads of 8 rows */
    { 5, 24, 3 },
    { 300, 4, 1 },    /* rows longer than the on-stack buffer */
    { 1, 128, 1 },    /* one head of 128 */
    { 7, 12, 6 },     /* heads of 2: nothing moves */
  };

  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      SmeltGgufTensor t = { 0, };
      guint64 n = cases[c].row_len * cases[c].rows;
      g_autofree float *in = g_new (float, n);
      g_autofree float *out = g_new (float, n);
      guint64 hd = cases[c].rows / cases[c].heads;

      t.name = (char *) "blk.0.attn_q.weight";
      t.n_dims = 2;
      t.ne[0] = cases[c].row_len;
      t.ne[1] = cases[c].rows;
      t.transform = SMELT_GGUF_XFORM_PERMUTE;
      t.n_head = (guint) cases[c].heads;
      g_assert_cmpuint (smelt_gguf_tensor_row_group (&t), ==, hd);
      for (guint64 k = 0; k < n; k++)
        in[k] = (float) k;

      /* all rows at once */
      memcpy (out, in, n * sizeof (float));
      smelt_gguf_tensor_transform (&t, 0, cases[c].rows, out);
      check_permuted (in, out, cases[c].heads, hd, cases[c].row_len);

      /* one head per call, as a block reader delivers them */
      memcpy (out, in, n * sizeof (float));
      for (guint64 h = 0; h < cases[c].heads; h++)
        smelt_gguf_tensor_transform (&t, h * hd, hd, out + h * hd * cases[c].row_len);
      check_permuted (in, out, cases[c].heads, hd, cases[c].row_len);
    }

  /* a bias: one row holding 3 heads of 4 */
  {
    SmeltGgufTensor t = { 0, };
    float in[12], out[12];

    t.n_dims = 1;
    t.ne[0] = 12;
    t.ne[1] = 1;
    t.transform = SMELT_GGUF_XFORM_PERMUTE;
    t.n_head = 3;
    for (guint k = 0; k < 12; k++)
      in[k] = out[k] = (float) k;
    g_assert_cmpuint (smelt_gguf_tensor_row_group (&t), ==, 1);
    smelt_gguf_tensor_transform (&t, 0, 1, out);
    check_permuted (in, out, 3, 4, 1);
  }
}

static void
test_norm_plus_one (void)
{
  SmeltGgufTensor t = { 0, };
  /* 2^-11: 1 + 2^-11 is the midpoint of two halves and rounds to even;
   * 2^-11 + 2^-20 is above it; -0.5 and 2 are exact */
  float v[4] = { bits_float (0x3a000000), bits_float (0x3a000000) + bits_float (0x35800000), -0.5f, 2.0f };
  float f16[4], f32[4];

  t.n_dims = 1;
  t.ne[0] = 4;
  t.ne[1] = 1;
  t.transform = SMELT_GGUF_XFORM_NORM_PLUS_ONE;

  memcpy (f32, v, sizeof v);
  smelt_gguf_tensor_transform (&t, 0, 1, f32);
  g_assert_cmphex (float_bits (f32[0]), ==, float_bits (1.00048828125f));
  g_assert_cmpfloat (f32[2], ==, 0.5f);
  g_assert_cmpfloat (f32[3], ==, 3.0f);

  t.source_f16 = TRUE;
  memcpy (f16, v, sizeof v);
  smelt_gguf_tensor_transform (&t, 0, 1, f16);
  g_assert_cmpfloat (f16[0], ==, 1.0f);
  g_assert_cmpfloat (f16[1], ==, 1.0009765625f);
  g_assert_cmpfloat (f16[2], ==, 0.5f);
  g_assert_cmpfloat (f16[3], ==, 3.0f);
}

/* Gemma2: lm_head dropped, four norms per layer, +1 on each in F16
 * arithmetic for an F16 checkpoint; softcappings and sliding window come
 * from Gemma2Config's defaults. */
static void
test_gemma2 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 2, 32, 2, 1, 16, 48, 24, SMELT_DTYPE_F16, LAYER_GEMMA2_NORMS, TRUE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  /* Gemma2Model.set_gguf_parameters, which does not call the base */
  static const char * const kvs[] = {
    "gemma2.context_length", "gemma2.embedding_length", "gemma2.block_count",
    "gemma2.feed_forward_length", "gemma2.attention.head_count", "gemma2.attention.head_count_kv",
    "gemma2.attention.layer_norm_rms_epsilon", "gemma2.attention.key_length",
    "gemma2.attention.value_length", "general.file_type", "gemma2.attn_logit_softcapping",
    "gemma2.final_logit_softcapping", "gemma2.attention.sliding_window", NULL
  };
  static const char * const norms[] = {
    "blk.1.attn_norm.weight", "blk.1.post_attention_norm.weight", "blk.1.ffn_norm.weight",
    "blk.1.post_ffw_norm.weight", "output_norm.weight",
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"Gemma2ForCausalLM\"],\"model_type\":\"gemma2\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":16,"
              "\"vocab_size\":24,\"max_position_embeddings\":8192,\"rms_norm_eps\":1e-06}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "gemma2");
  g_assert_true (plan->tied_output);
  g_assert_null (g_hash_table_lookup (plan->by_source, "lm_head.weight"));
  for (guint i = 0; i < plan->tensors->len; i++)
    g_assert_false (g_str_has_prefix (((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, i))->name,
                                      "output.weight"));
  for (guint i = 0; i < G_N_ELEMENTS (norms); i++)
    {
      SmeltGgufTensor *t = plan_tensor (plan, norms[i]);
      assert_ne (t, 1, 32, 1);
      g_assert_cmpint (t->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
      g_assert_true (t->source_f16);
      g_assert_true (t->force_f32);
    }
  g_assert_true (g_hash_table_lookup (plan->by_source, "model.layers.1.pre_feedforward_layernorm.weight") ==
                 plan_tensor (plan, "blk.1.ffn_norm.weight"));
  g_assert_true (g_hash_table_lookup (plan->by_source, "model.layers.1.post_attention_layernorm.weight") ==
                 plan_tensor (plan, "blk.1.post_attention_norm.weight"));
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_q.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);
  assert_ne (plan_tensor (plan, "blk.0.attn_q.weight"), 2, 32, 32);
  assert_ne (plan_tensor (plan, "blk.0.attn_k.weight"), 2, 32, 16);

  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "gemma2.context_length"), ==, 8192);
  g_assert_cmpuint (file_u32 (file, "gemma2.attention.key_length"), ==, 16);
  g_assert_cmpfloat (file_f32 (file, "gemma2.attn_logit_softcapping"), ==, 50.0f);
  g_assert_cmpfloat (file_f32 (file, "gemma2.final_logit_softcapping"), ==, 30.0f);
  g_assert_cmpuint (file_u32 (file, "gemma2.attention.sliding_window"), ==, 4096);
}

/* Gemma (1): the norm +1 in F32 for a BF16 checkpoint */
static void
test_gemma (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 2, 2, 16, 48, 24, SMELT_DTYPE_BF16, 0, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  static const char * const kvs[] = {
    "gemma.context_length", "gemma.embedding_length", "gemma.block_count",
    "gemma.feed_forward_length", "gemma.attention.head_count", "gemma.attention.head_count_kv",
    "gemma.attention.layer_norm_rms_epsilon", "gemma.attention.key_length",
    "gemma.attention.value_length", "general.file_type", NULL
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  /* num_key_value_heads absent: GemmaConfig's default is 16, which these
   * tensors contradict, so it must be given; max_position_embeddings
   * absent: 8192 */
  write_text (b, "config.json",
              "{\"architectures\":[\"GemmaForCausalLM\"],\"model_type\":\"gemma\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":2,\"head_dim\":16,\"vocab_size\":24}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);
  g_assert_cmpint (plan_tensor (plan, "blk.0.ffn_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
  g_assert_false (plan_tensor (plan, "blk.0.ffn_norm.weight")->source_f16);
  g_assert_cmpint (plan_tensor (plan, "output_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "gemma.context_length"), ==, 8192);
  g_assert_cmpfloat (file_f32 (file, "gemma.attention.layer_norm_rms_epsilon"), ==, (float) 1e-6);
}

/* Gemma3 (gemma3_text): q/k norms, local rope base, sliding window, the
 * token_embd rows cut to the tokenizer's vocabulary */
static void
test_gemma3 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 2, 1, 16, 48, 32, SMELT_DTYPE_BF16, LAYER_QK_NORM | LAYER_GEMMA2_NORMS, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  /* the base block (with the gemma3 overrides in place), then the sliding
   * window */
  static const char * const kvs[] = {
    "gemma3.block_count", "gemma3.context_length", "gemma3.embedding_length",
    "gemma3.feed_forward_length", "gemma3.attention.head_count", "gemma3.attention.head_count_kv",
    "gemma3.rope.freq_base", "gemma3.rope.freq_base_swa",
    "gemma3.attention.layer_norm_rms_epsilon", "gemma3.attention.key_length",
    "gemma3.attention.value_length", "general.file_type", "gemma3.attention.sliding_window", NULL
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "tokenizer.model", "not parsed");
  write_text (b, "config.json",
              "{\"architectures\":[\"Gemma3ForCausalLM\"],\"model_type\":\"gemma3_text\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":16,"
              "\"vocab_size\":30,\"max_position_embeddings\":32768,\"sliding_window\":512,"
              "\"sliding_window_pattern\":6,\"rope_scaling\":null,\"final_logit_softcapping\":null}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "gemma3");
  g_assert_cmpuint (plan->n_vocab, ==, 30);
  assert_ne (plan_tensor (plan, "token_embd.weight"), 2, 32, 30);
  assert_ne (plan_tensor (plan, "blk.0.attn_q_norm.weight"), 1, 16, 1);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_q_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_k_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
  g_assert_cmpint (plan_tensor (plan, "blk.0.post_ffw_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NORM_PLUS_ONE);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_k.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);

  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "gemma3.context_length"), ==, 32768);
  g_assert_cmpfloat (file_f32 (file, "gemma3.rope.freq_base"), ==, 1000000.0f);
  g_assert_cmpfloat (file_f32 (file, "gemma3.rope.freq_base_swa"), ==, 10000.0f);
  g_assert_cmpuint (file_u32 (file, "gemma3.attention.sliding_window"), ==, 512);
  g_assert_cmpuint (file_u32 (file, "gemma3.attention.head_count_kv"), ==, 1);
}

/* Qwen2: q/k/v biases, no permutation, an lm_head, no head_dim key */
static void
test_qwen2 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 4, 2, 8, 48, 24, SMELT_DTYPE_F32, LAYER_QKV_BIAS, TRUE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  static const char * const kvs[] = {
    "qwen2.block_count", "qwen2.context_length", "qwen2.embedding_length",
    "qwen2.feed_forward_length", "qwen2.attention.head_count", "qwen2.attention.head_count_kv",
    "qwen2.rope.freq_base", "qwen2.attention.layer_norm_rms_epsilon", "general.file_type", NULL
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":24,"
              "\"rope_theta\":1000000.0,\"rms_norm_eps\":1e-06,\"tie_word_embeddings\":false}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "qwen2");
  g_assert_false (plan->tied_output);
  g_assert_cmpstr (plan->source_dtype, ==, "f32");
  g_assert_cmpstr (plan->auto_outtype, ==, "f16");
  assert_ne (plan_tensor (plan, "blk.0.attn_q.bias"), 1, 32, 1);
  assert_ne (plan_tensor (plan, "blk.0.attn_k.bias"), 1, 16, 1);
  g_assert_true (plan_tensor (plan, "blk.0.attn_v.bias")->force_f32);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_q.bias")->transform, ==, SMELT_GGUF_XFORM_NONE);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_q.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);
  g_assert_false (plan_tensor (plan, "blk.0.attn_q.weight")->force_f32);
  assert_ne (plan_tensor (plan, "output.weight"), 2, 32, 24);

  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "qwen2.context_length"), ==, 32768);
  g_assert_cmpfloat (file_f32 (file, "qwen2.rope.freq_base"), ==, 1000000.0f);
}

/* Qwen3: q_norm/k_norm; head_dim absent → Qwen3Config's 128 */
static void
test_qwen3 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 2, 1, 128, 48, 24, SMELT_DTYPE_BF16, LAYER_QK_NORM, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  static const char * const kvs[] = {
    "qwen3.block_count", "qwen3.context_length", "qwen3.embedding_length",
    "qwen3.feed_forward_length", "qwen3.attention.head_count", "qwen3.attention.head_count_kv",
    "qwen3.rope.freq_base", "qwen3.attention.layer_norm_rms_epsilon",
    "qwen3.attention.key_length", "qwen3.attention.value_length", "general.file_type", NULL
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"vocab_size\":24}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  assert_ne (plan_tensor (plan, "blk.0.attn_q.weight"), 2, 32, 256);
  assert_ne (plan_tensor (plan, "blk.0.attn_output.weight"), 2, 256, 32);
  assert_ne (plan_tensor (plan, "blk.0.attn_q_norm.weight"), 1, 128, 1);
  g_assert_true (plan_tensor (plan, "blk.0.attn_k_norm.weight")->force_f32);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_k_norm.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);
  file = write_and_check_kvs (b, plan, source, kvs);
  g_assert_cmpuint (file_u32 (file, "qwen3.attention.key_length"), ==, 128);
}

/* Phi-3 long context: fused qkv and gate_up, the long/short factor
 * tensors first, the attention factor KV before everything else */
static void
test_phi3 (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 4, 4, 8, 48, 24, SMELT_DTYPE_BF16, LAYER_PHI3_FUSED, TRUE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autoptr(GError) error = NULL;
  GString *config = g_string_new (NULL);
  guint32 long_bits[4], short_bits[4];
  static const double long_f[4] = { 1.0, 1.25, 2.5, 5.0 };
  static const double short_f[4] = { 1.0, 1.05, 1.1, 1.15 };
  static const char * const kvs[] = {
    "phi3.rope.scaling.attn_factor",
    "phi3.context_length", "phi3.rope.scaling.original_context_length", "phi3.embedding_length",
    "phi3.feed_forward_length", "phi3.block_count", "phi3.attention.head_count",
    "phi3.attention.head_count_kv", "phi3.attention.layer_norm_rms_epsilon",
    "phi3.rope.dimension_count", "phi3.rope.freq_base", "general.file_type",
    "phi3.attention.sliding_window", NULL
  };

  add_decoder (b, &d);
  write_safetensors (b, "model.safetensors", NULL);
  /* "su" is Phi3Config's old name of longrope; no sliding_window (None → 0) */
  g_string_append (config,
                   "{\"architectures\":[\"Phi3ForCausalLM\"],\"model_type\":\"phi3\","
                   "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
                   "\"num_attention_heads\":4,\"num_key_value_heads\":4,\"vocab_size\":24,"
                   "\"max_position_embeddings\":131072,\"original_max_position_embeddings\":4096,"
                   "\"rope_scaling\":{\"type\":\"su\",\"long_factor\":[1.0,1.25,2.5,5.0],"
                   "\"short_factor\":[1.0,1.05,1.1,1.15]}}");
  write_text (b, "config.json", config->str);
  g_string_free (config, TRUE);
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  g_assert_cmpstr (plan->arch, ==, "phi3");
  g_assert_cmpstr (((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, 0))->name, ==, "rope_factors_long.weight");
  g_assert_cmpstr (((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, 1))->name, ==, "rope_factors_short.weight");
  for (guint i = 0; i < 4; i++)
    {
      long_bits[i] = float_bits ((float) long_f[i]);
      short_bits[i] = float_bits ((float) short_f[i]);
    }
  assert_generated (g_ptr_array_index (plan->tensors, 0), long_bits, 4);
  assert_generated (g_ptr_array_index (plan->tensors, 1), short_bits, 4);
  assert_ne (plan_tensor (plan, "blk.0.attn_qkv.weight"), 2, 32, 96);
  assert_ne (plan_tensor (plan, "blk.0.ffn_up.weight"), 2, 32, 96);
  assert_ne (plan_tensor (plan, "blk.0.ffn_down.weight"), 2, 48, 32);
  g_assert_cmpint (plan_tensor (plan, "blk.0.attn_qkv.weight")->transform, ==, SMELT_GGUF_XFORM_NONE);

  file = write_and_check_kvs (b, plan, source, kvs);
  /* longrope: sqrt(1 + ln(scale) / ln(original)), scale = 131072 / 4096 */
  g_assert_cmpfloat (file_f32 (file, "phi3.rope.scaling.attn_factor"), ==,
                     (float) sqrt (1.0 + log (32.0) / log (4096.0)));
  g_assert_cmpuint (file_u32 (file, "phi3.context_length"), ==, 131072);
  g_assert_cmpuint (file_u32 (file, "phi3.rope.scaling.original_context_length"), ==, 4096);
  g_assert_cmpuint (file_u32 (file, "phi3.rope.dimension_count"), ==, 8);
  g_assert_cmpfloat (file_f32 (file, "phi3.rope.freq_base"), ==, 10000.0f);
  g_assert_cmpfloat (file_f32 (file, "phi3.attention.layer_norm_rms_epsilon"), ==, (float) 1e-5);
  g_assert_cmpuint (file_u32 (file, "phi3.attention.sliding_window"), ==, 0);
}

/* Without adapters the converter's order is the base's: shards by file
 * name, names sorted within each. */
static void
test_shard_order (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 2, 32, 2, 2, 16, 48, 24, SMELT_DTYPE_F16, 0, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(GError) error = NULL;
  GString *shard1 = g_string_new (NULL), *shard2 = g_string_new (NULL);
  GString *index = g_string_new ("{\"metadata\":{},\"weight_map\":{");
  guint32 pos_embd, pos_l0, pos_l1, pos_norm;

  add_decoder (b, &d);
  /* shard 1: layer 1 and the embedding; shard 2: layer 0 and the norm */
  for (guint i = 0; i < b->specs->len; i++)
    {
      const char *name = g_array_index (b->specs, Spec, i).name;
      gboolean first = g_str_has_prefix (name, "model.layers.1.") || strcmp (name, "model.embed_tokens.weight") == 0;
      const char *file = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";

      g_string_append_printf (first ? shard1 : shard2, "%s%s", (first ? shard1 : shard2)->len ? ";" : "", name);
      g_string_append_printf (index, "%s\"%s\":\"%s\"", i ? "," : "", name, file);
    }
  g_string_append (index, "}}");
  write_safetensors (b, "model-00001-of-00002.safetensors", shard1->str);
  write_safetensors (b, "model-00002-of-00002.safetensors", shard2->str);
  write_text (b, "model.safetensors.index.json", index->str);
  g_string_free (shard1, TRUE);
  g_string_free (shard2, TRUE);
  g_string_free (index, TRUE);
  write_text (b, "config.json",
              "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":2,\"vocab_size\":24}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_no_error (error);

  pos_embd = pos_l0 = pos_l1 = pos_norm = G_MAXUINT32;
  for (guint i = 0; i < plan->tensors->len; i++)
    {
      const char *name = ((SmeltGgufTensor *) g_ptr_array_index (plan->tensors, i))->name;
      if (strcmp (name, "token_embd.weight") == 0) pos_embd = i;
      if (strcmp (name, "blk.0.attn_norm.weight") == 0) pos_l0 = i;
      if (strcmp (name, "blk.1.attn_norm.weight") == 0) pos_l1 = i;
      if (strcmp (name, "output_norm.weight") == 0) pos_norm = i;
    }
  /* shard 1 sorted: model.embed_tokens < model.layers.1.*; shard 2:
   * model.layers.0.* < model.norm */
  g_assert_cmpuint (pos_embd, ==, 0);
  g_assert_cmpuint (pos_l1, ==, 1);
  g_assert_cmpuint (pos_l0, ==, 10);
  g_assert_cmpuint (pos_norm, ==, 19);
  g_assert_cmpuint (plan->tensors->len, ==, 20);
}

/* ---- errors ---- */

static Builder *
small_llama (void)
{
  Builder *b = builder_new ();
  Dims d = { 2, 32, 2, 2, 16, 48, 24, SMELT_DTYPE_F16, 0, FALSE };

  add_decoder (b, &d);
  return b;
}

static const char small_llama_config[] =
  "{\"architectures\":[\"%s\"],\"model_type\":\"llama\","
  "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":%u,"
  "\"num_attention_heads\":2,\"num_key_value_heads\":2,\"vocab_size\":24}";

static GError *
plan_error (Builder    *b,
            const char *arch,
            guint       n_layers)
{
  g_autofree char *config = g_strdup_printf (small_llama_config, arch, n_layers);
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  GError *error = NULL;

  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json", config);
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_null (plan);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  return error;
}

static void
test_error_unknown_arch (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = plan_error (b, "FalconForCausalLM", 2);

  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "FalconForCausalLM"));
  g_assert_nonnull (strstr (error->message, "config.json"));
  for (const char * const *s = smelt_gguf_arch_supported (); *s; s++)
    g_assert_nonnull (strstr (error->message, *s));
}

static void
test_error_missing_tensor (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = NULL;

  g_assert_true (drop (b, "model.layers.1.mlp.down_proj.weight"));
  error = plan_error (b, "LlamaForCausalLM", 2);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "model.layers.1.mlp.down_proj.weight"));
}

static void
test_error_missing_embedding (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = NULL;

  g_assert_true (drop (b, "model.embed_tokens.weight"));
  error = plan_error (b, "LlamaForCausalLM", 2);
  g_assert_nonnull (strstr (error->message, "model.embed_tokens.weight"));
}

static void
test_error_bad_shape (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = NULL;

  find_spec (b, "model.layers.0.self_attn.q_proj.weight")->shape[0] = 48;
  error = plan_error (b, "LlamaForCausalLM", 2);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.q_proj.weight"));
  g_assert_nonnull (strstr (error->message, "[48, 32]"));
}

static void
test_error_unmappable (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = NULL;

  add (b, "model.layers.0.self_attn.rotary.weight", SMELT_DTYPE_F16, 1, 8, 0);
  error = plan_error (b, "LlamaForCausalLM", 2);
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.rotary.weight"));
}

/* a layer beyond num_hidden_layers has no GGUF name either */
static void
test_error_extra_layer (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(GError) error = plan_error (b, "LlamaForCausalLM", 1);

  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "model.layers.1."));
}

/* gemma keeps no output tensor, so an lm_head bias cannot go anywhere;
 * and llama.cpp's gemma has no attn_output bias */
static void
test_error_unloadable (void)
{
  g_autoptr(Builder) b = builder_new ();
  Dims d = { 1, 32, 2, 2, 16, 48, 24, SMELT_DTYPE_F16, 0, FALSE };
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(GError) error = NULL;

  add_decoder (b, &d);
  add_layer_tensor (b, 0, "self_attn.o_proj.bias", SMELT_DTYPE_F16, 1, 32, 0);
  write_safetensors (b, "model.safetensors", NULL);
  write_text (b, "config.json",
              "{\"architectures\":[\"GemmaForCausalLM\"],\"model_type\":\"gemma\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":2,\"head_dim\":16,\"vocab_size\":24}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_null (plan);
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "model.layers.0.self_attn.o_proj.bias"));
}

static void
test_error_bad_config_value (void)
{
  g_autoptr(Builder) b = small_llama ();
  g_autoptr(SmeltSource) source = NULL;
  g_autoptr(SmeltGgufArchPlan) plan = NULL;
  g_autoptr(GError) error = NULL;

  write_safetensors (b, "model.safetensors", NULL);
  /* struct.pack("<I", 2048.5) fails in the converter too */
  write_text (b, "config.json",
              "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\","
              "\"hidden_size\":32,\"intermediate_size\":48,\"num_hidden_layers\":2,"
              "\"num_attention_heads\":2,\"num_key_value_heads\":2,\"vocab_size\":24,"
              "\"max_position_embeddings\":2048.5}");
  source = open_source (b);
  plan = smelt_gguf_arch_plan (source, &error);
  g_assert_null (plan);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "max_position_embeddings"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/gguf-arch/supported", test_supported);
  g_test_add_func ("/gguf-arch/llama3", test_llama3);
  g_test_add_func ("/gguf-arch/mistral-defaults", test_mistral_defaults);
  g_test_add_func ("/gguf-arch/permutation", test_permutation);
  g_test_add_func ("/gguf-arch/norm-plus-one", test_norm_plus_one);
  g_test_add_func ("/gguf-arch/gemma", test_gemma);
  g_test_add_func ("/gguf-arch/gemma2", test_gemma2);
  g_test_add_func ("/gguf-arch/gemma3", test_gemma3);
  g_test_add_func ("/gguf-arch/qwen2", test_qwen2);
  g_test_add_func ("/gguf-arch/qwen3", test_qwen3);
  g_test_add_func ("/gguf-arch/phi3", test_phi3);
  g_test_add_func ("/gguf-arch/shard-order", test_shard_order);
  g_test_add_func ("/gguf-arch/error/unknown-arch", test_error_unknown_arch);
  g_test_add_func ("/gguf-arch/error/missing-tensor", test_error_missing_tensor);
  g_test_add_func ("/gguf-arch/error/missing-embedding", test_error_missing_embedding);
  g_test_add_func ("/gguf-arch/error/bad-shape", test_error_bad_shape);
  g_test_add_func ("/gguf-arch/error/unmappable", test_error_unmappable);
  g_test_add_func ("/gguf-arch/error/extra-layer", test_error_extra_layer);
  g_test_add_func ("/gguf-arch/error/unloadable", test_error_unloadable);
  g_test_add_func ("/gguf-arch/error/bad-config-value", test_error_bad_config_value);

  return g_test_run ();
}
