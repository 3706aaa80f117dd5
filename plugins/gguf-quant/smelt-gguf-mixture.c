/* smelt-gguf-mixture.c: llama-quantize's file types and per-tensor types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A restatement of how llama_model_quantize() (llama.cpp de3ff81,
 * src/llama-quant.cpp) picks the type of each tensor for a file type with
 * its default parameters: which tensors it converts at all
 * (tensor_allows_quantization), the per-category rules and their layer
 * counters (llama_tensor_get_type_impl), and the fallback when a row does
 * not split into blocks of the chosen type (tensor_type_fallback). The
 * file type names are tools/quantize/quantize.cpp's QUANT_OPTIONS plus
 * Unsloth's aliases (unsloth/save.py ALLOWED_QUANTS).
 *
 * Nothing here reads tensor data: the decision depends only on names,
 * shapes, input types and five hyperparameters, so it is a pure function
 * that tests can compare with llama.cpp's own choice.
 */
#include "smelt-gguf-mixture.h"

#include <stdlib.h>
#include <string.h>

#define T(x) SMELT_GGML_TYPE_##x

/* llama_ftype numbers (include/llama.h) */
enum {
  FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8,
  FT_Q5_1 = 9, FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13,
  FT_Q4_K_S = 14, FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18,
  FT_IQ2_XXS = 19, FT_IQ2_XS = 20, FT_Q2_K_S = 21, FT_IQ3_XS = 22,
  FT_IQ3_XXS = 23, FT_IQ1_S = 24, FT_IQ4_NL = 25, FT_IQ3_S = 26, FT_IQ3_M = 27,
  FT_IQ2_S = 28, FT_IQ2_M = 29, FT_IQ4_XS = 30, FT_IQ1_M = 31, FT_BF16 = 32,
  FT_TQ1_0 = 36, FT_TQ2_0 = 37, FT_MXFP4_MOE = 38, FT_Q1_0 = 40, FT_Q2_0 = 41,
};

#define OK      SMELT_GGUF_FTYPE_SUPPORTED
#define IMATRIX SMELT_GGUF_FTYPE_NEEDS_IMATRIX
#define NOT_YET SMELT_GGUF_FTYPE_UNSUPPORTED

static const char imatrix_note[] = "its low-bit tensors need an importance matrix";

/* llama_ftype order. Q2_K_S and IQ3_XS default to types llama-quantize
 * accepts without an importance matrix, but their rules pick Q2_K (in a
 * Q2_K_S file) or IQ3_XXS tensors, which it refuses without one. */
