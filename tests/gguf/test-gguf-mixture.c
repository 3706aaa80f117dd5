/* test-gguf-mixture.c: llama-quantize's file types and per-tensor types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Tensor lists of real model shapes (Llama-3-8B, Llama-3-70B, Qwen2-0.5B,
 * Mixtral) go through smelt_gguf_mixture_choose(). The expected types
 * were worked out by hand from llama.cpp de3ff81's src/llama-quant.cpp
 * (the rules, use_more_bits, the fallback table); the layer lists are
 * written out, not computed with a copy of use_more_bits. The oracle test
 * (test_gguf_mixture.py) compares with llama.cpp itself on tiny models.
 */
#include <string.h>

#include "smelt-gguf-mixture.h"

#define T(x) SMELT_GGML_TYPE_##x

/* ------------------------------------------------------------------ */
/* Model layouts                                                       */

typedef struct {
  GPtrArray *names;      /* owned strings */
  GArray    *tensors;    /* SmeltGgufMixTensor */
  SmeltGgmlType *types;
  SmeltGgufMixHparams hp;
} Model;

static Model *
model_new (const char *arch,
           guint       n_head,
           guint       n_head_kv,
           guint       n_layer)
{
  Model *m = g_new0 (Model, 1);

  m->names = g_ptr_array_new_with_free_func (g_free);
  m->tensors = g_array_new (FALSE, TRUE, sizeof (SmeltGgufMixTensor));
  m->hp.arch = arch;
  m->hp.n_head = n_head;
  m->hp.n_head_kv = n_head_kv;
  m->hp.n_layer = n_layer;
  return m;
}

static void
model_free (Model *m)
{
  g_ptr_array_unref (m->names);
  g_array_unref (m->tensors);
  g_free (m->types);
  g_free (m);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Model, model_free)

static void
add3 (Model         *m,
      const char    *name,
      guint64        ne0,
      guint64        ne1,
      guint64        ne2,
      SmeltGgmlType  type)
{
  SmeltGgufMixTensor t = { NULL, { ne0, ne1, ne2, 1 }, type };
  char *copy = g_strdup (name);

  g_ptr_array_add (m->names, copy);
  t.name = copy;
  g_array_append_val (m->tensors, t);
}

static void
add (Model      *m,
     const char *name,
     guint64     ne0,
     guint64     ne1)
{
  add3 (m, name, ne0, ne1, 1, T (F32));
}

static void
addf (Model      *m,
      guint64     ne0,
      guint64     ne1,
      const char *format,
      ...) G_GNUC_PRINTF (4, 5);

static void
addf (Model      *m,
      guint64     ne0,
      guint64     ne1,
      const char *format,
      ...)
{
  va_list ap;
  g_autofree char *name = NULL;

  va_start (ap, format);
  name = g_strdup_vprintf (format, ap);
  va_end (ap);
  add (m, name, ne0, ne1);
}

/* A llama-style dense model in the converter's order (layer by layer,
 * not weights_map's: choose() must sort by itself). ne[0] is the row
 * length: attn_q is {hidden, heads·hd}. */
static Model *
dense_model (const char *arch,
             guint       n_layer,
             guint       n_head,
             guint       n_head_kv,
             guint64     hidden,
             guint64     ffn,
             guint64     vocab,
             gboolean    tied,
             gboolean    qkv_bias)
{
  Model *m = model_new (arch, n_head, n_head_kv, n_layer);
  guint64 hd = hidden / n_head;

  add (m, "token_embd.weight", hidden, vocab);
  for (guint i = 0; i < n_layer; i++)
    {
      addf (m, hidden, 1, "blk.%u.attn_norm.weight", i);
      addf (m, hidden, hidden, "blk.%u.attn_q.weight", i);
      addf (m, hidden, n_head_kv * hd, "blk.%u.attn_k.weight", i);
      addf (m, hidden, n_head_kv * hd, "blk.%u.attn_v.weight", i);
      if (qkv_bias)
        {
          addf (m, hidden, 1, "blk.%u.attn_q.bias", i);
          addf (m, n_head_kv * hd, 1, "blk.%u.attn_k.bias", i);
          addf (m, n_head_kv * hd, 1, "blk.%u.attn_v.bias", i);
        }
      addf (m, hidden, hidden, "blk.%u.attn_output.weight", i);
      addf (m, hidden, 1, "blk.%u.ffn_norm.weight", i);
      addf (m, hidden, ffn, "blk.%u.ffn_gate.weight", i);
      addf (m, hidden, ffn, "blk.%u.ffn_up.weight", i);
      addf (m, ffn, hidden, "blk.%u.ffn_down.weight", i);
    }
  add (m, "output_norm.weight", hidden, 1);
  if (!tied)
    add (m, "output.weight", hidden, vocab);
  return m;
}

