/* smelt-source.c: the merged model every export of a job reads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>
#include <cblas.h>

#include "smelt-private.h"

/**
 * SmeltSource:
 *
 * The model that exports see: the base model's tensors with every adapter
 * merged in, plus the config.json those tensors imply.
 *
 * Building a source matches every adapter tensor to a base tensor and
 * checks every shape before any data is read: an adapter tensor that
 * matches nothing is an error naming it (a silent no-op merge is the most
 * common way merges fail), as is a shape that does not fit.
 */

struct _SmeltSource
{
  GObject      parent_instance;

  SmeltModel  *model;
  GPtrArray   *adapters;   /* SmeltAdapter */
  GArray      *weights;    /* double */
  GPtrArray   *tensors;    /* SmeltTensor, output order */
  GHashTable  *by_name;
  JsonNode    *config;
  guint        n_merged;
  GStrv        tokenizer_files;
  GHashTable  *tokenizer_paths;  /* name -> path */
};

G_DEFINE_FINAL_TYPE (SmeltSource, smelt_source, G_TYPE_OBJECT)

/* What the adapters do to one output tensor, collected before building. */
typedef struct {
  char        *name;
  SmeltTensor *replacement;     /* full tensor from an adapter, or NULL */
  const char  *replaced_by;     /* adapter path, for conflict messages */
  gboolean     replacement_is_copy; /* from modules_to_save: a trained copy
                                     * of one module, not a shared matrix */
  GArray      *terms;           /* SmeltLoraTerm */
  GPtrArray   *bias_vectors;    /* SmeltTensor */
  GArray      *bias_factors;    /* float */
} Edit;

/* The LoRA pieces of one module of one adapter. */
typedef struct {
  SmeltTensor *a, *b, *b_bias, *magnitude;
  gboolean     embedding;
  GPtrArray   *keys;            /* original key names, for messages */
} ModuleParts;

typedef struct {
  SmeltSource *self;
  GHashTable  *edits;           /* output name -> Edit */
  gboolean     tied;            /* base ties lm_head to the embedding */
  const char  *embed_name;      /* the input embedding's tensor name */
  GPtrArray   *unmatched;       /* char*: "key (adapter)" */
} Builder;

static SmeltTensor *lm_head_base (Builder *b);
static void collect_tokenizer_files (SmeltSource *self);

static void
edit_free (gpointer data)
{
  Edit *e = data;

  g_free (e->name);
  g_clear_object (&e->replacement);
  for (guint i = 0; i < e->terms->len; i++)
    {
      SmeltLoraTerm *t = &g_array_index (e->terms, SmeltLoraTerm, i);
      g_clear_object (&t->a);
      g_clear_object (&t->b);
      g_clear_object (&t->magnitude);
    }
  g_array_unref (e->terms);
  g_ptr_array_unref (e->bias_vectors);
  g_array_unref (e->bias_factors);
  g_free (e);
}

static void
module_parts_free (gpointer data)
{
  ModuleParts *m = data;

  g_ptr_array_unref (m->keys);
  g_free (m);
}

static void
smelt_source_finalize (GObject *object)
{
  SmeltSource *self = SMELT_SOURCE (object);

  g_clear_object (&self->model);
  g_clear_pointer (&self->adapters, g_ptr_array_unref);
  g_clear_pointer (&self->weights, g_array_unref);
  g_clear_pointer (&self->tensors, g_ptr_array_unref);
  g_clear_pointer (&self->by_name, g_hash_table_unref);
  g_clear_pointer (&self->config, json_node_unref);
  g_strfreev (self->tokenizer_files);
  g_clear_pointer (&self->tokenizer_paths, g_hash_table_unref);

  G_OBJECT_CLASS (smelt_source_parent_class)->finalize (object);
}

static void
smelt_source_class_init (SmeltSourceClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_source_finalize;
}

static void
smelt_source_init (SmeltSource *self)
{
  self->adapters = g_ptr_array_new_with_free_func (g_object_unref);
  self->weights = g_array_new (FALSE, FALSE, sizeof (double));
  self->tensors = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
}

static Edit *
get_edit (Builder    *b,
          const char *name)
{
  Edit *e = g_hash_table_lookup (b->edits, name);

  if (e == NULL)
    {
      e = g_new0 (Edit, 1);
      e->name = g_strdup (name);
      e->terms = g_array_new (FALSE, FALSE, sizeof (SmeltLoraTerm));
      e->bias_vectors = g_ptr_array_new_with_free_func (g_object_unref);
      e->bias_factors = g_array_new (FALSE, FALSE, sizeof (float));
      g_hash_table_insert (b->edits, e->name, e);
    }
  return e;
}

static gboolean
json_bool (JsonObject *obj,
           const char *name,
           gboolean    fallback)
{
  JsonNode *n = json_object_get_member (obj, name);

  if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    return json_node_get_boolean (n);
  return fallback;
}

