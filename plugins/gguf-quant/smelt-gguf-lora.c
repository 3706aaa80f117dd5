/* smelt-gguf-lora.c: PEFT LoRA adapters as a llama.cpp LoRA adapter GGUF
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <math.h>
#include <string.h>

#include "smelt-gguf-lora.h"

/* What llama.cpp does with an adapter file (src/llama-adapter.cpp,
 * llm_graph_context::build_lora_mm and build_inp_embd at de3ff81), and
 * therefore what this file must hold:
 *
 *  - for a weight W named X in the base GGUF (ne = [in, out]), tensors
 *    X.lora_a with ne = [in, r] (PEFT's lora_A, [r, in], as it is) and
 *    X.lora_b with ne = [r, out] (lora_B, [out, r], as it is); the output
 *    becomes W·x + s·B·(A·x);
 *  - for token_embd.weight (ne = [n_embd, n_vocab]) the pair is "flipped":
 *    lora_a has ne = [r, n_vocab] (PEFT's lora_embedding_A [r, vocab]
 *    transposed, so that one row per token can be gathered) and lora_b
 *    ne = [r, n_embd] (lora_embedding_B [dim, r] as it is);
 *  - s = alpha / r with alpha = adapter.lora.alpha and r = lora_b's ne[0]
 *    (alpha 0 means s = 1);
 *  - llama-arch Q/K weights are stored with their rows permuted (the
 *    converter's LlamaModel.permute), so the output rows of B move the
 *    same way; A is untouched. convert_lora_to_gguf.py gets this by
 *    pushing (A, B) through the model's own modify_tensors();
 *  - nothing else: no bias, no magnitude vector, no full tensor (norm
 *    vectors are skipped with a TODO, anything else is an error).
 *
 * PEFT's delta of one module is s_peft·B·A, s_peft = alpha / r or
 * alpha / sqrt(r) (rsLoRA), times the recipe's adapter weight. Several
 * adapters on one module add up: Σ s_i·B_i·A_i = [s_1·B_1 | s_2·B_2 | …]
 * · [A_1; A_2; …], one LoRA of rank Σ r_i, so they become one pair with
 * their ranks concatenated. With R that rank, llama.cpp's scale is
 * alpha / R; the file's alpha is chosen so that alpha / R = s_peft (then B
 * is written as it is), and any factor one alpha cannot give every module
 * is folded into B's columns: g = s_i · R / alpha. */

typedef struct {
  SmeltTensor *a;        /* [r, in], or [r, vocab] for an embedding */
  SmeltTensor *b;        /* [out, r], or [dim, r] */
  guint        rank;
  double       factor;   /* PEFT scale × the adapter's weight */
  float        fold;     /* folded into B's columns (1: B as it is) */
} Term;

typedef struct {
  char              *name;       /* the base tensor's GGUF name */
  gboolean           embedding;  /* token_embd: the flipped layout */
  guint64            n_in;       /* linear: A's row length */
  guint64            n_out;      /* rows of B written (the base tensor's ne[1], or n_embd) */
  guint64            n_vocab;    /* embedding: rows of lora_a written */
  guint              rank;       /* Σ term ranks */
  SmeltGgufTransform transform;  /* of the base tensor's rows: B's rows follow */
  guint              n_head;
  GArray            *terms;      /* Term */
} Pair;

struct _SmeltGgufLora
{
  GPtrArray  *pairs;             /* Pair, sorted by name */
  float       alpha;
  gboolean    rescaled;
  const char *auto_outtype;
};

/* PEFT's key spellings (see core/smelt-lora-target.c, whose parser is
 * private to the library): base_model.model.<module>.<part>[.<adapter>]
 * [.weight], with ".base_layer." and ".modules_to_save.<adapter>."
 * wrappers. */
typedef enum {
  KEY_LORA_A,
  KEY_LORA_B,
  KEY_LORA_B_BIAS,
  KEY_EMBEDDING_A,
  KEY_EMBEDDING_B,
  KEY_MAGNITUDE,
  KEY_FULL,
} KeyKind;

