/* smelt-model.c: a Hugging Face model directory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltModel:
 *
 * A Hugging Face model directory: config.json, generation_config.json,
 * tokenizer files and the weights in one safetensors file or in shards
 * listed by `model.safetensors.index.json`.
 *
 * Every shard is validated and memory-mapped when the model is opened; no
 * tensor data is read until a tensor's rows are.
 *
 * Weights stored as bitsandbytes 4-bit (the `*-bnb-4bit` checkpoints
 * QLoRA trains on) are read as one #SmeltBnb4Tensor each, named like the
 * 16-bit weight (`X.weight`, shape `[out, in]`), whose rows are the
 * dequantized values; see smelt_model_is_bnb4().
 *
 * A model can also be one GGUF file of float tensors (F32, F16 or BF16,
 * such as a converter's `model.F16.gguf`): its tensors keep their GGUF
 * names and file order, smelt_model_get_gguf() gives the file, and the
 * configuration is empty. Only formats that read GGUF metadata
 * (`gguf-quant`) accept such a model; the others refuse it when they plan.
 */

struct _SmeltModel
{
  GObject     parent_instance;

  char       *path;
  JsonNode   *config;
  JsonNode   *generation_config;
  GPtrArray  *shards;       /* SmeltSafetensorsFile */
  GPtrArray  *tensors;      /* SmeltTensor, natural name order */
  GHashTable *by_name;      /* name -> SmeltTensor (borrowed) */
  GStrv       tokenizer_files;
  SmeltDType  dtype;
  SmeltGgufFile *gguf;      /* a GGUF model, else NULL */
  char       *gguf_arch;    /* its general.architecture */
  guint       n_bnb4;       /* bitsandbytes 4-bit weights */
};

G_DEFINE_FINAL_TYPE (SmeltModel, smelt_model, G_TYPE_OBJECT)

/* The files transformers' tokenizers read or write beside a model. */
static const char * const tokenizer_file_names[] = {
  "tokenizer.json",
  "tokenizer_config.json",
  "tokenizer.model",
  "special_tokens_map.json",
  "added_tokens.json",
  "vocab.json",
  "merges.txt",
  "vocab.txt",
  "chat_template.jinja",
  "chat_template.json",
  NULL
};

static void
smelt_model_finalize (GObject *object)
{
  SmeltModel *self = SMELT_MODEL (object);

  g_free (self->path);
  g_clear_pointer (&self->config, json_node_unref);
  g_clear_pointer (&self->generation_config, json_node_unref);
  g_clear_pointer (&self->by_name, g_hash_table_unref);
  g_clear_pointer (&self->tensors, g_ptr_array_unref);
  g_clear_pointer (&self->shards, g_ptr_array_unref);
  g_strfreev (self->tokenizer_files);
  g_clear_object (&self->gguf);
  g_free (self->gguf_arch);

  G_OBJECT_CLASS (smelt_model_parent_class)->finalize (object);
}

static void
smelt_model_class_init (SmeltModelClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_model_finalize;
}

static void
smelt_model_init (SmeltModel *self)
{
  self->shards = g_ptr_array_new_with_free_func (g_object_unref);
  self->tensors = g_ptr_array_new_with_free_func (g_object_unref);
  self->by_name = g_hash_table_new (g_str_hash, g_str_equal);
}

/* Compares names so that "layers.2" sorts before "layers.10": the order
 * in which people read model files, and the order exports write them. */
int
_smelt_natural_compare (const char *a,
                        const char *b)
{
  while (*a && *b)
    {
      if (g_ascii_isdigit (*a) && g_ascii_isdigit (*b))
        {
          const char *ea = a, *eb = b;
          gsize la, lb;
          int c;

          while (*a == '0' && g_ascii_isdigit (a[1]))
            a++;
          while (*b == '0' && g_ascii_isdigit (b[1]))
            b++;
          for (ea = a; g_ascii_isdigit (*ea); ea++);
          for (eb = b; g_ascii_isdigit (*eb); eb++);
          la = ea - a;
          lb = eb - b;
          if (la != lb)
            return la < lb ? -1 : 1;
          c = strncmp (a, b, la);
          if (c != 0)
            return c;
          a = ea;
          b = eb;
          continue;
        }
      if (*a != *b)
        return (guchar) *a < (guchar) *b ? -1 : 1;
      a++;
      b++;
    }
  return (guchar) *a - (guchar) *b;
}