static void
choose_ok (Model      *m,
           const char *ftype_name)
{
  g_autoptr(GError) error = NULL;
  const SmeltGgufFtype *ft = smelt_gguf_mixture_lookup_ftype (ftype_name);

  g_assert_nonnull (ft);
  g_free (m->types);
  m->types = g_new0 (SmeltGgmlType, m->tensors->len);
  g_assert_true (smelt_gguf_mixture_choose (ft, &m->hp, (SmeltGgufMixTensor *) m->tensors->data,
                                            m->tensors->len, m->types, &error));
  g_assert_no_error (error);
}

static SmeltGgmlType
type_of (Model      *m,
         const char *name)
{
  for (guint i = 0; i < m->tensors->len; i++)
    if (strcmp (g_array_index (m->tensors, SmeltGgufMixTensor, i).name, name) == 0)
      return m->types[i];
  g_error ("no tensor %s", name);
}

static void
assert_type (Model         *m,
             const char    *name,
             SmeltGgmlType  want)
{
  SmeltGgmlType got = type_of (m, name);

  if (got != want)
    g_error ("%s: %s, expected %s", name, smelt_ggml_type_get_name (got),
             smelt_ggml_type_get_name (want));
}

static SmeltGgmlType
layer_type (Model      *m,
            guint       layer,
            const char *what)
{
  g_autofree char *name = g_strdup_printf ("blk.%u.%s.weight", layer, what);

  return type_of (m, name);
}

/* every layer's @what is @in for the layers in @list (-1 ends it), @out
 * for the others */
static void
assert_layers (Model         *m,
               const char    *what,
               const int     *list,
               SmeltGgmlType  in,
               SmeltGgmlType  out)
{
  for (guint i = 0; i < m->hp.n_layer; i++)
    {
      gboolean listed = FALSE;
      SmeltGgmlType got = layer_type (m, i, what);

      for (const int *p = list; *p >= 0; p++)
        listed |= (guint) *p == i;
      if (got != (listed ? in : out))
        g_error ("blk.%u.%s: %s, expected %s", i, what, smelt_ggml_type_get_name (got),
                 smelt_ggml_type_get_name (listed ? in : out));
    }
}

static void
assert_all_layers (Model         *m,
                   const char    *what,
                   SmeltGgmlType  type)
{
  static const int none[] = { -1 };

  assert_layers (m, what, none, type, type);
}

static void
assert_norms_f32 (Model *m)
{
  for (guint i = 0; i < m->tensors->len; i++)
    {
      const SmeltGgufMixTensor *t = &g_array_index (m->tensors, SmeltGgufMixTensor, i);

      if (t->ne[1] == 1)
        g_assert_cmpint (m->types[i], ==, T (F32));
    }
}

/* ------------------------------------------------------------------ */
/* Llama-3-8B: 32 layers, 32 heads, 8 KV heads (GQA 4), untied         */

static Model *
llama3_8b (void)
{
  return dense_model ("llama", 32, 32, 8, 4096, 14336, 128256, FALSE, FALSE);
}

/* use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2 */
static const int more_bits_32[] = { 0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31, -1 };

static void
test_llama3_q4_k_m (void)
{
  g_autoptr(Model) m = llama3_8b ();

  choose_ok (m, "Q4_K_M");
  assert_type (m, "output.weight", T (Q6_K));
  assert_type (m, "token_embd.weight", T (Q4_K));
  assert_layers (m, "attn_v", more_bits_32, T (Q6_K), T (Q4_K));
  assert_layers (m, "ffn_down", more_bits_32, T (Q6_K), T (Q4_K));
  assert_all_layers (m, "attn_q", T (Q4_K));
  assert_all_layers (m, "attn_k", T (Q4_K));
  assert_all_layers (m, "attn_output", T (Q4_K));
  assert_all_layers (m, "ffn_gate", T (Q4_K));
  assert_all_layers (m, "ffn_up", T (Q4_K));
  assert_norms_f32 (m);

  /* Q5_K_M: the same layers, Q5_K elsewhere */
  choose_ok (m, "q5_k_m");
  assert_layers (m, "attn_v", more_bits_32, T (Q6_K), T (Q5_K));
  assert_layers (m, "ffn_down", more_bits_32, T (Q6_K), T (Q5_K));
  assert_all_layers (m, "attn_output", T (Q5_K));
  assert_type (m, "token_embd.weight", T (Q5_K));
  assert_type (m, "output.weight", T (Q6_K));
}