static const struct {
  const char *part;
  KeyKind     kind;
} lora_parts[] = {
  { "lora_A", KEY_LORA_A },
  { "lora_B", KEY_LORA_B },
  { "lora_embedding_A", KEY_EMBEDDING_A },
  { "lora_embedding_B", KEY_EMBEDDING_B },
  { "lora_magnitude_vector", KEY_MAGNITUDE },
};

static void
term_clear (gpointer data)
{
  Term *t = data;

  g_clear_object (&t->a);
  g_clear_object (&t->b);
}

static void
pair_free (gpointer data)
{
  Pair *p = data;

  g_free (p->name);
  g_array_unref (p->terms);
  g_free (p);
}

void
smelt_gguf_lora_free (SmeltGgufLora *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->pairs);
  g_free (self);
}

/* The module path (or, for KEY_FULL, the tensor name) of a saved key. */
static char *
parse_key (const char *key,
           KeyKind    *kind)
{
  const char *rest = g_str_has_prefix (key, "base_model.model.") ? key + strlen ("base_model.model.") : key;
  g_auto(GStrv) comps = g_strsplit (rest, ".", -1);
  GString *s = g_string_new (NULL);
  int at = -1;

  for (int i = 0; comps[i] && at < 0; i++)
    for (guint p = 0; p < G_N_ELEMENTS (lora_parts); p++)
      if (g_str_equal (comps[i], lora_parts[p].part))
        {
          *kind = lora_parts[p].kind;
          at = i;
          break;
        }
  if (at >= 0)
    {
      guint n = g_strv_length (comps);

      if ((*kind == KEY_LORA_B) && g_str_equal (comps[n - 1], "bias"))
        *kind = KEY_LORA_B_BIAS;
    }
  else
    *kind = KEY_FULL;

  for (int i = 0; comps[i] && (at < 0 || i < at); i++)
    {
      if (g_str_equal (comps[i], "base_layer") || g_str_equal (comps[i], "original_module"))
        continue;
      if (g_str_equal (comps[i], "modules_to_save"))
        {
          if (comps[i + 1] && comps[i + 2])
            i++;
          continue;
        }
      if (s->len)
        g_string_append_c (s, '.');
      g_string_append (s, comps[i]);
    }
  return g_string_free (s, FALSE);
}

/* The base checkpoint's name for an adapter-side name, with the spellings
 * of a bare model and a *ForCausalLM (huggingface/peft#1579), as the
 * merge resolves them. */
static char *
resolve_name (SmeltModel *model,
              const char *name)
{
  g_autofree char *with_model = g_strconcat ("model.", name, NULL);

  if (smelt_model_lookup_tensor (model, name))
    return g_strdup (name);
  if (smelt_model_lookup_tensor (model, with_model))
    return g_steal_pointer (&with_model);
  if (g_str_has_prefix (name, "model.") && smelt_model_lookup_tensor (model, name + 6))
    return g_strdup (name + 6);
  return NULL;
}

static gboolean
is_lm_head (const char *name)
{
  return g_str_equal (name, "lm_head") || g_str_has_suffix (name, ".lm_head") ||
         g_str_equal (name, "lm_head.weight") || g_str_has_suffix (name, ".lm_head.weight");
}

static const SmeltGgufTensor *
find_gguf_tensor (SmeltGgufArchPlan *plan,
                  const char        *gguf_name)
{
  for (guint i = 0; i < plan->tensors->len; i++)
    {
      const SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);

      if (g_str_equal (t->name, gguf_name))
        return t;
    }
  return NULL;
}

static const char *
adapter_file (SmeltAdapter *adapter)
{
  return smelt_safetensors_file_get_path (smelt_adapter_get_file (adapter));
}

static gboolean
refuse (GError      **error,
        SmeltAdapter *adapter,
        const char   *format,
        ...) G_GNUC_PRINTF (3, 4);

/* Every refusal names the adapter file first and says what to do. */
static gboolean
refuse (GError      **error,
        SmeltAdapter *adapter,
        const char   *format,
        ...)
{
  va_list args;
  g_autofree char *what = NULL;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
               "%s: %s; a llama.cpp LoRA adapter cannot carry this, export the merged "
               "model instead (Adapter=false)", adapter_file (adapter), what);
  return FALSE;
}

