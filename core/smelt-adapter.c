/* smelt-adapter.c: a PEFT LoRA adapter directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "smelt-private.h"

/**
 * SmeltAdapter:
 *
 * A PEFT LoRA adapter: adapter_config.json and adapter_model.safetensors.
 *
 * Opening an adapter reads every configuration field that changes the
 * merge (lora_alpha, use_rslora, alpha_pattern, rank_pattern, use_dora,
 * fan_in_fan_out, bias, lora_bias, modules_to_save) and refuses, up front
 * and with a reason, the adapter kinds a plain merge would get wrong.
 */

struct _SmeltAdapter
{
  GObject               parent_instance;

  char                 *path;
  JsonNode             *config;
  SmeltSafetensorsFile *file;
  GStrv                 tokenizer_files;

  guint                 r;
  double                alpha;
  gboolean              use_rslora;
  gboolean              use_dora;
  gboolean              fan_in_fan_out;
  GPtrArray            *alpha_patterns;  /* PatternEntry */
  GPtrArray            *rank_patterns;   /* PatternEntry */
};

typedef struct {
  char   *key;
  GRegex *regex;
  double  value;
} PatternEntry;

G_DEFINE_FINAL_TYPE (SmeltAdapter, smelt_adapter, G_TYPE_OBJECT)

static void
pattern_entry_free (gpointer data)
{
  PatternEntry *e = data;

  g_free (e->key);
  g_clear_pointer (&e->regex, g_regex_unref);
  g_free (e);
}

static void
smelt_adapter_finalize (GObject *object)
{
  SmeltAdapter *self = SMELT_ADAPTER (object);

  g_free (self->path);
  g_clear_pointer (&self->config, json_node_unref);
  g_clear_object (&self->file);
  g_strfreev (self->tokenizer_files);
  g_clear_pointer (&self->alpha_patterns, g_ptr_array_unref);
  g_clear_pointer (&self->rank_patterns, g_ptr_array_unref);

  G_OBJECT_CLASS (smelt_adapter_parent_class)->finalize (object);
}

static void
smelt_adapter_class_init (SmeltAdapterClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_adapter_finalize;
}

static void
smelt_adapter_init (SmeltAdapter *self)
{
  self->alpha_patterns = g_ptr_array_new_with_free_func (pattern_entry_free);
  self->rank_patterns = g_ptr_array_new_with_free_func (pattern_entry_free);
}

static gboolean
member_is_set (JsonObject *obj,
               const char *name)
{
  JsonNode *node = json_object_get_member (obj, name);

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return FALSE;
  if (JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_BOOLEAN)
    return json_node_get_boolean (node);
  if (JSON_NODE_HOLDS_ARRAY (node))
    return json_array_get_length (json_node_get_array (node)) > 0;
  if (JSON_NODE_HOLDS_OBJECT (node))
    return json_object_get_size (json_node_get_object (node)) > 0;
  return TRUE;
}

static gboolean
get_number (JsonObject  *obj,
            const char  *name,
            double       fallback,
            double      *out,
            const char  *config_path,
            GError     **error)
{
  JsonNode *node = json_object_get_member (obj, name);
  GType t;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    {
      *out = fallback;
      return TRUE;
    }
  t = JSON_NODE_HOLDS_VALUE (node) ? json_node_get_value_type (node) : G_TYPE_INVALID;
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “%s” must be a number", config_path, name);
      return FALSE;
    }
  *out = json_node_get_double (node);
  if (!isfinite (*out))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “%s” is not finite", config_path, name);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_bool (JsonObject  *obj,
          const char  *name,
          gboolean    *out,
          const char  *config_path,
          GError     **error)
{
  JsonNode *node = json_object_get_member (obj, name);

  *out = FALSE;
  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != G_TYPE_BOOLEAN)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “%s” must be true or false", config_path, name);
      return FALSE;
    }
  *out = json_node_get_boolean (node);
  return TRUE;
}