static const SmeltGgufFtype ftypes[] = {
  { "F32",       FT_F32,       T (F32),     TRUE,  OK,      NULL },
  { "F16",       FT_F16,       T (F16),     TRUE,  OK,      NULL },
  { "Q4_0",      FT_Q4_0,      T (Q4_0),    TRUE,  OK,      NULL },
  { "Q4_1",      FT_Q4_1,      T (Q4_1),    TRUE,  OK,      NULL },
  { "Q8_0",      FT_Q8_0,      T (Q8_0),    TRUE,  OK,      NULL },
  { "Q5_0",      FT_Q5_0,      T (Q5_0),    TRUE,  OK,      NULL },
  { "Q5_1",      FT_Q5_1,      T (Q5_1),    TRUE,  OK,      NULL },
  { "Q2_K",      FT_Q2_K,      T (Q2_K),    TRUE,  OK,      NULL },
  { "Q3_K_S",    FT_Q3_K_S,    T (Q3_K),    TRUE,  OK,      NULL },
  { "Q3_K_M",    FT_Q3_K_M,    T (Q3_K),    TRUE,  OK,      NULL },
  { "Q3_K_L",    FT_Q3_K_L,    T (Q3_K),    TRUE,  OK,      NULL },
  { "Q4_K_S",    FT_Q4_K_S,    T (Q4_K),    TRUE,  OK,      NULL },
  { "Q4_K_M",    FT_Q4_K_M,    T (Q4_K),    TRUE,  OK,      NULL },
  { "Q5_K_S",    FT_Q5_K_S,    T (Q5_K),    TRUE,  OK,      NULL },
  { "Q5_K_M",    FT_Q5_K_M,    T (Q5_K),    TRUE,  OK,      NULL },
  { "Q6_K",      FT_Q6_K,      T (Q6_K),    TRUE,  OK,      NULL },
  { "IQ2_XXS",   FT_IQ2_XXS,   T (IQ2_XXS), TRUE,  IMATRIX, imatrix_note },
  { "IQ2_XS",    FT_IQ2_XS,    T (IQ2_XS),  TRUE,  IMATRIX, imatrix_note },
  { "Q2_K_S",    FT_Q2_K_S,    T (Q2_K),    TRUE,  IMATRIX, imatrix_note },
  { "IQ3_XS",    FT_IQ3_XS,    T (IQ3_S),   TRUE,  IMATRIX, imatrix_note },
  { "IQ3_XXS",   FT_IQ3_XXS,   T (IQ3_XXS), TRUE,  IMATRIX, imatrix_note },
  { "IQ1_S",     FT_IQ1_S,     T (IQ1_S),   TRUE,  IMATRIX, imatrix_note },
  { "IQ4_NL",    FT_IQ4_NL,    T (IQ4_NL),  TRUE,  NOT_YET, "smelt has no IQ4_NL encoder" },
  { "IQ3_S",     FT_IQ3_S,     T (IQ3_S),   TRUE,  NOT_YET, "smelt has no IQ3_S encoder" },
  { "IQ3_M",     FT_IQ3_M,     T (IQ3_S),   TRUE,  NOT_YET, "smelt has no IQ3_S encoder" },
  { "IQ2_S",     FT_IQ2_S,     T (IQ2_XS),  TRUE,  IMATRIX, imatrix_note },
  { "IQ2_M",     FT_IQ2_M,     T (IQ2_S),   TRUE,  IMATRIX, imatrix_note },
  { "IQ4_XS",    FT_IQ4_XS,    T (IQ4_XS),  TRUE,  NOT_YET, "smelt has no IQ4_XS encoder" },
  { "IQ1_M",     FT_IQ1_M,     T (IQ1_M),   TRUE,  IMATRIX, imatrix_note },
  { "BF16",      FT_BF16,      T (BF16),    TRUE,  OK,      NULL },
  { "TQ1_0",     FT_TQ1_0,     T (TQ1_0),   TRUE,  NOT_YET, "ternary types are for ternary-trained models" },
  { "TQ2_0",     FT_TQ2_0,     T (TQ2_0),   TRUE,  NOT_YET, "ternary types are for ternary-trained models" },
  { "MXFP4_MOE", FT_MXFP4_MOE, T (MXFP4),   TRUE,  NOT_YET, "smelt has no MXFP4 encoder" },
  /* ggml types 41 and 42, which smelt's type table does not know */
  { "Q1_0",      FT_Q1_0,      T (F32),     FALSE, NOT_YET, "smelt does not know the Q1_0 type" },
  { "Q2_0",      FT_Q2_0,      T (F32),     FALSE, NOT_YET, "smelt does not know the Q2_0 type" },
};

static const struct {
  const char *alias;
  const char *name;
} aliases[] = {
  /* llama-quantize's own */
  { "Q3_K", "Q3_K_M" },
  { "Q4_K", "Q4_K_M" },
  { "Q5_K", "Q5_K_M" },
  /* Unsloth's quantization_method names (save_pretrained_gguf maps
   * not_quantized to f16 before it looks at the model's dtype) */
  { "not_quantized",  "F16" },
  { "fast_quantized", "Q8_0" },
  { "quantized",      "Q4_K_M" },
};

/* Names people meet that are no llama_ftype: a clear refusal. */
static const struct {
  const char *name;
  const char *why;
} other_names[] = {
  { "Q2_K_L",  "Unsloth's Q2_K_L is Q2_K with a Q8_0 output and token embedding, which needs per-tensor overrides" },
  { "Q3_K_XS", "Q3_K_XS is no longer a llama.cpp type (it became IQ3_XS, which needs an importance matrix)" },
  { "COPY",    "llama-quantize's COPY only copies tensors" },
};

const SmeltGgufFtype *
smelt_gguf_mixture_ftypes (gsize *n_out)
{
  *n_out = G_N_ELEMENTS (ftypes);
  return ftypes;
}

const SmeltGgufFtype *
smelt_gguf_mixture_lookup_ftype (const char *name)
{
  if (name == NULL)
    return NULL;
  for (gsize i = 0; i < G_N_ELEMENTS (aliases); i++)
    if (g_ascii_strcasecmp (name, aliases[i].alias) == 0)
      {
        name = aliases[i].name;
        break;
      }
  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    if (g_ascii_strcasecmp (name, ftypes[i].name) == 0)
      return &ftypes[i];
  return NULL;
}