/* Whether @a and @b hold the same values (as float32: BF16 and F16 widen
 * exactly), read in slices so a large embedding never sits in memory. */
static gboolean
same_values (SmeltTensor  *a,
             SmeltTensor  *b,
             gboolean     *same,
             GError      **error)
{
  guint na, nb;
  const guint64 *sa = smelt_tensor_get_shape (a, &na);
  const guint64 *sb = smelt_tensor_get_shape (b, &nb);
  guint64 n_rows, row_len, per;
  g_autofree float *ra = NULL;
  g_autofree float *rb = NULL;

  *same = na == nb && memcmp (sa, sb, na * sizeof *sa) == 0;
  if (!*same)
    return TRUE;
  if (smelt_tensor_get_dtype (a) == smelt_tensor_get_dtype (b))
    {
      g_autoptr(GBytes) ba = smelt_tensor_get_bytes (a);
      g_autoptr(GBytes) bb = smelt_tensor_get_bytes (b);

      if (ba != NULL && bb != NULL)
        {
          *same = g_bytes_equal (ba, bb);
          return TRUE;
        }
    }
  n_rows = smelt_tensor_get_n_rows (a);
  row_len = MAX (smelt_tensor_get_row_length (a), 1);
  per = MAX ((1u << 20) / row_len, 1);
  ra = g_new (float, per * row_len);
  rb = g_new (float, per * row_len);
  for (guint64 first = 0; first < n_rows && *same; first += per)
    {
      guint64 n = MIN (per, n_rows - first);

      if (!smelt_tensor_read_rows (a, first, n, SMELT_DTYPE_F32, ra, error) ||
          !smelt_tensor_read_rows (b, first, n, SMELT_DTYPE_F32, rb, error))
        return FALSE;
      *same = memcmp (ra, rb, n * row_len * sizeof (float)) == 0;
    }
  return TRUE;
}

/* A whole tensor in the adapter (modules_to_save, a saved embedding, a
 * trained bias, a mergekit norm): fine when it only repeats the base's
 * own values (PEFT saves the embedding layers it targets, unchanged),
 * refused otherwise: llama.cpp has nowhere to put it. */
static gboolean
check_full_tensor (SmeltAdapter      *adapter,
                   SmeltModel        *model,
                   SmeltGgufArchPlan *plan,
                   SmeltTensor       *t,
                   const char        *name,
                   GError           **error)
{
  g_autofree char *target = resolve_name (model, name);
  SmeltTensor *base = target ? smelt_model_lookup_tensor (model, target) : NULL;
  gboolean same = FALSE;

  /* a tied lm_head saved beside the adapter is the embedding */
  if (base == NULL && is_lm_head (name) && plan->tied_output)
    {
      const SmeltGgufTensor *embd = find_gguf_tensor (plan, "token_embd.weight");

      base = embd ? embd->tensor : NULL;
    }
  if (base != NULL && !same_values (t, base, &same, error))
    return FALSE;
  if (same)
    return TRUE;
  return refuse (error, adapter, "“%s” is a whole %s that differs from the base model's "
                 "(modules_to_save, a resized vocabulary or trained biases)",
                 smelt_tensor_get_name (t), name);
}

typedef struct {
  char        *module;
  SmeltTensor *a, *b;
  gboolean     embedding;
} Module;

static void
module_free (gpointer data)
{
  Module *m = data;

  g_free (m->module);
  g_free (m);
}

static int
compare_tensor_names (gconstpointer a,
                      gconstpointer b)
{
  return strcmp (smelt_tensor_get_name (*(SmeltTensor * const *) a),
                 smelt_tensor_get_name (*(SmeltTensor * const *) b));
}

static int
compare_modules (gconstpointer a,
                 gconstpointer b)
{
  return strcmp ((*(Module * const *) a)->module, (*(Module * const *) b)->module);
}

/* The adapter's tensors by module, checking every key llama.cpp could
 * not apply. */