static const char *
find_embedding (SmeltModel *model)
{
  static const char * const suffixes[] = {
    "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight", NULL
  };

  for (guint s = 0; suffixes[s]; s++)
    for (guint i = 0; i < smelt_model_get_n_tensors (model); i++)
      {
        const char *name = smelt_tensor_get_name (smelt_model_get_tensor (model, i));

        if (g_str_has_suffix (name, suffixes[s]))
          return name;
      }
  return NULL;
}

static gboolean
is_lm_head (const char *name)
{
  return g_str_equal (name, "lm_head.weight") || g_str_has_suffix (name, ".lm_head.weight");
}

/* Finds the base tensor an adapter-side name refers to, trying the
 * spellings that differ between a bare model and a *ForCausalLM
 * (huggingface/peft#1579). A tied base has no lm_head.weight: it becomes a
 * new output tensor built from the embedding. */
static char *
resolve_name (Builder    *b,
              const char *name)
{
  SmeltModel *model = b->self->model;
  g_autofree char *with_model = g_strconcat ("model.", name, NULL);

  if (smelt_model_lookup_tensor (model, name))
    return g_strdup (name);
  if (smelt_model_lookup_tensor (model, with_model))
    return g_steal_pointer (&with_model);
  if (g_str_has_prefix (name, "model.") && smelt_model_lookup_tensor (model, name + 6))
    return g_strdup (name + 6);
  if (b->tied && b->embed_name && is_lm_head (name))
    return g_strdup ("lm_head.weight");
  return NULL;
}

/* The shape a tensor will have once replacements are applied. */
static const guint64 *
effective_shape (Builder    *b,
                 const char *name,
                 guint      *n_dims)
{
  Edit *e = g_hash_table_lookup (b->edits, name);
  SmeltTensor *t;

  if (e && e->replacement)
    return smelt_tensor_get_shape (e->replacement, n_dims);
  t = smelt_model_lookup_tensor (b->self->model, name);
  if (t == NULL && is_lm_head (name) && b->embed_name)
    t = lm_head_base (b);
  return smelt_tensor_get_shape (t, n_dims);
}

static void
note_unmatched (Builder      *b,
                SmeltAdapter *adapter,
                const char   *key)
{
  g_ptr_array_add (b->unmatched, g_strdup_printf ("“%s” (%s)", key, smelt_adapter_get_path (adapter)));
}

/* Whether @name belongs to a module listed in modules_to_save: PEFT then
 * trained a private copy of it, which does not change what it was tied to. */
static gboolean
adapter_saves_module (SmeltAdapter *adapter,
                      const char   *name)
{
  JsonObject *config = smelt_adapter_get_config (adapter);
  JsonNode *node = json_object_get_member (config, "modules_to_save");
  g_autofree char *module = g_strdup (name);
  char *dot = strrchr (module, '.');
  JsonArray *list;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    return FALSE;
  if (dot)
    *dot = '\0';
  list = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (list); i++)
    {
      JsonNode *item = json_array_get_element (list, i);
      const char *entry;

      if (!JSON_NODE_HOLDS_VALUE (item) || json_node_get_value_type (item) != G_TYPE_STRING)
        continue;
      entry = json_node_get_string (item);
      if (g_str_equal (module, entry) ||
          (g_str_has_suffix (module, entry) && module[strlen (module) - strlen (entry) - 1] == '.'))
        return TRUE;
    }
  return FALSE;
}

/* An untied lm_head starts from the embedding matrix shared before the
 * adapter: a resized embedding the adapter saved counts, a trained private
 * copy of the embedding (modules_to_save) does not. */
static SmeltTensor *
lm_head_base (Builder *b)
{
  Edit *ee = g_hash_table_lookup (b->edits, b->embed_name);

  if (ee && ee->replacement && !ee->replacement_is_copy)
    return ee->replacement;
  return smelt_model_lookup_tensor (b->self->model, b->embed_name);
}

/* Adapter tensors are read as float32 rows, which F32, F16 and BF16
 * support; anything else would fail in the middle of the export. */
static gboolean
check_float (SmeltAdapter *adapter,
             SmeltTensor  *t,
             GError      **error)
{
  SmeltDType d = smelt_tensor_get_dtype (t);

  if (d == SMELT_DTYPE_F32 || d == SMELT_DTYPE_F16 || d == SMELT_DTYPE_BF16)
    return TRUE;
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
               "%s: tensor “%s” is %s; only F32, F16 and BF16 adapter tensors are merged",
               smelt_adapter_get_path (adapter), smelt_tensor_get_name (t),
               smelt_dtype_to_string (d));
  return FALSE;
}