/* PEFT's get_pattern_key: re.match(r"(.*\.)?(KEY)$", module). */
static gboolean
load_patterns (JsonObject  *obj,
               const char  *name,
               GPtrArray   *into,
               const char  *config_path,
               GError     **error)
{
  JsonNode *node = json_object_get_member (obj, name);
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;

  if (node == NULL || JSON_NODE_HOLDS_NULL (node))
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “%s” must be an object", config_path, name);
      return FALSE;
    }
  json_object_iter_init (&iter, json_node_get_object (node));
  while (json_object_iter_next (&iter, &key, &value))
    {
      PatternEntry *e;
      g_autofree char *re = g_strdup_printf ("^(.*\\.)?(%s)$", key);
      g_autoptr(GError) local = NULL;
      GType t = JSON_NODE_HOLDS_VALUE (value) ? json_node_get_value_type (value) : G_TYPE_INVALID;

      if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: %s[“%s”] must be a number", config_path, name, key);
          return FALSE;
        }
      e = g_new0 (PatternEntry, 1);
      e->key = g_strdup (key);
      e->value = json_node_get_double (value);
      e->regex = g_regex_new (re, G_REGEX_OPTIMIZE, 0, &local);
      if (e->regex == NULL)
        {
          pattern_entry_free (e);
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: %s key “%s” is not a valid regular expression: %s",
                       config_path, name, key, local->message);
          return FALSE;
        }
      g_ptr_array_add (into, e);
    }
  return TRUE;
}

static const PatternEntry *
match_pattern (GPtrArray  *patterns,
               const char *module)
{
  for (guint i = 0; i < patterns->len; i++)
    {
      PatternEntry *e = g_ptr_array_index (patterns, i);

      if (g_regex_match (e->regex, module, 0, NULL))
        return e;
    }
  return NULL;
}