static GPtrArray *
collect_modules (SmeltAdapter       *adapter,
                 SmeltModel         *model,
                 SmeltGgufArchPlan  *plan,
                 GError            **error)
{
  SmeltSafetensorsFile *file = smelt_adapter_get_file (adapter);
  g_autoptr(GPtrArray) modules = g_ptr_array_new_with_free_func (module_free);
  g_autoptr(GHashTable) by_module = g_hash_table_new (g_str_hash, g_str_equal);
  g_autoptr(GPtrArray) keys = g_ptr_array_new ();
  guint n = smelt_safetensors_file_get_n_tensors (file);

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (keys, smelt_safetensors_file_get_tensor (file, i));
  g_ptr_array_sort (keys, compare_tensor_names);

  for (guint i = 0; i < keys->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (keys, i);
      const char *key = smelt_tensor_get_name (t);
      KeyKind kind;
      g_autofree char *module = parse_key (key, &kind);
      Module *m;

      switch (kind)
        {
        case KEY_MAGNITUDE:
          refuse (error, adapter, "module “%s” is DoRA (“%s”): llama.cpp applies W + s·B·A "
                  "and has no magnitude vector", module, key);
          return NULL;
        case KEY_LORA_B_BIAS:
          refuse (error, adapter, "module “%s” has a lora_B bias (“%s”, lora_bias=true): "
                  "llama.cpp's LoRA adds no bias", module, key);
          return NULL;
        case KEY_FULL:
          if (!check_full_tensor (adapter, model, plan, t, module, error))
            return NULL;
          continue;
        case KEY_LORA_A:
        case KEY_LORA_B:
        case KEY_EMBEDDING_A:
        case KEY_EMBEDDING_B:
        default:
          break;
        }
      m = g_hash_table_lookup (by_module, module);
      if (m == NULL)
        {
          m = g_new0 (Module, 1);
          m->module = g_steal_pointer (&module);
          g_ptr_array_add (modules, m);
          g_hash_table_insert (by_module, m->module, m);
        }
      if (kind == KEY_EMBEDDING_A || kind == KEY_EMBEDDING_B)
        m->embedding = TRUE;
      if (kind == KEY_LORA_A || kind == KEY_EMBEDDING_A)
        m->a = t;
      else
        m->b = t;
    }
  g_ptr_array_sort (modules, compare_modules);
  return g_steal_pointer (&modules);
}

static Pair *
get_pair (GHashTable            *pairs,
          GPtrArray             *order,
          const SmeltGgufTensor *target,
          gboolean               embedding)
{
  Pair *p = g_hash_table_lookup (pairs, target->name);

  if (p != NULL)
    return p;
  p = g_new0 (Pair, 1);
  p->name = g_strdup (target->name);
  p->embedding = embedding;
  p->transform = target->transform;
  p->n_head = target->n_head;
  if (embedding)
    {
      p->n_out = target->ne[0];
      p->n_vocab = target->ne[1];
    }
  else
    {
      p->n_in = target->ne[0];
      p->n_out = target->ne[1];
    }
  p->terms = g_array_new (FALSE, TRUE, sizeof (Term));
  g_array_set_clear_func (p->terms, term_clear);
  g_hash_table_insert (pairs, p->name, p);
  g_ptr_array_add (order, p);
  return p;
}

static guint64
dim (SmeltTensor *t,
     guint        d)
{
  guint n;
  const guint64 *s = smelt_tensor_get_shape (t, &n);

  return d < n ? s[d] : 0;
}

/* One module of one adapter: its pair in the file, with the checks that
 * keep llama.cpp from loading an adapter it would misapply. */