static void
test_llama3_q3_k (void)
{
  g_autoptr(Model) m = llama3_8b ();
  static const int first_two[] = { 0, 1, -1 };

  /* attn_v: the first two Q5_K; ffn_down: i < 32/16 = 2 Q5_K */
  choose_ok (m, "Q3_K_M");
  assert_layers (m, "attn_v", first_two, T (Q5_K), T (Q4_K));
  assert_layers (m, "ffn_down", first_two, T (Q5_K), T (Q4_K));
  assert_all_layers (m, "attn_output", T (Q4_K));
  assert_all_layers (m, "attn_q", T (Q3_K));
  assert_all_layers (m, "ffn_up", T (Q3_K));
  assert_type (m, "token_embd.weight", T (Q3_K));
  assert_type (m, "output.weight", T (Q6_K));

  choose_ok (m, "Q3_K_L");
  assert_all_layers (m, "attn_v", T (Q5_K));
  assert_all_layers (m, "ffn_down", T (Q5_K));
  assert_all_layers (m, "attn_output", T (Q5_K));
  assert_all_layers (m, "attn_k", T (Q3_K));

  choose_ok (m, "Q3_K_S");
  assert_all_layers (m, "attn_v", T (Q3_K));
  assert_all_layers (m, "ffn_down", T (Q3_K));
  assert_all_layers (m, "attn_output", T (Q3_K));
  assert_type (m, "output.weight", T (Q6_K));
}

static void
test_llama3_q4_k_s (void)
{
  g_autoptr(Model) m = llama3_8b ();
  static const int first_four[] = { 0, 1, 2, 3, -1 };

  /* attn_v: i_attention_wv < 4; ffn_down: i < 32/8 */
  choose_ok (m, "Q4_K_S");
  assert_layers (m, "attn_v", first_four, T (Q5_K), T (Q4_K));
  assert_layers (m, "ffn_down", first_four, T (Q5_K), T (Q4_K));
  assert_all_layers (m, "attn_output", T (Q4_K));
}

static void
test_q2_k_gqa (void)
{
  g_autoptr(Model) m = llama3_8b ();
  g_autoptr(Model) mha = dense_model ("llama", 32, 32, 32, 4096, 11008, 32000, FALSE, FALSE);

  /* GQA 4: attn_v Q4_K */
  choose_ok (m, "Q2_K");
  assert_all_layers (m, "attn_v", T (Q4_K));
  assert_all_layers (m, "ffn_down", T (Q3_K));
  assert_all_layers (m, "attn_output", T (Q3_K));
  assert_all_layers (m, "attn_q", T (Q2_K));
  assert_all_layers (m, "ffn_gate", T (Q2_K));
  assert_type (m, "token_embd.weight", T (Q2_K));
  assert_type (m, "output.weight", T (Q6_K));

  /* no GQA (Llama-2-7B): attn_v Q3_K */
  choose_ok (mha, "Q2_K");
  assert_all_layers (mha, "attn_v", T (Q3_K));

  /* GQA 2 is below the threshold */
  mha->hp.n_head_kv = 16;
  choose_ok (mha, "Q2_K");
  assert_all_layers (mha, "attn_v", T (Q3_K));
}

static void
test_legacy_and_plain (void)
{
  g_autoptr(Model) m = llama3_8b ();
  const char *legacy[] = { "Q4_0", "Q4_1", "Q5_0", "Q5_1" };
  const SmeltGgmlType legacy_type[] = { T (Q4_0), T (Q4_1), T (Q5_0), T (Q5_1) };

  for (gsize k = 0; k < G_N_ELEMENTS (legacy); k++)
    {
      choose_ok (m, legacy[k]);
      /* only the output changes (no importance matrix: no Q4_1 ffn_down) */
      assert_type (m, "output.weight", T (Q6_K));
      assert_type (m, "token_embd.weight", legacy_type[k]);
      assert_all_layers (m, "attn_v", legacy_type[k]);
      assert_all_layers (m, "ffn_down", legacy_type[k]);
      assert_norms_f32 (m);
    }

  choose_ok (m, "Q8_0");
  assert_type (m, "output.weight", T (Q8_0));
  assert_type (m, "token_embd.weight", T (Q8_0));
  assert_all_layers (m, "attn_v", T (Q8_0));

  choose_ok (m, "Q6_K");
  assert_all_layers (m, "attn_v", T (Q6_K));
  assert_all_layers (m, "ffn_down", T (Q6_K));
  assert_type (m, "output.weight", T (Q6_K));

  choose_ok (m, "Q5_K_S");
  assert_all_layers (m, "attn_v", T (Q5_K));
  assert_all_layers (m, "ffn_down", T (Q5_K));

  /* F16/BF16/F32: no mixture; norms keep their F32 */
  choose_ok (m, "F16");
  assert_type (m, "output.weight", T (F16));
  assert_all_layers (m, "attn_v", T (F16));
  assert_norms_f32 (m);
  choose_ok (m, "bf16");
  assert_type (m, "token_embd.weight", T (BF16));
  choose_ok (m, "F32");
  assert_all_layers (m, "ffn_down", T (F32));
}

/* ------------------------------------------------------------------ */
/* 70B                                                                 */