int
_smelt_compare_strv_items (gconstpointer a,
                           gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static int
compare_tensors (gconstpointer a,
                 gconstpointer b)
{
  SmeltTensor *ta = *(SmeltTensor **) a;
  SmeltTensor *tb = *(SmeltTensor **) b;

  return _smelt_natural_compare (smelt_tensor_get_name (ta), smelt_tensor_get_name (tb));
}

static gboolean
add_shard (SmeltModel  *self,
           const char  *file_name,
           GHashTable  *listed,
           GError     **error)
{
  g_autofree char *shard_path = g_build_filename (self->path, file_name, NULL);
  g_autoptr(SmeltSafetensorsFile) file = NULL;
  guint n;

  file = smelt_safetensors_file_new (shard_path, error);
  if (file == NULL)
    return FALSE;

  n = smelt_safetensors_file_get_n_tensors (file);
  for (guint i = 0; i < n; i++)
    {
      SmeltTensor *tensor = smelt_safetensors_file_get_tensor (file, i);
      const char *name = smelt_tensor_get_name (tensor);
      const char *listed_in;

      if (g_hash_table_contains (self->by_name, name))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: tensor “%s” is stored in more than one shard",
                       shard_path, name);
          return FALSE;
        }
      if (listed != NULL)
        {
          listed_in = g_hash_table_lookup (listed, name);
          if (listed_in == NULL || g_strcmp0 (listed_in, file_name) != 0)
            {
              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                           "%s: tensor “%s” is not listed for this shard in "
                           "model.safetensors.index.json", shard_path, name);
              return FALSE;
            }
        }
      g_ptr_array_add (self->tensors, g_object_ref (tensor));
      g_hash_table_insert (self->by_name, (gpointer) name, tensor);
    }
  g_ptr_array_add (self->shards, g_steal_pointer (&file));
  return TRUE;
}

static gboolean
is_safe_shard_name (const char *name)
{
  return name[0] != '\0' && strchr (name, '/') == NULL &&
         strcmp (name, ".") != 0 && strcmp (name, "..") != 0 &&
         g_str_has_suffix (name, ".safetensors");
}

static gboolean
load_sharded (SmeltModel  *self,
              const char  *index_path,
              GError     **error)
{
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GHashTable) listed = NULL;
  g_autoptr(GPtrArray) files = g_ptr_array_new ();
  JsonObject *weight_map;
  JsonObjectIter iter;
  const char *name;
  JsonNode *value;

  root = smelt_json_load_file (index_path, error);
  if (root == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (root) ||
      !json_object_has_member (json_node_get_object (root), "weight_map") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (json_node_get_object (root), "weight_map")))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: no “weight_map” object", index_path);
      return FALSE;
    }
  weight_map = json_object_get_object_member (json_node_get_object (root), "weight_map");
  listed = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  json_object_iter_init (&iter, weight_map);
  while (json_object_iter_next (&iter, &name, &value))
    {
      const char *file_name;

      if (!JSON_NODE_HOLDS_VALUE (value) || json_node_get_value_type (value) != G_TYPE_STRING ||
          !is_safe_shard_name ((file_name = json_node_get_string (value))))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: weight_map entry “%s” is not the name of a "
                       ".safetensors file in the model directory", index_path, name);
          return FALSE;
        }
      if (!g_hash_table_contains (listed, file_name) &&
          !g_ptr_array_find_with_equal_func (files, file_name, g_str_equal, NULL))
        g_ptr_array_add (files, (gpointer) file_name);
      g_hash_table_insert (listed, g_strdup (name), g_strdup (file_name));
    }
  if (files->len == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: weight_map is empty", index_path);
      return FALSE;
    }
  g_ptr_array_sort (files, _smelt_compare_strv_items);
  for (guint i = 0; i < files->len; i++)
    if (!add_shard (self, g_ptr_array_index (files, i), listed, error))
      return FALSE;

  /* An index that names a tensor its shard does not hold is lying. */
  {
    GHashTableIter hiter;
    gpointer key, shard;

    g_hash_table_iter_init (&hiter, listed);
    while (g_hash_table_iter_next (&hiter, &key, &shard))
      if (!g_hash_table_contains (self->by_name, key))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: tensor “%s” is listed in %s but that shard does not hold it",
                       index_path, (char *) key, (char *) shard);
          return FALSE;
        }
  }
  return TRUE;
}

