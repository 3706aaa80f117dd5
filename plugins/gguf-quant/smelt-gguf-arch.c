/* smelt-gguf-arch.c: Hugging Face architectures → GGUF (names, KVs, layout)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * This restates, for eight Hugging Face classes, what the reference
 * converter does (llama.cpp de3ff81: convert_hf_to_gguf.py with
 * conversion/base.py, llama.py, qwen.py, gemma.py, phi.py and gguf-py), and
 * checks the result against what llama.cpp's loader (src/models/<arch>.cpp)
 * requires, so that a model llama.cpp could not load fails at plan time,
 * naming the Hugging Face tensor or config key at fault.
 *
 * The converter takes its hyperparameters from transformers'
 * AutoConfig(...).to_dict() (transformers 4.57.6, pinned by the reference
 * requirements), which fills in the config class's defaults for keys that
 * config.json lacks. The defaults that reach the GGUF are in
 * class_defaults[] below.
 */
#include "smelt-gguf-arch.h"

#include <math.h>
#include <string.h>

#define PLAN_ERROR_UNSUPPORTED SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED
#define PLAN_ERROR_INVALID     SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID

/* ------------------------------------------------------------------ */
/* Architectures                                                       */

typedef enum {
  ARCH_LLAMA,
  ARCH_QWEN2,
  ARCH_QWEN3,
  ARCH_GEMMA,
  ARCH_GEMMA2,
  ARCH_GEMMA3,
  ARCH_PHI3,
} ArchId;

#define A(x) (1u << ARCH_##x)
#define A_ALL (A (LLAMA) | A (QWEN2) | A (QWEN3) | A (GEMMA) | A (GEMMA2) | A (GEMMA3) | A (PHI3))

static const char * const arch_names[] = {
  "llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
};

static const struct {
  const char *hf_class;
  ArchId      arch;
} hf_classes[] = {
  { "LlamaForCausalLM",   ARCH_LLAMA },
  { "MistralForCausalLM", ARCH_LLAMA },
  { "Qwen2ForCausalLM",   ARCH_QWEN2 },
  { "Qwen3ForCausalLM",   ARCH_QWEN3 },
  { "GemmaForCausalLM",   ARCH_GEMMA },
  { "Gemma2ForCausalLM",  ARCH_GEMMA2 },
  { "Gemma3ForCausalLM",  ARCH_GEMMA3 },
  { "Phi3ForCausalLM",    ARCH_PHI3 },
};

static const char * const supported_classes[] = {
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
  "Qwen3ForCausalLM",
  "GemmaForCausalLM",
  "Gemma2ForCausalLM",
  "Gemma3ForCausalLM",
  "Phi3ForCausalLM",
  NULL
};

const char * const *
smelt_gguf_arch_supported (void)
{
  return supported_classes;
}

/* ------------------------------------------------------------------ */
/* transformers 4.57 config defaults                                   */

/* What AutoConfig.to_dict() adds when config.json lacks a key, for the
 * keys the converter reads (the config class is chosen by model_type):
 *
 * model_type   vocab   hidden inter  layers heads kv     head_dim   max_pos rms   theta  other
 * llama        32000   4096   11008  32     32    =heads =h/heads  2048    1e-6  1e4    rope_scaling None
 * mistral      32000   4096   14336  32     32    8      =h/heads  131072  1e-6  1e4    sliding_window 4096
 * qwen2        151936  4096   22016  32     32    32     (none)     32768   1e-6  1e4    rope_scaling None
 * qwen3        151936  4096   22016  32     32    32     128        32768   1e-6  1e4    rope_scaling None
 * gemma        256000  3072   24576  28     16    16     256        8192    1e-6  1e4
 * gemma2       256000  2304   9216   26     8     4      256        8192    1e-6  1e4    sliding_window 4096,
 *                                                                                       softcapping attn 50 final 30
 * gemma3_text  262208  2304   9216   26     8     4      256        131072  1e-6  1e6    rope_local_base_freq 1e4,
 *                                                                                       sliding_window 4096,
 *                                                                                       softcapping None
 * phi3         32064   3072   8192   32     32    =heads (none)     4096    1e-5  1e4    original_max_position_embeddings
 *                                                                                       4096, partial_rotary_factor 1.0,
 *                                                                                       sliding_window None
 *
 * "=heads": num_key_value_heads None becomes num_attention_heads;
 * "=h/heads": head_dim None becomes hidden_size // num_attention_heads.
 * The classes also rewrite a few values, see apply_class_fixups().
 * A config.json without model_type is used as it is: AutoConfig fails on
 * it and the converter falls back to the plain file. */
typedef struct {
  const char *model_type;
  const char *json;
  guint       kv_from_heads : 1;       /* num_key_value_heads None → heads */
  guint       head_dim_from_hidden : 1;/* head_dim None → hidden // heads */
  guint       rope_type_from_type : 1; /* rope_scaling "type" copied to "rope_type" */
  guint       phi3_rope : 1;           /* rope_scaling type su/yarn → longrope */
  guint       gemma3_window : 1;       /* bidirectional attention halves the window */
} ClassDefaults;

static const ClassDefaults class_defaults[] = {
  { "llama",
    "{\"vocab_size\":32000,\"hidden_size\":4096,\"intermediate_size\":11008,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":null,"
    "\"max_position_embeddings\":2048,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
    "\"rope_scaling\":null,\"head_dim\":null}",
    TRUE, TRUE, TRUE, FALSE, FALSE },
  { "mistral",
    "{\"vocab_size\":32000,\"hidden_size\":4096,\"intermediate_size\":14336,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":8,"
    "\"head_dim\":null,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0,\"sliding_window\":4096}",
    TRUE, TRUE, FALSE, FALSE, FALSE },
  { "qwen2",
    "{\"vocab_size\":151936,\"hidden_size\":4096,\"intermediate_size\":22016,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":32,"
    "\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,"
    "\"rope_scaling\":null}",
    TRUE, FALSE, TRUE, FALSE, FALSE },
  { "qwen3",
    "{\"vocab_size\":151936,\"hidden_size\":4096,\"intermediate_size\":22016,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":32,"
    "\"head_dim\":128,\"max_position_embeddings\":32768,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0,\"rope_scaling\":null}",
    TRUE, FALSE, TRUE, FALSE, FALSE },
  { "gemma",
    "{\"vocab_size\":256000,\"hidden_size\":3072,\"intermediate_size\":24576,"
    "\"num_hidden_layers\":28,\"num_attention_heads\":16,\"num_key_value_heads\":16,"
    "\"head_dim\":256,\"max_position_embeddings\":8192,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0}",
    FALSE, FALSE, FALSE, FALSE, FALSE },
  { "gemma2",
    "{\"vocab_size\":256000,\"hidden_size\":2304,\"intermediate_size\":9216,"
    "\"num_hidden_layers\":26,\"num_attention_heads\":8,\"num_key_value_heads\":4,"
    "\"head_dim\":256,\"max_position_embeddings\":8192,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":10000.0,\"sliding_window\":4096,"
    "\"final_logit_softcapping\":30.0,\"attn_logit_softcapping\":50.0}",
    FALSE, FALSE, FALSE, FALSE, FALSE },
  { "gemma3_text",
    "{\"vocab_size\":262208,\"hidden_size\":2304,\"intermediate_size\":9216,"
    "\"num_hidden_layers\":26,\"num_attention_heads\":8,\"num_key_value_heads\":4,"
    "\"head_dim\":256,\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-6,"
    "\"rope_theta\":1000000.0,\"rope_scaling\":null,\"rope_local_base_freq\":10000.0,"
    "\"sliding_window\":4096,\"final_logit_softcapping\":null,"
    "\"attn_logit_softcapping\":null,\"use_bidirectional_attention\":false}",
    FALSE, FALSE, TRUE, FALSE, TRUE },
  { "phi3",
    "{\"vocab_size\":32064,\"hidden_size\":3072,\"intermediate_size\":8192,"
    "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":null,"
    "\"max_position_embeddings\":4096,\"original_max_position_embeddings\":4096,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"rope_scaling\":null,"
    "\"partial_rotary_factor\":1.0,\"sliding_window\":null}",
    TRUE, FALSE, FALSE, TRUE, FALSE },
};

/* ------------------------------------------------------------------ */
/* Plan state                                                          */

typedef struct {
  char               *key;
  SmeltGgufValueType  type;
  guint32             u32;
  float               f32;
  gboolean            b;
  char               *str;
} Kv;

typedef struct {
  SmeltGgufArchPlan pub;
  GArray           *early;   /* Kv */
  GArray           *kvs;     /* Kv */
} ArchPlan;

typedef struct {
  SmeltSource *source;
  char        *config_path;
  ArchId       arch;
  const char  *arch_name;
  JsonObject  *hp;           /* hparams: config.json + class defaults */
  JsonObject  *rope;         /* TextModel.rope_parameters */
  GArray      *kvs;
  GArray      *early;
  guint32      block_count;

  /* llama.cpp's view of the KVs (llama_model_base::load_hparams) */
  guint64      n_embd, n_head, n_head_kv, head_k, head_v, n_ff, n_rot;
  guint64      n_vocab;
} Ctx;

static void
kv_clear (gpointer data)
{
  Kv *kv = data;

  g_free (kv->key);
  g_free (kv->str);
}

static GArray *
kv_list_new (void)
{
  GArray *a = g_array_new (FALSE, TRUE, sizeof (Kv));

  g_array_set_clear_func (a, kv_clear);
  return a;
}

/* Replaces the value of @key where it stands, or appends it: the
 * converter's writer keeps keys in a dict, so re-adding a key keeps its
 * first position. */
static Kv *
kv_slot (GArray     *kvs,
         const char *key)
{
  Kv kv = { 0, };

  for (guint i = 0; i < kvs->len; i++)
    {
      Kv *e = &g_array_index (kvs, Kv, i);
      if (strcmp (e->key, key) == 0)
        {
          g_clear_pointer (&e->str, g_free);
          return e;
        }
    }
  kv.key = g_strdup (key);
  g_array_append_val (kvs, kv);
  return &g_array_index (kvs, Kv, kvs->len - 1);
}

static const Kv *
kv_find (GArray     *kvs,
         const char *key)
{
  for (guint i = 0; i < kvs->len; i++)
    if (strcmp (g_array_index (kvs, Kv, i).key, key) == 0)
      return &g_array_index (kvs, Kv, i);
  return NULL;
}

static char *
arch_key (Ctx        *c,
          const char *suffix)
{
  return g_strconcat (c->arch_name, ".", suffix, NULL);
}

/* @suffix is appended to "{arch}."; a leading '.' marks a full key
 * (".general.file_type") */
static void
kv_u32 (Ctx        *c,
        GArray     *kvs,
        const char *suffix,
        guint32     value)
{
  g_autofree char *key = suffix[0] == '.' ? g_strdup (suffix + 1) : arch_key (c, suffix);
  Kv *kv = kv_slot (kvs, key);

  kv->type = SMELT_GGUF_VALUE_UINT32;
  kv->u32 = value;
}

static void
kv_f32 (Ctx        *c,
        GArray     *kvs,
        const char *suffix,
        float       value)
{
  g_autofree char *key = arch_key (c, suffix);
  Kv *kv = kv_slot (kvs, key);

  kv->type = SMELT_GGUF_VALUE_FLOAT32;
  kv->f32 = value;
}

static void
kv_bool (Ctx        *c,
         GArray     *kvs,
         const char *suffix,
         gboolean    value)
{
  g_autofree char *key = arch_key (c, suffix);
  Kv *kv = kv_slot (kvs, key);

  kv->type = SMELT_GGUF_VALUE_BOOL;
  kv->b = value;
}

static void
kv_str (Ctx        *c,
        GArray     *kvs,
        const char *suffix,
        const char *value)
{
  g_autofree char *key = arch_key (c, suffix);
  Kv *kv = kv_slot (kvs, key);

  kv->type = SMELT_GGUF_VALUE_STRING;
  kv->str = g_strdup (value);
}

/* ------------------------------------------------------------------ */
/* Hyperparameter lookups (the converter's find_hparam and friends)    */

static gboolean
node_is_null (JsonNode *node)
{
  return node == NULL || JSON_NODE_HOLDS_NULL (node);
}