static void
test_70b (void)
{
  g_autoptr(Model) m = dense_model ("llama", 80, 64, 8, 8192, 28672, 128256, FALSE, FALSE);
  /* use_more_bits(i, 80): i < 10, i >= 70, or (i - 10) % 3 == 2 */
  static const int more_bits_80[] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51,
    54, 57, 60, 63, 66, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, -1 };
  g_autoptr(Model) m65 = dense_model ("llama", 80, 64, 64, 8192, 22016, 32000, FALSE, FALSE);
  g_autoptr(Model) qwen = dense_model ("qwen2", 80, 64, 64, 8192, 29568, 152064, FALSE, TRUE);

  /* the attn_v that would be Q4_K becomes Q5_K; ffn_down is not touched */
  choose_ok (m, "Q4_K_M");
  assert_layers (m, "attn_v", more_bits_80, T (Q6_K), T (Q5_K));
  assert_layers (m, "ffn_down", more_bits_80, T (Q6_K), T (Q4_K));
  choose_ok (m, "Q3_K_S");
  assert_all_layers (m, "attn_v", T (Q5_K));
  assert_all_layers (m, "attn_q", T (Q3_K));
  /* Q2_K's Q4_K (GQA 8) too */
  choose_ok (m, "Q2_K");
  assert_all_layers (m, "attn_v", T (Q5_K));
  /* Q5_K_S: already Q5_K, nothing to raise */
  choose_ok (m, "Q6_K");
  assert_all_layers (m, "attn_v", T (Q6_K));

  /* 80 llama layers without GQA are LLaMA-65B, not 70B */
  choose_ok (m65, "Q3_K_S");
  assert_all_layers (m65, "attn_v", T (Q3_K));

  /* qwen2's loader calls every 80-layer model 70B, GQA or not */
  choose_ok (qwen, "Q3_K_S");
  assert_all_layers (qwen, "attn_v", T (Q5_K));
  qwen->hp.n_layer_nextn = 1;   /* 79 layers left: not 70B */
  choose_ok (qwen, "Q3_K_S");
  assert_all_layers (qwen, "attn_v", T (Q3_K));
}

/* ------------------------------------------------------------------ */
/* Qwen2-0.5B: hidden 896 = 3.5·256, ffn 4864 = 19·256, tied            */

static void
test_qwen2_896 (void)
{
  g_autoptr(Model) m = dense_model ("qwen2", 24, 14, 2, 896, 4864, 151936, TRUE, TRUE);
  /* use_more_bits(i, 24): i < 3, i >= 21, or (i - 3) % 3 == 2 */
  static const int more_bits_24[] = { 0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23, -1 };

  choose_ok (m, "Q4_K_M");
  /* tied: the embedding is the output; 896 % 256 → Q8_0 directly */
  assert_type (m, "token_embd.weight", T (Q8_0));
  /* rows of 896: Q4_K → Q5_0, Q6_K → Q8_0 */
  assert_layers (m, "attn_v", more_bits_24, T (Q8_0), T (Q5_0));
  assert_all_layers (m, "attn_q", T (Q5_0));
  assert_all_layers (m, "attn_k", T (Q5_0));
  assert_all_layers (m, "attn_output", T (Q5_0));
  assert_all_layers (m, "ffn_gate", T (Q5_0));
  assert_all_layers (m, "ffn_up", T (Q5_0));
  /* rows of 4864 split into 256-blocks */
  assert_layers (m, "ffn_down", more_bits_24, T (Q6_K), T (Q4_K));
  assert_norms_f32 (m);
  assert_type (m, "blk.3.attn_q.bias", T (F32));

  /* Q5_K → Q5_1; Q3_K → Q4_0 (this llama.cpp; IQ4_NL in older ones) */
  choose_ok (m, "Q5_K_S");
  assert_all_layers (m, "attn_q", T (Q5_1));
  assert_all_layers (m, "ffn_down", T (Q5_K));
  choose_ok (m, "Q3_K_M");
  assert_all_layers (m, "attn_q", T (Q4_0));
  assert_layers (m, "attn_v", (const int[]) { 0, 1, -1 }, T (Q5_1), T (Q5_0));
  assert_all_layers (m, "attn_output", T (Q5_0));
  assert_type (m, "token_embd.weight", T (Q8_0));

  /* Q2_K, GQA 7: attn_v Q4_K → Q5_0; ffn_down Q3_K fits */
  choose_ok (m, "Q2_K");
  assert_all_layers (m, "attn_v", T (Q5_0));
  assert_all_layers (m, "ffn_down", T (Q3_K));
  assert_all_layers (m, "attn_output", T (Q4_0));

  /* Q4_0: the output rule checks 896 % 32, picks Q6_K, which falls back */
  choose_ok (m, "Q4_0");
  assert_type (m, "token_embd.weight", T (Q8_0));
  assert_all_layers (m, "attn_q", T (Q4_0));
}