static gboolean
load_weights (SmeltModel  *self,
              GError     **error)
{
  g_autofree char *index_path = g_build_filename (self->path, "model.safetensors.index.json", NULL);
  g_autofree char *single_path = g_build_filename (self->path, "model.safetensors", NULL);
  g_autofree char *bin_path = g_build_filename (self->path, "pytorch_model.bin", NULL);
  g_autofree char *bin_index = g_build_filename (self->path, "pytorch_model.bin.index.json", NULL);

  if (g_file_test (index_path, G_FILE_TEST_EXISTS))
    return load_sharded (self, index_path, error);
  if (g_file_test (single_path, G_FILE_TEST_EXISTS))
    return add_shard (self, "model.safetensors", NULL, error);
  if (g_file_test (bin_path, G_FILE_TEST_EXISTS) || g_file_test (bin_index, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: only pickled pytorch_model.bin weights found; smelt reads "
                   "safetensors only (pickles can run code when loaded)", self->path);
      return FALSE;
    }
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
               "%s: no model.safetensors or model.safetensors.index.json", self->path);
  return FALSE;
}

static SmeltDType
dtype_from_torch_name (const char *name)
{
  if (name == NULL)
    return SMELT_DTYPE_INVALID;
  if (g_str_equal (name, "bfloat16"))
    return SMELT_DTYPE_BF16;
  if (g_str_equal (name, "float16"))
    return SMELT_DTYPE_F16;
  if (g_str_equal (name, "float32"))
    return SMELT_DTYPE_F32;
  return SMELT_DTYPE_INVALID;
}

/* The dtype the model was saved in: config's torch_dtype (or transformers
 * v5's "dtype"), else the dtype bitsandbytes dequantizes the 4-bit weights
 * to, else the float type holding most bytes. */
static SmeltDType
guess_dtype (SmeltModel *self)
{
  JsonObject *config = json_node_get_object (self->config);
  guint64 bytes[SMELT_DTYPE_C64 + 1] = { 0, };
  SmeltDType best = SMELT_DTYPE_INVALID;

  for (guint k = 0; k < 2; k++)
    {
      const char *key = k == 0 ? "torch_dtype" : "dtype";
      JsonNode *node = json_object_get_member (config, key);

      if (node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING)
        {
          SmeltDType d = dtype_from_torch_name (json_node_get_string (node));
          if (d != SMELT_DTYPE_INVALID)
            return d;
        }
    }
  for (guint i = 0; i < self->tensors->len; i++)
    if (SMELT_IS_BNB4_TENSOR (g_ptr_array_index (self->tensors, i)))
      return smelt_tensor_get_dtype (g_ptr_array_index (self->tensors, i));
  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);
      SmeltDType d = smelt_tensor_get_dtype (t);

      if (d == SMELT_DTYPE_F32 || d == SMELT_DTYPE_F16 || d == SMELT_DTYPE_BF16)
        bytes[d] += smelt_tensor_get_n_bytes (t);
    }
  for (SmeltDType d = SMELT_DTYPE_F32; d <= SMELT_DTYPE_BF16; d++)
    if (bytes[d] > 0 && (best == SMELT_DTYPE_INVALID || bytes[d] > bytes[best]))
      best = d;
  return best;
}

/* ---- bitsandbytes ------------------------------------------------------- */

#define QUANT_STATE_MARK ".quant_state."
#define QUANT_STATE_PREFIX ".quant_state.bitsandbytes__"

static const char *
file_of (SmeltTensor *t)
{
  return SMELT_IS_STORED_TENSOR (t) ? _smelt_stored_tensor_get_file_path (SMELT_STORED_TENSOR (t)) : "";
}

static gboolean
json_true (JsonObject *obj,
           const char *key)
{
  JsonNode *n = json_object_get_member (obj, key);

  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
         json_node_get_value_type (n) == G_TYPE_BOOLEAN && json_node_get_boolean (n);
}

/* 8-bit (LLM.int8) weights are int8 rows with a per-row scale; they are
 * not read, and treating them as plain weights would write garbage. Any
 * quantization_config but bitsandbytes 4-bit is refused likewise. */