/* The first of @keys that @obj has, null or not, as find_hparam() does:
 * a key present with null stops the search. */
static JsonNode *
find_node (JsonObject         *obj,
           const char * const *keys,
           const char        **found_key)
{
  for (guint i = 0; keys[i] != NULL; i++)
    if (obj != NULL && json_object_has_member (obj, keys[i]))
      {
        if (found_key)
          *found_key = keys[i];
        return json_object_get_member (obj, keys[i]);
      }
  return NULL;
}

#define KEYS(...) ((const char * const []) { __VA_ARGS__, NULL })

static GType
node_value_type (JsonNode *node)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node))
    return G_TYPE_INVALID;
  return json_node_get_value_type (node);
}

/* Values go through Python's struct.pack("<I"): integers (and bools) in
 * range only. */
static gboolean
node_to_u32 (Ctx        *c,
             JsonNode   *node,
             const char *what,
             guint32    *out,
             GError    **error)
{
  GType t = node_value_type (node);
  gint64 v;

  if (t == G_TYPE_BOOLEAN)
    v = json_node_get_boolean (node);
  else if (t == G_TYPE_INT64)
    v = json_node_get_int (node);
  else
    {
      g_autofree char *text = node ? json_to_string (node, FALSE) : g_strdup ("missing");
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “%s” is %s, not an unsigned 32-bit integer",
                   c->config_path, what, text);
      return FALSE;
    }
  if (v < 0 || v > G_MAXUINT32)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “%s” is %" G_GINT64_FORMAT ", out of the range of an unsigned 32-bit integer",
                   c->config_path, what, v);
      return FALSE;
    }
  *out = (guint32) v;
  return TRUE;
}

static gboolean
node_to_double (Ctx        *c,
                JsonNode   *node,
                const char *what,
                double     *out,
                GError    **error)
{
  GType t = node_value_type (node);

  if (t == G_TYPE_BOOLEAN)
    *out = json_node_get_boolean (node);
  else if (t == G_TYPE_INT64)
    *out = (double) json_node_get_int (node);
  else if (t == G_TYPE_DOUBLE)
    *out = json_node_get_double (node);
  else
    {
      g_autofree char *text = node ? json_to_string (node, FALSE) : g_strdup ("missing");
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “%s” is %s, not a number", c->config_path, what, text);
      return FALSE;
    }
  return TRUE;
}

/* struct.pack("<f", x): the Python double rounded to float */
static gboolean
node_to_f32 (Ctx        *c,
             JsonNode   *node,
             const char *what,
             float      *out,
             GError    **error)
{
  double d;

  if (!node_to_double (c, node, what, &d, error))
    return FALSE;
  *out = (float) d;
  return TRUE;
}

/* hparams[key], which the converter indexes without a fallback */
static gboolean
hp_u32 (Ctx        *c,
        const char *key,
        guint32    *out,
        GError    **error)
{
  JsonNode *node = json_object_get_member (c->hp, key);

  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “%s” is missing", c->config_path, key);
      return FALSE;
    }
  return node_to_u32 (c, node, key, out, error);
}

/* find_hparam(keys) without optional=True: a KeyError when none is there */
static gboolean
find_u32 (Ctx                *c,
          const char * const *keys,
          guint32            *out,
          GError            **error)
{
  const char *key = NULL;
  JsonNode *node = find_node (c->hp, keys, &key);

  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID, "%s: “%s” is missing", c->config_path, keys[0]);
      return FALSE;
    }
  return node_to_u32 (c, node, key, out, error);
}

/* Python truthiness of a JSON value */
static gboolean
node_truthy (JsonNode *node)
{
  GType t = node_value_type (node);

  if (node_is_null (node))
    return FALSE;
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean (node);
  if (t == G_TYPE_INT64)
    return json_node_get_int (node) != 0;
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (node) != 0.0;
  if (t == G_TYPE_STRING)
    return json_node_get_string (node)[0] != '\0';
  if (JSON_NODE_HOLDS_OBJECT (node))
    return json_object_get_size (json_node_get_object (node)) > 0;
  if (JSON_NODE_HOLDS_ARRAY (node))
    return json_array_get_length (json_node_get_array (node)) > 0;
  return TRUE;
}

static gboolean
node_equals_int (JsonNode *node,
                 gint64    value)
{
  GType t = node_value_type (node);

  if (t == G_TYPE_INT64)
    return json_node_get_int (node) == value;
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (node) == (double) value;
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean (node) == value;
  return FALSE;
}

/* obj.get(key), with None for a missing object */
static JsonNode *
member (JsonObject *obj,
        const char *key)
{
  return obj != NULL ? json_object_get_member (obj, key) : NULL;
}

static const char *
member_string (JsonObject *obj,
               const char *key)
{
  JsonNode *node = member (obj, key);

  return node_value_type (node) == G_TYPE_STRING ? json_node_get_string (node) : NULL;
}

static JsonObject *
member_object (JsonObject *obj,
               const char *key)
{
  JsonNode *node = obj ? json_object_get_member (obj, key) : NULL;

  return node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

/* ------------------------------------------------------------------ */
/* Building hparams                                                    */

static void
copy_members (JsonObject *dst,
              JsonObject *src)
{
  JsonObjectIter iter;
  const char *key;
  JsonNode *node;

  json_object_iter_init (&iter, src);
  while (json_object_iter_next (&iter, &key, &node))
    json_object_set_member (dst, key, json_node_copy (node));
}

static const ClassDefaults *
lookup_class_defaults (const char *model_type)
{
  for (guint i = 0; i < G_N_ELEMENTS (class_defaults); i++)
    if (g_strcmp0 (class_defaults[i].model_type, model_type) == 0)
      return &class_defaults[i];
  return NULL;
}

/* What the config classes' constructors do to the values. */
static void
apply_class_fixups (const ClassDefaults *cls,
                    JsonObject          *hp)
{
  JsonNode *heads = json_object_get_member (hp, "num_attention_heads");
  JsonObject *rs = member_object (hp, "rope_scaling");

  if (cls->kv_from_heads && node_is_null (json_object_get_member (hp, "num_key_value_heads")) &&
      heads != NULL)
    json_object_set_member (hp, "num_key_value_heads", json_node_copy (heads));

  if (cls->head_dim_from_hidden && node_is_null (json_object_get_member (hp, "head_dim")) &&
      node_value_type (heads) == G_TYPE_INT64 &&
      node_value_type (json_object_get_member (hp, "hidden_size")) == G_TYPE_INT64 &&
      json_node_get_int (heads) > 0)
    {
      gint64 hidden = json_object_get_int_member (hp, "hidden_size");
      gint64 n = json_node_get_int (heads);
      /* Python floor division */
      gint64 q = hidden / n - ((hidden % n != 0) && ((hidden < 0) != (n < 0)));

      json_object_set_int_member (hp, "head_dim", q);
    }

  /* BC in LlamaConfig, Qwen2Config, …: "type" overrides "rope_type" */
  if (cls->rope_type_from_type && rs != NULL && json_object_has_member (rs, "type"))
    json_object_set_member (rs, "rope_type",
                            json_node_copy (json_object_get_member (rs, "type")));

  /* Phi3Config._rope_scaling_adjustment */
  if (cls->phi3_rope && rs != NULL)
    {
      const char *type = member_string (rs, "type");
      if (g_strcmp0 (type, "su") == 0 || g_strcmp0 (type, "yarn") == 0)
        json_object_set_string_member (rs, "type", "longrope");
    }

  /* Gemma3TextConfig: the window of bidirectional attention is halved */
  if (cls->gemma3_window && node_truthy (json_object_get_member (hp, "use_bidirectional_attention")) &&
      node_value_type (json_object_get_member (hp, "sliding_window")) == G_TYPE_INT64)
    {
      gint64 sw = json_object_get_int_member (hp, "sliding_window");
      json_object_set_int_member (hp, "sliding_window", sw / 2 + 1);
    }
}

/* AutoConfig(...).to_dict() for the keys that matter: the class defaults
 * overlaid with config.json, then the class's own rewrites. */
static JsonObject *
config_to_hparams (Ctx        *c,
                   JsonObject *config,
                   GError    **error)
{
  const char *model_type;
  const ClassDefaults *cls;
  g_autoptr(JsonObject) hp = json_object_new ();
  g_autoptr(JsonParser) parser = NULL;

  if (!json_object_has_member (config, "model_type"))
    {
      copy_members (hp, config);
      return g_steal_pointer (&hp);
    }
  model_type = member_string (config, "model_type");
  if (g_strcmp0 (model_type, "gemma3") == 0)
    {
      /* Gemma3Config: the text model's hparams sit in text_config (whose
       * class is Gemma3TextConfig); the converter lifts them to the top. */
      JsonObject *text = member_object (config, "text_config");
      g_autoptr(JsonObject) text_hp = json_object_new ();
      const ClassDefaults *tcls = lookup_class_defaults ("gemma3_text");

      parser = json_parser_new ();
      if (!json_parser_load_from_data (parser, tcls->json, -1, NULL))
        g_assert_not_reached ();
      copy_members (text_hp, json_node_get_object (json_parser_get_root (parser)));
      if (text != NULL)
        copy_members (text_hp, text);
      apply_class_fixups (tcls, text_hp);
      copy_members (hp, config);
      json_object_set_object_member (hp, "text_config", json_object_ref (text_hp));
      return g_steal_pointer (&hp);
    }

  cls = lookup_class_defaults (model_type);
  if (cls == NULL)
    {
      GString *known = g_string_new (NULL);

      for (guint i = 0; i < G_N_ELEMENTS (class_defaults); i++)
        g_string_append_printf (known, "%s%s", i ? ", " : "", class_defaults[i].model_type);
      g_string_append (known, ", gemma3");
      g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                   "%s: model_type “%s” is not one whose transformers defaults smelt knows "
                   "(the converter takes hyperparameters from that class); known: %s",
                   c->config_path, model_type ? model_type : "(not a string)", known->str);
      g_string_free (known, TRUE);
      return NULL;
    }

  parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, cls->json, -1, NULL))
    g_assert_not_reached ();
  copy_members (hp, json_node_get_object (json_parser_get_root (parser)));
  copy_members (hp, config);
  apply_class_fixups (cls, hp);
  return g_steal_pointer (&hp);
}

/* get_model_architecture(): architectures[0], or text_config's */
static const char *
hf_architecture (JsonObject *hp)
{
  JsonObject *text = member_object (hp, "text_config");
  JsonNode *node;

  node = text ? json_object_get_member (text, "architectures") : NULL;
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    node = json_object_get_member (hp, "architectures");
  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node) ||
      json_array_get_length (json_node_get_array (node)) == 0)
    return NULL;
  node = json_array_get_element (json_node_get_array (node), 0);
  return node_value_type (node) == G_TYPE_STRING ? json_node_get_string (node) : NULL;
}

/* TextModel.__init__: text_config lifted to the top, then the global rope
 * parameters mirrored into rope_parameters (rope_scaling in transformers
 * 4.57's dicts). */