static gboolean
add_replacement (Builder       *b,
                 SmeltAdapter  *adapter,
                 SmeltTensor   *tensor,
                 const char    *name,
                 GError       **error)
{
  g_autofree char *target = resolve_name (b, name);
  Edit *e;
  guint n_new, n_base;
  const guint64 *s_new, *s_base;
  gboolean vocab_dim_ok;

  if (target == NULL)
    {
      note_unmatched (b, adapter, smelt_tensor_get_name (tensor));
      return TRUE;
    }
  e = get_edit (b, target);
  if (e->replacement)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                   "%s: tensor “%s” replaces %s, which %s already replaces",
                   smelt_adapter_get_path (adapter), smelt_tensor_get_name (tensor),
                   target, e->replaced_by);
      return FALSE;
    }
  s_base = effective_shape (b, target, &n_base);
  s_new = smelt_tensor_get_shape (tensor, &n_new);
  /* Only the vocabulary dimension may change (resized embeddings). */
  vocab_dim_ok = n_new == n_base && n_new == 2 && s_new[1] == s_base[1];
  if (!(vocab_dim_ok || (n_new == n_base && memcmp (s_new, s_base, n_new * sizeof (guint64)) == 0)))
    {
      g_autofree char *a = _smelt_shape_to_string (s_new, n_new);
      g_autofree char *c = _smelt_shape_to_string (s_base, n_base);

      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                   "%s: tensor “%s” has shape %s but the base's %s is %s",
                   smelt_adapter_get_path (adapter), smelt_tensor_get_name (tensor), a, target, c);
      return FALSE;
    }
  if (!check_float (adapter, tensor, error))
    return FALSE;
  e->replacement = g_object_ref (tensor);
  e->replaced_by = smelt_adapter_get_path (adapter);
  e->replacement_is_copy = adapter_saves_module (adapter, target);
  return TRUE;
}

static gboolean
shape_is (SmeltTensor   *t,
          guint          want_dims,
          guint64        d0,
          guint64        d1)
{
  guint n;
  const guint64 *s = smelt_tensor_get_shape (t, &n);

  if (n != want_dims)
    return FALSE;
  return want_dims == 1 ? s[0] == d0 : (s[0] == d0 && s[1] == d1);
}

static gboolean
shape_error (SmeltAdapter  *adapter,
             SmeltTensor   *t,
             const char    *what,
             guint64        d0,
             guint64        d1,
             const char    *target,
             GError       **error)
{
  guint n;
  const guint64 *s = smelt_tensor_get_shape (t, &n);
  g_autofree char *have = _smelt_shape_to_string (s, n);
  guint64 want[2] = { d0, d1 };
  g_autofree char *need = _smelt_shape_to_string (want, d1 ? 2 : 1);

  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
               "%s: tensor “%s” has shape %s; as the %s of base tensor %s it must be %s",
               smelt_adapter_get_path (adapter), smelt_tensor_get_name (t), have, what,
               target, need);
  return FALSE;
}

/* Adds one module's LoRA (and DoRA, and lora_B bias) to its target. */
static gboolean
add_module (Builder      *b,
            SmeltAdapter *adapter,
            double        weight,
            const char   *module,
            ModuleParts  *m,
            GError      **error)
{
  g_autofree char *weight_name = g_strconcat (module, ".weight", NULL);
  g_autofree char *target = NULL;
  const guint64 *shape;
  guint n_dims, rank, expected;
  guint64 rows, cols, out_dim, in_dim;
  gboolean transposed;
  SmeltLoraTerm term = { 0, };
  double scale;

  if (m->a == NULL || m->b == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: module “%s” has %s but no %s", smelt_adapter_get_path (adapter),
                   module, m->a ? "lora_A" : "lora_B", m->a ? "lora_B" : "lora_A");
      return FALSE;
    }
  target = resolve_name (b, weight_name);
  if (target == NULL)
    {
      for (guint i = 0; i < m->keys->len; i++)
        note_unmatched (b, adapter, g_ptr_array_index (m->keys, i));
      return TRUE;
    }
  if (!check_float (adapter, m->a, error) || !check_float (adapter, m->b, error) ||
      (m->magnitude && !check_float (adapter, m->magnitude, error)) ||
      (m->b_bias && !check_float (adapter, m->b_bias, error)))
    return FALSE;

  shape = effective_shape (b, target, &n_dims);
  if (n_dims != 2)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                   "%s: module “%s” has LoRA weights but base tensor %s is not a matrix",
                   smelt_adapter_get_path (adapter), module, target);
      return FALSE;
    }
  rows = shape[0];
  cols = shape[1];
  /* Embeddings store [vocab, dim] and Conv1D stores [in, out]: in both the
   * delta is (B·A)ᵀ. */
  transposed = m->embedding || smelt_adapter_get_fan_in_fan_out (adapter);
  out_dim = transposed ? cols : rows;
  in_dim = transposed ? rows : cols;

  {
    guint na;
    const guint64 *sa = smelt_tensor_get_shape (m->a, &na);
    rank = na >= 1 ? (guint) sa[0] : 0;
  }
  if (rank == 0 || !shape_is (m->a, 2, rank, in_dim))
    return shape_error (adapter, m->a, "lora_A", MAX (rank, 1), in_dim, target, error);
  if (!shape_is (m->b, 2, out_dim, rank))
    return shape_error (adapter, m->b, "lora_B", out_dim, rank, target, error);
  expected = _smelt_adapter_get_expected_rank (adapter, module);
  if (expected != rank)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                   "%s: module “%s” has rank %u in its tensors but adapter_config.json "
                   "says %u (r / rank_pattern); the scale would be wrong",
                   smelt_adapter_get_path (adapter), module, rank, expected);
      return FALSE;
    }
  if (m->magnitude && !shape_is (m->magnitude, 1, out_dim, 0))
    return shape_error (adapter, m->magnitude, "DoRA magnitude", out_dim, 0, target, error);
  if (m->magnitude == NULL && smelt_adapter_get_use_dora (adapter))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: use_dora is set but module “%s” has no lora_magnitude_vector",
                   smelt_adapter_get_path (adapter), module);
      return FALSE;
    }

  scale = smelt_adapter_get_scale_for (adapter, module, rank);
  term.a = g_object_ref (m->a);
  term.b = g_object_ref (m->b);
  term.magnitude = m->magnitude ? g_object_ref (m->magnitude) : NULL;
  term.layout = transposed ? SMELT_LORA_TRANSPOSED : SMELT_LORA_LINEAR;
  term.rank = rank;
  term.factor = (float) (scale * weight);
  g_array_append_val (get_edit (b, target)->terms, term);

  if (m->b_bias)
    {
      g_autofree char *bias_name = g_strconcat (module, ".bias", NULL);
      g_autofree char *bias_target = resolve_name (b, bias_name);
      Edit *be;
      float f = term.factor;

      if (bias_target == NULL)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                       "%s: “%s” adds a bias to module “%s”, but the base model has "
                       "no %s to add it to", smelt_adapter_get_path (adapter),
                       smelt_tensor_get_name (m->b_bias), module, bias_name);
          return FALSE;
        }
      if (!shape_is (m->b_bias, 1, out_dim, 0))
        return shape_error (adapter, m->b_bias, "lora_B bias", out_dim, 0, bias_target, error);
      be = get_edit (b, bias_target);
      g_ptr_array_add (be->bias_vectors, g_object_ref (m->b_bias));
      g_array_append_val (be->bias_factors, f);
    }
  return TRUE;
}