static gboolean
check_quantization (SmeltModel  *self,
                    GError     **error)
{
  JsonObject *config = json_node_get_object (self->config);
  JsonNode *qc = json_object_get_member (config, "quantization_config");
  JsonObject *q;
  JsonNode *method;
  const char *name = NULL;

  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);

      if (g_str_has_suffix (smelt_tensor_get_name (t), ".SCB"))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                       "%s: this is a bitsandbytes 8-bit (LLM.int8) model (tensor “%s”); "
                       "8-bit bases are not supported yet: point Model= at the 16-bit "
                       "base instead", self->path, smelt_tensor_get_name (t));
          return FALSE;
        }
    }
  if (qc == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (qc))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s/config.json: quantization_config is not an object", self->path);
      return FALSE;
    }
  q = json_node_get_object (qc);
  method = json_object_get_member (q, "quant_method");
  if (method != NULL && JSON_NODE_HOLDS_VALUE (method) &&
      json_node_get_value_type (method) == G_TYPE_STRING)
    name = json_node_get_string (method);
  /* transformers reads a config without quant_method as bitsandbytes */
  if (method != NULL && g_strcmp0 (name, "bitsandbytes") != 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s/config.json: the model is quantized with quant_method “%s”; smelt "
                   "reads 16-bit models and bitsandbytes 4-bit ones: point Model= at the "
                   "16-bit base", self->path, name ? name : "?");
      return FALSE;
    }
  if (json_true (q, "load_in_8bit") || json_true (q, "_load_in_8bit"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s/config.json: quantization_config says load_in_8bit: bitsandbytes "
                   "8-bit (LLM.int8) bases are not supported yet: point Model= at the "
                   "16-bit base instead", self->path);
      return FALSE;
    }
  if (!json_true (q, "load_in_4bit") && !json_true (q, "_load_in_4bit"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s/config.json: quantization_config is bitsandbytes but sets neither "
                   "load_in_4bit nor load_in_8bit", self->path);
      return FALSE;
    }
  return TRUE;
}

/* The weight a quant-state key belongs to ("X.weight" of
 * "X.weight.quant_state.bitsandbytes__nf4"), or NULL with @error set for
 * a quant state of a kind bitsandbytes 4-bit does not write. */
static char *
quant_state_weight (SmeltTensor  *t,
                    GError      **error)
{
  const char *name = smelt_tensor_get_name (t);
  const char *mark = strstr (name, QUANT_STATE_MARK);

  if (mark == NULL || mark == name ||
      !(g_str_has_suffix (name, QUANT_STATE_PREFIX "nf4") ||
        g_str_has_suffix (name, QUANT_STATE_PREFIX "fp4")) ||
      strlen (mark) != strlen (QUANT_STATE_PREFIX "nf4"))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: tensor “%s” looks like a quant state, but bitsandbytes 4-bit "
                   "quant states are named X.weight.quant_state.bitsandbytes__nf4 "
                   "(or __fp4)", file_of (t), name);
      return NULL;
    }
  return g_strndup (name, mark - name);
}

static const char * const piece_suffix[] = {
  [SMELT_BNB4_PART_WEIGHT] = "",
  [SMELT_BNB4_PART_ABSMAX] = ".absmax",
  [SMELT_BNB4_PART_QUANT_MAP] = ".quant_map",
  [SMELT_BNB4_PART_NESTED_ABSMAX] = ".nested_absmax",
  [SMELT_BNB4_PART_NESTED_QUANT_MAP] = ".nested_quant_map",
};

/* Pieces that remain once every 4-bit weight took its own belong to no
 * quant state: the file lost one, and the codes would be read as plain
 * bytes. */
static gboolean
check_orphan_pieces (SmeltModel  *self,
                     GError     **error)
{
  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);
      const char *name = smelt_tensor_get_name (t);

      for (guint p = SMELT_BNB4_PART_ABSMAX; p <= SMELT_BNB4_PART_NESTED_QUANT_MAP; p++)
        {
          g_autofree char *suffix = g_strconcat (".weight", piece_suffix[p], NULL);

          if (g_str_has_suffix (name, suffix))
            {
              g_autofree char *weight = g_strndup (name, strlen (name) - strlen (piece_suffix[p]));

              g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                           "%s: tensor “%s” is a piece of a bitsandbytes 4-bit weight, but "
                           "%s" QUANT_STATE_PREFIX "nf4 (or __fp4) is missing",
                           file_of (t), name, weight);
              return FALSE;
            }
        }
    }
  return TRUE;
}

/* Finds the quant states of every shard, checking there is one per
 * weight; @states maps each weight's name to its quant state. */
static gboolean
find_quant_states (SmeltModel  *self,
                   GHashTable  *states,
                   GPtrArray   *order,
                   GError     **error)
{
  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);
      SmeltTensor *other;
      char *weight;

      if (strstr (smelt_tensor_get_name (t), QUANT_STATE_MARK) == NULL)
        continue;
      weight = quant_state_weight (t, error);
      if (weight == NULL)
        return FALSE;
      other = g_hash_table_lookup (states, weight);
      if (other != NULL)
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: weight “%s” has two quant states, “%s” (in %s) and “%s”",
                       file_of (t), weight, smelt_tensor_get_name (other), file_of (other),
                       smelt_tensor_get_name (t));
          g_free (weight);
          return FALSE;
        }
      g_hash_table_insert (states, weight, t);
      g_ptr_array_add (order, weight);
    }
  return TRUE;
}