static gboolean
prepare_text_model (Ctx     *c,
                    GError **error)
{
  JsonObject *text = member_object (c->hp, "text_config");
  JsonNode *node, *v;
  JsonObject *rp;

  if (text != NULL)
    {
      g_autoptr(JsonObject) merged = json_object_new ();

      copy_members (merged, c->hp);
      copy_members (merged, text);
      json_object_unref (c->hp);
      c->hp = g_steal_pointer (&merged);
    }

  node = find_node (c->hp, KEYS ("n_layers", "num_hidden_layers", "n_layer", "num_layers"), NULL);
  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “num_hidden_layers” is missing", c->config_path);
      return FALSE;
    }
  if (!node_to_u32 (c, node, "num_hidden_layers", &c->block_count, error))
    return FALSE;

  node = json_object_has_member (c->hp, "rope_parameters")
    ? json_object_get_member (c->hp, "rope_parameters")
    : json_object_get_member (c->hp, "rope_scaling");
  if (node_truthy (node) && !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “rope_scaling” is not an object", c->config_path);
      return FALSE;
    }
  c->rope = json_object_new ();
  if (node_truthy (node))
    copy_members (c->rope, json_node_get_object (node));
  rp = c->rope;

  if (!json_object_has_member (rp, "full_attention") &&
      !json_object_has_member (rp, "sliding_attention"))
    {
      v = find_node (c->hp, KEYS ("local_rope_theta", "rope_local_theta", "rope_theta_local",
                                  "swa_rope_theta", "rope_local_base_freq"), NULL);
      if (!node_is_null (v))
        {
          JsonObject *swa = json_object_new ();
          json_object_set_member (swa, "rope_theta", json_node_copy (v));
          json_object_set_object_member (rp, "sliding_attention", swa);
        }
      v = find_node (c->hp, KEYS ("global_rope_theta", "rope_global_theta", "rope_theta_global",
                                  "rope_theta", "rotary_emb_base"), NULL);
      if (!json_object_has_member (rp, "rope_theta") && !node_is_null (v))
        json_object_set_member (rp, "rope_theta", json_node_copy (v));
      v = json_object_get_member (rp, "type");
      if (!json_object_has_member (rp, "rope_type") && !node_is_null (v))
        json_object_set_member (rp, "rope_type", json_node_copy (v));
      v = find_node (c->hp, KEYS ("partial_rotary_factor", "rope_pct", "rope_percent"), NULL);
      if (!json_object_has_member (rp, "partial_rotary_factor") && !node_is_null (v))
        json_object_set_member (rp, "partial_rotary_factor", json_node_copy (v));
      v = find_node (c->hp, KEYS ("original_max_position_embeddings"), NULL);
      if (!json_object_has_member (rp, "original_max_position_embeddings") && !node_is_null (v))
        json_object_set_member (rp, "original_max_position_embeddings", json_node_copy (v));
    }
  return TRUE;
}

/* rope_parameters.get("full_attention", rope_parameters) */
static JsonObject *
rope_params (Ctx *c)
{
  JsonObject *full = member_object (c->rope, "full_attention");

  return full ? full : c->rope;
}

/* ------------------------------------------------------------------ */
/* Architecture blocks                                                 */

/* A find_hparam() that is written when not None */
static gboolean
kv_u32_opt (Ctx                *c,
            const char         *suffix,
            const char * const *keys,
            GError            **error)
{
  const char *key = NULL;
  JsonNode *node = find_node (c->hp, keys, &key);
  guint32 v;

  if (node_is_null (node))
    return TRUE;
  if (!node_to_u32 (c, node, key, &v, error))
    return FALSE;
  kv_u32 (c, c->kvs, suffix, v);
  return TRUE;
}

static gboolean
kv_f32_node (Ctx        *c,
             const char *suffix,
             JsonNode   *node,
             const char *what,
             GError    **error)
{
  float v;

  if (node_is_null (node))
    return TRUE;
  if (!node_to_f32 (c, node, what, &v, error))
    return FALSE;
  kv_f32 (c, c->kvs, suffix, v);
  return TRUE;
}

static gboolean
reject_present (Ctx                *c,
                const char * const *keys,
                const char         *why,
                GError            **error)
{
  const char *key = NULL;
  JsonNode *node = find_node (c->hp, keys, &key);

  if (node_is_null (node))
    return TRUE;
  g_set_error (error, PLAN_ERROR_UNSUPPORTED,
               "%s: “%s” is set: %s are not supported for GGUF export",
               c->config_path, key, why);
  return FALSE;
}

/* TextModel.set_gguf_parameters() */
static gboolean
kvs_text_model (Ctx     *c,
                GError **error)
{
  JsonObject *rp = rope_params (c);
  JsonNode *node;
  const char *rope_type;

  kv_u32 (c, c->kvs, "block_count", c->block_count);
  if (!kv_u32_opt (c, "context_length",
                   KEYS ("max_position_embeddings", "n_ctx", "n_positions", "max_length",
                         "max_sequence_length", "model_max_length"), error) ||
      !kv_u32_opt (c, "embedding_length", KEYS ("hidden_size", "n_embd", "dim"), error) ||
      !kv_u32_opt (c, "feed_forward_length",
                   KEYS ("prefix_dense_intermediate_size", "dense_intermediate_size",
                         "intermediate_size", "n_inner", "hidden_dim"), error) ||
      !kv_u32_opt (c, "attention.head_count", KEYS ("num_attention_heads", "n_head", "n_heads"), error) ||
      !kv_u32_opt (c, "attention.head_count_kv", KEYS ("num_key_value_heads", "n_kv_heads"), error))
    return FALSE;

  node = json_object_get_member (c->hp, "is_causal");
  if (node_value_type (node) == G_TYPE_BOOLEAN && !json_node_get_boolean (node))
    kv_bool (c, c->kvs, "attention.causal", FALSE);

  node = json_object_get_member (rp, "rope_type");
  if (!node_is_null (node))
    {
      JsonNode *factor = json_object_get_member (rp, "factor");

      if (node_value_type (node) != G_TYPE_STRING)
        {
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: rope_scaling “rope_type” is not a string", c->config_path);
          return FALSE;
        }
      rope_type = json_node_get_string (node);
      if (strcmp (rope_type, "linear") == 0 && !node_is_null (factor))
        {
          kv_str (c, c->kvs, "rope.scaling.type", "linear");
          if (!kv_f32_node (c, "rope.scaling.factor", factor, "rope_scaling.factor", error))
            return FALSE;
        }
      else if (strcmp (rope_type, "yarn") == 0 && !node_is_null (factor))
        {
          JsonNode *orig = json_object_get_member (rp, "original_max_position_embeddings");
          guint32 orig_ctx;

          kv_str (c, c->kvs, "rope.scaling.type", "yarn");
          if (!kv_f32_node (c, "rope.scaling.factor", factor, "rope_scaling.factor", error))
            return FALSE;
          if (orig == NULL)
            {
              g_set_error (error, PLAN_ERROR_INVALID,
                           "%s: yarn rope scaling without “original_max_position_embeddings”",
                           c->config_path);
              return FALSE;
            }
          if (!node_to_u32 (c, orig, "rope_scaling.original_max_position_embeddings", &orig_ctx, error))
            return FALSE;
          kv_u32 (c, c->kvs, "rope.scaling.original_context_length", orig_ctx);
          node = json_object_has_member (rp, "attention_factor")
            ? json_object_get_member (rp, "attention_factor")
            : json_object_get_member (rp, "attn_factor");
          if (!kv_f32_node (c, "rope.scaling.yarn_ext_factor",
                            json_object_get_member (rp, "extrapolation_factor"),
                            "rope_scaling.extrapolation_factor", error) ||
              !kv_f32_node (c, "rope.scaling.yarn_attn_factor", node,
                            "rope_scaling.attention_factor", error) ||
              !kv_f32_node (c, "rope.scaling.yarn_beta_fast",
                            json_object_get_member (rp, "beta_fast"), "rope_scaling.beta_fast", error) ||
              !kv_f32_node (c, "rope.scaling.yarn_beta_slow",
                            json_object_get_member (rp, "beta_slow"), "rope_scaling.beta_slow", error))
            return FALSE;
        }
      else if (strcmp (rope_type, "su") == 0 || strcmp (rope_type, "longrope") == 0)
        kv_str (c, c->kvs, "rope.scaling.type", "longrope");
      /* "dynamic", "llama3" (a tensor, see below) and unknown types: no KV */
    }

  if (json_object_has_member (c->rope, "mrope_section"))
    {
      g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                   "%s: multimodal rope sections (“mrope_section”) are not supported for GGUF export",
                   c->config_path);
      return FALSE;
    }

  if (!kv_f32_node (c, "rope.freq_base", json_object_get_member (rp, "rope_theta"), "rope_theta", error) ||
      !kv_f32_node (c, "rope.freq_base_swa",
                    member (member_object (c->rope, "sliding_attention"), "rope_theta"),
                    "rope_local_base_freq", error))
    return FALSE;

  node = find_node (c->hp, KEYS ("rms_norm_eps", "norm_eps"), NULL);
  if (!kv_f32_node (c, "attention.layer_norm_rms_epsilon", node, "rms_norm_eps", error))
    return FALSE;
  node = find_node (c->hp, KEYS ("layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"), NULL);
  if (!kv_f32_node (c, "attention.layer_norm_epsilon", node, "layer_norm_eps", error))
    return FALSE;

  /* Mixture-of-experts keys would make this another model. */
  if (!reject_present (c, KEYS ("num_local_experts", "num_experts", "n_routed_experts"),
                       "mixtures of experts", error) ||
      !reject_present (c, KEYS ("num_experts_per_tok", "num_experts_per_token", "top_k_experts"),
                       "mixtures of experts", error) ||
      !reject_present (c, KEYS ("n_group"), "mixtures of experts", error) ||
      !reject_present (c, KEYS ("topk_group"), "mixtures of experts", error) ||
      !reject_present (c, KEYS ("score_function", "scoring_func", "score_func",
                                "moe_router_activation", "moe_router_activation_func",
                                "expert_selection_fn"), "mixtures of experts", error))
    return FALSE;

  node = json_object_get_member (c->hp, "head_dim");
  if (!node_is_null (node))
    {
      guint32 hd;

      if (!node_to_u32 (c, node, "head_dim", &hd, error))
        return FALSE;
      kv_u32 (c, c->kvs, "attention.key_length", hd);
      kv_u32 (c, c->kvs, "attention.value_length", hd);
    }

  kv_u32 (c, c->kvs, ".general.file_type", 0);
  return TRUE;
}

/* LlamaModel.set_gguf_parameters() */
static gboolean
kvs_llama (Ctx     *c,
           GError **error)
{
  guint32 vocab, hidden, heads, rope_dim;
  JsonNode *node;

  if (!kvs_text_model (c, error) ||
      !hp_u32 (c, "vocab_size", &vocab, error))
    return FALSE;
  kv_u32 (c, c->kvs, "vocab_size", vocab);

  node = json_object_get_member (c->hp, "head_dim");
  if (!node_is_null (node))
    {
      if (!node_to_u32 (c, node, "head_dim", &rope_dim, error))
        return FALSE;
    }
  else
    {
      if (!hp_u32 (c, "hidden_size", &hidden, error) ||
          !hp_u32 (c, "num_attention_heads", &heads, error))
        return FALSE;
      if (heads == 0)
        {
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: “num_attention_heads” is 0", c->config_path);
          return FALSE;
        }
      rope_dim = hidden / heads;
    }
  kv_u32 (c, c->kvs, "rope.dimension_count", rope_dim);
  return TRUE;
}

/* hparams[key] for the gemma and phi3 blocks, which index without a
 * default */
static gboolean
kv_u32_key (Ctx        *c,
            const char *suffix,
            const char *key,
            GError    **error)
{
  guint32 v;

  if (!hp_u32 (c, key, &v, error))
    return FALSE;
  kv_u32 (c, c->kvs, suffix, v);
  return TRUE;
}

static gboolean
kv_f32_key (Ctx        *c,
            const char *suffix,
            const char *key,
            GError    **error)
{
  JsonNode *node = json_object_get_member (c->hp, key);
  float v;

  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID, "%s: “%s” is missing", c->config_path, key);
      return FALSE;
    }
  if (!node_to_f32 (c, node, key, &v, error))
    return FALSE;
  kv_f32 (c, c->kvs, suffix, v);
  return TRUE;
}

/* GemmaModel / Gemma2Model.set_gguf_parameters() */
static gboolean
kvs_gemma (Ctx     *c,
           GError **error)
{
  const char *kv_key = json_object_has_member (c->hp, "num_key_value_heads")
    ? "num_key_value_heads" : "num_attention_heads";

  if (!kv_u32_key (c, "context_length", "max_position_embeddings", error) ||
      !kv_u32_key (c, "embedding_length", "hidden_size", error))
    return FALSE;
  kv_u32 (c, c->kvs, "block_count", c->block_count);
  if (!kv_u32_key (c, "feed_forward_length", "intermediate_size", error) ||
      !kv_u32_key (c, "attention.head_count", "num_attention_heads", error) ||
      !kv_u32_key (c, "attention.head_count_kv", kv_key, error) ||
      !kv_f32_key (c, "attention.layer_norm_rms_epsilon", "rms_norm_eps", error) ||
      !kv_u32_key (c, "attention.key_length", "head_dim", error) ||
      !kv_u32_key (c, "attention.value_length", "head_dim", error))
    return FALSE;
  kv_u32 (c, c->kvs, ".general.file_type", 0);

  if (c->arch == ARCH_GEMMA2)
    {
      if (!kv_f32_key (c, "attn_logit_softcapping", "attn_logit_softcapping", error) ||
          !kv_f32_key (c, "final_logit_softcapping", "final_logit_softcapping", error) ||
          !kv_u32_key (c, "attention.sliding_window", "sliding_window", error))
        return FALSE;
    }
  return TRUE;
}