/* "f32, f16, …, q6_k (q4_k = q4_k_m, …)", for error messages */
static char *
supported_names (void)
{
  GString *s = g_string_new (NULL);

  for (gsize i = 0; i < G_N_ELEMENTS (ftypes); i++)
    if (ftypes[i].support == SMELT_GGUF_FTYPE_SUPPORTED)
      {
        g_autofree char *lower = g_ascii_strdown (ftypes[i].name, -1);
        g_string_append_printf (s, "%s%s", s->len ? ", " : "", lower);
      }
  g_string_append (s, " and the aliases");
  for (gsize i = 0; i < G_N_ELEMENTS (aliases); i++)
    {
      g_autofree char *a = g_ascii_strdown (aliases[i].alias, -1);
      g_autofree char *n = g_ascii_strdown (aliases[i].name, -1);
      g_string_append_printf (s, "%s %s = %s", i ? "," : "", a, n);
    }
  return g_string_free (s, FALSE);
}

gboolean
smelt_gguf_mixture_parse_ftype (const char            *name,
                                const SmeltGgufFtype **out,
                                GError               **error)
{
  const SmeltGgufFtype *ft = smelt_gguf_mixture_lookup_ftype (name);
  g_autofree char *known = supported_names ();

  if (ft == NULL)
    {
      for (gsize i = 0; name != NULL && i < G_N_ELEMENTS (other_names); i++)
        if (g_ascii_strcasecmp (name, other_names[i].name) == 0)
          {
            g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                         "GGUF type “%s” is not supported yet: %s; smelt writes %s",
                         name, other_names[i].why, known);
            return FALSE;
          }
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "unknown GGUF type “%s”; smelt writes %s", name ? name : "", known);
      return FALSE;
    }
  switch (ft->support)
    {
    case SMELT_GGUF_FTYPE_SUPPORTED:
      *out = ft;
      return TRUE;
    case SMELT_GGUF_FTYPE_NEEDS_IMATRIX:
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "GGUF type “%s” (%s) needs an importance matrix (llama-quantize refuses "
                   "it without one), which smelt does not compute yet; smelt writes %s",
                   name, ft->name, known);
      return FALSE;
    case SMELT_GGUF_FTYPE_UNSUPPORTED:
    default:
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "GGUF type “%s” (%s) is not supported yet: %s; smelt writes %s",
                   name, ft->name, ft->note, known);
      return FALSE;
    }
}

/* ------------------------------------------------------------------ */
/* Order                                                               */

/* sscanf (name, "blk.%d.", &layer): the number after "blk." as strtol
 * reads it (so leading blanks and a sign are taken), stored into an int;
 * the trailing dot does not matter once the number matched. */
static gboolean
scan_layer (const char *name,
            int        *layer)
{
  const char *digits;
  char *end;
  long v;

  if (strncmp (name, "blk.", 4) != 0)
    return FALSE;
  digits = name + 4;
  v = strtol (digits, &end, 10);
  if (end == digits)
    return FALSE;
  *layer = (int) v;
  return TRUE;
}

static int
layer_of (const char *name)
{
  int layer = -1;

  scan_layer (name, &layer);
  return layer;
}

int
smelt_gguf_mixture_compare_names (const char *a,
                                  const char *b)
{
  int la = layer_of (a);
  int lb = layer_of (b);

  if (la != lb)
    return la < lb ? -1 : 1;
  /* std::string's operator<: bytes as unsigned char, like strcmp */
  return strcmp (a, b);
}

static int
compare_tensors (gconstpointer a,
                 gconstpointer b)
{
  return smelt_gguf_mixture_compare_names (((const SmeltGgufMixTensor *) a)->name,
                                           ((const SmeltGgufMixTensor *) b)->name);
}

void
smelt_gguf_mixture_sort (SmeltGgufMixTensor *tensors,
                         gsize               n_tensors)
{
  /* names are unique in a GGUF file, so stability does not matter */
  if (n_tensors > 1)
    qsort (tensors, n_tensors, sizeof *tensors, compare_tensors);
}

/* ------------------------------------------------------------------ */
/* Which tensors are converted                                         */

/* ggml_n_dims(): trailing dimensions of 1 do not count */
static guint
n_dims_of (const guint64 ne[4])
{
  for (int i = 3; i >= 1; i--)
    if (ne[i] > 1)
      return i + 1;
  return 1;
}

static gboolean
contains (const char *name,
          const char *part)
{
  return strstr (name, part) != NULL;
}

/* name.rfind("weight") == name.size() - 6, unsigned: also true for any
 * 5-byte name (both sides wrap to npos), which llama-quantize then treats
 * as a weight. */
static gboolean
ends_with_weight (const char *name)
{
  gsize len = strlen (name);
  const char *last = NULL;

  for (const char *p = strstr (name, "weight"); p != NULL; p = strstr (p + 1, "weight"))
    last = p;
  if (last == NULL)
    return len == 5;
  return (gsize) (last - name) == len - 6;
}