/* Adapter kinds whose weights do not mean "W + s·B·A on this base". */
static gboolean
refuse_unmergeable (JsonObject  *config,
                    const char  *config_path,
                    GError     **error)
{
  static const struct { const char *key; const char *why; } refused[] = {
    { "layer_replication", "it duplicates base layers, so the merged model has a different structure" },
    { "use_qalora", "QA-LoRA pools inputs per quantization group; its delta is not B·A" },
    { "target_parameters", "LoRA on raw parameters (MoE experts) is not merged yet" },
    { "alora_invocation_tokens", "activated LoRA only applies after its invocation tokens" },
    { "use_bdlora", "block-diagonal LoRA is not merged yet" },
    { "arrow_config", "Arrow routes between several LoRAs at run time" },
    { "megatron_config", "Megatron-parallel LoRA layers are not merged yet" },
    { "trainable_token_indices", "trainable-token adapters are not merged yet" },
  };
  const char *peft_type = NULL;
  JsonNode *node;

  node = json_object_get_member (config, "peft_type");
  if (node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    peft_type = json_node_get_string (node);
  if (peft_type == NULL || !g_str_equal (peft_type, "LORA"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: peft_type is “%s”; smelt merges LORA adapters only",
                   config_path, peft_type ? peft_type : "(missing)");
      return FALSE;
    }
  for (guint i = 0; i < G_N_ELEMENTS (refused); i++)
    if (member_is_set (config, refused[i].key))
      {
        g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                     "%s: “%s” is set: cannot merge this adapter (%s)",
                     config_path, refused[i].key, refused[i].why);
        return FALSE;
      }

  node = json_object_get_member (config, "init_lora_weights");
  if (node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
    {
      const char *init = json_node_get_string (node);

      if (g_str_has_prefix (init, "pissa") || g_str_equal (init, "olora") ||
          g_str_equal (init, "corda") || g_str_equal (init, "loftq"))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                       "%s: init_lora_weights is “%s”: this initialization rewrote the "
                       "base weights during training, so the adapter only merges onto that "
                       "residual base. Save it converted to a plain LoRA (PEFT's "
                       "save_pretrained(..., path_initial_model_for_weight_conversion=...)) "
                       "and merge that", config_path, init);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
load_config (SmeltAdapter  *self,
             GError       **error)
{
  g_autofree char *config_path = g_build_filename (self->path, "adapter_config.json", NULL);
  JsonObject *config;
  double r;

  if (!g_file_test (config_path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: not a PEFT adapter directory (no adapter_config.json)", self->path);
      return FALSE;
    }
  self->config = smelt_json_load_file (config_path, error);
  if (self->config == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (self->config))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: not a JSON object", config_path);
      return FALSE;
    }
  config = json_node_get_object (self->config);

  if (!refuse_unmergeable (config, config_path, error) ||
      !get_number (config, "r", 8, &r, config_path, error) ||
      !get_number (config, "lora_alpha", 8, &self->alpha, config_path, error) ||
      !get_bool (config, "use_rslora", &self->use_rslora, config_path, error) ||
      !get_bool (config, "use_dora", &self->use_dora, config_path, error) ||
      !get_bool (config, "fan_in_fan_out", &self->fan_in_fan_out, config_path, error) ||
      !load_patterns (config, "alpha_pattern", self->alpha_patterns, config_path, error) ||
      !load_patterns (config, "rank_pattern", self->rank_patterns, config_path, error))
    return FALSE;
  if (r < 1 || r > G_MAXINT32 || r != floor (r))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: “r” must be a positive integer", config_path);
      return FALSE;
    }
  self->r = (guint) r;
  return TRUE;
}

/**
 * smelt_adapter_new_for_path:
 * @path: (type filename): an adapter directory
 * @error: return location for a #GError
 *
 * Opens and validates a PEFT adapter.
 *
 * Returns: (transfer full): a new #SmeltAdapter, or %NULL with @error set
 */
SmeltAdapter *
smelt_adapter_new_for_path (const char  *path,
                            GError     **error)
{
  g_autoptr(SmeltAdapter) self = NULL;
  g_autofree char *weights = NULL;
  g_autofree char *bin = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: no such adapter directory", path);
      return NULL;
    }
  self = g_object_new (SMELT_TYPE_ADAPTER, NULL);
  self->path = g_canonicalize_filename (path, NULL);
  if (!load_config (self, error))
    return NULL;

  weights = g_build_filename (self->path, "adapter_model.safetensors", NULL);
  bin = g_build_filename (self->path, "adapter_model.bin", NULL);
  if (!g_file_test (weights, G_FILE_TEST_EXISTS) && g_file_test (bin, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: only a pickled adapter_model.bin found; smelt reads "
                   "adapter_model.safetensors only", self->path);
      return NULL;
    }
  self->file = smelt_safetensors_file_new (weights, error);
  if (self->file == NULL)
    return NULL;
  /* merging it would be a silent no-op: the failure users hit most */
  if (smelt_safetensors_file_get_n_tensors (self->file) == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: holds no tensors; the adapter was saved empty (was the "
                   "model wrapped with get_peft_model before training?)", weights);
      return NULL;
    }
  self->tokenizer_files = _smelt_find_tokenizer_files (self->path);
  return g_steal_pointer (&self);
}

/**
 * smelt_adapter_get_path:
 * @self: a #SmeltAdapter
 *
 * Gets the absolute adapter directory.
 *
 * Returns: (type filename): the absolute adapter directory
 */
const char *
smelt_adapter_get_path (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), NULL);
  return self->path;
}

/**
 * smelt_adapter_get_config:
 * @self: a #SmeltAdapter
 *
 * Gets the parsed adapter_config.json.
 *
 * Returns: (transfer none): the parsed adapter_config.json
 */
JsonObject *
smelt_adapter_get_config (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), NULL);
  return json_node_get_object (self->config);
}