/* hparams.get(key, default): a present null is passed on (and fails) */
static JsonNode *
hp_get_or (Ctx        *c,
           const char *key,
           JsonNode   *fallback)
{
  return json_object_has_member (c->hp, key) ? json_object_get_member (c->hp, key) : fallback;
}

/* Gemma3Model.set_gguf_parameters(): the base block, then a few keys set
 * again (in place) and the gemma3 extras appended */
static gboolean
kvs_gemma3 (Ctx     *c,
            GError **error)
{
  g_autoptr(JsonNode) d_ctx = json_node_init_int (json_node_alloc (), 131072);
  g_autoptr(JsonNode) d_heads = json_node_init_int (json_node_alloc (), 8);
  g_autoptr(JsonNode) d_eps = json_node_init_double (json_node_alloc (), 1e-6);
  g_autoptr(JsonNode) d_hd = json_node_init_int (json_node_alloc (), 256);
  g_autoptr(JsonNode) d_theta = json_node_init_double (json_node_alloc (), 1000000.0);
  g_autoptr(JsonNode) d_kv = json_node_init_int (json_node_alloc (), 4);
  JsonObject *rp = rope_params (c);
  JsonNode *node;
  guint32 u;
  float f;

  if (!kvs_text_model (c, error))
    return FALSE;

  if (!node_to_u32 (c, hp_get_or (c, "max_position_embeddings", d_ctx), "max_position_embeddings", &u, error))
    return FALSE;
  kv_u32 (c, c->kvs, "context_length", u);
  if (!node_to_u32 (c, hp_get_or (c, "num_attention_heads", d_heads), "num_attention_heads", &u, error))
    return FALSE;
  kv_u32 (c, c->kvs, "attention.head_count", u);
  if (!node_to_f32 (c, hp_get_or (c, "rms_norm_eps", d_eps), "rms_norm_eps", &f, error))
    return FALSE;
  kv_f32 (c, c->kvs, "attention.layer_norm_rms_epsilon", f);
  if (!node_to_u32 (c, hp_get_or (c, "head_dim", d_hd), "head_dim", &u, error))
    return FALSE;
  kv_u32 (c, c->kvs, "attention.key_length", u);
  kv_u32 (c, c->kvs, "attention.value_length", u);
  node = json_object_has_member (rp, "rope_theta") ? json_object_get_member (rp, "rope_theta") : d_theta;
  if (!node_to_f32 (c, node, "rope_theta", &f, error))
    return FALSE;
  kv_f32 (c, c->kvs, "rope.freq_base", f);

  if (!node_is_null (json_object_get_member (c->hp, "attn_logit_softcapping")))
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: gemma3 has no attention logit softcapping, but “attn_logit_softcapping” is set",
                   c->config_path);
      return FALSE;
    }
  node = json_object_get_member (c->hp, "final_logit_softcapping");
  if (node_truthy (node))
    {
      if (!node_to_f32 (c, node, "final_logit_softcapping", &f, error))
        return FALSE;
      kv_f32 (c, c->kvs, "final_logit_softcapping", f);
    }
  if (!node_equals_int (json_object_get_member (c->hp, "sliding_window_pattern"), 1))
    {
      if (!hp_u32 (c, "sliding_window", &u, error))
        return FALSE;
      kv_u32 (c, c->kvs, "attention.sliding_window", u);
    }
  if (!node_to_u32 (c, hp_get_or (c, "num_key_value_heads", d_kv), "num_key_value_heads", &u, error))
    return FALSE;
  kv_u32 (c, c->kvs, "attention.head_count_kv", u);
  return TRUE;
}

typedef struct {
  guint32 n_embd;
  guint32 n_head;
  guint32 max_pos;
  guint32 orig_max_pos;
  guint32 rope_dims;
} Phi3Rope;

/* The quantities Phi3MiniModel computes in both set_gguf_parameters()
 * and generate_extra_tensors() */
static gboolean
phi3_rope (Ctx      *c,
           Phi3Rope *r,
           GError  **error)
{
  JsonNode *node;
  double pct = 1.0;

  if (!find_u32 (c, KEYS ("hidden_size", "n_embd"), &r->n_embd, error) ||
      !find_u32 (c, KEYS ("num_attention_heads", "n_head"), &r->n_head, error) ||
      !find_u32 (c, KEYS ("n_positions", "max_position_embeddings"), &r->max_pos, error))
    return FALSE;
  node = json_object_get_member (c->rope, "original_max_position_embeddings");
  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: phi3 needs “original_max_position_embeddings”", c->config_path);
      return FALSE;
    }
  if (!node_to_u32 (c, node, "original_max_position_embeddings", &r->orig_max_pos, error))
    return FALSE;
  node = json_object_get_member (c->rope, "partial_rotary_factor");
  if (node != NULL && !node_to_double (c, node, "partial_rotary_factor", &pct, error))
    return FALSE;
  if (r->n_head == 0)
    {
      g_set_error (error, PLAN_ERROR_INVALID, "%s: “num_attention_heads” is 0", c->config_path);
      return FALSE;
    }
  /* int(rot_pct * n_embd) // n_head */
  r->rope_dims = (guint32) ((gint64) (pct * (double) r->n_embd) / r->n_head);
  return TRUE;
}

/* Phi3MiniModel.set_gguf_parameters() */
static gboolean
kvs_phi3 (Ctx     *c,
          GError **error)
{
  Phi3Rope r;
  JsonNode *node;
  guint32 v;
  float f;

  if (!phi3_rope (c, &r, error))
    return FALSE;
  kv_u32 (c, c->kvs, "context_length", r.max_pos);
  kv_u32 (c, c->kvs, "rope.scaling.original_context_length", r.orig_max_pos);
  kv_u32 (c, c->kvs, "embedding_length", r.n_embd);
  if (!kv_u32_key (c, "feed_forward_length", "intermediate_size", error))
    return FALSE;
  kv_u32 (c, c->kvs, "block_count", c->block_count);
  kv_u32 (c, c->kvs, "attention.head_count", r.n_head);
  if (!find_u32 (c, KEYS ("num_key_value_heads", "n_head_kv"), &v, error))
    return FALSE;
  kv_u32 (c, c->kvs, "attention.head_count_kv", v);
  if (!kv_f32_key (c, "attention.layer_norm_rms_epsilon", "rms_norm_eps", error))
    return FALSE;
  kv_u32 (c, c->kvs, "rope.dimension_count", r.rope_dims);
  node = json_object_get_member (rope_params (c), "rope_theta");
  if (node == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID, "%s: “rope_theta” is missing", c->config_path);
      return FALSE;
    }
  if (!node_to_f32 (c, node, "rope_theta", &f, error))
    return FALSE;
  kv_f32 (c, c->kvs, "rope.freq_base", f);
  kv_u32 (c, c->kvs, ".general.file_type", 0);
  /* 0 when absent: the converter's marker for "not Phi-4" */
  node = json_object_get_member (c->hp, "sliding_window");
  v = 0;
  if (!node_is_null (node) && !node_to_u32 (c, node, "sliding_window", &v, error))
    return FALSE;
  kv_u32 (c, c->kvs, "attention.sliding_window", v);
  return TRUE;
}

static const Kv *
arch_kv (Ctx        *c,
         const char *suffix)
{
  g_autofree char *key = arch_key (c, suffix);

  return kv_find (c->kvs, key);
}

/* What llama_model_base::load_hparams() will read back, to size the
 * tensors it expects. */
static gboolean
read_back_kvs (Ctx     *c,
               GError **error)
{
  static const struct { const char *suffix; const char *config_key; } required[] = {
    { "context_length", "max_position_embeddings" },
    { "embedding_length", "hidden_size" },
    { "block_count", "num_hidden_layers" },
    { "feed_forward_length", "intermediate_size" },
    { "attention.head_count", "num_attention_heads" },
    { "attention.layer_norm_rms_epsilon", "rms_norm_eps" },
  };
  const Kv *kv;

  for (guint i = 0; i < G_N_ELEMENTS (required); i++)
    {
      g_autofree char *key = arch_key (c, required[i].suffix);
      if (kv_find (c->kvs, key) == NULL)
        {
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: llama.cpp needs %s, but “%s” is not set",
                       c->config_path, key, required[i].config_key);
          return FALSE;
        }
    }

  c->n_embd = arch_kv (c, "embedding_length")->u32;
  c->n_head = arch_kv (c, "attention.head_count")->u32;
  c->n_ff = arch_kv (c, "feed_forward_length")->u32;
  kv = arch_kv (c, "attention.head_count_kv");
  c->n_head_kv = kv ? kv->u32 : c->n_head;
  if (c->n_head == 0 || c->n_head_kv == 0 || c->n_embd == 0)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: hidden_size, num_attention_heads and num_key_value_heads must not be 0",
                   c->config_path);
      return FALSE;
    }
  kv = arch_kv (c, "attention.key_length");
  c->head_k = kv ? kv->u32 : c->n_embd / c->n_head;
  kv = arch_kv (c, "attention.value_length");
  c->head_v = kv ? kv->u32 : c->n_embd / c->n_head;
  kv = arch_kv (c, "rope.dimension_count");
  c->n_rot = kv ? kv->u32 : c->head_k;

  /* llama.cpp asserts 0 < n_layer <= LLAMA_MAX_LAYERS */
  if (c->block_count == 0 || c->block_count > 512)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: llama.cpp loads 1 to 512 layers, not %u (“num_hidden_layers”)",
                   c->config_path, c->block_count);
      return FALSE;
    }

  if (c->arch == ARCH_LLAMA && c->n_rot != c->head_k)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: llama.cpp's llama needs the rope dimension (%" G_GUINT64_FORMAT
                   ") to equal the head size (%" G_GUINT64_FORMAT ")",
                   c->config_path, c->n_rot, c->head_k);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Tensor names                                                        */

typedef enum {
  T_TOKEN_EMBD,
  T_OUTPUT_NORM,
  T_OUTPUT,
  T_ROPE_FREQS,
  T_ROPE_LONG,
  T_ROPE_SHORT,
  T_ATTN_NORM,
  T_ATTN_Q,
  T_ATTN_K,
  T_ATTN_V,
  T_ATTN_QKV,
  T_ATTN_OUT,
  T_ATTN_Q_NORM,
  T_ATTN_K_NORM,
  T_ATTN_POST_NORM,
  T_FFN_NORM,
  T_FFN_GATE,
  T_FFN_UP,
  T_FFN_DOWN,
  T_FFN_POST_NORM,
  T_N_KINDS
} Kind;

static const char * const kind_names[T_N_KINDS] = {
  "token_embd", "output_norm", "output", "rope_freqs", "rope_factors_long",
  "rope_factors_short", "attn_norm", "attn_q", "attn_k", "attn_v", "attn_qkv",
  "attn_output", "attn_q_norm", "attn_k_norm", "post_attention_norm", "ffn_norm",
  "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm",
};

#define FIRST_BLOCK_KIND T_ATTN_NORM

/* The Hugging Face modules of each GGUF tensor, per architecture (those
 * these classes' checkpoints use; gguf-py knows more aliases, for other
 * model families). */