static int
compare_names_natural (gconstpointer a,
                       gconstpointer b)
{
  return _smelt_natural_compare (*(const char * const *) a, *(const char * const *) b);
}

/* Puts @made in place of the pieces they consumed. */
static void
replace_pieces (SmeltModel *self,
                GPtrArray  *made,
                GHashTable *consumed)
{
  GPtrArray *kept = g_ptr_array_new_with_free_func (g_object_unref);

  for (guint i = 0; i < self->tensors->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (self->tensors, i);

      if (!g_hash_table_contains (consumed, t))
        g_ptr_array_add (kept, g_object_ref (t));
    }
  for (guint i = 0; i < made->len; i++)
    g_ptr_array_add (kept, g_object_ref (g_ptr_array_index (made, i)));
  g_hash_table_remove_all (self->by_name);
  g_ptr_array_unref (self->tensors);
  self->tensors = kept;
  for (guint i = 0; i < kept->len; i++)
    {
      SmeltTensor *t = g_ptr_array_index (kept, i);

      g_hash_table_insert (self->by_name, (gpointer) smelt_tensor_get_name (t), t);
    }
}

/* Replaces the pieces of each bitsandbytes 4-bit weight by one
 * SmeltBnb4Tensor. A weight is 4-bit iff its quant state is in the files
 * (quantization_config cannot tell: unsloth's dynamic quants leave some
 * Linear layers in 16 bits), and its pieces may sit in different shards,
 * so this runs once every shard is loaded. */
static gboolean
load_bnb4_weights (SmeltModel  *self,
                   GError     **error)
{
  g_autoptr(GHashTable) states = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GHashTable) consumed = g_hash_table_new (NULL, NULL);
  g_autoptr(GPtrArray) order = g_ptr_array_new ();
  g_autoptr(GPtrArray) made = g_ptr_array_new_with_free_func (g_object_unref);

  if (!find_quant_states (self, states, order, error))
    return FALSE;
  /* errors name the first bad weight in reading order */
  g_ptr_array_sort (order, compare_names_natural);
  for (guint i = 0; i < order->len; i++)
    {
      const char *weight = g_ptr_array_index (order, i);
      SmeltTensor *parts[SMELT_BNB4_PART_QUANT_STATE + 1] = { NULL, };
      SmeltTensor *bnb;

      for (guint p = SMELT_BNB4_PART_WEIGHT; p <= SMELT_BNB4_PART_NESTED_QUANT_MAP; p++)
        {
          g_autofree char *piece = g_strconcat (weight, piece_suffix[p], NULL);

          parts[p] = g_hash_table_lookup (self->by_name, piece);
        }
      parts[SMELT_BNB4_PART_QUANT_STATE] = g_hash_table_lookup (states, weight);
      bnb = _smelt_bnb4_tensor_new (weight, parts, error);
      if (bnb == NULL)
        return FALSE;
      g_ptr_array_add (made, bnb);
      for (guint p = 0; p < G_N_ELEMENTS (parts); p++)
        if (parts[p] != NULL)
          g_hash_table_add (consumed, parts[p]);
    }
  if (made->len > 0)
    replace_pieces (self, made, consumed);
  self->n_bnb4 = made->len;
  return check_orphan_pieces (self, error);
}

/* Adapters carry tokenizer files too (trainers save them beside the
 * adapter, sometimes with added tokens), so this is shared. */
GStrv
_smelt_find_tokenizer_files (const char *dir)
{
  GPtrArray *found = g_ptr_array_new ();

  for (guint i = 0; tokenizer_file_names[i]; i++)
    {
      g_autofree char *p = g_build_filename (dir, tokenizer_file_names[i], NULL);

      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (found, g_strdup (tokenizer_file_names[i]));
    }
  g_ptr_array_add (found, NULL);
  return (GStrv) g_ptr_array_free (found, FALSE);
}