static gboolean
collect_adapter (Builder       *b,
                 SmeltAdapter  *adapter,
                 double         weight,
                 GError       **error)
{
  SmeltSafetensorsFile *file = smelt_adapter_get_file (adapter);
  g_autoptr(GHashTable) modules = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, module_parts_free);
  g_autoptr(GPtrArray) order = g_ptr_array_new_with_free_func (g_free);
  guint n = smelt_safetensors_file_get_n_tensors (file);

  /* Replacements first: LoRA shapes are checked against them. */
  for (int pass = 0; pass < 2; pass++)
    for (guint i = 0; i < n; i++)
      {
        SmeltTensor *t = smelt_safetensors_file_get_tensor (file, i);
        const char *key = smelt_tensor_get_name (t);
        g_autofree char *module = NULL;
        SmeltAdapterKeyKind kind;
        ModuleParts *m;
        GError *local = NULL;

        if (!_smelt_parse_adapter_key (key, &module, &kind, &local))
          {
            g_propagate_prefixed_error (error, local, "%s: ", smelt_adapter_get_path (adapter));
            return FALSE;
          }
        if ((kind == SMELT_ADAPTER_KEY_FULL) != (pass == 0))
          continue;
        if (kind == SMELT_ADAPTER_KEY_FULL)
          {
            if (!add_replacement (b, adapter, t, module, error))
              return FALSE;
            continue;
          }
        m = g_hash_table_lookup (modules, module);
        if (m == NULL)
          {
            m = g_new0 (ModuleParts, 1);
            m->keys = g_ptr_array_new ();
            g_ptr_array_add (order, g_strdup (module));
            g_hash_table_insert (modules, g_strdup (module), m);
          }
        g_ptr_array_add (m->keys, (gpointer) key);
        switch (kind)
          {
          case SMELT_ADAPTER_KEY_EMBEDDING_A:
            m->embedding = TRUE;
            G_GNUC_FALLTHROUGH;
          case SMELT_ADAPTER_KEY_LORA_A:
            m->a = t;
            break;
          case SMELT_ADAPTER_KEY_EMBEDDING_B:
            m->embedding = TRUE;
            G_GNUC_FALLTHROUGH;
          case SMELT_ADAPTER_KEY_LORA_B:
            m->b = t;
            break;
          case SMELT_ADAPTER_KEY_LORA_B_BIAS:
            m->b_bias = t;
            break;
          case SMELT_ADAPTER_KEY_MAGNITUDE:
            m->magnitude = t;
            break;
          case SMELT_ADAPTER_KEY_FULL:
          default:
            g_assert_not_reached ();
          }
      }

  for (guint i = 0; i < order->len; i++)
    {
      const char *module = g_ptr_array_index (order, i);

      if (!add_module (b, adapter, weight, module, g_hash_table_lookup (modules, module), error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
report_unmatched (Builder  *b,
                  GError  **error)
{
  GString *msg;
  guint shown = MIN (b->unmatched->len, 5);

  if (b->unmatched->len == 0)
    return TRUE;
  msg = g_string_new (NULL);
  g_string_append_printf (msg, "%u adapter tensor%s match%s no tensor of the base model %s: ",
                          b->unmatched->len, b->unmatched->len == 1 ? "" : "s",
                          b->unmatched->len == 1 ? "es" : "",
                          smelt_model_get_path (b->self->model));
  for (guint i = 0; i < shown; i++)
    g_string_append_printf (msg, "%s%s", i ? ", " : "", (char *) g_ptr_array_index (b->unmatched, i));
  if (b->unmatched->len > shown)
    g_string_append_printf (msg, " and %u more", b->unmatched->len - shown);
  g_string_append (msg, ". Is this adapter for a different base model?");
  g_set_error_literal (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH, msg->str);
  g_string_free (msg, TRUE);
  return FALSE;
}

static SmeltTensor *
build_tensor (Builder     *b,
              const char  *name,
              SmeltTensor *stored,
              Edit        *e)
{
  SmeltTensor *base = stored;
  SmeltMergedTensor *merged;
  SmeltDType dtype;

  if (e == NULL)
    return g_object_ref (stored);

  if (stored == NULL)
    {
      /* An untied lm_head. */
      stored = smelt_model_lookup_tensor (b->self->model, b->embed_name);
      base = lm_head_base (b);
    }
  dtype = smelt_tensor_get_dtype (stored);
  if (e->replacement)
    base = e->replacement;

  merged = SMELT_MERGED_TENSOR (_smelt_merged_tensor_new (name, base, dtype));
  for (guint i = 0; i < e->terms->len; i++)
    {
      SmeltLoraTerm *t = &g_array_index (e->terms, SmeltLoraTerm, i);
      SmeltLoraTerm copy = *t;

      copy.a = g_object_ref (t->a);
      copy.b = g_object_ref (t->b);
      copy.magnitude = t->magnitude ? g_object_ref (t->magnitude) : NULL;
      _smelt_merged_tensor_add_term (merged, &copy);
    }
  for (guint i = 0; i < e->bias_vectors->len; i++)
    _smelt_merged_tensor_add_bias (merged, g_ptr_array_index (e->bias_vectors, i),
                                   g_array_index (e->bias_factors, float, i));
  return SMELT_TENSOR (merged);
}

static void
add_output (SmeltSource *self,
            SmeltTensor *tensor)
{
  g_ptr_array_add (self->tensors, tensor);
  g_hash_table_insert (self->by_name, (gpointer) smelt_tensor_get_name (tensor), tensor);
  if (smelt_tensor_is_modified (tensor))
    self->n_merged++;
}

/* Column DoRA needs the full tensor before any row; combining it with
 * another delta on the same tensor would need one more pass per term. */
static gboolean
check_terms (Edit    *e,
             GError **error)
{
  gboolean has_col_dora = FALSE;

  for (guint i = 0; i < e->terms->len; i++)
    {
      SmeltLoraTerm *t = &g_array_index (e->terms, SmeltLoraTerm, i);

      if (t->magnitude && t->layout == SMELT_LORA_TRANSPOSED)
        has_col_dora = TRUE;
    }
  if (has_col_dora && e->terms->len > 1)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: a DoRA adapter on an embedding or fan_in_fan_out layer cannot be "
                   "combined with another adapter on the same tensor", e->name);
      return FALSE;
    }
  return TRUE;
}

/* A replaced embedding changes the vocabulary: every tensor that had the
 * old vocabulary as its first dimension must follow, and config.json must
 * say so. */
static gboolean
update_config (Builder  *b,
               gboolean  untied,
               GError  **error)
{
  SmeltSource *self = b->self;
  JsonObject *config;
  gint64 old_vocab = -1, new_vocab = -1;
  const char *first_changed = NULL;

  /* A deep copy to edit: json_node_copy() would share the object. */
  {
    g_autoptr(JsonNode) base = json_node_init_object (json_node_alloc (), smelt_model_get_config (self->model));
    g_autofree char *text = json_to_string (base, FALSE);
    g_autoptr(JsonParser) parser = json_parser_new ();

    if (!json_parser_load_from_data (parser, text, -1, error))
      return FALSE;
    self->config = json_node_copy (json_parser_get_root (parser));
    config = json_node_get_object (self->config);
  }

  if (json_object_has_member (config, "vocab_size") &&
      JSON_NODE_HOLDS_VALUE (json_object_get_member (config, "vocab_size")))
    old_vocab = json_object_get_int_member (config, "vocab_size");

  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);
      SmeltTensor *stored = smelt_model_lookup_tensor (self->model, smelt_tensor_get_name (t));
      guint nd, ns;
      const guint64 *st = smelt_tensor_get_shape (t, &nd);
      const guint64 *ss;

      if (stored == NULL)
        stored = smelt_model_lookup_tensor (self->model, b->embed_name);
      ss = smelt_tensor_get_shape (stored, &ns);
      if (nd == 2 && ns == 2 && st[0] != ss[0])
        {
          if (new_vocab >= 0 && (guint64) new_vocab != st[0])
            {
              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                           "the adapter resizes %s to %" G_GUINT64_FORMAT " rows but %s to %"
                           G_GINT64_FORMAT, smelt_tensor_get_name (t), st[0], first_changed, new_vocab);
              return FALSE;
            }
          new_vocab = st[0];
          first_changed = smelt_tensor_get_name (t);
        }
    }
  if (new_vocab >= 0)
    {
      /* only the vocabulary matrices: another matrix may have as many rows
       * as the old vocabulary by coincidence */
      const char *vocab_tensors[] = { b->embed_name, "lm_head.weight" };

      for (guint i = 0; i < G_N_ELEMENTS (vocab_tensors); i++)
        {
          SmeltTensor *t = vocab_tensors[i] ? g_hash_table_lookup (self->by_name, vocab_tensors[i]) : NULL;
          guint nd = 0;
          const guint64 *st = t ? smelt_tensor_get_shape (t, &nd) : NULL;

          if (nd == 2 && (gint64) st[0] == old_vocab && old_vocab != new_vocab)
            {
              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                           "the adapter resizes the vocabulary to %" G_GINT64_FORMAT " (%s) "
                           "but brings no resized %s; the merged model would not load",
                           new_vocab, first_changed, smelt_tensor_get_name (t));
              return FALSE;
            }
        }
      json_object_set_int_member (config, "vocab_size", new_vocab);
    }
  if (untied)
    json_object_set_boolean_member (config, "tie_word_embeddings", FALSE);
  return TRUE;
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (smelt_tensor_get_name (*(SmeltTensor **) a), smelt_tensor_get_name (*(SmeltTensor **) b));
}