static gboolean
add_module (SmeltAdapter       *adapter,
            double              weight,
            SmeltModel         *model,
            SmeltGgufArchPlan  *plan,
            Module             *m,
            GHashTable         *pairs,
            GPtrArray          *order,
            GError            **error)
{
  g_autofree char *weight_name = g_strconcat (m->module, ".weight", NULL);
  g_autofree char *target = resolve_name (model, weight_name);
  const SmeltGgufTensor *gt;
  Pair *p;
  Term term = { 0, };
  guint64 rows_hf;

  if (m->a == NULL || m->b == NULL)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: module “%s” has %s but no %s", adapter_file (adapter), m->module,
                   m->a ? "lora_A" : "lora_B", m->a ? "lora_B" : "lora_A");
      return FALSE;
    }
  if (target == NULL && is_lm_head (m->module) && plan->tied_output)
    return refuse (error, adapter, "module “%s” is a LoRA on lm_head, and the base model ties "
                   "lm_head to the embedding: its GGUF has no output.weight to apply it to "
                   "(convert_lora_to_gguf.py refuses it too)", m->module);
  gt = target ? g_hash_table_lookup (plan->by_source, target) : NULL;
  if (gt == NULL)
    return refuse (error, adapter, "module “%s” adapts %s, which has no tensor in "
                   "llama.cpp's %s model", m->module, target ? target : weight_name, plan->arch);
  if (gt->n_dims != 2 || gt->transform == SMELT_GGUF_XFORM_NORM_PLUS_ONE)
    return refuse (error, adapter, "module “%s” adapts %s, which is not a matrix in the GGUF",
                   m->module, gt->name);
  if (m->embedding != g_str_equal (gt->name, "token_embd.weight"))
    return refuse (error, adapter, "module “%s” is %s LoRA on %s: llama.cpp applies "
                   "embedding LoRAs to token_embd.weight and linear ones elsewhere",
                   m->module, m->embedding ? "an embedding" : "a linear", gt->name);
  if (m->embedding && plan->tied_output)
    return refuse (error, adapter, "module “%s” is a LoRA on the token embedding of a model "
                   "whose output projection is tied to it: llama.cpp would apply the pair to "
                   "the output matmul as well, with the wrong layout", m->module);
  if (smelt_adapter_get_fan_in_fan_out (adapter))
    return refuse (error, adapter, "fan_in_fan_out is set (module “%s”): no architecture "
                   "llama.cpp loads from smelt stores [in, out] weights", m->module);

  term.rank = (guint) dim (m->a, 0);
  /* what the merge checked, restated for the layout written here */
  rows_hf = dim (m->b, 0);
  if (term.rank == 0 || dim (m->b, 1) != term.rank ||
      (m->embedding ? dim (m->a, 1) < gt->ne[1] : dim (m->a, 1) != gt->ne[0]) ||
      rows_hf < (m->embedding ? gt->ne[0] : gt->ne[1]))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: module “%s”: lora_A [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                   "] and lora_B [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "] do not fit %s",
                   adapter_file (adapter), m->module, dim (m->a, 0), dim (m->a, 1),
                   dim (m->b, 0), dim (m->b, 1), gt->name);
      return FALSE;
    }
  term.a = g_object_ref (m->a);
  term.b = g_object_ref (m->b);
  term.factor = smelt_adapter_get_scale_for (adapter, m->module, term.rank) * weight;
  term.fold = 1.0f;
  p = get_pair (pairs, order, gt, m->embedding);
  p->rank += term.rank;
  g_array_append_val (p->terms, term);
  return TRUE;
}

/* adapter.lora.alpha, and the factor left for each B (see the top). */
static gboolean
choose_alpha (SmeltGgufLora  *self,
              GError        **error)
{
  double first = 0;

  for (guint i = 0; i < self->pairs->len && first == 0; i++)
    {
      Pair *p = g_ptr_array_index (self->pairs, i);

      for (guint k = 0; k < p->terms->len && first == 0; k++)
        first = g_array_index (p->terms, Term, k).factor * p->rank;
    }
  if (first == 0 || !isfinite (first) || !isfinite ((float) first))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "the adapters' scale is %g: with lora_alpha or AdapterWeights 0 there is "
                   "no change to export (and llama.cpp reads alpha 0 as a scale of 1)", first);
      return FALSE;
    }
  self->alpha = (float) first;
  for (guint i = 0; i < self->pairs->len; i++)
    {
      Pair *p = g_ptr_array_index (self->pairs, i);

      for (guint k = 0; k < p->terms->len; k++)
        {
          Term *t = &g_array_index (p->terms, Term, k);

          /* llama.cpp computes alpha / R in float32 */
          t->fold = (float) (t->factor / (double) (self->alpha / (float) p->rank));
          if (t->fold != 1.0f)
            self->rescaled = TRUE;
        }
    }
  return TRUE;
}