static const struct {
  const char *module;
  Kind        kind;
  guint       archs;
} block_modules[] = {
  { "input_layernorm",            T_ATTN_NORM,      A_ALL },
  { "self_attn.q_proj",           T_ATTN_Q,         A_ALL },
  { "self_attn.k_proj",           T_ATTN_K,         A_ALL },
  { "self_attn.v_proj",           T_ATTN_V,         A_ALL },
  { "self_attn.qkv_proj",         T_ATTN_QKV,       A (PHI3) },
  { "self_attn.o_proj",           T_ATTN_OUT,       A_ALL },
  { "self_attn.q_norm",           T_ATTN_Q_NORM,    A (QWEN3) | A (GEMMA3) },
  { "self_attn.k_norm",           T_ATTN_K_NORM,    A (QWEN3) | A (GEMMA3) },
  { "post_attention_layernorm",   T_FFN_NORM,       A_ALL & ~(A (GEMMA2) | A (GEMMA3)) },
  { "post_attention_layernorm",   T_ATTN_POST_NORM, A (GEMMA2) | A (GEMMA3) },
  { "pre_feedforward_layernorm",  T_FFN_NORM,       A (GEMMA2) | A (GEMMA3) },
  { "post_feedforward_layernorm", T_FFN_POST_NORM,  A (GEMMA2) | A (GEMMA3) },
  { "mlp.gate_proj",              T_FFN_GATE,       A_ALL & ~A (PHI3) },
  { "mlp.up_proj",                T_FFN_UP,         A_ALL & ~A (PHI3) },
  { "mlp.gate_up_proj",           T_FFN_UP,         A (PHI3) },
  { "mlp.down_proj",              T_FFN_DOWN,       A_ALL },
};

static const char *
kind_module (Kind   kind,
             ArchId arch)
{
  for (guint i = 0; i < G_N_ELEMENTS (block_modules); i++)
    if (block_modules[i].kind == kind && (block_modules[i].archs & (1u << arch)))
      return block_modules[i].module;
  return NULL;
}

static char *
hf_tensor_name (Kind        kind,
                ArchId      arch,
                guint       layer,
                const char *suffix)
{
  switch (kind)
    {
    case T_TOKEN_EMBD:  return g_strconcat ("model.embed_tokens", suffix, NULL);
    case T_OUTPUT_NORM: return g_strconcat ("model.norm", suffix, NULL);
    case T_OUTPUT:      return g_strconcat ("lm_head", suffix, NULL);
    default:
      return g_strdup_printf ("model.layers.%u.%s%s", layer, kind_module (kind, arch), suffix);
    }
}

static char *
gguf_tensor_name (Kind        kind,
                  guint       layer,
                  const char *suffix)
{
  if (kind >= FIRST_BLOCK_KIND)
    return g_strdup_printf ("blk.%u.%s%s", layer, kind_names[kind], suffix);
  return g_strconcat (kind_names[kind], suffix, NULL);
}

/* Parses a canonical decimal ("0", "17"), as the converter's block map
 * only holds those. */
static gboolean
parse_layer (const char *s,
             gsize       len,
             guint      *out)
{
  guint64 v = 0;

  if (len == 0 || len > 9 || (len > 1 && s[0] == '0'))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (!g_ascii_isdigit (s[i]))
        return FALSE;
      v = v * 10 + (guint64) (s[i] - '0');
    }
  *out = (guint) v;
  return TRUE;
}

/* TensorNameMap.get_name(name, try_suffixes=(".weight", ".bias")) for the
 * names these classes use */
static gboolean
map_name (Ctx         *c,
          const char  *name,
          Kind        *kind,
          guint       *layer,
          const char **suffix)
{
  gsize len = strlen (name), stem_len;
  const char *dot;

  if (g_str_has_suffix (name, ".weight"))
    *suffix = ".weight";
  else if (g_str_has_suffix (name, ".bias"))
    *suffix = ".bias";
  else
    return FALSE;
  stem_len = len - strlen (*suffix);
  *layer = 0;

#define STEM_IS(s) (stem_len == strlen (s) && strncmp (name, s, stem_len) == 0)
  if (STEM_IS ("model.embed_tokens"))
    *kind = T_TOKEN_EMBD;
  else if (STEM_IS ("model.norm"))
    *kind = T_OUTPUT_NORM;
  else if (STEM_IS ("lm_head") && c->arch != ARCH_GEMMA && c->arch != ARCH_GEMMA2)
    *kind = T_OUTPUT;
  else if (g_str_has_prefix (name, "model.layers."))
    {
      const char *num = name + strlen ("model.layers.");
      const char *module;
      gsize module_len;

      dot = strchr (num, '.');
      if (dot == NULL || dot >= name + stem_len ||
          !parse_layer (num, (gsize) (dot - num), layer) || *layer >= c->block_count)
        return FALSE;
      module = dot + 1;
      module_len = (gsize) (name + stem_len - module);
      for (guint i = 0; i < G_N_ELEMENTS (block_modules); i++)
        if ((block_modules[i].archs & (1u << c->arch)) &&
            strlen (block_modules[i].module) == module_len &&
            strncmp (block_modules[i].module, module, module_len) == 0)
          {
            *kind = block_modules[i].kind;
            return TRUE;
          }
      return FALSE;
    }
  else
    return FALSE;
#undef STEM_IS
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* What llama.cpp's loader expects                                     */

typedef struct {
  gboolean known;      /* the loader creates this tensor */
  gboolean required;   /* … and fails without it */
  guint    n_dims;
  guint64  ne[2];      /* GGUF order; 0 = any (the vocabulary) */
} Expect;

static gboolean
arch_in (ArchId arch,
         guint  mask)
{
  return (mask & (1u << arch)) != 0;
}

/* Mirrors load_arch_tensors() of src/models/{llama,qwen2,qwen3,gemma,
 * gemma2,gemma3,phi3}.cpp and create_tensor_qkv(). */
static Expect
expect_tensor (Ctx      *c,
               Kind      kind,
               gboolean  bias)
{
  Expect e = { FALSE, FALSE, 1, { 0, 0 } };
  ArchId a = c->arch;
  /* qwen2 and phi3 size q and o by n_embd; the others by head × heads */
  guint64 q_dim = arch_in (a, A (QWEN2) | A (PHI3)) ? c->n_embd : c->head_k * c->n_head;
  guint64 k_dim = arch_in (a, A (QWEN2) | A (PHI3)) ? c->head_v * c->n_head_kv : c->head_k * c->n_head_kv;
  guint64 v_dim = c->head_v * c->n_head_kv;
  guint64 n_ff_up = a == ARCH_PHI3 ? 2 * c->n_ff : c->n_ff;

#define W2(a0, a1) (e.known = TRUE, e.n_dims = 2, e.ne[0] = (a0), e.ne[1] = (a1))
#define W1(a0)     (e.known = TRUE, e.n_dims = 1, e.ne[0] = (a0))
  if (!bias)
    switch (kind)
      {
      case T_TOKEN_EMBD:  W2 (c->n_embd, 0); e.required = TRUE; break;
      case T_OUTPUT_NORM: W1 (c->n_embd); e.required = TRUE; break;
      case T_OUTPUT:
        if (!arch_in (a, A (GEMMA) | A (GEMMA2)))
          W2 (c->n_embd, 0);
        break;
      case T_ATTN_NORM:   W1 (c->n_embd); e.required = TRUE; break;
      case T_ATTN_Q:      W2 (c->n_embd, q_dim); e.required = a != ARCH_PHI3; break;
      case T_ATTN_K:      W2 (c->n_embd, k_dim); e.required = a != ARCH_PHI3; break;
      case T_ATTN_V:      W2 (c->n_embd, v_dim); e.required = a != ARCH_PHI3; break;
      case T_ATTN_QKV:
        if (a == ARCH_PHI3)
          W2 (c->n_embd, c->n_embd + 2 * v_dim);
        break;
      case T_ATTN_OUT:    W2 (q_dim, c->n_embd); e.required = TRUE; break;
      case T_ATTN_Q_NORM:
      case T_ATTN_K_NORM:
        if (arch_in (a, A (QWEN3) | A (GEMMA3)))
          {
            W1 (c->head_k);
            e.required = TRUE;
          }
        break;
      case T_ATTN_POST_NORM:
      case T_FFN_POST_NORM:
        if (arch_in (a, A (GEMMA2) | A (GEMMA3)))
          {
            W1 (c->n_embd);
            e.required = TRUE;
          }
        break;
      case T_FFN_NORM:    W1 (c->n_embd); e.required = TRUE; break;
      case T_FFN_GATE:
        if (a != ARCH_PHI3)
          {
            W2 (c->n_embd, c->n_ff);
            e.required = TRUE;
          }
        break;
      case T_FFN_UP:      W2 (c->n_embd, n_ff_up); e.required = TRUE; break;
      case T_FFN_DOWN:    W2 (c->n_ff, c->n_embd); e.required = TRUE; break;
      case T_ROPE_FREQS:
      case T_ROPE_LONG:
      case T_ROPE_SHORT:
        W1 (c->n_rot / 2);
        break;
      case T_N_KINDS:
      default:
        break;
      }
  else
    switch (kind)
      {
      case T_ATTN_Q: W1 (q_dim); break;
      case T_ATTN_K: W1 (k_dim); break;
      case T_ATTN_V: W1 (v_dim); break;
      case T_ATTN_QKV:
        if (a == ARCH_PHI3)
          W1 (c->n_embd + 2 * v_dim);
        break;
      case T_ATTN_OUT:
        if (a == ARCH_LLAMA)
          W1 (c->n_embd);
        break;
      case T_FFN_GATE:
      case T_FFN_UP:
        if (a == ARCH_LLAMA)
          W1 (c->n_ff);
        break;
      case T_FFN_DOWN:
        if (a == ARCH_LLAMA)
          W1 (c->n_embd);
        break;
      case T_OUTPUT:
        if (a == ARCH_QWEN2)
          W1 (0);
        break;
      default:
        break;
      }
#undef W1
#undef W2
  return e;
}

static char *
format_shape (const guint64 *dims,
              guint          n_dims,
              gboolean       reverse)
{
  GString *s = g_string_new ("[");

  for (guint i = 0; i < n_dims; i++)
    {
      guint64 d = dims[reverse ? n_dims - 1 - i : i];
      if (d == 0)
        g_string_append_printf (s, "%sn_vocab", i ? ", " : "");
      else
        g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", d);
    }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* ------------------------------------------------------------------ */
/* Tensor order and filters                                            */

/* TextModel.filter_tensors(): multimodal parts of a checkpoint are
 * skipped, checked on the name as stored */
static gboolean
is_multimodal_name (const char *name)
{
  static const char * const prefixes[] = {
    "mlp", "vit.", "vpm.", "siglip2.", "conformer.", "merger.", "resampler.",
    "sound_encoder.", "sound_projection.", "speech_embeddings.",
  };
  static const char * const parts[] = {
    "visual.", "vision.", "audio.", "talker.", "vision_", "audio_", "token2wav.",
    "code2wav.", "projector.", "pre_mm_projector_norm", "image_newline",
    "view_seperator", "patch_embed", "patch_embedding", "patch_merger.",
    "patch_merge_mlp.", "model.connector.",
  };

  for (guint i = 0; i < G_N_ELEMENTS (prefixes); i++)
    if (g_str_has_prefix (name, prefixes[i]))
      return TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++)
    if (strstr (name, parts[i]) != NULL)
      return TRUE;
  return FALSE;
}

static char *
replace_all (const char *s,
             const char *what,
             const char *with)
{
  g_auto(GStrv) parts = g_strsplit (s, what, -1);

  return g_strjoinv (with, parts);
}

/* The name the converter works with, or NULL when it skips the tensor
 * (the filter_tensors() chain of the architecture's class). */
static char *
filtered_name (Ctx        *c,
               const char *name)
{
  g_autofree char *n = g_strdup (name);

  if ((c->arch == ARCH_GEMMA || c->arch == ARCH_GEMMA2) && strcmp (n, "lm_head.weight") == 0)
    return NULL;
  if (c->arch == ARCH_LLAMA && strstr (n, "text_model.") != NULL)
    {
      char *r = replace_all (n, "text_model.", "");
      g_free (n);
      n = r;
    }
  if (is_multimodal_name (n))
    return NULL;
  if (g_str_has_suffix (n, "e_score_correction_bias"))
    {
      char *r = replace_all (n, "e_score_correction_bias", "e_score_correction.bias");
      g_free (n);
      n = r;
    }
  if (strstr (n, "language_model.") != NULL)
    {
      char *r = replace_all (n, "language_model.", "");
      g_free (n);
      n = r;
    }
  return g_steal_pointer (&n);
}

typedef struct {
  SmeltTensor *tensor;
  const char  *shard;   /* borrowed from the weight map, or NULL */
} OrderItem;

static int
compare_order (gconstpointer pa,
               gconstpointer pb)
{
  const OrderItem *a = pa, *b = pb;
  int r;

  /* tensors the base's index does not list (an untied lm_head) last */
  if ((a->shard == NULL) != (b->shard == NULL))
    return a->shard == NULL ? 1 : -1;
  if (a->shard != NULL && (r = strcmp (a->shard, b->shard)) != 0)
    return r;
  return strcmp (smelt_tensor_get_name (a->tensor), smelt_tensor_get_name (b->tensor));
}

/* The converter reads the shards named by model.safetensors.index.json in
 * file-name order and each shard's tensors in name order. A source with
 * adapters stands for a merged model, which smelt itself writes in plain
 * name order, so the base's sharding only counts without adapters. */
static GArray *
converter_order (Ctx         *c,
                 JsonParser **keep_index,
                 GError     **error)
{
  SmeltSource *source = c->source;
  guint n = smelt_source_get_n_tensors (source);
  GArray *items = g_array_sized_new (FALSE, TRUE, sizeof (OrderItem), n);
  JsonObject *weight_map = NULL;

  if (smelt_source_get_n_adapters (source) == 0)
    {
      SmeltModel *model = smelt_source_get_model (source);
      g_autofree char *index = g_build_filename (smelt_model_get_path (model),
                                                 "model.safetensors.index.json", NULL);

      if (g_file_test (index, G_FILE_TEST_IS_REGULAR))
        {
          g_autoptr(JsonParser) parser = json_parser_new ();
          JsonNode *root;

          if (!json_parser_load_from_mapped_file (parser, index, error))
            {
              g_array_unref (items);
              return NULL;
            }
          root = json_parser_get_root (parser);
          if (root && JSON_NODE_HOLDS_OBJECT (root))
            weight_map = member_object (json_node_get_object (root), "weight_map");
          *keep_index = g_steal_pointer (&parser);
        }
    }

  for (guint i = 0; i < n; i++)
    {
      OrderItem it;

      it.tensor = smelt_source_get_tensor (source, i);
      it.shard = weight_map ? member_string (weight_map, smelt_tensor_get_name (it.tensor)) : NULL;
      if (weight_map == NULL)
        it.shard = "";
      g_array_append_val (items, it);
    }
  g_array_sort (items, compare_order);
  return items;
}

/* ------------------------------------------------------------------ */
/* Generated tensors                                                   */

static void
tensor_free (gpointer data)
{
  SmeltGgufTensor *t = data;

  g_free (t->name);
  g_clear_object (&t->tensor);
  g_clear_pointer (&t->data, g_bytes_unref);
  g_free (t);
}

static GBytes *
floats_to_le_bytes (const float *values,
                    gsize        n)
{
  guint32 *out = g_new (guint32, n);

  for (gsize i = 0; i < n; i++)
    {
      guint32 bits;
      memcpy (&bits, &values[i], sizeof bits);
      out[i] = GUINT32_TO_LE (bits);
    }
  return g_bytes_new_take (out, n * sizeof (guint32));
}

static SmeltGgufTensor *
generated_tensor (const char  *name,
                  const float *values,
                  gsize        n)
{
  SmeltGgufTensor *t = g_new0 (SmeltGgufTensor, 1);

  t->name = g_strdup (name);
  t->data = floats_to_le_bytes (values, n);
  t->n_dims = 1;
  t->ne[0] = n;
  t->ne[1] = t->ne[2] = t->ne[3] = 1;
  t->force_f32 = TRUE;
  return t;
}

static gboolean
rope_number (Ctx        *c,
             JsonObject *rp,
             const char *key,
             double      fallback,
             double     *out,
             GError    **error)
{
  JsonNode *node = json_object_get_member (rp, key);

  if (node == NULL)
    {
      *out = fallback;
      return TRUE;
    }
  return node_to_double (c, node, key, out, error);
}

/* LlamaModel.generate_extra_tensors(): the llama3 rope frequency factors.
 *
 * The converter computes them with torch in float32; every operation below
 * is the single float32 operation torch performs (Python scalars are
 * rounded to float32 first; `x / tensor` is reciprocal(tensor) * x). The
 * one place that can differ is pow: torch's CPU kernel evaluates
 * base ** (arange / dim) with SLEEF's vectorised powf (≤ 1 ulp) on whole
 * vectors and libm's powf on the tail, while this uses libm's powf
 * throughout. On x86-64 with glibc both agree for the head sizes of real
 * models checked (16, 32, 64, 128 with base 500000); a 1-ulp difference
 * in a frequency would only move a factor of the smooth band by an ulp. */
static gboolean
llama3_rope_freqs (Ctx       *c,
                   GPtrArray *tensors,
                   GError   **error)
{
  JsonObject *rp = rope_params (c);
  const char *type = member_string (rp, "rope_type");
  double base, factor, low, high, old_ctx;
  guint32 dim;
  JsonNode *node;
  g_autofree float *values = NULL;
  float base_f, two_pi_f, hfw, lfw;

  if (type == NULL || g_ascii_strcasecmp (type, "llama3") != 0)
    return TRUE;

  if (!rope_number (c, rp, "rope_theta", 10000.0, &base, error) ||
      !rope_number (c, rp, "factor", 8.0, &factor, error) ||
      !rope_number (c, rp, "low_freq_factor", 1.0, &low, error) ||
      !rope_number (c, rp, "high_freq_factor", 4.0, &high, error) ||
      !rope_number (c, rp, "original_max_position_embeddings", 8192.0, &old_ctx, error))
    return FALSE;

  node = json_object_get_member (c->hp, "head_dim");
  if (!node_is_null (node))
    {
      if (!node_to_u32 (c, node, "head_dim", &dim, error))
        return FALSE;
    }
  else
    {
      guint32 hidden, heads;
      if (!hp_u32 (c, "hidden_size", &hidden, error) ||
          !hp_u32 (c, "num_attention_heads", &heads, error))
        return FALSE;
      dim = heads ? hidden / heads : 0;
    }
  if (dim < 2 || high == low)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: llama3 rope scaling needs an even head size and high_freq_factor ≠ low_freq_factor",
                   c->config_path);
      return FALSE;
    }

  values = g_new (float, dim / 2 + (dim & 1));
  base_f = (float) base;
  two_pi_f = (float) (2.0 * G_PI);
  /* the wavelength bounds are Python floats compared with float32 values */
  hfw = (float) (old_ctx / high);
  lfw = (float) (old_ctx / low);
  for (guint32 i = 0; 2 * i < dim; i++)
    {
      float exponent = (float) (2 * i) / (float) dim;
      float freq = 1.0f / powf (base_f, exponent);
      float wavelen = (1.0f / freq) * two_pi_f;
      float v;

      if (wavelen < hfw)
        v = 1.0f;
      else if (wavelen > lfw)
        v = (float) factor;
      else
        {
          float smooth = ((1.0f / wavelen) * (float) old_ctx - (float) low) / (float) (high - low);
          v = 1.0f / ((1.0f - smooth) / (float) factor + smooth);
        }
      values[i] = v;
    }
  g_ptr_array_add (tensors, generated_tensor ("rope_freqs.weight", values, (dim + 1) / 2));
  return TRUE;
}