/**
 * smelt_adapter_get_file:
 * @self: a #SmeltAdapter
 *
 * Gets adapter_model.safetensors.
 *
 * Returns: (transfer none): adapter_model.safetensors
 */
SmeltSafetensorsFile *
smelt_adapter_get_file (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), NULL);
  return self->file;
}

/**
 * smelt_adapter_get_rank:
 * @self: a #SmeltAdapter
 *
 * Gets the default rank `r` of the config (actual ranks come from the
 * tensor shapes).
 *
 * Returns: the default rank `r` of the config (actual ranks come from the
 *   tensor shapes)
 */
guint
smelt_adapter_get_rank (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), 0);
  return self->r;
}

/**
 * smelt_adapter_get_alpha:
 * @self: a #SmeltAdapter
 *
 * Gets the default lora_alpha.
 *
 * Returns: the default lora_alpha
 */
double
smelt_adapter_get_alpha (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), 0);
  return self->alpha;
}

/**
 * smelt_adapter_get_use_rslora:
 * @self: a #SmeltAdapter
 *
 * Tells whether the scale is alpha/sqrt(r).
 *
 * Returns: whether the scale is alpha/sqrt(r)
 */
gboolean
smelt_adapter_get_use_rslora (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), FALSE);
  return self->use_rslora;
}

/**
 * smelt_adapter_get_use_dora:
 * @self: a #SmeltAdapter
 *
 * Tells whether this is a DoRA adapter.
 *
 * Returns: whether this is a DoRA adapter
 */
gboolean
smelt_adapter_get_use_dora (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), FALSE);
  return self->use_dora;
}

/**
 * smelt_adapter_get_fan_in_fan_out:
 * @self: a #SmeltAdapter
 *
 * Tells whether the base weights are stored [in, out] (GPT-2 Conv1D).
 *
 * Returns: whether the base weights are stored [in, out] (GPT-2 Conv1D)
 */
gboolean
smelt_adapter_get_fan_in_fan_out (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), FALSE);
  return self->fan_in_fan_out;
}

/**
 * smelt_adapter_get_scale_for:
 * @self: a #SmeltAdapter
 * @module: the module path in the base model, e.g.
 *   `model.layers.0.self_attn.q_proj`
 * @rank: the module's rank, from its tensor shapes
 *
 * The LoRA scale of one module: alpha (from alpha_pattern or lora_alpha)
 * divided by @rank, or by sqrt(@rank) with rsLoRA.
 *
 * Returns: the scale, in double precision
 */
double
smelt_adapter_get_scale_for (SmeltAdapter *self,
                             const char   *module,
                             guint         rank)
{
  const PatternEntry *e;
  double alpha;

  g_return_val_if_fail (SMELT_IS_ADAPTER (self), 0);
  g_return_val_if_fail (rank > 0, 0);

  e = match_pattern (self->alpha_patterns, module);
  alpha = e ? e->value : self->alpha;
  return self->use_rslora ? alpha / sqrt ((double) rank) : alpha / (double) rank;
}

/* The rank rank_pattern (or r) promises for a module, so that tensors whose
 * shapes disagree with the config are caught instead of mis-scaled. */
guint
_smelt_adapter_get_expected_rank (SmeltAdapter *self,
                                  const char   *module)
{
  const PatternEntry *e = match_pattern (self->rank_patterns, module);

  return e ? (guint) e->value : self->r;
}

/**
 * smelt_adapter_get_tokenizer_files:
 * @self: a #SmeltAdapter
 *
 * Gets tokenizer files saved beside the adapter.
 *
 * Returns: (transfer none) (array zero-terminated=1): tokenizer files saved
 *   beside the adapter
 */
const char * const *
smelt_adapter_get_tokenizer_files (SmeltAdapter *self)
{
  g_return_val_if_fail (SMELT_IS_ADAPTER (self), NULL);
  return (const char * const *) self->tokenizer_files;
}