static int
compare_pairs (gconstpointer a,
               gconstpointer b)
{
  return strcmp ((*(Pair * const *) a)->name, (*(Pair * const *) b)->name);
}

static const char *
find_auto_outtype (SmeltSource *source)
{
  for (guint i = 0; i < smelt_source_get_n_adapters (source); i++)
    {
      SmeltSafetensorsFile *file = smelt_adapter_get_file (smelt_source_get_adapter (source, i));

      for (guint k = 0; k < smelt_safetensors_file_get_n_tensors (file); k++)
        {
          SmeltTensor *t = smelt_safetensors_file_get_tensor (file, k);
          SmeltDType d = smelt_tensor_get_dtype (t);
          guint n;

          smelt_tensor_get_shape (t, &n);
          if (n >= 2 && (d == SMELT_DTYPE_BF16 || d == SMELT_DTYPE_F16))
            return d == SMELT_DTYPE_BF16 ? "bf16" : "f16";
        }
    }
  return "f16";
}

SmeltGgufLora *
smelt_gguf_lora_new (SmeltSource        *source,
                     SmeltGgufArchPlan  *base_plan,
                     GError            **error)
{
  g_autoptr(SmeltGgufLora) self = g_new0 (SmeltGgufLora, 1);
  g_autoptr(GHashTable) pairs = g_hash_table_new (g_str_hash, g_str_equal);
  SmeltModel *model;

  g_return_val_if_fail (SMELT_IS_SOURCE (source), NULL);
  g_return_val_if_fail (base_plan != NULL, NULL);

  model = smelt_source_get_model (source);
  self->pairs = g_ptr_array_new_with_free_func (pair_free);
  if (smelt_source_get_n_adapters (source) == 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "Adapter=true writes the recipe's LoRA adapters, and [Source] has no "
                   "Adapters");
      return NULL;
    }
  for (guint i = 0; i < smelt_source_get_n_adapters (source); i++)
    {
      SmeltAdapter *adapter = smelt_source_get_adapter (source, i);
      double weight = smelt_source_get_adapter_weight (source, i);
      g_autoptr(GPtrArray) modules = collect_modules (adapter, model, base_plan, error);

      if (modules == NULL)
        return NULL;
      /* DoRA without a saved magnitude vector is still DoRA */
      if (smelt_adapter_get_use_dora (adapter))
        {
          refuse (error, adapter, "use_dora is set (module “%s”): DoRA rescales every row "
                  "by a magnitude llama.cpp does not know",
                  modules->len ? ((Module *) g_ptr_array_index (modules, 0))->module : "?");
          return NULL;
        }
      for (guint k = 0; k < modules->len; k++)
        if (!add_module (adapter, weight, model, base_plan, g_ptr_array_index (modules, k),
                         pairs, self->pairs, error))
          return NULL;
    }
  if (self->pairs->len == 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "%s: the adapter has no lora_A/lora_B pair to export",
                   adapter_file (smelt_source_get_adapter (source, 0)));
      return NULL;
    }
  g_ptr_array_sort (self->pairs, compare_pairs);
  if (!choose_alpha (self, error))
    return NULL;
  self->auto_outtype = find_auto_outtype (source);
  return g_steal_pointer (&self);
}

float
smelt_gguf_lora_get_alpha (SmeltGgufLora *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->alpha;
}

gboolean
smelt_gguf_lora_is_rescaled (SmeltGgufLora *self)
{
  g_return_val_if_fail (self != NULL, FALSE);
  return self->rescaled;
}

const char *
smelt_gguf_lora_get_auto_outtype (SmeltGgufLora *self)
{
  g_return_val_if_fail (self != NULL, "f16");
  return self->auto_outtype;
}

guint
smelt_gguf_lora_get_n_pairs (SmeltGgufLora *self)
{
  g_return_val_if_fail (self != NULL, 0);
  return self->pairs->len;
}

/* ---- layout ------------------------------------------------------------ */