static gboolean
json_floats (Ctx        *c,
             JsonNode   *node,
             const char *what,
             GArray     *out,
             GError    **error)
{
  JsonArray *a;

  if (node == NULL || !JSON_NODE_HOLDS_ARRAY (node))
    {
      g_set_error (error, PLAN_ERROR_INVALID, "%s: “%s” is not a list", c->config_path, what);
      return FALSE;
    }
  a = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      float f;
      if (!node_to_f32 (c, json_array_get_element (a, i), what, &f, error))
        return FALSE;
      g_array_append_val (out, f);
    }
  return TRUE;
}

/* Phi3MiniModel.generate_extra_tensors(): the long-rope factors, and the
 * attention factor KV it adds while doing so (hence before general.type) */
static gboolean
phi3_rope_factors (Ctx       *c,
                   GPtrArray *tensors,
                   GError   **error)
{
  JsonNode *long_node = json_object_get_member (c->rope, "long_factor");
  JsonNode *short_node = json_object_get_member (c->rope, "short_factor");
  g_autoptr(GArray) long_f = g_array_new (FALSE, FALSE, sizeof (float));
  g_autoptr(GArray) short_f = g_array_new (FALSE, FALSE, sizeof (float));
  const char *type;
  double scale, attn_factor;
  Phi3Rope r;

  if (!node_truthy (long_node))
    return TRUE;
  if (!phi3_rope (c, &r, error))
    return FALSE;
  if (r.orig_max_pos == 0)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: “original_max_position_embeddings” is 0", c->config_path);
      return FALSE;
    }
  scale = (double) r.max_pos / (double) r.orig_max_pos;

  type = member_string (c->rope, "rope_type");
  if (type == NULL || type[0] == '\0')
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: rope_scaling has long factors but no “type”", c->config_path);
      return FALSE;
    }
  if (g_ascii_strcasecmp (type, "su") == 0 || g_ascii_strcasecmp (type, "longrope") == 0)
    attn_factor = scale > 1.0 ? sqrt (1.0 + log (scale) / log ((double) r.orig_max_pos)) : 1.0;
  else if (g_ascii_strcasecmp (type, "yarn") == 0)
    attn_factor = scale > 1.0 ? 0.1 * log (scale) + 1.0 : 1.0;
  else
    {
      g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                   "%s: phi3 rope scaling type “%s” is not supported", c->config_path, type);
      return FALSE;
    }
  kv_f32 (c, c->early, "rope.scaling.attn_factor", (float) attn_factor);

  if (node_is_null (short_node))
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: rope_scaling has “long_factor” but no “short_factor”", c->config_path);
      return FALSE;
    }
  if (!json_floats (c, long_node, "rope_scaling.long_factor", long_f, error) ||
      !json_floats (c, short_node, "rope_scaling.short_factor", short_f, error))
    return FALSE;
  /* len(long) != rope_dims / 2 is a float comparison: odd dims never match */
  if (long_f->len != short_f->len || (r.rope_dims & 1) || long_f->len != r.rope_dims / 2)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: the rope long and short factors must have %g values each, not %u and %u",
                   c->config_path, r.rope_dims / 2.0, long_f->len, short_f->len);
      return FALSE;
    }
  g_ptr_array_add (tensors, generated_tensor ("rope_factors_long.weight",
                                              (float *) long_f->data, long_f->len));
  g_ptr_array_add (tensors, generated_tensor ("rope_factors_short.weight",
                                              (float *) short_f->data, short_f->len));
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* gemma3 vocabulary                                                   */

/* Gemma3Model.modify_tensors() keeps only the token_embd rows of the
 * tokenizer's vocabulary: config vocab_size with a tokenizer.model, else
 * the tokens and added tokens of tokenizer.json. */
static gboolean
gemma3_vocab_rows (Ctx     *c,
                   guint64 *out,
                   GError **error)
{
  const char *path = smelt_source_get_tokenizer_path (c->source, "tokenizer.model");
  g_autoptr(JsonParser) parser = NULL;
  JsonObject *root, *model;
  JsonNode *vocab, *added;

  if (path != NULL)
    {
      JsonNode *node = find_node (c->hp, KEYS ("vocab_size_per_layer_input", "vocab_size"), NULL);
      guint32 v;

      if (!node_truthy (node))
        {
          g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                       "%s: gemma3 without “vocab_size” (the size of tokenizer.model) is not supported",
                       c->config_path);
          return FALSE;
        }
      if (!node_to_u32 (c, node, "vocab_size", &v, error))
        return FALSE;
      *out = v;
      return TRUE;
    }

  path = smelt_source_get_tokenizer_path (c->source, "tokenizer.json");
  if (path == NULL)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: gemma3 needs tokenizer.model or tokenizer.json to size token_embd",
                   c->config_path);
      return FALSE;
    }
  parser = json_parser_new ();
  if (!json_parser_load_from_mapped_file (parser, path, error))
    return FALSE;
  root = json_parser_get_root (parser) && JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser))
    ? json_node_get_object (json_parser_get_root (parser)) : NULL;
  model = member_object (root, "model");
  vocab = model ? json_object_get_member (model, "vocab") : NULL;
  added = root ? json_object_get_member (root, "added_tokens") : NULL;
  if (vocab == NULL || !JSON_NODE_HOLDS_OBJECT (vocab) || added == NULL || !JSON_NODE_HOLDS_ARRAY (added))
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: no model.vocab object and added_tokens list", path);
      return FALSE;
    }
  *out = json_object_get_size (json_node_get_object (vocab)) +
         json_array_get_length (json_node_get_array (added));
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* The plan                                                            */