static gboolean
build_outputs (Builder  *b,
               GError  **error)
{
  SmeltSource *self = b->self;
  SmeltModel *model = self->model;
  Edit *lm_edit = g_hash_table_lookup (b->edits, "lm_head.weight");
  Edit *embed_edit = b->embed_name ? g_hash_table_lookup (b->edits, b->embed_name) : NULL;
  GHashTableIter iter;
  gpointer value;
  /* With tied weights, training changed the input embedding and the output
   * projection separately (an embedding LoRA does not touch lm_head and an
   * lm_head LoRA does not touch the embedding): write both, untied. */
  gboolean untie = b->tied && (lm_edit != NULL || embed_edit != NULL);

  if (untie && lm_edit == NULL)
    lm_edit = get_edit (b, "lm_head.weight");

  g_hash_table_iter_init (&iter, b->edits);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (!check_terms (value, error))
      return FALSE;

  for (guint i = 0; i < smelt_model_get_n_tensors (model); i++)
    {
      SmeltTensor *stored = smelt_model_get_tensor (model, i);
      const char *name = smelt_tensor_get_name (stored);

      add_output (self, build_tensor (b, name, stored, g_hash_table_lookup (b->edits, name)));
    }
  if (untie)
    add_output (self, build_tensor (b, "lm_head.weight", NULL, lm_edit));
  /* Byte-wise name order: the order safetensors' save_file lays tensors
   * out in, so a one-shard export matches transformers' file, and the
   * order the base's own (save_file-written) shards are read fastest in.
   * A GGUF model keeps its file's order, read front to back. */
  if (smelt_model_get_gguf (model) == NULL)
    g_ptr_array_sort (self->tensors, compare_names);
  return update_config (b, untie, error);
}