/* ne of lora_a (@b FALSE) or lora_b of @p */
static void
tensor_ne (const Pair *p,
           gboolean    b,
           guint64     ne[2])
{
  if (b)
    {
      ne[0] = p->rank;
      ne[1] = p->n_out;
    }
  else if (p->embedding)
    {
      ne[0] = p->rank;
      ne[1] = p->n_vocab;
    }
  else
    {
      ne[0] = p->n_in;
      ne[1] = p->rank;
    }
}

/* the converter's rule: the file's type, F16 where a row does not split
 * into the type's blocks (gguf-py raises QuantError and falls back) */
static SmeltGgmlType
tensor_type (SmeltGgmlType file_type,
             guint64       row_len)
{
  return smelt_ggml_type_row_size (file_type, row_len) == 0 ? SMELT_GGML_TYPE_F16 : file_type;
}

gboolean
smelt_gguf_lora_add_tensors (SmeltGgufLora    *self,
                             SmeltGgufLayout  *layout,
                             SmeltGgmlType     file_type,
                             GError          **error)
{
  g_return_val_if_fail (self != NULL, FALSE);

  for (guint i = 0; i < self->pairs->len; i++)
    {
      Pair *p = g_ptr_array_index (self->pairs, i);

      for (int b = 0; b < 2; b++)
        {
          g_autofree char *name = g_strconcat (p->name, b ? ".lora_b" : ".lora_a", NULL);
          guint64 ne[2];

          tensor_ne (p, b, ne);
          if (!smelt_gguf_layout_add_tensor (layout, name, tensor_type (file_type, ne[0]),
                                             ne, 2, error))
            return FALSE;
        }
    }
  return TRUE;
}

/* ---- data -------------------------------------------------------------- */

/* lora_a as float32 rows: linear A's rows stacked (R rows of n_in); for
 * the embedding, one row of R per token, A transposed. */
static float *
build_a (const Pair  *p,
         GError     **error)
{
  guint64 ne[2];
  g_autofree float *rows = NULL;
  guint col = 0;

  tensor_ne (p, FALSE, ne);
  rows = g_new (float, ne[0] * ne[1]);
  for (guint k = 0; k < p->terms->len; k++)
    {
      const Term *t = &g_array_index (p->terms, Term, k);

      if (!p->embedding)
        {
          if (!smelt_tensor_read_rows (t->a, 0, t->rank, SMELT_DTYPE_F32, rows + (gsize) col * ne[0], error))
            return NULL;
        }
      else
        {
          guint64 vocab = dim (t->a, 1);
          g_autofree float *a = g_new (float, (gsize) t->rank * vocab);

          if (!smelt_tensor_read_rows (t->a, 0, t->rank, SMELT_DTYPE_F32, a, error))
            return NULL;
          for (guint64 v = 0; v < ne[1]; v++)
            for (guint j = 0; j < t->rank; j++)
              rows[v * ne[0] + col + j] = a[(gsize) j * vocab + v];
        }
      col += t->rank;
    }
  return g_steal_pointer (&rows);
}

/* lora_b as float32 rows: one row of R per output (B's columns
 * concatenated, each term's fold applied), rows permuted like the base
 * tensor's. */
static float *
build_b (const Pair  *p,
         GError     **error)
{
  guint64 ne[2];
  g_autofree float *rows = NULL;
  guint col = 0;

  tensor_ne (p, TRUE, ne);
  rows = g_new (float, ne[0] * ne[1]);
  for (guint k = 0; k < p->terms->len; k++)
    {
      const Term *t = &g_array_index (p->terms, Term, k);
      g_autofree float *b = g_new (float, (gsize) ne[1] * t->rank);

      /* the base tensor may keep fewer rows than the model has (gemma3's
       * embedding cut to the tokenizer) */
      if (!smelt_tensor_read_rows (t->b, 0, ne[1], SMELT_DTYPE_F32, b, error))
        return NULL;
      for (guint64 o = 0; o < ne[1]; o++)
        for (guint j = 0; j < t->rank; j++)
          {
            float v = b[o * t->rank + j];

            rows[o * ne[0] + col + j] = t->fold == 1.0f ? v : v * t->fold;
          }
      col += t->rank;
    }
  if (p->transform == SMELT_GGUF_XFORM_PERMUTE)
    {
      /* the base tensor's own permutation, on rows of length R */
      SmeltGgufTensor shape = { 0, };

      shape.n_dims = 2;
      shape.ne[0] = ne[0];
      shape.ne[1] = ne[1];
      shape.ne[2] = shape.ne[3] = 1;
      shape.transform = SMELT_GGUF_XFORM_PERMUTE;
      shape.n_head = p->n_head;
      smelt_gguf_tensor_transform (&shape, 0, ne[1], rows);
    }
  return g_steal_pointer (&rows);
}