SmeltGgufArchPlan *
smelt_gguf_arch_plan_new_empty (const char *arch)
{
  ArchPlan *p = g_new0 (ArchPlan, 1);

  p->pub.arch = g_strdup (arch);
  p->pub.tensors = g_ptr_array_new_with_free_func (tensor_free);
  p->pub.by_source = g_hash_table_new (g_str_hash, g_str_equal);
  return &p->pub;
}

void
smelt_gguf_arch_plan_free (SmeltGgufArchPlan *plan)
{
  ArchPlan *p = (ArchPlan *) plan;

  if (plan == NULL)
    return;
  g_free (plan->arch);
  g_clear_pointer (&plan->tensors, g_ptr_array_unref);
  g_clear_pointer (&plan->by_source, g_hash_table_unref);
  g_free (plan->source_dtype);
  g_clear_pointer (&p->early, g_array_unref);
  g_clear_pointer (&p->kvs, g_array_unref);
  g_free (p);
}

static void
ctx_clear (Ctx *c)
{
  g_free (c->config_path);
  g_clear_pointer (&c->hp, json_object_unref);
  g_clear_pointer (&c->rope, json_object_unref);
  g_clear_pointer (&c->kvs, g_array_unref);
  g_clear_pointer (&c->early, g_array_unref);
}

static const char *
dtype_name (SmeltDType d)
{
  switch (d)
    {
    case SMELT_DTYPE_BF16: return "bf16";
    case SMELT_DTYPE_F16:  return "f16";
    default:               return "f32";
    }
}

static gboolean
choose_arch (Ctx     *c,
             GError **error)
{
  const char *hf_arch = hf_architecture (c->hp);
  g_autofree char *list = g_strjoinv (", ", (char **) supported_classes);

  for (guint i = 0; hf_arch != NULL && i < G_N_ELEMENTS (hf_classes); i++)
    if (strcmp (hf_classes[i].hf_class, hf_arch) == 0)
      {
        c->arch = hf_classes[i].arch;
        c->arch_name = arch_names[c->arch];
        return TRUE;
      }
  if (hf_arch == NULL)
    g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                 "%s: no “architectures” entry, so the model class is unknown; "
                 "GGUF export supports %s", c->config_path, list);
  else
    g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                 "%s: architecture “%s” is not supported for GGUF export; supported: %s",
                 c->config_path, hf_arch, list);
  return FALSE;
}

static gboolean
build_kvs (Ctx     *c,
           GError **error)
{
  switch (c->arch)
    {
    case ARCH_LLAMA:  return kvs_llama (c, error);
    case ARCH_QWEN2:
    case ARCH_QWEN3:  return kvs_text_model (c, error);
    case ARCH_GEMMA:
    case ARCH_GEMMA2: return kvs_gemma (c, error);
    case ARCH_GEMMA3: return kvs_gemma3 (c, error);
    case ARCH_PHI3:   return kvs_phi3 (c, error);
    default:          g_assert_not_reached ();
    }
  return FALSE;
}

/* n_layer × T_N_KINDS × {weight, bias} presence, for the checks */
typedef struct {
  guint8 *seen;
} Seen;

static guint8 *
seen_slot (Seen    *s,
           Kind     kind,
           guint    layer,
           gboolean bias)
{
  guint l = kind >= FIRST_BLOCK_KIND ? layer + 1 : 0;

  return &s->seen[(l * T_N_KINDS + kind) * 2 + (bias ? 1 : 0)];
}

static gboolean
check_shape (Ctx           *c,
             const char    *hf_name,
             const char    *gguf_name,
             const Expect  *e,
             const guint64 *ne,
             guint          n_dims,
             GError       **error)
{
  gboolean ok = n_dims == e->n_dims;

  for (guint i = 0; ok && i < n_dims; i++)
    ok = e->ne[i] == 0 || e->ne[i] == ne[i];
  if (!ok)
    {
      g_autofree char *have = format_shape (ne, n_dims, TRUE);
      g_autofree char *want = format_shape (e->ne, e->n_dims, TRUE);

      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: tensor “%s” has shape %s, but llama.cpp's %s loads %s as %s "
                   "(from config.json: hidden_size %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                   " heads, %" G_GUINT64_FORMAT " kv heads, head size %" G_GUINT64_FORMAT
                   ", intermediate_size %" G_GUINT64_FORMAT ")",
                   smelt_model_get_path (smelt_source_get_model (c->source)), hf_name, have,
                   c->arch_name, gguf_name, want, c->n_embd, c->n_head, c->n_head_kv,
                   c->head_k, c->n_ff);
      return FALSE;
    }
  return TRUE;
}

static gboolean
missing_tensor (Ctx      *c,
                Kind      kind,
                guint     layer,
                GError  **error)
{
  g_autofree char *hf = hf_tensor_name (kind, c->arch, layer, ".weight");

  g_set_error (error, PLAN_ERROR_INVALID,
               "%s: the model has no tensor “%s”, which llama.cpp's %s needs",
               smelt_model_get_path (smelt_source_get_model (c->source)), hf, c->arch_name);
  return FALSE;
}

/* Every tensor the loader creates without TENSOR_NOT_REQUIRED must be
 * there. phi3 takes either the fused qkv or all of q, k and v. */
static gboolean
check_required (Ctx     *c,
                Seen    *seen,
                GError **error)
{
  for (guint k = 0; k < T_N_KINDS; k++)
    {
      Expect e = expect_tensor (c, (Kind) k, FALSE);
      guint n = k >= FIRST_BLOCK_KIND ? c->block_count : 1;

      for (guint layer = 0; e.required && layer < n; layer++)
        if (!*seen_slot (seen, (Kind) k, layer, FALSE))
          return missing_tensor (c, (Kind) k, layer, error);
    }

  for (guint layer = 0; c->arch == ARCH_PHI3 && layer < c->block_count; layer++)
    {
      gboolean qkv = *seen_slot (seen, T_ATTN_QKV, layer, FALSE);
      gboolean q = *seen_slot (seen, T_ATTN_Q, layer, FALSE);
      gboolean k = *seen_slot (seen, T_ATTN_K, layer, FALSE);
      gboolean v = *seen_slot (seen, T_ATTN_V, layer, FALSE);

      if (qkv && (q || k || v))
        {
          /* the loader would take the fused one and refuse the file for
           * the tensors it leaves unused */
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: layer %u has both a fused qkv_proj and separate q/k/v projections",
                       smelt_model_get_path (smelt_source_get_model (c->source)), layer);
          return FALSE;
        }
      if (!qkv && !q && !k && !v)
        return missing_tensor (c, T_ATTN_QKV, layer, error);
      if (!qkv)
        {
          Kind absent = !q ? T_ATTN_Q : !k ? T_ATTN_K : !v ? T_ATTN_V : T_N_KINDS;
          if (absent != T_N_KINDS)
            return missing_tensor (c, absent, layer, error);
        }
    }
  return TRUE;
}

static gboolean
plan_tensors (Ctx       *c,
              ArchPlan  *p,
              GError   **error)
{
  SmeltGgufArchPlan *plan = &p->pub;
  g_autoptr(JsonParser) index = NULL;
  g_autoptr(GArray) order = NULL;
  g_autoptr(GHashTable) gguf_names = g_hash_table_new (g_str_hash, g_str_equal);
  const char *model_path = smelt_model_get_path (smelt_source_get_model (c->source));
  guint32 perm_heads = 0, perm_heads_kv = 0;
  guint64 vocab_rows = G_MAXUINT64;
  Seen seen;
  SmeltGgufTensor *embd = NULL, *output = NULL;
  const char *output_hf = NULL;
  gboolean ok = FALSE;

  seen.seen = g_malloc0 ((gsize) (c->block_count + 1) * T_N_KINDS * 2);

  /* generate_extra_tensors() comes first */
  if (c->arch == ARCH_LLAMA && !llama3_rope_freqs (c, plan->tensors, error))
    goto out;
  if (c->arch == ARCH_PHI3 && !phi3_rope_factors (c, plan->tensors, error))
    goto out;
  for (guint i = 0; i < plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);
      Kind k = g_str_has_prefix (t->name, "rope_freqs") ? T_ROPE_FREQS
             : g_str_has_prefix (t->name, "rope_factors_long") ? T_ROPE_LONG : T_ROPE_SHORT;
      Expect e = expect_tensor (c, k, FALSE);

      if (!check_shape (c, t->name, t->name, &e, t->ne, 1, error))
        goto out;
      g_hash_table_add (gguf_names, t->name);
    }

  /* LlamaModel.modify_tensors(): the head counts of the permutation */
  if (c->arch == ARCH_LLAMA &&
      (!find_u32 (c, KEYS ("n_heads", "num_attention_heads"), &perm_heads, error) ||
       !find_u32 (c, KEYS ("n_kv_heads", "num_key_value_heads"), &perm_heads_kv, error)))
    goto out;
  if (c->arch == ARCH_GEMMA3 && !gemma3_vocab_rows (c, &vocab_rows, error))
    goto out;

  order = converter_order (c, &index, error);
  if (order == NULL)
    goto out;

  plan->auto_outtype = NULL;
  for (guint i = 0; i < order->len; i++)
    {
      SmeltTensor *tensor = g_array_index (order, OrderItem, i).tensor;
      const char *source_name = smelt_tensor_get_name (tensor);
      g_autofree char *name = filtered_name (c, source_name);
      guint n_dims;
      const guint64 *shape;
      SmeltDType dtype = smelt_tensor_get_dtype (tensor);
      SmeltGgufTensor *t;
      Kind kind;
      guint layer;
      const char *suffix;
      Expect e;

      if (name == NULL)
        continue;
      shape = smelt_tensor_get_shape (tensor, &n_dims);

      /* --outtype auto: the first ≥2-D tensor that is BF16 or F16 */
      if (n_dims >= 2 && plan->source_dtype == NULL)
        plan->source_dtype = g_strdup (dtype_name (dtype));
      if (n_dims >= 2 && plan->auto_outtype == NULL &&
          (dtype == SMELT_DTYPE_BF16 || dtype == SMELT_DTYPE_F16))
        plan->auto_outtype = dtype == SMELT_DTYPE_BF16 ? "bf16" : "f16";

      if (g_str_has_suffix (name, ".attention.masked_bias") ||
          g_str_has_suffix (name, ".attention.bias") ||
          g_str_has_suffix (name, ".rotary_emb.inv_freq"))
        continue;

      if (!map_name (c, name, &kind, &layer, &suffix))
        {
          g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                       "%s: tensor “%s” has no GGUF name in llama.cpp's %s "
                       "(the reference converter cannot map it either)",
                       model_path, source_name, c->arch_name);
          goto out;
        }
      e = expect_tensor (c, kind, strcmp (suffix, ".bias") == 0);
      t = g_new0 (SmeltGgufTensor, 1);
      t->name = gguf_tensor_name (kind, layer, suffix);
      t->tensor = g_object_ref (tensor);
      g_ptr_array_add (plan->tensors, t);
      if (!e.known)
        {
          g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                       "%s: tensor “%s” would become %s, which llama.cpp's %s does not load "
                       "(it refuses files with tensors it does not use)",
                       model_path, source_name, t->name, c->arch_name);
          goto out;
        }
      if (!g_hash_table_add (gguf_names, t->name))
        {
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: two tensors map to %s (the second is “%s”)",
                       model_path, t->name, source_name);
          goto out;
        }
      if (dtype != SMELT_DTYPE_F32 && dtype != SMELT_DTYPE_F16 && dtype != SMELT_DTYPE_BF16)
        {
          g_set_error (error, PLAN_ERROR_UNSUPPORTED,
                       "%s: tensor “%s” is %s; GGUF export reads F32, F16 and BF16 weights",
                       model_path, source_name, smelt_dtype_to_string (dtype));
          goto out;
        }
      if (n_dims < 1 || n_dims > 2)
        {
          g_set_error (error, PLAN_ERROR_INVALID,
                       "%s: tensor “%s” has %u dimensions", model_path, source_name, n_dims);
          goto out;
        }
      t->n_dims = n_dims;
      t->ne[0] = t->ne[1] = t->ne[2] = t->ne[3] = 1;
      for (guint d = 0; d < n_dims; d++)
        t->ne[d] = shape[n_dims - 1 - d];

      if (kind == T_TOKEN_EMBD && c->arch == ARCH_GEMMA3 && n_dims == 2 && t->ne[1] > vocab_rows)
        t->ne[1] = vocab_rows;
      if (!check_shape (c, source_name, t->name, &e, t->ne, t->n_dims, error))
        goto out;
      *seen_slot (&seen, kind, layer, strcmp (suffix, ".bias") == 0) = TRUE;
      if (kind == T_TOKEN_EMBD && *suffix == '.' && suffix[1] == 'w')
        embd = t;
      if (kind == T_OUTPUT && suffix[1] == 'w')
        {
          output = t;
          output_hf = source_name;
        }

      /* the converter's dtype rule: n_dims <= 1, *_norm.weight, or a name
       * not ending in .weight → F32 */
      t->force_f32 = t->n_dims <= 1 || g_str_has_suffix (t->name, "_norm.weight") ||
                     !g_str_has_suffix (t->name, ".weight");

      /* LlamaModel.permute() on q_proj/k_proj weights and biases */
      if (c->arch == ARCH_LLAMA &&
          (g_str_has_suffix (name, "q_proj.weight") || g_str_has_suffix (name, "q_proj.bias") ||
           g_str_has_suffix (name, "k_proj.weight") || g_str_has_suffix (name, "k_proj.bias")))
        {
          gboolean is_k = strstr (name, "k_proj.") != NULL;
          guint32 heads = is_k && perm_heads_kv != perm_heads ? perm_heads_kv : perm_heads;
          guint64 rows = t->ne[t->n_dims - 1];

          if (heads == 0 || rows % (2 * (guint64) heads) != 0)
            {
              g_set_error (error, PLAN_ERROR_INVALID,
                           "%s: tensor “%s” has %" G_GUINT64_FORMAT " rows, which do not split into "
                           "%u heads of an even size for the rope permutation",
                           model_path, source_name, rows, heads);
              goto out;
            }
          t->transform = SMELT_GGUF_XFORM_PERMUTE;
          t->n_head = heads;
        }

      /* Gemma's RMSNorm multiplies by 1 + weight; the converter adds the
       * 1 to every tensor whose name ends in norm.weight */
      if ((c->arch == ARCH_GEMMA || c->arch == ARCH_GEMMA2 || c->arch == ARCH_GEMMA3) &&
          g_str_has_suffix (name, "norm.weight"))
        {
          t->transform = SMELT_GGUF_XFORM_NORM_PLUS_ONE;
          /* F16 stays F16 for the addition; BF16 and F32 are added in F32 */
          t->source_f16 = dtype == SMELT_DTYPE_F16;
        }
    }
  if (plan->auto_outtype == NULL)
    plan->auto_outtype = "f16";
  if (plan->source_dtype == NULL)
    plan->source_dtype = g_strdup ("f32");

  if (!check_required (c, &seen, error))
    goto out;

  c->n_vocab = embd->ne[1];
  if (output != NULL && output->ne[1] != c->n_vocab)
    {
      g_set_error (error, PLAN_ERROR_INVALID,
                   "%s: tensor “%s” has %" G_GUINT64_FORMAT " rows but token_embd has %"
                   G_GUINT64_FORMAT "; llama.cpp needs both to match the vocabulary",
                   model_path, output_hf, output->ne[1], c->n_vocab);
      goto out;
    }
  plan->n_vocab = c->n_vocab;
  plan->tied_output = output == NULL;

  for (guint i = 0; i < plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);
      if (t->tensor != NULL)
        g_hash_table_insert (plan->by_source, (gpointer) smelt_tensor_get_name (t->tensor), t);
    }
  ok = TRUE;