/* tensor_allows_quantization(), with params->only_copy false and
 * quantize_output_tensor true. */
gboolean
smelt_gguf_mixture_allows_quantization (const char    *name,
                                        const guint64  ne[4])
{
  /* small or special 2-D weights llama-quantize leaves alone */
  static const char * const kept[] = {
    "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight",
    "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight",
    "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
    "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight",
    "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
    "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
    ".patch_embd", ".patch_merger",
    "a.rvq.codebook", "mm.a.code_embd",
  };

  if (n_dims_of (ne) < 2 || !ends_with_weight (name))
    return FALSE;
  /* LLM_TN(arch)(POS_EMBD / TOKEN_TYPES, "weight"): the same for every arch */
  if (strcmp (name, "position_embd.weight") == 0 || strcmp (name, "token_types.weight") == 0)
    return FALSE;
  for (gsize i = 0; i < G_N_ELEMENTS (kept); i++)
    if (contains (name, kept[i]))
      return FALSE;
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* The rules                                                           */

typedef enum {
  CAT_TOKEN_EMBD,
  CAT_ATTN_Q,
  CAT_ATTN_V,
  CAT_ATTN_K,
  CAT_ATTN_QKV,
  CAT_ATTN_KV_B,
  CAT_ATTN_OUTPUT,
  CAT_FFN_UP,
  CAT_FFN_GATE,
  CAT_FFN_DOWN,
  CAT_OUTPUT,
  CAT_OTHER,
} Category;

/* tensor_get_category(): first match wins */
static Category
category_of (const char *name)
{
  if (strcmp (name, "output.weight") == 0)
    return CAT_OUTPUT;
  if (strcmp (name, "token_embd.weight") == 0 || strcmp (name, "per_layer_token_embd.weight") == 0)
    return CAT_TOKEN_EMBD;
  if (contains (name, "attn_qkv.weight"))
    return CAT_ATTN_QKV;
  if (contains (name, "attn_kv_b.weight"))
    return CAT_ATTN_KV_B;
  if (contains (name, "attn_v.weight"))
    return CAT_ATTN_V;
  if (contains (name, "attn_k.weight"))
    return CAT_ATTN_K;
  if (contains (name, "attn_q.weight"))
    return CAT_ATTN_Q;
  if (contains (name, "attn_output.weight"))
    return CAT_ATTN_OUTPUT;
  if (contains (name, "ffn_up"))
    return CAT_FFN_UP;
  if (contains (name, "ffn_gate"))
    return CAT_FFN_GATE;
  if (contains (name, "ffn_down"))
    return CAT_FFN_DOWN;
  return CAT_OTHER;
}

/* attn_v-like tensors are the most sensitive: they share the attn_v rule
 * and counter (so a fused attn_qkv follows it too) */
static gboolean
is_attn_v (Category c)
{
  return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B;
}

/* quantize_state_impl plus the model facts the rules read */
typedef struct {
  guint32   ftype;
  gboolean  falcon;
  gboolean  bailingmoe3;
  gboolean  is_70b;          /* model.type == LLM_TYPE_70B */
  guint     n_gqa;           /* hparams.n_gqa(0) */
  guint     n_expert;        /* hparams.n_expert, as stored */
  int       n_expert_min1;   /* std::max(1, n_expert) */
  gboolean  tied;            /* no output.weight: token_embd is the output */
  int       n_attention_wv, i_attention_wv;
  int       n_ffn_down, i_ffn_down;
  int       n_ffn_gate, i_ffn_gate;
  int       n_ffn_up, i_ffn_up;
} State;

static gboolean
use_more_bits (int i_layer,
               int n_layers)
{
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* LLM_TYPE_70B as each architecture's load_arch_hparams() sets it (only
 * these five ever do); n_layer here is hparams.n_layer(), i.e. without
 * the next-token-prediction layers. */
static gboolean
is_70b (const SmeltGgufMixHparams *hp)
{
  guint n_layer = hp->n_layer - MIN (hp->n_layer_nextn, hp->n_layer);

  if (g_strcmp0 (hp->arch, "llama") == 0 || g_strcmp0 (hp->arch, "llama-embed") == 0)
    return hp->n_expert != 8 && n_layer == 80 && hp->n_head != hp->n_head_kv;
  if (g_strcmp0 (hp->arch, "qwen2") == 0 || g_strcmp0 (hp->arch, "deci") == 0 ||
      g_strcmp0 (hp->arch, "olmo") == 0)
    return n_layer == 80;
  if (g_strcmp0 (hp->arch, "jais2") == 0)
    return n_layer == 68;
  return FALSE;
}

/* layer_info(): the counter for dense models; for MoE models the number
 * in the name, because expert tensors need not come in layer order. */
static gboolean
layer_info (State       *s,
            int          counter,
            int          n_layer,
            const char  *name,
            int         *i_layer,
            GError     **error)
{
  *i_layer = counter;
  if (s->n_expert_min1 <= 1)
    return TRUE;
  if (!scan_layer (name, i_layer))
    return g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                        "tensor “%s”: no layer number (blk.N.) in the name of a tensor "
                        "of a mixture-of-experts model", name), FALSE;
  if (*i_layer < 0 || *i_layer >= n_layer)
    return g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                        "tensor “%s”: layer %d is outside the model's %d layers",
                        name, *i_layer, n_layer), FALSE;
  return TRUE;
}