static gboolean
load_config (SmeltModel  *self,
             GError     **error)
{
  g_autofree char *config_path = g_build_filename (self->path, "config.json", NULL);
  g_autofree char *gen_path = g_build_filename (self->path, "generation_config.json", NULL);

  if (!g_file_test (config_path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: not a Hugging Face model directory (no config.json)", self->path);
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
  if (g_file_test (gen_path, G_FILE_TEST_EXISTS))
    {
      self->generation_config = smelt_json_load_file (gen_path, error);
      if (self->generation_config == NULL)
        return FALSE;
      if (!JSON_NODE_HOLDS_OBJECT (self->generation_config))
        {
          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                       "%s: not a JSON object", gen_path);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- GGUF files ---------------------------------------------------------- */

/* Whether @path starts with the GGUF magic. */
gboolean
_smelt_is_gguf_path (const char *path)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GFileInputStream) in = g_file_read (file, NULL, NULL);
  char magic[4] = { 0, };
  gsize n = 0;

  if (in == NULL)
    return FALSE;
  return g_input_stream_read_all (G_INPUT_STREAM (in), magic, 4, &n, NULL, NULL) &&
         n == 4 && memcmp (magic, "GGUF", 4) == 0;
}

static SmeltDType
dtype_of_ggml (SmeltGgmlType type)
{
  switch (type)
    {
    case SMELT_GGML_TYPE_F32:
      return SMELT_DTYPE_F32;
    case SMELT_GGML_TYPE_F16:
      return SMELT_DTYPE_F16;
    case SMELT_GGML_TYPE_BF16:
      return SMELT_DTYPE_BF16;
    default:
      return SMELT_DTYPE_INVALID;
    }
}

/* A GGUF tensor as a stored tensor: ggml's ne[] runs from the row length
 * outwards, a SmeltTensor's shape from the outermost dimension in. */
static gboolean
add_gguf_tensor (SmeltModel  *self,
                 guint        index,
                 GError     **error)
{
  SmeltGgufFile *f = self->gguf;
  const char *name = smelt_gguf_file_get_tensor_name (f, index);
  SmeltGgmlType type = smelt_gguf_file_get_tensor_type (f, index);
  SmeltDType dtype = dtype_of_ggml (type);
  guint64 ne[4], shape[4];
  guint n_dims = smelt_gguf_file_get_tensor_shape (f, index, ne);
  SmeltTensor *t;

  if (dtype == SMELT_DTYPE_INVALID)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                   "%s: tensor “%s” is already quantized (%s); smelt reads GGUF files of "
                   "F32, F16 and BF16 tensors (requantizing loses quality, and "
                   "llama-quantize refuses it too): start from the 16-bit GGUF or the "
                   "Hugging Face model", self->path, name, smelt_ggml_type_get_name (type));
      return FALSE;
    }
  for (guint d = 0; d < n_dims; d++)
    shape[d] = ne[n_dims - 1 - d];
  t = _smelt_stored_tensor_new (_smelt_gguf_file_get_mapping (f), self->path, name, dtype,
                                shape, n_dims, smelt_gguf_file_get_tensor_offset (f, index),
                                smelt_gguf_file_get_tensor_size (f, index));
  g_ptr_array_add (self->tensors, t);
  g_hash_table_insert (self->by_name, (gpointer) smelt_tensor_get_name (t), t);
  return TRUE;
}

static char *
gguf_string (SmeltGgufFile *f,
             const char    *key)
{
  int i = smelt_gguf_file_find_key (f, key);
  g_autoptr(GVariant) v = NULL;

  if (i < 0 || smelt_gguf_file_get_kv_type (f, i) != SMELT_GGUF_VALUE_STRING)
    return NULL;
  v = smelt_gguf_file_get_value (f, i);
  return g_variant_dup_string (v, NULL);
}

/* Split files hold a part of the tensors each; a model must be whole. */
static gboolean
check_not_split (SmeltModel  *self,
                 GError     **error)
{
  int i = smelt_gguf_file_find_key (self->gguf, "split.count");
  g_autoptr(GVariant) v = NULL;

  if (i < 0)
    return TRUE;
  v = smelt_gguf_file_get_value (self->gguf, i);
  if (g_variant_is_of_type (v, G_VARIANT_TYPE_UINT16) && g_variant_get_uint16 (v) <= 1)
    return TRUE;
  g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
               "%s: one part of a split GGUF model; join the parts first "
               "(llama-gguf-split --merge)", self->path);
  return FALSE;
}