/**
 * smelt_source_new:
 * @model: the base model
 * @adapters: (array length=n_adapters) (nullable): adapters, merged in order
 * @weights: (array length=n_adapters) (nullable): a weight per adapter
 *   (1.0 each if %NULL)
 * @n_adapters: number of adapters
 * @error: return location for a #GError
 *
 * Matches every adapter tensor to the base model and plans the merge.
 *
 * Returns: (transfer full): a new #SmeltSource, or %NULL with @error set
 */
SmeltSource *
smelt_source_new (SmeltModel    *model,
                  SmeltAdapter **adapters,
                  const double  *weights,
                  guint          n_adapters,
                  GError       **error)
{
  g_autoptr(SmeltSource) self = NULL;
  g_autoptr(GHashTable) edits = NULL;
  g_autoptr(GPtrArray) unmatched = NULL;
  JsonObject *config;
  Builder b = { 0, };

  g_return_val_if_fail (SMELT_IS_MODEL (model), NULL);

  if (n_adapters > 0 && smelt_model_get_gguf (model) != NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: adapters merge into a Hugging Face model, and this is a GGUF "
                   "file (llama.cpp's names, permuted Q/K rows): point Model= at the "
                   "Hugging Face model the adapter was trained on",
                   smelt_model_get_path (model));
      return NULL;
    }

  /* Workers each run their own GEMMs: OpenBLAS threads would oversubscribe
   * the cores and make results depend on the thread count. */
  openblas_set_num_threads (1);

  self = g_object_new (SMELT_TYPE_SOURCE, NULL);
  self->model = g_object_ref (model);
  edits = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, edit_free);
  unmatched = g_ptr_array_new_with_free_func (g_free);
  config = smelt_model_get_config (model);

  b.self = self;
  b.edits = edits;
  b.unmatched = unmatched;
  b.embed_name = find_embedding (model);
  b.tied = smelt_model_lookup_tensor (model, "lm_head.weight") == NULL &&
           json_bool (config, "tie_word_embeddings", TRUE);

  for (guint i = 0; i < n_adapters; i++)
    {
      double w = weights ? weights[i] : 1.0;

      g_ptr_array_add (self->adapters, g_object_ref (adapters[i]));
      g_array_append_val (self->weights, w);
      if (!collect_adapter (&b, adapters[i], w, error))
        return NULL;
    }
  if (!report_unmatched (&b, error) || !build_outputs (&b, error))
    return NULL;
  collect_tokenizer_files (self);
  return g_steal_pointer (&self);
}