static gboolean
ftype_in (guint32 ftype,
          const guint32 *list,
          gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (list[i] == ftype)
      return TRUE;
  return FALSE;
}
#define FTYPE_IN(ft, ...) \
  ftype_in ((ft), (const guint32[]) { __VA_ARGS__ }, sizeof ((const guint32[]) { __VA_ARGS__ }) / sizeof (guint32))

/* the IQ1/IQ2 file types, which have a branch of their own */
static gboolean
is_iq1_iq2 (guint32 ft)
{
  return FTYPE_IN (ft, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ1_S, FT_IQ2_S, FT_IQ2_M, FT_IQ1_M);
}

static void
rule_output (State                    *s,
             const SmeltGgufMixTensor *t,
             SmeltGgmlType            *type)
{
  guint64 qk = smelt_ggml_type_get_block_size (*type);

  if (s->ftype == FT_MXFP4_MOE)
    *type = T (Q8_0);
  else if (s->falcon || t->ne[0] % qk != 0)
    *type = T (Q8_0);
  else if (FTYPE_IN (s->ftype, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ3_XXS, FT_IQ1_S, FT_IQ2_S, FT_IQ2_M, FT_IQ1_M))
    *type = T (Q5_K);
  else if (*type != T (Q8_0))
    *type = T (Q6_K);
}

static void
rule_token_embd (State         *s,
                 SmeltGgmlType *type)
{
  guint32 ft = s->ftype;

  if (FTYPE_IN (ft, FT_IQ2_XXS, FT_IQ2_XS, FT_IQ1_S, FT_IQ1_M))
    *type = T (Q2_K);
  else if (FTYPE_IN (ft, FT_IQ2_S, FT_IQ2_M))
    *type = T (IQ3_S);
  else if (ft == FT_IQ3_XXS)
    *type = T (IQ3_S);
  else if (FTYPE_IN (ft, FT_TQ1_0, FT_TQ2_0, FT_Q2_0))
    *type = T (Q4_K);
}

static void
rule_iq1_iq2 (State         *s,
              Category       cat,
              SmeltGgmlType *type)
{
  guint32 ft = s->ftype;
  gboolean s_or_m = ft == FT_IQ2_S || ft == FT_IQ2_M;

  if (is_attn_v (cat))
    {
      if (s->n_gqa >= 4 || s->n_expert >= 4)
        *type = T (Q4_K);
      else
        *type = s_or_m ? T (IQ3_S) : T (Q2_K);
      s->i_attention_wv++;
    }
  else if (s->n_expert == 8 && cat == CAT_ATTN_K)
    *type = T (Q4_K);
  else if (cat == CAT_FFN_DOWN)
    {
      if (s->i_ffn_down < s->n_ffn_down / 8)
        *type = s_or_m ? T (IQ3_S) : T (Q2_K);
      s->i_ffn_down++;
    }
  else if (cat == CAT_ATTN_OUTPUT)
    {
      if (s->n_expert == 8)
        *type = T (Q5_K);
      else if (ft == FT_IQ1_S || ft == FT_IQ1_M)
        *type = T (IQ2_XXS);
      else if (s_or_m)
        *type = T (IQ3_S);
    }
}