static SmeltModel *
new_for_gguf (const char  *path,
              GError     **error)
{
  g_autoptr(SmeltModel) self = g_object_new (SMELT_TYPE_MODEL, NULL);

  self->path = g_canonicalize_filename (path, NULL);
  self->gguf = smelt_gguf_file_new (self->path, error);
  if (self->gguf == NULL || !check_not_split (self, error))
    return NULL;
  self->gguf_arch = gguf_string (self->gguf, "general.architecture");
  if (self->gguf_arch == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: no general.architecture: not a llama.cpp model", self->path);
      return NULL;
    }
  self->config = json_node_init_object (json_node_alloc (), json_object_new ());
  for (guint i = 0; i < smelt_gguf_file_get_n_tensors (self->gguf); i++)
    if (!add_gguf_tensor (self, i, error))
      return NULL;
  self->dtype = guess_dtype (self);
  self->tokenizer_files = g_new0 (char *, 1);
  return g_steal_pointer (&self);
}

/**
 * smelt_model_new_for_path:
 * @path: (type filename): a model directory, or a GGUF file
 * @error: return location for a #GError
 *
 * Opens and validates a model directory, or a GGUF file of F32, F16 and
 * BF16 tensors.
 *
 * Returns: (transfer full): a new #SmeltModel, or %NULL with @error set
 */
SmeltModel *
smelt_model_new_for_path (const char  *path,
                          GError     **error)
{
  g_autoptr(SmeltModel) self = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  if (g_file_test (path, G_FILE_TEST_IS_REGULAR) && _smelt_is_gguf_path (path))
    return new_for_gguf (path, error);
  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NOT_FOUND,
                   "%s: no such model directory", path);
      return NULL;
    }
  self = g_object_new (SMELT_TYPE_MODEL, NULL);
  self->path = g_canonicalize_filename (path, NULL);

  if (!load_config (self, error) || !load_weights (self, error) ||
      !check_quantization (self, error) || !load_bnb4_weights (self, error))
    return NULL;
  g_ptr_array_sort (self->tensors, compare_tensors);
  self->dtype = guess_dtype (self);
  self->tokenizer_files = _smelt_find_tokenizer_files (self->path);
  return g_steal_pointer (&self);
}

/**
 * smelt_model_get_path:
 * @self: a #SmeltModel
 *
 * Gets the absolute path of the model directory.
 *
 * Returns: (type filename): the absolute path of the model directory
 */
const char *
smelt_model_get_path (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return self->path;
}

/**
 * smelt_model_get_config:
 * @self: a #SmeltModel
 *
 * Gets the parsed config.json.
 *
 * Returns: (transfer none): the parsed config.json
 */
JsonObject *
smelt_model_get_config (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return json_node_get_object (self->config);
}

/**
 * smelt_model_get_generation_config:
 * @self: a #SmeltModel
 *
 * Gets the parsed generation_config.json.
 *
 * Returns: (transfer none) (nullable): the parsed generation_config.json
 */
JsonObject *
smelt_model_get_generation_config (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return self->generation_config ? json_node_get_object (self->generation_config) : NULL;
}

/**
 * smelt_model_get_architecture:
 * @self: a #SmeltModel
 *
 * Gets the first entry of config.json's "architectures", or a GGUF model's
 * `general.architecture` ("llama", …).
 *
 * Returns: (nullable): the first entry of config.json's "architectures",
 *   or a GGUF model's `general.architecture` ("llama", …)
 */
const char *
smelt_model_get_architecture (SmeltModel *self)
{
  JsonObject *config;
  JsonArray *archs;

  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  if (self->gguf != NULL)
    return self->gguf_arch;
  config = json_node_get_object (self->config);
  if (!json_object_has_member (config, "architectures") ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (config, "architectures")))
    return NULL;
  archs = json_object_get_array_member (config, "architectures");
  if (json_array_get_length (archs) == 0 ||
      !JSON_NODE_HOLDS_VALUE (json_array_get_element (archs, 0)))
    return NULL;
  return json_array_get_string_element (archs, 0);
}

/**
 * smelt_model_get_n_tensors:
 * @self: a #SmeltModel
 *
 * Gets the number of stored tensors.
 *
 * Returns: the number of stored tensors
 */
guint
smelt_model_get_n_tensors (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), 0);
  return self->tensors->len;
}

/**
 * smelt_model_get_tensor:
 * @self: a #SmeltModel
 * @index: position in natural name order
 *
 * Gets the tensor.
 *
 * Returns: (transfer none): the tensor
 */
SmeltTensor *
smelt_model_get_tensor (SmeltModel *self,
                        guint       index)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  g_return_val_if_fail (index < self->tensors->len, NULL);
  return g_ptr_array_index (self->tensors, index);
}

/**
 * smelt_model_lookup_tensor:
 * @self: a #SmeltModel
 * @name: a tensor name
 *
 * Gets the tensor, or %NULL.
 *
 * Returns: (transfer none) (nullable): the tensor, or %NULL
 */