/* rows that are not a multiple of 32 end as F16 */
static void
test_odd_rows (void)
{
  g_autoptr(Model) m = dense_model ("llama", 2, 2, 2, 100, 200, 300, FALSE, FALSE);

  choose_ok (m, "Q4_K_M");
  assert_all_layers (m, "attn_q", T (F16));
  assert_all_layers (m, "ffn_down", T (F16));
  assert_type (m, "output.weight", T (F16));
  choose_ok (m, "Q8_0");
  assert_all_layers (m, "attn_q", T (F16));
  assert_type (m, "token_embd.weight", T (F16));
  choose_ok (m, "F16");
  assert_all_layers (m, "attn_q", T (F16));
}

/* ------------------------------------------------------------------ */
/* Tied embeddings, order, what is converted                          */

static void
test_tied (void)
{
  g_autoptr(Model) untied = dense_model ("llama", 16, 32, 8, 2048, 8192, 128256, FALSE, FALSE);
  g_autoptr(Model) tied = dense_model ("llama", 16, 32, 8, 2048, 8192, 128256, TRUE, FALSE);

  choose_ok (untied, "Q4_K_M");
  assert_type (untied, "token_embd.weight", T (Q4_K));
  choose_ok (tied, "Q4_K_M");
  assert_type (tied, "token_embd.weight", T (Q6_K));
  choose_ok (tied, "Q2_K");
  assert_type (tied, "token_embd.weight", T (Q6_K));
  choose_ok (tied, "Q8_0");
  assert_type (tied, "token_embd.weight", T (Q8_0));
}

static void
test_order (void)
{
  const char *names[] = {
    "token_embd.weight", "blk.10.attn_v.weight", "blk.2.ffn_down.weight", "output.weight",
    "blk.2.attn_v.weight", "blk.1.attn_v.weight", "output_norm.weight", "blk.0.attn_v.weight",
    "rope_freqs.weight", "blk.1.attn_k.weight",
  };
  const char *want[] = {
    "output.weight", "output_norm.weight", "rope_freqs.weight", "token_embd.weight",
    "blk.0.attn_v.weight", "blk.1.attn_k.weight", "blk.1.attn_v.weight",
    "blk.2.attn_v.weight", "blk.2.ffn_down.weight", "blk.10.attn_v.weight",
  };
  SmeltGgufMixTensor t[G_N_ELEMENTS (names)];

  for (gsize i = 0; i < G_N_ELEMENTS (names); i++)
    t[i] = (SmeltGgufMixTensor) { names[i], { 64, 64, 1, 1 }, T (F32) };
  smelt_gguf_mixture_sort (t, G_N_ELEMENTS (t));
  for (gsize i = 0; i < G_N_ELEMENTS (want); i++)
    g_assert_cmpstr (t[i].name, ==, want[i]);

  g_assert_cmpint (smelt_gguf_mixture_compare_names ("blk.9.x", "blk.10.x"), <, 0);
  g_assert_cmpint (smelt_gguf_mixture_compare_names ("blk.10.a", "blk.10.b"), <, 0);
  g_assert_cmpint (smelt_gguf_mixture_compare_names ("zzz", "blk.0.a"), <, 0);
  g_assert_cmpint (smelt_gguf_mixture_compare_names ("blk.x.a", "blk.0.a"), <, 0);
  g_assert_cmpint (smelt_gguf_mixture_compare_names ("a", "a"), ==, 0);
}

static int
compare_by_name (gconstpointer a,
                 gconstpointer b)
{
  const SmeltGgufMixTensor *ta = *(SmeltGgufMixTensor * const *) a;
  const SmeltGgufMixTensor *tb = *(SmeltGgufMixTensor * const *) b;

  return strcmp (ta->name, tb->name);
}

/* The counters run in layer order, whatever order the tensors come in:
 * names sorted as strings put blk.10 before blk.2. */
static void
test_counter_order (void)
{
  g_autoptr(Model) m = dense_model ("llama", 16, 32, 8, 2048, 8192, 128256, FALSE, FALSE);
  g_autoptr(Model) shuffled = model_new ("llama", 32, 8, 16);
  static const int first_four[] = { 0, 1, 2, 3, -1 };
  g_autoptr(GPtrArray) sorted = g_ptr_array_new ();

  for (guint i = 0; i < m->tensors->len; i++)
    g_ptr_array_add (sorted, &g_array_index (m->tensors, SmeltGgufMixTensor, i));
  g_ptr_array_sort (sorted, compare_by_name);
  for (guint i = 0; i < sorted->len; i++)
    {
      const SmeltGgufMixTensor *t = g_ptr_array_index (sorted, i);
      add3 (shuffled, t->name, t->ne[0], t->ne[1], t->ne[2], t->type);
    }
  g_assert_cmpstr (g_array_index (shuffled->tensors, SmeltGgufMixTensor, 0).name, ==,
                   "blk.0.attn_k.weight");
  choose_ok (shuffled, "Q4_K_S");
  assert_layers (shuffled, "attn_v", first_four, T (Q5_K), T (Q4_K));
  /* ffn_down i < 16/8 */
  assert_layers (shuffled, "ffn_down", (const int[]) { 0, 1, -1 }, T (Q5_K), T (Q4_K));
}