static void
rule_attn_v (State         *s,
             SmeltGgmlType *type)
{
  guint32 ft = s->ftype;

  if (ft == FT_Q2_K)
    *type = s->n_gqa >= 4 ? T (Q4_K) : T (Q3_K);
  else if (ft == FT_Q2_K_S && s->n_gqa >= 4)
    *type = T (Q4_K);
  else if (ft == FT_IQ3_XXS)
    /* with an importance matrix IQ3_XXS; smelt never has one */
    *type = s->n_gqa >= 4 ? T (Q4_K) : T (IQ3_S);
  else if ((ft == FT_IQ3_XS || ft == FT_IQ3_S) && s->n_gqa >= 4)
    *type = T (Q4_K);
  else if (ft == FT_IQ3_M)
    *type = T (Q4_K);
  else if (ft == FT_Q3_K_M)
    *type = s->i_attention_wv < 2 ? T (Q5_K) : T (Q4_K);
  else if (ft == FT_Q3_K_L)
    *type = T (Q5_K);
  else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && s->n_gqa >= 4)
    *type = T (Q5_K);
  else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits (s->i_attention_wv, s->n_attention_wv))
    *type = T (Q6_K);
  else if (ft == FT_Q4_K_S && s->i_attention_wv < 4)
    *type = T (Q5_K);
  /* 70B: eight heads share attn_v, which is 8× smaller than attn_q */
  if (s->is_70b && (*type == T (Q3_K) || *type == T (Q4_K)))
    *type = T (Q5_K);
  if (s->n_expert == 8)
    *type = T (Q8_0);
  s->i_attention_wv++;
}

static gboolean
rule_ffn_down (State                    *s,
               const SmeltGgufMixTensor *t,
               SmeltGgmlType            *type,
               GError                  **error)
{
  guint32 ft = s->ftype;
  int i, n;

  if (!layer_info (s, s->i_ffn_down, s->n_ffn_down, t->name, &i, error))
    return FALSE;
  n = s->n_ffn_down;
  if (ft == FT_Q2_K)
    *type = T (Q3_K);
  else if (ft == FT_Q2_K_S)
    {
      if (i < n / 8)
        *type = T (Q4_K);
    }
  else if (ft == FT_IQ3_XXS)
    /* the rule without an importance matrix */
    *type = i < n / 8 ? T (Q4_K) : T (Q3_K);
  else if (ft == FT_Q3_K_M)
    *type = i < n / 16 ? T (Q5_K)
          : !s->falcon || use_more_bits (i, n) ? T (Q4_K)
          : T (Q3_K);
  else if (ft == FT_IQ3_M && (i < n / 8 || (s->n_expert == 8 && use_more_bits (i, n))))
    *type = T (Q4_K);
  else if (ft == FT_Q3_K_L)
    *type = s->falcon ? T (Q4_K) : T (Q5_K);
  else if (ft == FT_Q4_K_M)
    {
      if (s->falcon)
        *type = i < n / 16 ? T (Q6_K) : use_more_bits (i, n) ? T (Q5_K) : T (Q4_K);
      else if (use_more_bits (i, n))
        *type = T (Q6_K);
    }
  else if (i < n / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS))
    /* the rule without an importance matrix */
    *type = T (Q5_K);
  else if (ft == FT_Q5_K_M && use_more_bits (i, n))
    *type = T (Q6_K);
  else if (ft == FT_Q4_K_S && !s->falcon && i < n / 8)
    *type = T (Q5_K);
  /* Q4_0/Q5_0 → Q4_1/Q5_1 on the first layers applies only with an
   * importance matrix */
  s->i_ffn_down++;
  return TRUE;
}

static void
rule_attn_output (State         *s,
                  SmeltGgmlType *type)
{
  guint32 ft = s->ftype;

  if (s->falcon)
    {
      if (ft == FT_Q3_K_L)
        *type = T (Q4_K);
    }
  else if (s->n_expert == 8)
    {
      if (FTYPE_IN (ft, FT_Q2_K, FT_IQ3_XS, FT_IQ3_XXS, FT_Q3_K_S, FT_Q3_K_M, FT_IQ4_NL,
                    FT_Q4_K_S, FT_Q4_K_M, FT_IQ3_S, FT_IQ3_M, FT_IQ4_XS))
        *type = T (Q5_K);
    }
  else if (ft == FT_Q2_K)
    *type = T (Q3_K);
  else if (ft == FT_IQ3_XXS)
    *type = T (IQ3_S);
  else if (ft == FT_Q3_K_M)
    *type = T (Q4_K);
  else if (ft == FT_Q3_K_L)
    *type = T (Q5_K);
  else if (ft == FT_IQ3_M)
    *type = T (Q4_K);
}

/* ffn_gate and ffn_up: only IQ3_XS changes the middle layers */
static gboolean
rule_ffn_gate_up (State                    *s,
                  const SmeltGgufMixTensor *t,
                  int                      *counter,
                  int                       n,
                  SmeltGgmlType            *type,
                  GError                  **error)
{
  int i;

  if (!layer_info (s, *counter, n, t->name, &i, error))
    return FALSE;
  if (s->ftype == FT_IQ3_XS && i >= n / 8 && i < 7 * n / 8)
    *type = T (IQ3_XXS);
  (*counter)++;
  return TRUE;
}