/**
 * smelt_source_get_model:
 * @self: a #SmeltSource
 *
 * Gets the base model.
 *
 * Returns: (transfer none): the base model
 */
SmeltModel *
smelt_source_get_model (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  return self->model;
}

/**
 * smelt_source_get_n_adapters:
 * @self: a #SmeltSource
 *
 * Gets the number of adapters merged.
 *
 * Returns: the number of adapters merged
 */
guint
smelt_source_get_n_adapters (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), 0);
  return self->adapters->len;
}

/**
 * smelt_source_get_adapter:
 * @self: a #SmeltSource
 * @index: adapter index
 *
 * Gets the adapter.
 *
 * Returns: (transfer none): the adapter
 */
SmeltAdapter *
smelt_source_get_adapter (SmeltSource *self,
                          guint        index)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  g_return_val_if_fail (index < self->adapters->len, NULL);
  return g_ptr_array_index (self->adapters, index);
}

/**
 * smelt_source_get_adapter_weight:
 * @self: a #SmeltSource
 * @index: adapter index
 *
 * Gets the weight the adapter is merged with.
 *
 * Returns: the weight the adapter is merged with
 */
double
smelt_source_get_adapter_weight (SmeltSource *self,
                                 guint        index)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), 0);
  g_return_val_if_fail (index < self->weights->len, 0);
  return g_array_index (self->weights, double, index);
}

/**
 * smelt_source_get_n_tensors:
 * @self: a #SmeltSource
 *
 * Gets the number of output tensors.
 *
 * Returns: the number of output tensors
 */
guint
smelt_source_get_n_tensors (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), 0);
  return self->tensors->len;
}

/**
 * smelt_source_get_tensor:
 * @self: a #SmeltSource
 * @index: position in output order
 *
 * Gets the tensor.
 *
 * Returns: (transfer none): the tensor
 */
SmeltTensor *
smelt_source_get_tensor (SmeltSource *self,
                         guint        index)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  g_return_val_if_fail (index < self->tensors->len, NULL);
  return g_ptr_array_index (self->tensors, index);
}

/**
 * smelt_source_lookup_tensor:
 * @self: a #SmeltSource
 * @name: a tensor name
 *
 * Gets the output tensor of that name.
 *
 * Returns: (transfer none) (nullable): the output tensor of that name
 */
SmeltTensor *
smelt_source_lookup_tensor (SmeltSource *self,
                            const char  *name)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  return g_hash_table_lookup (self->by_name, name);
}

/**
 * smelt_source_get_config:
 * @self: a #SmeltSource
 *
 * The base's config.json with what the merge changed: vocab_size for
 * resized embeddings, tie_word_embeddings=false when lm_head was untied.
 *
 * Returns: (transfer none): the config
 */
JsonObject *
smelt_source_get_config (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  return json_node_get_object (self->config);
}

/**
 * smelt_source_get_n_merged:
 * @self: a #SmeltSource
 *
 * Gets how many output tensors differ from the base's.
 *
 * Returns: how many output tensors differ from the base's
 */
guint
smelt_source_get_n_merged (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), 0);
  return self->n_merged;
}

/**
 * smelt_source_get_n_bytes:
 * @self: a #SmeltSource
 *
 * Gets the bytes of all output tensors in their natural dtypes.
 *
 * Returns: the bytes of all output tensors in their natural dtypes
 */
guint64
smelt_source_get_n_bytes (SmeltSource *self)
{
  guint64 n = 0;

  g_return_val_if_fail (SMELT_IS_SOURCE (self), 0);
  for (guint i = 0; i < self->tensors->len; i++)
    n += smelt_tensor_get_n_bytes (g_ptr_array_index (self->tensors, i));
  return n;
}