static void
test_allows (void)
{
  const guint64 mat[4] = { 64, 64, 1, 1 };
  const guint64 vec[4] = { 64, 1, 1, 1 };
  const guint64 col[4] = { 1, 64, 1, 1 };
  const guint64 stack[4] = { 64, 64, 8, 1 };

  g_assert_true (smelt_gguf_mixture_allows_quantization ("blk.0.attn_q.weight", mat));
  g_assert_true (smelt_gguf_mixture_allows_quantization ("blk.0.ffn_down_exps.weight", stack));
  g_assert_true (smelt_gguf_mixture_allows_quantization ("blk.0.attn_q.weight", col));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.attn_q.weight", vec));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.attn_q.bias", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.attn_norm.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.ffn_gate_inp.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("position_embd.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("token_types.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.ssm_conv1d.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.time_mix_w1.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.attn_rel_b.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("v.position_embd.weight", mat));
  g_assert_true (smelt_gguf_mixture_allows_quantization ("blk.0.weight_b.weight", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("blk.0.weight.b", mat));
  /* llama.cpp's unsigned "ends with weight" test also passes 5-byte names */
  g_assert_true (smelt_gguf_mixture_allows_quantization ("abcde", mat));
  g_assert_false (smelt_gguf_mixture_allows_quantization ("abcd", mat));
}

/* ------------------------------------------------------------------ */
/* MoE                                                                 */

static void
test_moe (void)
{
  g_autoptr(Model) m = model_new ("llama", 32, 8, 2);
  g_autoptr(Model) bad = model_new ("llama", 32, 8, 2);
  g_autoptr(GError) error = NULL;
  const SmeltGgufFtype *ft = smelt_gguf_mixture_lookup_ftype ("Q4_K_M");
  SmeltGgmlType types[2];

  m->hp.n_expert = 8;
  add (m, "token_embd.weight", 4096, 32000);
  for (guint i = 0; i < 2; i++)
    {
      addf (m, 4096, 4096, "blk.%u.attn_q.weight", i);
      addf (m, 4096, 1024, "blk.%u.attn_k.weight", i);
      addf (m, 4096, 1024, "blk.%u.attn_v.weight", i);
      addf (m, 4096, 4096, "blk.%u.attn_output.weight", i);
      addf (m, 4096, 8, "blk.%u.ffn_gate_inp.weight", i);
      {
        g_autofree char *d = g_strdup_printf ("blk.%u.ffn_down_exps.weight", i);
        add3 (m, d, 14336, 4096, 8, T (F32));
      }
    }
  add (m, "output.weight", 4096, 32000);

  /* 8 experts: attn_v and attn_k Q8_0; attn_output Q5_K for Q4_K_M;
   * ffn_down by the layer in the name: use_more_bits(i, 2) is i ≥ 1 */
  choose_ok (m, "Q4_K_M");
  assert_all_layers (m, "attn_v", T (Q8_0));
  assert_all_layers (m, "attn_k", T (Q8_0));
  assert_all_layers (m, "attn_output", T (Q5_K));
  assert_all_layers (m, "attn_q", T (Q4_K));
  assert_all_layers (m, "ffn_gate_inp", T (F32));
  assert_type (m, "blk.0.ffn_down_exps.weight", T (Q4_K));
  assert_type (m, "blk.1.ffn_down_exps.weight", T (Q6_K));

  /* an expert tensor must name its layer */
  bad->hp.n_expert = 8;
  add3 (bad, "ffn_down_exps.weight", 256, 256, 8, T (F32));
  add3 (bad, "blk.7.ffn_down_exps.weight", 256, 256, 8, T (F32));
  g_assert_false (smelt_gguf_mixture_choose (ft, &bad->hp, (SmeltGgufMixTensor *) bad->tensors->data,
                                             1, types, &error));
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "ffn_down_exps.weight"));
  g_clear_error (&error);
  /* … and the layer must exist */
  g_assert_false (smelt_gguf_mixture_choose (ft, &bad->hp,
                                             &g_array_index (bad->tensors, SmeltGgufMixTensor, 1),
                                             1, types, &error));
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "layer 7"));
}

/* ------------------------------------------------------------------ */
/* Failures llama-quantize has too                                    */