SmeltTensor *
smelt_model_lookup_tensor (SmeltModel *self,
                           const char *name)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return g_hash_table_lookup (self->by_name, name);
}

/**
 * smelt_model_get_n_parameters:
 * @self: a #SmeltModel
 *
 * Gets the number of elements over all tensors.
 *
 * Returns: the number of elements over all tensors
 */
guint64
smelt_model_get_n_parameters (SmeltModel *self)
{
  guint64 n = 0;

  g_return_val_if_fail (SMELT_IS_MODEL (self), 0);
  for (guint i = 0; i < self->tensors->len; i++)
    n += smelt_tensor_get_n_elements (g_ptr_array_index (self->tensors, i));
  return n;
}

/* What a tensor takes in the files: a 4-bit weight's pieces, not the
 * 16-bit size it reads as. */
static guint64
stored_bytes (SmeltTensor *t)
{
  guint64 n = 0;

  if (!SMELT_IS_BNB4_TENSOR (t))
    return smelt_tensor_get_n_bytes (t);
  for (SmeltBnb4Part p = SMELT_BNB4_PART_WEIGHT; p <= SMELT_BNB4_PART_QUANT_STATE; p++)
    {
      g_autoptr(GBytes) b = smelt_bnb4_tensor_get_part (SMELT_BNB4_TENSOR (t), p);

      n += b ? g_bytes_get_size (b) : 0;
    }
  return n;
}

/**
 * smelt_model_get_n_bytes:
 * @self: a #SmeltModel
 *
 * Gets the bytes of tensor data over all shards (for a 4-bit weight, the
 * bytes of its stored pieces).
 *
 * Returns: the bytes of tensor data over all shards (for a 4-bit weight,
 *   the bytes of its stored pieces)
 */
guint64
smelt_model_get_n_bytes (SmeltModel *self)
{
  guint64 n = 0;

  g_return_val_if_fail (SMELT_IS_MODEL (self), 0);
  for (guint i = 0; i < self->tensors->len; i++)
    n += stored_bytes (g_ptr_array_index (self->tensors, i));
  return n;
}

/**
 * smelt_model_get_n_shards:
 * @self: a #SmeltModel
 *
 * Gets the number of safetensors files.
 *
 * Returns: the number of safetensors files
 */
guint
smelt_model_get_n_shards (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), 0);
  return self->shards->len;
}

/**
 * smelt_model_get_dtype:
 * @self: a #SmeltModel
 *
 * Gets the dtype the model was saved in: config's torch_dtype (or dtype);
 * else, for a bitsandbytes 4-bit model, the 16-bit dtype its quant states
 * dequantize to; else the float type holding most bytes.
 *
 * Returns: the dtype the model was saved in: config's torch_dtype (or
 *   dtype); else, for a bitsandbytes 4-bit model, the 16-bit dtype its
 *   quant states dequantize to; else the float type holding most bytes
 */
SmeltDType
smelt_model_get_dtype (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), SMELT_DTYPE_INVALID);
  return self->dtype;
}

/**
 * smelt_model_get_tokenizer_files:
 * @self: a #SmeltModel
 *
 * Gets names of the tokenizer files present in the model directory.
 *
 * Returns: (transfer none) (array zero-terminated=1): names of the
 *   tokenizer files present in the model directory
 */
const char * const *
smelt_model_get_tokenizer_files (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return (const char * const *) self->tokenizer_files;
}

/**
 * smelt_model_get_gguf:
 * @self: a #SmeltModel
 *
 * Gets the GGUF file of a model opened from one, else %NULL.
 *
 * Returns: (transfer none) (nullable): the GGUF file of a model opened from
 *   one, else %NULL
 */
SmeltGgufFile *
smelt_model_get_gguf (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), NULL);
  return self->gguf;
}

/**
 * smelt_model_is_bnb4:
 * @self: a #SmeltModel
 *
 * Whether the model is a bitsandbytes 4-bit checkpoint: at least one of
 * its weights is stored as NF4 or FP4 codes (a #SmeltBnb4Tensor, whose
 * rows are the dequantized values). Embeddings, norms, `lm_head` and any
 * module the quantizer skipped stay ordinary tensors.
 *
 * Returns: %TRUE if any weight is bitsandbytes 4-bit
 */
gboolean
smelt_model_is_bnb4 (SmeltModel *self)
{
  g_return_val_if_fail (SMELT_IS_MODEL (self), FALSE);
  return self->n_bnb4 > 0;
}