/* Trainers save the tokenizer beside the adapter, with any tokens they
 * added: that copy matches the merged weights, so each tokenizer file
 * comes from the last adapter that has it, else from the base. A file
 * only the base has is still exported, so no export lacks, say,
 * tokenizer.json because the trainer saved only tokenizer_config.json. */
static void
collect_tokenizer_files (SmeltSource *self)
{
  GPtrArray *names = g_ptr_array_new ();

  self->tokenizer_paths = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  for (int i = -1; i < (int) self->adapters->len; i++)
    {
      const char *dir = i < 0 ? smelt_model_get_path (self->model)
                              : smelt_adapter_get_path (g_ptr_array_index (self->adapters, i));
      const char * const *files = i < 0 ? smelt_model_get_tokenizer_files (self->model)
                                        : smelt_adapter_get_tokenizer_files (g_ptr_array_index (self->adapters, i));

      for (guint k = 0; files[k]; k++)
        {
          if (!g_hash_table_contains (self->tokenizer_paths, files[k]))
            g_ptr_array_add (names, g_strdup (files[k]));
          g_hash_table_insert (self->tokenizer_paths, g_strdup (files[k]),
                               g_build_filename (dir, files[k], NULL));
        }
    }
  g_ptr_array_sort (names, _smelt_compare_strv_items);
  g_ptr_array_add (names, NULL);
  self->tokenizer_files = (GStrv) g_ptr_array_free (names, FALSE);
}

/**
 * smelt_source_get_tokenizer_files:
 * @self: a #SmeltSource
 *
 * The tokenizer files exports should carry: every tokenizer file of the
 * base and of the adapters, each taken from the last adapter that has it
 * (trainers save the tokenizer, with the tokens they added, beside the
 * adapter), else from the base.
 *
 * Returns: (transfer none) (array zero-terminated=1): file names
 */
const char * const *
smelt_source_get_tokenizer_files (SmeltSource *self)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  return (const char * const *) self->tokenizer_files;
}

/**
 * smelt_source_get_tokenizer_path:
 * @self: a #SmeltSource
 * @name: a name from smelt_source_get_tokenizer_files()
 *
 * Gets where that file is read from.
 *
 * Returns: (type filename) (nullable): where that file is read from
 */
const char *
smelt_source_get_tokenizer_path (SmeltSource *self,
                                 const char  *name)
{
  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  return g_hash_table_lookup (self->tokenizer_paths, name);
}

/**
 * smelt_source_get_base_tensor:
 * @self: a #SmeltSource
 * @tensor: a tensor of @self
 *
 * The base model's own tensor of the same name and shape: the weights
 * before the adapters, for reports that compare the two. An adapter that
 * resizes a tensor (a grown vocabulary) leaves nothing to compare with.
 *
 * Returns: (transfer none) (nullable): the base tensor, or %NULL
 */
SmeltTensor *
smelt_source_get_base_tensor (SmeltSource *self,
                              SmeltTensor *tensor)
{
  SmeltTensor *base;
  guint na, nb;
  const guint64 *a, *b;

  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);
  base = smelt_model_lookup_tensor (self->model, smelt_tensor_get_name (tensor));
  if (base == NULL)
    return NULL;
  a = smelt_tensor_get_shape (tensor, &na);
  b = smelt_tensor_get_shape (base, &nb);
  return na == nb && memcmp (a, b, na * sizeof *a) == 0 ? base : NULL;
}

/**
 * smelt_source_make_config_json:
 * @self: a #SmeltSource
 * @torch_dtype: the `torch_dtype` of the written weights ("bfloat16", …)
 * @quantization_config: (nullable): the `quantization_config` to write,
 *   or %NULL for none
 *
 * The merged model's config.json as save_pretrained writes it (indent 2,
 * keys sorted, a final newline): @self's configuration with `torch_dtype`
 * set, transformers v5's `dtype` dropped, and any `quantization_config`
 * replaced by @quantization_config.
 *
 * Returns: (transfer full): the file's contents
 */
GBytes *
smelt_source_make_config_json (SmeltSource *self,
                               const char  *torch_dtype,
                               JsonNode    *quantization_config)
{
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonObject *config;
  g_autofree char *out = NULL;

  g_return_val_if_fail (SMELT_IS_SOURCE (self), NULL);

  /* edit a copy: the source's config is shared by every export */
  node = json_node_init_object (json_node_alloc (), smelt_source_get_config (self));
  text = smelt_json_to_string (node, FALSE, FALSE);
  json_parser_load_from_data (parser, text, -1, NULL);
  config = json_node_get_object (json_parser_get_root (parser));
  json_object_remove_member (config, "quantization_config");
  json_object_remove_member (config, "dtype");
  json_object_set_string_member (config, "torch_dtype", torch_dtype);
  if (quantization_config != NULL)
    json_object_set_member (config, "quantization_config", json_node_copy (quantization_config));
  out = smelt_json_to_string (json_parser_get_root (parser), TRUE, TRUE);
  return g_bytes_new_take (g_strconcat (out, "\n", NULL), strlen (out) + 1);
}