out:
  g_free (seen.seen);
  return ok;
}

SmeltGgufArchPlan *
smelt_gguf_arch_plan (SmeltSource  *source,
                      GError      **error)
{
  Ctx c = { 0, };
  ArchPlan *p;
  JsonObject *config;

  g_return_val_if_fail (SMELT_IS_SOURCE (source), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  c.source = source;
  c.config_path = g_build_filename (smelt_model_get_path (smelt_source_get_model (source)),
                                    "config.json", NULL);
  c.kvs = kv_list_new ();
  c.early = kv_list_new ();
  config = smelt_source_get_config (source);

  /* the class first: an unsupported model is refused with the list of
   * supported classes, before anything that depends on the class */
  c.hp = json_object_ref (config);
  if (!choose_arch (&c, error))
    {
      ctx_clear (&c);
      return NULL;
    }
  g_clear_pointer (&c.hp, json_object_unref);
  c.hp = config_to_hparams (&c, config, error);
  if (c.hp == NULL || !choose_arch (&c, error) || !prepare_text_model (&c, error) ||
      !build_kvs (&c, error) || !read_back_kvs (&c, error))
    {
      ctx_clear (&c);
      return NULL;
    }

  p = g_new0 (ArchPlan, 1);
  p->pub.arch = g_strdup (c.arch_name);
  p->pub.tensors = g_ptr_array_new_with_free_func (tensor_free);
  p->pub.by_source = g_hash_table_new (g_str_hash, g_str_equal);
  p->pub.n_head = (guint) c.n_head;
  p->pub.n_head_kv = (guint) c.n_head_kv;
  p->pub.n_layer = c.block_count;

  if (!plan_tensors (&c, p, error))
    {
      smelt_gguf_arch_plan_free (&p->pub);
      ctx_clear (&c);
      return NULL;
    }
  p->kvs = g_steal_pointer (&c.kvs);
  p->early = g_steal_pointer (&c.early);
  ctx_clear (&c);
  return &p->pub;
}

static void
write_kv_list (GArray          *kvs,
               SmeltGgufLayout *layout)
{
  for (guint i = 0; i < kvs->len; i++)
    {
      const Kv *kv = &g_array_index (kvs, Kv, i);

      switch (kv->type)
        {
        case SMELT_GGUF_VALUE_UINT32:
          smelt_gguf_layout_set_uint32 (layout, kv->key, kv->u32);
          break;
        case SMELT_GGUF_VALUE_FLOAT32:
          smelt_gguf_layout_set_float32 (layout, kv->key, kv->f32);
          break;
        case SMELT_GGUF_VALUE_BOOL:
          smelt_gguf_layout_set_bool (layout, kv->key, kv->b);
          break;
        case SMELT_GGUF_VALUE_STRING:
          smelt_gguf_layout_set_string (layout, kv->key, kv->str);
          break;
        default:
          g_assert_not_reached ();
        }
    }
}

void
smelt_gguf_arch_write_early_kvs (SmeltGgufArchPlan *plan,
                                 SmeltGgufLayout   *layout)
{
  g_return_if_fail (plan != NULL);
  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (layout));

  write_kv_list (((ArchPlan *) plan)->early, layout);
}

void
smelt_gguf_arch_write_kvs (SmeltGgufArchPlan *plan,
                           SmeltSource       *source,
                           SmeltGgufLayout   *layout)
{
  g_return_if_fail (plan != NULL);
  g_return_if_fail (SMELT_IS_GGUF_LAYOUT (layout));

  /* everything was derived from @source at plan time */
  (void) source;
  write_kv_list (((ArchPlan *) plan)->kvs, layout);
}

/* ------------------------------------------------------------------ */
/* Row transforms                                                      */

guint64
smelt_gguf_tensor_row_group (const SmeltGgufTensor *tensor)
{
  g_return_val_if_fail (tensor != NULL, 1);

  if (tensor->transform == SMELT_GGUF_XFORM_PERMUTE && tensor->n_dims >= 2 && tensor->n_head > 0)
    return tensor->ne[tensor->n_dims - 1] / tensor->n_head;
  return 1;
}

/* The llama permutation within each head of @hd items of @stride floats:
 * out[2i + j] = in[j·hd/2 + i]. It is done in place by following the
 * cycles of the permutation (the same for every head), one item of
 * temporary storage: each item is read and written once. */
static void
permute_heads (float   *base,
               guint64  n_heads,
               guint64  hd,
               guint64  stride)
{
  guint64 half = hd / 2;
  gsize item = (gsize) stride * sizeof (float);
  g_autofree guint8 *seen = g_malloc0 ((gsize) hd);
  g_autofree guint64 *leaders = g_new (guint64, hd);
  float stack_tmp[256];
  g_autofree float *heap_tmp = NULL;
  float *tmp = stack_tmp;
  guint64 n_leaders = 0;

#define SRC(d) (((d) & 1) * half + (d) / 2)
  for (guint64 d = 0; d < hd; d++)
    {
      guint64 x = d;

      if (seen[d])
        continue;
      if (SRC (d) != d)
        leaders[n_leaders++] = d;
      do
        {
          seen[x] = 1;
          x = SRC (x);
        }
      while (x != d);
    }

  if (stride > G_N_ELEMENTS (stack_tmp))
    tmp = heap_tmp = g_new (float, stride);

  for (guint64 h = 0; h < n_heads; h++)
    {
      float *head = base + h * hd * stride;

      for (guint64 l = 0; l < n_leaders; l++)
        {
          guint64 d0 = leaders[l], d = d0;

          memcpy (tmp, head + d0 * stride, item);
          for (;;)
            {
              guint64 s = SRC (d);
              if (s == d0)
                {
                  memcpy (head + d * stride, tmp, item);
                  break;
                }
              memcpy (head + d * stride, head + s * stride, item);
              d = s;
            }
        }
    }
#undef SRC
}

static void
norm_plus_one (const SmeltGgufTensor *tensor,
               float                 *values,
               guint64                n)
{
  if (!tensor->source_f16)
    {
      for (guint64 i = 0; i < n; i++)
        values[i] += 1.0f;
      return;
    }

  /* torch adds in float and rounds once to half: float32 holds x + 1
   * closely enough (24 ≥ 2·11 + 2 bits) that this equals the correctly
   * rounded half sum; then the F32 norm holds that half value. */
  for (guint64 i = 0; i < n; i += 256)
    {
      guint16 half[256];
      gsize m = (gsize) MIN ((guint64) 256, n - i);

      for (gsize j = 0; j < m; j++)
        values[i + j] += 1.0f;
      smelt_convert_f32_to_f16 (values + i, half, m);
      smelt_convert_f16_to_f32 (half, values + i, m);
    }
}

void
smelt_gguf_tensor_transform (const SmeltGgufTensor *tensor,
                             guint64                first_row,
                             guint64                n_rows,
                             float                 *rows)
{
  guint64 row_len;

  g_return_if_fail (tensor != NULL);
  g_return_if_fail (rows != NULL || n_rows == 0);

  row_len = tensor->ne[0];
  switch (tensor->transform)
    {
    case SMELT_GGUF_XFORM_NONE:
      break;

    case SMELT_GGUF_XFORM_NORM_PLUS_ONE:
      norm_plus_one (tensor, rows, n_rows * row_len);
      break;

    case SMELT_GGUF_XFORM_PERMUTE:
      g_return_if_fail (tensor->n_head > 0);
      if (tensor->n_dims == 1)
        {
          /* a bias: its one row holds every head */
          g_return_if_fail (first_row == 0 && n_rows <= 1);
          if (n_rows == 1)
            permute_heads (rows, tensor->n_head, row_len / tensor->n_head, 1);
        }
      else
        {
          guint64 hd = smelt_gguf_tensor_row_group (tensor);

          g_return_if_fail (hd > 0 && first_row % hd == 0 && n_rows % hd == 0);
          permute_heads (rows, n_rows / hd, hd, row_len);
        }
      break;

    default:
      g_return_if_reached ();
    }
}