static void
test_refusals (void)
{
  g_autoptr(Model) m = llama3_8b ();
  g_autoptr(Model) q = model_new ("llama", 4, 4, 1);
  g_autoptr(GError) error = NULL;
  SmeltGgmlType types[2];
  g_autofree SmeltGgmlType *all = g_new0 (SmeltGgmlType, m->tensors->len);
  const char *needs[] = { "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M",
                          "IQ3_XXS", "IQ3_XS", "Q2_K_S" };

  /* without an importance matrix these fail on some tensor */
  for (gsize i = 0; i < G_N_ELEMENTS (needs); i++)
    {
      const SmeltGgufFtype *ft = smelt_gguf_mixture_lookup_ftype (needs[i]);

      g_assert_nonnull (ft);
      g_assert_cmpint (ft->support, ==, SMELT_GGUF_FTYPE_NEEDS_IMATRIX);
      g_assert_false (smelt_gguf_mixture_choose (ft, &m->hp, (SmeltGgufMixTensor *) m->tensors->data,
                                                 m->tensors->len, all, &error));
      g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
      g_assert_nonnull (strstr (error->message, "importance matrix"));
      g_clear_error (&error);
    }
  /* the IQ types llama-quantize makes without one: the rules still work */
  choose_ok (m, "IQ4_NL");
  assert_all_layers (m, "attn_v", T (Q5_K));       /* GQA 4 */
  assert_layers (m, "ffn_down", (const int[]) { 0, 1, 2, 3, -1 }, T (Q5_K), T (IQ4_NL));
  assert_type (m, "output.weight", T (Q6_K));
  choose_ok (m, "IQ3_M");
  assert_all_layers (m, "attn_v", T (Q4_K));
  assert_all_layers (m, "attn_output", T (Q4_K));
  assert_all_layers (m, "attn_q", T (IQ3_S));

  /* a quantized input is not requantized */
  add3 (q, "blk.0.attn_q.weight", 256, 256, 1, T (Q8_0));
  add3 (q, "blk.0.attn_k.weight", 256, 256, 1, T (F16));
  g_assert_false (smelt_gguf_mixture_choose (smelt_gguf_mixture_lookup_ftype ("Q4_K_M"), &q->hp,
                                             (SmeltGgufMixTensor *) q->tensors->data, 2, types, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "blk.0.attn_q.weight"));
  g_clear_error (&error);
  /* … unless it already has the chosen type */
  choose_ok (q, "Q8_0");
  assert_type (q, "blk.0.attn_q.weight", T (Q8_0));
  assert_type (q, "blk.0.attn_k.weight", T (Q8_0));

  /* a file type smelt has no ggml type for */
  g_assert_false (smelt_gguf_mixture_choose (smelt_gguf_mixture_lookup_ftype ("Q1_0"), &q->hp,
                                             (SmeltGgufMixTensor *) q->tensors->data, 2, types, &error));
  g_assert_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED);
}

/* ------------------------------------------------------------------ */
/* Names                                                               */