static gboolean
check_fits (const Pair    *p,
            gboolean       b,
            SmeltGgmlType  type,
            const float   *rows,
            const guint64  ne[2],
            GError       **error)
{
  SmeltDType d = type == SMELT_GGML_TYPE_F16 ? SMELT_DTYPE_F16 : SMELT_DTYPE_BF16;
  gssize i;

  /* Q8_0's fp16 scale is amax/127: 127 times F16's range */
  if (type == SMELT_GGML_TYPE_F32 || type == SMELT_GGML_TYPE_Q8_0)
    return TRUE;
  i = smelt_find_overflow (rows, ne[0] * ne[1], d);
  if (i < 0)
    return TRUE;
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
               "%s.%s: value %g at row %" G_GUINT64_FORMAT ", column %" G_GUINT64_FORMAT
               " does not fit in %s%s", p->name, b ? "lora_b" : "lora_a", rows[i],
               (guint64) i / ne[0], (guint64) i % ne[0], smelt_ggml_type_get_name (type),
               type == SMELT_GGML_TYPE_F16 ? "; use Types=bf16 or f32" : "");
  return FALSE;
}

gboolean
smelt_gguf_lora_write_data (SmeltGgufLora    *self,
                            SmeltGgufLayout  *layout,
                            SmeltGgmlType     file_type,
                            GOutputStream    *out,
                            guint64          *written,
                            GCancellable     *cancellable,
                            GError          **error)
{
  static const guint8 zeros[SMELT_GGUF_ALIGNMENT];

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (smelt_gguf_layout_get_n_tensors (layout) == 2 * self->pairs->len, FALSE);

  *written = 0;
  for (guint i = 0; i < 2 * self->pairs->len; i++)
    {
      const Pair *p = g_ptr_array_index (self->pairs, i / 2);
      gboolean b = i % 2;
      guint64 ne[2], size;
      g_autofree float *rows = NULL;
      g_autofree guint8 *bytes = NULL;
      SmeltGgmlType type;
      gsize pad;

      tensor_ne (p, b, ne);
      type = tensor_type (file_type, ne[0]);
      size = smelt_ggml_type_row_size (type, ne[0]) * ne[1];
      if (size != smelt_gguf_layout_get_tensor_size (layout, i))
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s.%s: %" G_GUINT64_FORMAT " bytes of data, planned %" G_GUINT64_FORMAT,
                       p->name, b ? "lora_b" : "lora_a", size,
                       smelt_gguf_layout_get_tensor_size (layout, i));
          return FALSE;
        }
      rows = b ? build_b (p, error) : build_a (p, error);
      if (rows == NULL)
        {
          g_prefix_error (error, "%s.%s: ", p->name, b ? "lora_b" : "lora_a");
          return FALSE;
        }
      if (!check_fits (p, b, type, rows, ne, error))
        return FALSE;
      bytes = g_malloc (MAX (size, 1));
      smelt_ggml_encode_rows (type, rows, ne[1], ne[0], bytes);
      pad = (SMELT_GGUF_ALIGNMENT - size % SMELT_GGUF_ALIGNMENT) % SMELT_GGUF_ALIGNMENT;
      if (!g_output_stream_write_all (out, bytes, size, NULL, cancellable, error) ||
          (pad > 0 && !g_output_stream_write_all (out, zeros, pad, NULL, cancellable, error)))
        return FALSE;
      *written += size + pad;
    }
  return TRUE;
}