/* llama_tensor_get_type_impl() */
static gboolean
mixture_rule (State                    *s,
              const SmeltGgufMixTensor *t,
              Category                  cat,
              SmeltGgmlType            *type,
              GError                  **error)
{
  /* a tied token_embd is also the output, so it gets the output's type */
  if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD))
    {
      rule_output (s, t, type);
      return TRUE;
    }
  if (s->ftype == FT_MXFP4_MOE)
    {
      /* expert stacks → MXFP4, everything else Q8_0 (bailingmoe3's MLA
       * projections are 3-D too, so there only the FFN experts) */
      gboolean expert = !s->bailingmoe3 ||
                        cat == CAT_FFN_UP || cat == CAT_FFN_GATE || cat == CAT_FFN_DOWN;
      *type = t->ne[2] > 1 && expert ? T (MXFP4) : T (Q8_0);
      return TRUE;
    }
  if (cat == CAT_TOKEN_EMBD)
    rule_token_embd (s, type);
  else if (is_iq1_iq2 (s->ftype))
    rule_iq1_iq2 (s, cat, type);
  else if (is_attn_v (cat))
    rule_attn_v (s, type);
  else if (cat == CAT_ATTN_K)
    {
      if (s->n_expert == 8)
        *type = T (Q8_0);
      else if (s->ftype == FT_IQ3_XS)
        *type = T (IQ3_XXS);
      else if (s->ftype == FT_IQ3_XXS)
        *type = T (IQ2_S);
    }
  else if (cat == CAT_ATTN_Q)
    {
      if (s->ftype == FT_IQ3_XS)
        *type = T (IQ3_XXS);
      else if (s->ftype == FT_IQ3_XXS)
        *type = T (IQ2_S);
    }
  else if (cat == CAT_FFN_DOWN)
    return rule_ffn_down (s, t, type, error);
  else if (cat == CAT_ATTN_OUTPUT)
    rule_attn_output (s, type);
  /* (llama.cpp's own attn_qkv branch is unreachable: attn_qkv takes the
   * attn_v rule above) */
  else if (cat == CAT_FFN_GATE)
    return rule_ffn_gate_up (s, t, &s->i_ffn_gate, s->n_ffn_gate, type, error);
  else if (cat == CAT_FFN_UP)
    return rule_ffn_gate_up (s, t, &s->i_ffn_up, s->n_ffn_up, type, error);
  return TRUE;
}

/* tensor_type_fallback(): a row that does not split into blocks of the
 * chosen type takes a 32-element type of similar size, or F16. */
static gboolean
fallback (const SmeltGgufMixTensor *t,
          SmeltGgmlType            *type,
          GError                  **error)
{
  guint64 ncols = t->ne[0];
  guint64 qk = smelt_ggml_type_get_block_size (*type);
  SmeltGgmlType to;

  if (ncols % qk == 0)
    return TRUE;
  switch ((int) *type)
    {
    case T (IQ1_S): case T (IQ1_M): case T (IQ2_XXS): case T (IQ2_XS):
    case T (IQ2_S): case T (IQ3_XXS): case T (IQ3_S): case T (IQ4_XS):
      to = T (IQ4_NL);
      break;
    case T (Q2_K): case T (Q3_K): case T (TQ1_0): case T (TQ2_0):
      to = T (Q4_0);
      break;
    case T (Q4_K):
      to = T (Q5_0);
      break;
    case T (Q5_K):
      to = T (Q5_1);
      break;
    case T (Q6_K):
      to = T (Q8_0);
      break;
    default:
      if (qk > 32)
        return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                            "tensor “%s”: rows of %" G_GUINT64_FORMAT " do not split into "
                            "%s blocks and llama-quantize has no fallback type for it",
                            t->name, ncols, smelt_ggml_type_get_name (*type)), FALSE;
      /* a 32-block type that does not fit: F16 below */
      to = *type;
      break;
    }
  /* rows not even a multiple of 32 */
  if (ncols % smelt_ggml_type_get_block_size (to) != 0)
    to = T (F16);
  *type = to;
  return TRUE;
}

/* tensor_requires_imatrix() */
static gboolean
requires_imatrix (const char    *name,
                  SmeltGgmlType  type,
                  guint32        ftype)
{
  if (strcmp (name, "token_embd.weight") == 0 || strcmp (name, "per_layer_token_embd.weight") == 0 ||
      strcmp (name, "output.weight") == 0)
    return FALSE;
  switch ((int) type)
    {
    case T (IQ3_XXS): case T (IQ2_XXS): case T (IQ2_XS):
    case T (IQ2_S): case T (IQ1_M): case T (IQ1_S):
      return TRUE;
    case T (Q2_K):
      /* k-quants need none, except the Q2_K tensors of a Q2_K_S file */
      return ftype == FT_Q2_K_S;
    default:
      return FALSE;
    }
}