static void
test_names (void)
{
  static const struct {
    const char *name;
    const char *canonical;
    guint32     ftype;
    SmeltGgmlType type;
  } ok[] = {
    { "Q4_0", "Q4_0", 2, T (Q4_0) },       { "q4_1", "Q4_1", 3, T (Q4_1) },
    { "Q5_0", "Q5_0", 8, T (Q5_0) },       { "q5_1", "Q5_1", 9, T (Q5_1) },
    { "q8_0", "Q8_0", 7, T (Q8_0) },       { "Q2_K", "Q2_K", 10, T (Q2_K) },
    { "q3_k_s", "Q3_K_S", 11, T (Q3_K) },  { "Q3_K_M", "Q3_K_M", 12, T (Q3_K) },
    { "Q3_k_L", "Q3_K_L", 13, T (Q3_K) },  { "Q4_K_S", "Q4_K_S", 14, T (Q4_K) },
    { "q4_k_m", "Q4_K_M", 15, T (Q4_K) },  { "Q5_K_S", "Q5_K_S", 16, T (Q5_K) },
    { "Q5_K_M", "Q5_K_M", 17, T (Q5_K) },  { "q6_k", "Q6_K", 18, T (Q6_K) },
    { "f16", "F16", 1, T (F16) },          { "BF16", "BF16", 32, T (BF16) },
    { "F32", "F32", 0, T (F32) },
    /* llama-quantize's aliases */
    { "q3_k", "Q3_K_M", 12, T (Q3_K) },    { "Q4_K", "Q4_K_M", 15, T (Q4_K) },
    { "q5_k", "Q5_K_M", 17, T (Q5_K) },
    /* Unsloth's */
    { "not_quantized", "F16", 1, T (F16) },
    { "fast_quantized", "Q8_0", 7, T (Q8_0) },
    { "QUANTIZED", "Q4_K_M", 15, T (Q4_K) },
  };
  static const struct {
    const char *name;
    const char *says;
  } bad[] = {
    { "iq2_xxs", "needs an importance matrix" }, { "IQ2_XS", "needs an importance matrix" },
    { "IQ2_S", "needs an importance matrix" },   { "iq2_m", "needs an importance matrix" },
    { "IQ1_S", "needs an importance matrix" },   { "IQ1_M", "needs an importance matrix" },
    { "IQ3_XXS", "needs an importance matrix" }, { "IQ3_XS", "needs an importance matrix" },
    { "q2_k_s", "needs an importance matrix" },
    { "IQ3_S", "not supported yet" },  { "iq3_m", "not supported yet" },
    { "IQ4_NL", "not supported yet" }, { "IQ4_XS", "not supported yet" },
    { "TQ1_0", "not supported yet" },  { "tq2_0", "not supported yet" },
    { "MXFP4_MOE", "not supported yet" }, { "Q1_0", "not supported yet" },
    { "Q2_0", "not supported yet" },
    { "q2_k_l", "not supported yet" }, { "Q3_K_XS", "IQ3_XS" }, { "COPY", "not supported yet" },
    { "q4_k_x", "unknown GGUF type" }, { "", "unknown GGUF type" }, { "q8", "unknown GGUF type" },
  };
  gsize n;
  const SmeltGgufFtype *all = smelt_gguf_mixture_ftypes (&n);
  guint n_supported = 0;

  for (gsize i = 0; i < G_N_ELEMENTS (ok); i++)
    {
      g_autoptr(GError) error = NULL;
      const SmeltGgufFtype *ft = NULL;

      g_assert_true (smelt_gguf_mixture_parse_ftype (ok[i].name, &ft, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (ft->name, ==, ok[i].canonical);
      g_assert_cmpuint (ft->ftype, ==, ok[i].ftype);
      g_assert_cmpint (ft->default_type, ==, ok[i].type);
      g_assert_true (ft->has_default);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      const SmeltGgufFtype *ft = NULL;

      g_assert_false (smelt_gguf_mixture_parse_ftype (bad[i].name, &ft, &error));
      g_assert_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE);
      g_assert_null (ft);
      if (strstr (error->message, bad[i].says) == NULL)
        g_error ("%s: “%s” lacks “%s”", bad[i].name, error->message, bad[i].says);
      /* and names what smelt does write */
      g_assert_nonnull (strstr (error->message, "q4_k_m"));
    }
  g_assert_null (smelt_gguf_mixture_lookup_ftype ("bogus"));
  g_assert_null (smelt_gguf_mixture_lookup_ftype (NULL));
  g_assert_cmpuint (smelt_gguf_mixture_lookup_ftype ("iq3_xs")->ftype, ==, 22);
  g_assert_cmpint (smelt_gguf_mixture_lookup_ftype ("iq3_xs")->default_type, ==, T (IQ3_S));
  g_assert_cmpint (smelt_gguf_mixture_lookup_ftype ("IQ2_S")->default_type, ==, T (IQ2_XS));
  g_assert_cmpint (smelt_gguf_mixture_lookup_ftype ("IQ2_M")->default_type, ==, T (IQ2_S));

  /* llama_ftype numbers are unique; exactly the 17 types are supported */
  for (gsize i = 0; i < n; i++)
    {
      for (gsize j = i + 1; j < n; j++)
        g_assert_cmpuint (all[i].ftype, !=, all[j].ftype);
      n_supported += all[i].support == SMELT_GGUF_FTYPE_SUPPORTED;
    }
  g_assert_cmpuint (n_supported, ==, 17);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/gguf-mixture/names", test_names);
  g_test_add_func ("/gguf-mixture/order", test_order);
  g_test_add_func ("/gguf-mixture/allows", test_allows);
  g_test_add_func ("/gguf-mixture/llama3-q4_k_m", test_llama3_q4_k_m);
  g_test_add_func ("/gguf-mixture/llama3-q3_k", test_llama3_q3_k);
  g_test_add_func ("/gguf-mixture/llama3-q4_k_s", test_llama3_q4_k_s);
  g_test_add_func ("/gguf-mixture/q2_k-gqa", test_q2_k_gqa);
  g_test_add_func ("/gguf-mixture/legacy-and-plain", test_legacy_and_plain);
  g_test_add_func ("/gguf-mixture/70b", test_70b);
  g_test_add_func ("/gguf-mixture/qwen2-896", test_qwen2_896);
  g_test_add_func ("/gguf-mixture/odd-rows", test_odd_rows);
  g_test_add_func ("/gguf-mixture/tied", test_tied);
  g_test_add_func ("/gguf-mixture/counter-order", test_counter_order);
  g_test_add_func ("/gguf-mixture/moe", test_moe);
  g_test_add_func ("/gguf-mixture/refusals", test_refusals);

  return g_test_run ();
}