static void
state_init (State                     *s,
            const SmeltGgufFtype      *ftype,
            const SmeltGgufMixHparams *hp,
            const SmeltGgufMixTensor  *tensors,
            gsize                      n_tensors)
{
  memset (s, 0, sizeof *s);
  s->ftype = ftype->ftype;
  s->falcon = g_strcmp0 (hp->arch, "falcon") == 0;
  s->bailingmoe3 = g_strcmp0 (hp->arch, "bailingmoe3") == 0;
  s->is_70b = is_70b (hp);
  s->n_gqa = hp->n_head_kv == 0 ? 0 : hp->n_head / hp->n_head_kv;
  s->n_expert = hp->n_expert;
  s->n_expert_min1 = MAX (1, (int) hp->n_expert);
  /* init_quantize_state_counters(): over every tensor, converted or not */
  s->tied = TRUE;
  for (gsize i = 0; i < n_tensors; i++)
    {
      Category cat = category_of (tensors[i].name);

      if (is_attn_v (cat))
        s->n_attention_wv++;
      if (cat == CAT_OUTPUT)
        s->tied = FALSE;
    }
  s->n_ffn_down = s->n_ffn_gate = s->n_ffn_up = (int) hp->n_layer;
}

static gboolean
is_float (SmeltGgmlType type)
{
  return type == T (F32) || type == T (F16) || type == T (BF16);
}

/* llama_tensor_get_type() for one tensor, and the checks of the main
 * loop that make llama-quantize fail */
static gboolean
choose_one (State                    *s,
            const SmeltGgufFtype     *ftype,
            const SmeltGgufMixTensor *t,
            SmeltGgmlType            *out,
            GError                  **error)
{
  SmeltGgmlType type = ftype->default_type;

  if (!smelt_gguf_mixture_allows_quantization (t->name, t->ne))
    {
      *out = t->type;
      return TRUE;
    }
  /* F32/F16/BF16 files take no mixture and need no fallback */
  if (smelt_ggml_type_get_block_size (type) > 1)
    {
      if (!mixture_rule (s, t, category_of (t->name), &type, error) ||
          !fallback (t, &type, error))
        return FALSE;
    }
  if (requires_imatrix (t->name, type, ftype->ftype))
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                        "%s: tensor “%s” would be %s, which needs an importance matrix",
                        ftype->name, t->name, smelt_ggml_type_get_name (type)), FALSE;
  if (type != t->type && !is_float (t->type))
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                        "%s: tensor “%s” is %s; llama-quantize does not convert it to %s",
                        ftype->name, t->name, smelt_ggml_type_get_name (t->type),
                        smelt_ggml_type_get_name (type)), FALSE;
  *out = type;
  return TRUE;
}

typedef struct {
  const char *name;
  gsize       index;     /* in the caller's array */
} Ordered;

static int
compare_ordered (gconstpointer a,
                 gconstpointer b)
{
  return smelt_gguf_mixture_compare_names (((const Ordered *) a)->name,
                                           ((const Ordered *) b)->name);
}

gboolean
smelt_gguf_mixture_choose (const SmeltGgufFtype      *ftype,
                           const SmeltGgufMixHparams *hparams,
                           const SmeltGgufMixTensor  *tensors,
                           gsize                      n_tensors,
                           SmeltGgmlType             *types_out,
                           GError                   **error)
{
  g_autofree Ordered *order = NULL;
  State s;

  g_return_val_if_fail (ftype != NULL && hparams != NULL, FALSE);
  if (!ftype->has_default)
    return g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                        "GGUF type %s is not supported yet: %s", ftype->name, ftype->note), FALSE;
  if (hparams->n_layer == 0)
    return g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                        "the model has no layers (block_count 0)"), FALSE;

  state_init (&s, ftype, hparams, tensors, n_tensors);

  /* the counters run in weights_map order, whatever the caller's order
   * (names are unique in a GGUF file, so the sort needs no tie-break) */
  order = g_new (Ordered, MAX (n_tensors, 1));
  for (gsize i = 0; i < n_tensors; i++)
    order[i] = (Ordered) { tensors[i].name, i };
  if (n_tensors > 1)
    qsort (order, n_tensors, sizeof *order, compare_ordered);
  for (gsize i = 0; i < n_tensors; i++)
    {
      gsize k = order[i].index;

      if (!choose_one (&s, ftype, &tensors[k], &types_out[k], error))
        return FALSE;
    }
  return TRUE;
}
