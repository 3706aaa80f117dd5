/* smelt-gguf-quant.c: the gguf-quant format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <math.h>
#include <string.h>

#include <smelt/smelt.h>

#include "smelt-gguf-arch.h"
#include "smelt-gguf-lora.h"
#include "smelt-gguf-mixture.h"
#include "smelt-gguf-requant.h"
#include "smelt-gguf-vocab.h"

/* Writes GGUF v3 files for llama.cpp straight from the Hugging Face model,
 * with the adapters merged on the fly: one file (or one set of split
 * files) per requested type, all from the same single pass over the
 * weights. Every file's metadata and tensor infos are planned before any
 * data, so each streams to its destination in order, without seeking and
 * without an intermediate 16-bit model.
 *
 * What goes in the files follows the reference convert_hf_to_gguf.py of
 * the llama.cpp in node-llama-cpp 3.22.1: the architecture module
 * (smelt-gguf-arch.c) maps names, keys and per-tensor rules, the
 * vocabulary module (smelt-gguf-vocab.c) the tokenizer keys. */

/* F32, F16, BF16 and Q8_0 are written as convert_hf_to_gguf.py writes
 * them (mix == NULL). Every other file type is what llama-quantize makes
 * of smelt's own F32 file: llama.cpp's per-tensor mixture (mix), keys as
 * llama-quantize leaves them. */
typedef struct {
  const char           *name;      /* as in file names: NAME.Q4_K_M.gguf */
  SmeltGgmlType         type;      /* for tensors the converter does not force to F32 */
  guint32               ftype;     /* general.file_type (llama_ftype) */
  const SmeltGgufFtype *mix;
} OutputType;

static const OutputType output_types[] = {
  { "F32",  SMELT_GGML_TYPE_F32,  0,  NULL },
  { "F16",  SMELT_GGML_TYPE_F16,  1,  NULL },
  { "BF16", SMELT_GGML_TYPE_BF16, 32, NULL },
  { "Q8_0", SMELT_GGML_TYPE_Q8_0, 7,  NULL },
};

/* One OutputType per quantized file type, made once: the mixture module's
 * table is static, and so is this. */
static const OutputType *
mix_output_type (const SmeltGgufFtype *ft)
{
  static OutputType *table;
  static gsize n;
  const SmeltGgufFtype *all;

  if (g_once_init_enter (&table))
    {
      OutputType *t;

      all = smelt_gguf_mixture_ftypes (&n);
      t = g_new0 (OutputType, n);
      for (gsize i = 0; i < n; i++)
        t[i] = (OutputType) { all[i].name, all[i].default_type, all[i].ftype, &all[i] };
      g_once_init_leave (&table, t);
    }
  all = smelt_gguf_mixture_ftypes (&n);
  for (gsize i = 0; i < n; i++)
    if (&all[i] == ft)
      return &table[i];
  return NULL;
}

typedef struct {
  char            *path;
  SmeltGgufLayout *layout;
  guint64          written;
} Shard;

/* The quality report's sums (SmeltQualityStats) over one tensor of one
 * output: x the merged (and transformed) float32 weights, W the base
 * weights. Worker threads compute them per slice of rows; the slices
 * travel with the encoded bytes and write_rows() adds them up in row
 * order, so the totals do not depend on the number of threads. */
typedef SmeltQualityStats ReportStats;

/* The delta sums cover every REPORT_DELTA_STRIDE-th row of the file's
 * layout (rows 0, 8, 16, …): they need the base rows quantized once more
 * per type, which would otherwise cost as much as the export's own
 * quantization. The error sums cover every row. */
#define REPORT_DELTA_STRIDE 8

/* One requested type: its files and its cursor through the tensors. */
typedef struct {
  const OutputType *kind;
  GPtrArray        *shards;        /* Shard */
  SmeltGgmlType    *tensor_type;   /* per plan tensor */
  guint            *tensor_shard;  /* per plan tensor */
  guint64          *tensor_size;   /* per plan tensor */
  guint             next;          /* plan tensor being written */
  guint64           tensor_written;
  Shard            *open;
  GOutputStream    *out;
  ReportStats      *stats;         /* per plan tensor, with Report */
} Output;

#define SMELT_TYPE_GGUF_QUANT (smelt_gguf_quant_get_type ())
G_DECLARE_FINAL_TYPE (SmeltGgufQuant, smelt_gguf_quant, SMELT, GGUF_QUANT, SmeltFormat)

struct _SmeltGgufQuant
{
  SmeltFormat         parent_instance;

  /* options */
  char               *types;
  char               *name;
  char               *pre;
  char               *max_file_size;
  char               *model_name;
  char               *author;
  char               *organization;
  char               *version;
  char               *finetune;
  char               *description;
  char               *license;
  char              **base_models;
  char              **tags;
  char              **languages;
  gboolean            report;
  gboolean            adapter;

  /* plan */
  SmeltGgufArchPlan  *plan;
  SmeltGgufVocab     *vocab;
  GHashTable         *index_of;    /* source tensor name → plan index + 1 */
  GPtrArray          *outputs;     /* Output */
  SmeltTensor       **base_of;     /* per plan tensor: the unmerged tensor, for modified ones */
  char               *report_path;
  SmeltGgufLora      *lora;        /* Adapter=true: the adapters' pairs */
};

enum {
  PROP_0,
  PROP_TYPES,
  PROP_NAME,
  PROP_PRE,
  PROP_MAX_FILE_SIZE,
  PROP_MODEL_NAME,
  PROP_AUTHOR,
  PROP_ORGANIZATION,
  PROP_VERSION,
  PROP_FINETUNE,
  PROP_DESCRIPTION,
  PROP_LICENSE,
  PROP_BASE_MODELS,
  PROP_TAGS,
  PROP_LANGUAGES,
  PROP_REPORT,
  PROP_ADAPTER,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltGgufQuant, smelt_gguf_quant, SMELT_TYPE_FORMAT)

static void
shard_free (gpointer data)
{
  Shard *s = data;

  g_free (s->path);
  g_clear_object (&s->layout);
  g_free (s);
}

static void
output_free (gpointer data)
{
  Output *o = data;

  g_ptr_array_unref (o->shards);
  g_free (o->tensor_type);
  g_free (o->tensor_shard);
  g_free (o->tensor_size);
  g_free (o->stats);
  g_clear_object (&o->out);
  g_free (o);
}

static void
smelt_gguf_quant_finalize (GObject *object)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (object);

  g_free (self->types);
  g_free (self->name);
  g_free (self->pre);
  g_free (self->max_file_size);
  g_free (self->model_name);
  g_free (self->author);
  g_free (self->organization);
  g_free (self->version);
  g_free (self->finetune);
  g_free (self->description);
  g_free (self->license);
  g_strfreev (self->base_models);
  g_strfreev (self->tags);
  g_strfreev (self->languages);
  g_clear_pointer (&self->plan, smelt_gguf_arch_plan_free);
  g_clear_pointer (&self->vocab, smelt_gguf_vocab_free);
  g_hash_table_unref (self->index_of);
  g_ptr_array_unref (self->outputs);
  g_free (self->base_of);
  g_free (self->report_path);
  g_clear_pointer (&self->lora, smelt_gguf_lora_free);
  G_OBJECT_CLASS (smelt_gguf_quant_parent_class)->finalize (object);
}

static char **
string_slot (SmeltGgufQuant *self,
             guint           prop_id)
{
  switch (prop_id)
    {
    case PROP_TYPES: return &self->types;
    case PROP_NAME: return &self->name;
    case PROP_PRE: return &self->pre;
    case PROP_MAX_FILE_SIZE: return &self->max_file_size;
    case PROP_MODEL_NAME: return &self->model_name;
    case PROP_AUTHOR: return &self->author;
    case PROP_ORGANIZATION: return &self->organization;
    case PROP_VERSION: return &self->version;
    case PROP_FINETUNE: return &self->finetune;
    case PROP_DESCRIPTION: return &self->description;
    case PROP_LICENSE: return &self->license;
    default: return NULL;
    }
}

static char ***
strv_slot (SmeltGgufQuant *self,
           guint           prop_id)
{
  switch (prop_id)
    {
    case PROP_BASE_MODELS: return &self->base_models;
    case PROP_TAGS: return &self->tags;
    case PROP_LANGUAGES: return &self->languages;
    default: return NULL;
    }
}

static void
smelt_gguf_quant_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (object);
  char **s = string_slot (self, prop_id);
  char ***v = strv_slot (self, prop_id);

  if (s != NULL)
    g_value_set_string (value, *s);
  else if (v != NULL)
    g_value_set_boxed (value, *v);
  else if (prop_id == PROP_REPORT)
    g_value_set_boolean (value, self->report);
  else if (prop_id == PROP_ADAPTER)
    g_value_set_boolean (value, self->adapter);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
smelt_gguf_quant_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (object);
  char **s = string_slot (self, prop_id);
  char ***v = strv_slot (self, prop_id);

  if (s != NULL)
    {
      g_free (*s);
      *s = g_value_dup_string (value);
    }
  else if (v != NULL)
    {
      g_strfreev (*v);
      *v = g_value_dup_boxed (value);
    }
  else if (prop_id == PROP_REPORT)
    self->report = g_value_get_boolean (value);
  else if (prop_id == PROP_ADAPTER)
    self->adapter = g_value_get_boolean (value);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

/* ---- options ----------------------------------------------------------- */

static const OutputType *
find_output_type (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (output_types); i++)
    if (g_ascii_strcasecmp (name, output_types[i].name) == 0)
      return &output_types[i];
  return NULL;
}

/* A Types entry: the converter's four types by name or ftype (so the
 * aliases not_quantized and fast_quantized land there), else one of
 * llama-quantize's file types. */
static const OutputType *
parse_output_type (const char  *name,
                   GError     **error)
{
  const OutputType *t = find_output_type (name);
  const SmeltGgufFtype *ft;

  if (t != NULL)
    return t;
  if (!smelt_gguf_mixture_parse_ftype (name, &ft, error))
    {
      g_prefix_error (error, "Types: ");
      return NULL;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (output_types); i++)
    if (output_types[i].ftype == ft->ftype)
      return &output_types[i];
  return mix_output_type (ft);
}

/* Splits Types on ';', ',' or spaces; "auto" stays a NULL entry until
 * the model is known. */
static gboolean
parse_types (const char  *text,
             GPtrArray   *out,
             gboolean    *has_auto,
             GError     **error)
{
  g_auto(GStrv) parts = g_regex_split_simple ("[;,\\s]+", text ? text : "", 0, 0);

  *has_auto = FALSE;
  for (guint i = 0; parts[i] != NULL; i++)
    {
      const OutputType *t;

      if (*parts[i] == '\0')
        continue;
      if (g_ascii_strcasecmp (parts[i], "auto") == 0)
        {
          *has_auto = TRUE;
          continue;
        }
      t = parse_output_type (parts[i], error);
      if (t == NULL)
        return FALSE;
      if (!g_ptr_array_find (out, t, NULL))
        g_ptr_array_add (out, (gpointer) t);
    }
  if (out->len == 0 && !*has_auto)
    {
      g_set_error_literal (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                           "Types: no type given; use e.g. Types=f16;q8_0");
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_name (const char  *name,
            GError     **error)
{
  if (name == NULL || *name == '\0')
    return TRUE;
  if (strchr (name, '/') != NULL || strcmp (name, ".") == 0 || strcmp (name, "..") == 0 ||
      !g_utf8_validate (name, -1, NULL))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "Name: “%s” is not a file name stem (no “/”)", name);
      return FALSE;
    }
  return TRUE;
}

/* 0 (the default) or empty: never split */
static gboolean
parse_max_size (const char  *text,
                guint64     *size,
                GError     **error)
{
  *size = 0;
  if (text == NULL || *text == '\0' || strcmp (text, "0") == 0)
    return TRUE;
  if (smelt_parse_size (text, size, error))
    return TRUE;
  g_prefix_error (error, "MaxFileSize: ");
  return FALSE;
}

/* An adapter GGUF holds what convert_lora_to_gguf.py --outtype can
 * write, in one file: llama_adapter_lora_init() reads no split files. */
static gboolean
check_adapter_options (GPtrArray  *types,
                       guint64     max_size,
                       GError    **error)
{
  for (guint i = 0; i < types->len; i++)
    {
      const OutputType *t = g_ptr_array_index (types, i);

      if (t->mix != NULL)
        {
          g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                       "Types: %s is a quantization of whole models; with Adapter=true the "
                       "types are f32, f16, bf16, q8_0 or auto (convert_lora_to_gguf.py's "
                       "--outtype)", t->name);
          return FALSE;
        }
    }
  if (max_size != 0)
    {
      g_set_error_literal (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                           "MaxFileSize: llama.cpp loads a LoRA adapter from one file; "
                           "leave MaxFileSize unset with Adapter=true");
      return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_gguf_quant_check_options (SmeltFormat  *format,
                                GError      **error)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);
  g_autoptr(GPtrArray) types = g_ptr_array_new ();
  gboolean has_auto;
  guint64 size;

  if (self->pre && *self->pre && !smelt_gguf_vocab_pre_name_is_known (self->pre))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "Pre: “%s” is not a pre-tokenizer llama.cpp knows (e.g. gpt-2, llama-bpe, "
                   "qwen2, deepseek-llm, smollm, tekken)", self->pre);
      return FALSE;
    }
  return parse_types (self->types, types, &has_auto, error) &&
         check_name (self->name, error) &&
         parse_max_size (self->max_file_size, &size, error) &&
         (!self->adapter || check_adapter_options (types, size, error));
}

/* ---- general.* metadata ------------------------------------------------ */

/* A Hugging Face repo id ("org/name"), never a local path: metadata must
 * not leak where the user keeps files. */
static gboolean
is_repo_id (const char *s)
{
  return s != NULL && g_regex_match_simple ("^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$",
                                            s, 0, 0) &&
         !g_str_has_suffix (s, "/.") && strstr (s, "..") == NULL;
}

static const char *
config_string (SmeltSource *source,
               const char  *member)
{
  JsonObject *config = smelt_source_get_config (source);
  JsonNode *node = config ? json_object_get_member (config, member) : NULL;

  return node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_STRING
    ? json_node_get_string (node) : NULL;
}

/* general.name: the recipe's, else the repo id's last part from
 * config.json, else the model directory's own name (as the converter
 * does; only the last path component, never the path). */
static char *
model_display_name (SmeltGgufQuant *self,
                    SmeltSource    *source)
{
  const char *id = config_string (source, "_name_or_path");

  if (self->model_name && *self->model_name)
    return g_strdup (self->model_name);
  if (is_repo_id (id))
    return g_strdup (strchr (id, '/') + 1);
  return g_path_get_basename (smelt_model_get_path (smelt_source_get_model (source)));
}

/* The converter's size label: 1.1B, 135M, 7.2K (model_weight_count_
 * rounded_notation with two significant digits at least). */
static char *
size_label (guint64 n_params)
{
  double scaled;
  const char *suffix;
  char digits[64];
  int fix;

  if (n_params > 1e12)
    scaled = n_params * 1e-12, suffix = "T";
  else if (n_params > 1e9)
    scaled = n_params * 1e-9, suffix = "B";
  else if (n_params > 1e6)
    scaled = n_params * 1e-6, suffix = "M";
  else
    scaled = n_params * 1e-3, suffix = "K";
  /* len(str(round(x)).lstrip('0')) */
  g_snprintf (digits, sizeof digits, "%.0f", scaled);
  fix = MAX (2 - (int) strlen (digits[0] == '0' ? digits + 1 : digits), 0);
  return g_strdup_printf ("%.*f%s", fix, scaled, suffix);
}

static guint64
count_parameters (SmeltGgufArchPlan *plan)
{
  guint64 n = 0;

  for (guint i = 0; i < plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (plan->tensors, i);
      guint64 e = 1;

      for (guint d = 0; d < t->n_dims; d++)
        e *= t->ne[d];
      n += e;
    }
  return n;
}

static void
set_if (SmeltGgufLayout *layout,
        const char      *key,
        const char      *value)
{
  if (value != NULL && *value != '\0')
    smelt_gguf_layout_set_string (layout, key, value);
}

static void
set_strv (SmeltGgufLayout  *layout,
          const char       *key,
          char            **values)
{
  if (values != NULL && values[0] != NULL)
    smelt_gguf_layout_set_string_array (layout, key, (const char * const *) values,
                                        g_strv_length (values));
}

/* general.sampling.* from generation_config.json, as the 2026 converter
 * writes them (only the keys present, with its types). */
static void
write_sampling (SmeltGgufLayout *layout,
                SmeltSource     *source)
{
  static const struct { const char *json, *key; gboolean is_int; } map[] = {
    { "sequence", NULL, FALSE },
    { "top_k", "general.sampling.top_k", TRUE },
    { "top_p", "general.sampling.top_p", FALSE },
    { "min_p", "general.sampling.min_p", FALSE },
    { "xtc_probability", "general.sampling.xtc_probability", FALSE },
    { "xtc_threshold", "general.sampling.xtc_threshold", FALSE },
    { "temperature", "general.sampling.temp", FALSE },
    { "penalty_last_n", "general.sampling.penalty_last_n", TRUE },
    { "repetition_penalty", "general.sampling.penalty_repeat", FALSE },
    { "mirostat", "general.sampling.mirostat", TRUE },
    { "mirostat_tau", "general.sampling.mirostat_tau", FALSE },
    { "mirostat_eta", "general.sampling.mirostat_eta", FALSE },
  };
  JsonObject *gen = smelt_model_get_generation_config (smelt_source_get_model (source));

  if (gen == NULL)
    return;
  if (json_object_has_member (gen, "sequence") &&
      JSON_NODE_HOLDS_VALUE (json_object_get_member (gen, "sequence")) &&
      json_node_get_value_type (json_object_get_member (gen, "sequence")) == G_TYPE_STRING)
    smelt_gguf_layout_set_string (layout, "general.sampling.sequence",
                                  json_object_get_string_member (gen, "sequence"));
  for (gsize i = 1; i < G_N_ELEMENTS (map); i++)
    {
      JsonNode *n = json_object_get_member (gen, map[i].json);
      GType vt;

      if (n == NULL && strcmp (map[i].json, "repetition_penalty") == 0)
        n = json_object_get_member (gen, "penalty_repeat");
      if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
        continue;
      vt = json_node_get_value_type (n);
      if (vt != G_TYPE_INT64 && vt != G_TYPE_DOUBLE)
        continue;
      if (map[i].is_int)
        smelt_gguf_layout_set_int32 (layout, map[i].key, (gint32) json_node_get_int (n));
      else
        smelt_gguf_layout_set_float32 (layout, map[i].key, (float) json_node_get_double (n));
    }
}

/* The base a merged fine-tune came from: the recipe's BaseModels, else
 * the last adapter's base_model_name_or_path when it is a Hub id (a local
 * path is never written). */
static char **
base_models (SmeltGgufQuant *self,
             SmeltSource    *source)
{
  guint n = smelt_source_get_n_adapters (source);
  JsonObject *config;
  const char *id = NULL;

  if (self->base_models && self->base_models[0])
    return g_strdupv (self->base_models);
  if (n == 0)
    return NULL;
  config = smelt_adapter_get_config (smelt_source_get_adapter (source, n - 1));
  if (config && json_object_has_member (config, "base_model_name_or_path") &&
      JSON_NODE_HOLDS_VALUE (json_object_get_member (config, "base_model_name_or_path")) &&
      json_node_get_value_type (json_object_get_member (config, "base_model_name_or_path")) == G_TYPE_STRING)
    id = json_object_get_string_member (config, "base_model_name_or_path");
  if (!is_repo_id (id))
    return NULL;
  {
    char *list[] = { (char *) id, NULL };
    return g_strdupv (list);
  }
}

/* license: from the model card front matter (README.md) in @dir, as the
 * converter reads it; the recipe's License wins. */
static char *
card_license (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "README.md", NULL);
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents (path, &text, NULL, NULL) || !g_str_has_prefix (text, "---"))
    return NULL;
  lines = g_strsplit (text, "\n", 200);
  for (guint i = 1; lines[i] != NULL && !g_str_has_prefix (lines[i], "---"); i++)
    if (g_str_has_prefix (lines[i], "license:"))
      {
        char *v = g_strstrip (lines[i] + strlen ("license:"));

        if (*v == '"' || *v == '\'')
          {
            v++;
            if (*v != '\0')
              v[strlen (v) - 1] = '\0';
          }
        return *v && g_utf8_validate (v, -1, NULL) && strchr (v, '[') == NULL ? g_strdup (v) : NULL;
      }
  return NULL;
}

static void
write_base_models (SmeltGgufQuant  *self,
                   SmeltSource     *source,
                   SmeltGgufLayout *layout)
{
  g_auto(GStrv) models = base_models (self, source);
  guint n = models ? g_strv_length (models) : 0;

  if (n == 0)
    return;
  smelt_gguf_layout_set_uint32 (layout, "general.base_model.count", n);
  for (guint i = 0; i < n; i++)
    {
      const char *id = models[i];
      const char *slash = strchr (id, '/');
      g_autofree char *k_name = g_strdup_printf ("general.base_model.%u.name", i);
      g_autofree char *k_org = g_strdup_printf ("general.base_model.%u.organization", i);
      g_autofree char *k_url = g_strdup_printf ("general.base_model.%u.repo_url", i);

      smelt_gguf_layout_set_string (layout, k_name, slash ? slash + 1 : id);
      if (slash != NULL)
        {
          g_autofree char *org = g_strndup (id, slash - id);
          smelt_gguf_layout_set_string (layout, k_org, org);
        }
      if (is_repo_id (id))
        {
          g_autofree char *url = g_strconcat ("https://huggingface.co/", id, NULL);
          smelt_gguf_layout_set_string (layout, k_url, url);
        }
    }
}

static void
write_general (SmeltGgufQuant  *self,
               SmeltSource     *source,
               SmeltGgufLayout *layout)
{
  g_autofree char *name = model_display_name (self, source);
  g_autofree char *label = size_label (count_parameters (self->plan));
  const char *dir = smelt_model_get_path (smelt_source_get_model (source));
  g_autofree char *license = self->license && *self->license ? g_strdup (self->license)
                                                             : card_license (dir);

  write_sampling (layout, source);
  smelt_gguf_layout_set_string (layout, "general.name", name);
  set_if (layout, "general.author", self->author);
  set_if (layout, "general.version", self->version);
  set_if (layout, "general.organization", self->organization);
  set_if (layout, "general.finetune", self->finetune);
  set_if (layout, "general.description", self->description);
  smelt_gguf_layout_set_string (layout, "general.size_label", label);
  set_if (layout, "general.license", license);
  write_base_models (self, source, layout);
  set_strv (layout, "general.tags", self->tags);
  set_strv (layout, "general.languages", self->languages);
}

/* ---- planning ---------------------------------------------------------- */

static int
compare_source_order (gconstpointer a,
                      gconstpointer b,
                      gpointer      user_data)
{
  GHashTable *order = user_data;
  const SmeltGgufTensor *ta = *(SmeltGgufTensor * const *) a;
  const SmeltGgufTensor *tb = *(SmeltGgufTensor * const *) b;
  guint ia = ta->tensor ? GPOINTER_TO_UINT (g_hash_table_lookup (order, smelt_tensor_get_name (ta->tensor))) : 0;
  guint ib = tb->tensor ? GPOINTER_TO_UINT (g_hash_table_lookup (order, smelt_tensor_get_name (tb->tensor))) : 0;

  return ia < ib ? -1 : ia > ib;
}

/* Tensor data streams in the order the job reads the source (one pass
 * for every export of the recipe), so the file lists tensors in that
 * order too: generated tensors first, as the converter puts them, then
 * the source's. The converter's own order differs only for sharded
 * models (it sorts names within each shard); llama.cpp looks tensors up
 * by name, so nothing depends on it. */
static void
sort_by_source_order (GPtrArray   *tensors,
                      SmeltSource *source)
{
  g_autoptr(GHashTable) order = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    g_hash_table_insert (order, (gpointer) smelt_tensor_get_name (smelt_source_get_tensor (source, i)),
                         GUINT_TO_POINTER (i + 1));
  g_ptr_array_sort_with_data (tensors, compare_source_order, order);
}

static char *
file_stem (SmeltGgufQuant *self,
           SmeltSource    *source)
{
  g_autofree char *name = NULL;

  if (self->name && *self->name)
    return g_strdup (self->name);
  name = model_display_name (self, source);
  g_strstrip (name);
  g_strdelimit (name, " /\\", '-');
  return g_steal_pointer (&name);
}

/* The converter's per-tensor choice: forced F32, else the file's type,
 * with F16 when a row does not split into Q8_0 blocks. */
static SmeltGgmlType
tensor_type (const OutputType *kind,
             SmeltGgufTensor  *t)
{
  if (t->force_f32)
    return SMELT_GGML_TYPE_F32;
  if (smelt_ggml_type_row_size (kind->type, t->ne[0]) == 0)
    return SMELT_GGML_TYPE_F16;
  return kind->type;
}

/* llama_model_quantize() on smelt's own F32 file (or on the GGUF source
 * itself): every tensor comes in as F32 (or its stored type), llama.cpp's
 * rules pick each one's type, and the keys end with
 * general.quantization_version then general.file_type, moved to the end
 * as gguf_set_val_u32() does. */
static gboolean
plan_mixture (SmeltGgufQuant   *self,
              Output           *o,
              SmeltGgufLayout  *layout,
              GError          **error)
{
  GPtrArray *tensors = self->plan->tensors;
  g_autofree SmeltGgufMixTensor *mt = g_new0 (SmeltGgufMixTensor, tensors->len);
  SmeltGgufMixHparams hp = { 0 };

  for (guint i = 0; i < tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (tensors, i);

      mt[i].name = t->name;
      memcpy (mt[i].ne, t->ne, sizeof mt[i].ne);
      mt[i].type = self->plan->from_gguf ? t->source_type : SMELT_GGML_TYPE_F32;
    }
  hp.arch = self->plan->arch;
  hp.n_head = self->plan->n_head;
  hp.n_head_kv = self->plan->n_head_kv ? self->plan->n_head_kv : self->plan->n_head;
  hp.n_layer = self->plan->n_layer;
  hp.n_expert = self->plan->n_expert;
  hp.n_layer_nextn = self->plan->n_layer_nextn;
  if (!smelt_gguf_mixture_choose (o->kind->mix, &hp, mt, tensors->len, o->tensor_type, error))
    {
      g_prefix_error (error, "%s: ", o->kind->name);
      return FALSE;
    }
  for (guint i = 0; i < tensors->len; i++)
    if (!smelt_ggml_type_can_encode (o->tensor_type[i]))
      {
        g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                     "%s: llama.cpp would store %s as %s, which this version of smelt "
                     "cannot write", o->kind->name, mt[i].name,
                     smelt_ggml_type_get_name (o->tensor_type[i]));
        return FALSE;
      }
  smelt_gguf_layout_remove (layout, "general.file_type");
  smelt_gguf_layout_remove (layout, "general.quantization_version");
  smelt_gguf_layout_set_uint32 (layout, "general.quantization_version",
                                SMELT_GGUF_QUANTIZATION_VERSION);
  smelt_gguf_layout_set_uint32 (layout, "general.file_type", o->kind->ftype);
  return TRUE;
}

static Shard *
new_shard (Output          *o,
           SmeltGgufLayout *layout)
{
  Shard *s = g_new0 (Shard, 1);

  s->layout = layout;
  g_ptr_array_add (o->shards, s);
  return s;
}

/* gguf-py's split rule: a tensor that would take the current file past
 * the limit starts a new one, unless the file is still empty. The first
 * file carries every key; the others only split.*. */
static gboolean
plan_output (SmeltGgufQuant   *self,
             Output           *o,
             SmeltGgufLayout  *template,
             const char       *stem,
             guint64           max_size,
             GError          **error)
{
  GPtrArray *tensors = self->plan->tensors;
  Shard *s = new_shard (o, smelt_gguf_layout_copy (template));
  guint64 in_shard = 0;

  o->tensor_type = g_new0 (SmeltGgmlType, tensors->len);
  o->tensor_shard = g_new0 (guint, tensors->len);
  o->tensor_size = g_new0 (guint64, tensors->len);
  if (o->kind->mix == NULL)
    {
      smelt_gguf_layout_set_uint32 (s->layout, "general.file_type", o->kind->ftype);
      for (guint i = 0; i < tensors->len; i++)
        o->tensor_type[i] = tensor_type (o->kind, g_ptr_array_index (tensors, i));
    }
  else if (!plan_mixture (self, o, s->layout, error))
    return FALSE;
  for (guint i = 0; i < tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (tensors, i);
      SmeltGgmlType type = o->tensor_type[i];
      guint64 rows = t->ne[1] * t->ne[2] * t->ne[3];
      guint64 size = smelt_ggml_type_row_size (type, t->ne[0]) * rows;

      if (max_size > 0 && in_shard > 0 && in_shard + size > max_size)
        {
          s = new_shard (o, smelt_gguf_layout_new ());
          in_shard = 0;
        }
      if (!smelt_gguf_layout_add_tensor (s->layout, t->name, type, t->ne, t->n_dims, error))
        return FALSE;
      in_shard += size;
      o->tensor_shard[i] = o->shards->len - 1;
      o->tensor_size[i] = size;
    }
  for (guint i = 0; i < o->shards->len; i++)
    {
      Shard *sh = g_ptr_array_index (o->shards, i);

      if (o->shards->len == 1)
        sh->path = g_strdup_printf ("%s.%s.gguf", stem, o->kind->name);
      else
        {
          sh->path = g_strdup_printf ("%s.%s-%05u-of-%05u.gguf", stem, o->kind->name,
                                      i + 1, o->shards->len);
          smelt_gguf_layout_set_uint16 (sh->layout, "split.no", i);
          smelt_gguf_layout_set_uint16 (sh->layout, "split.count", o->shards->len);
          smelt_gguf_layout_set_int32 (sh->layout, "split.tensors.count", tensors->len);
        }
      smelt_format_add_planned_file (SMELT_FORMAT (self), sh->path,
                                     smelt_gguf_layout_get_file_size (sh->layout));
    }
  return TRUE;
}

static SmeltGgufLayout *
make_template (SmeltGgufQuant *self,
               SmeltSource    *source)
{
  SmeltGgufLayout *layout = smelt_gguf_layout_new ();

  smelt_gguf_layout_set_string (layout, "general.architecture", self->plan->arch);
  /* keys the converter adds while it prepares tensors (phi3's long-RoPE
   * attention factor) come before general.type */
  smelt_gguf_arch_write_early_kvs (self->plan, layout);
  smelt_gguf_layout_set_string (layout, "general.type", "model");
  write_general (self, source, layout);
  smelt_gguf_arch_write_kvs (self->plan, source, layout);
  /* the 2026 converter writes this before the tokenizer block */
  smelt_gguf_layout_set_uint32 (layout, "general.quantization_version",
                                SMELT_GGUF_QUANTIZATION_VERSION);
  smelt_gguf_vocab_write_kvs (self->vocab, layout);
  return layout;
}

/* The report needs, for each tensor the adapters change, the base
 * model's own tensor of the same name and shape: its rows, quantized
 * alone, are the Q(W) that Q(W + Δ) is compared with. */
static void
plan_report (SmeltGgufQuant *self,
             SmeltSource    *source,
             const char     *stem)
{
  GPtrArray *tensors = self->plan->tensors;

  self->base_of = g_new0 (SmeltTensor *, tensors->len);
  for (guint i = 0; i < tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (tensors, i);

      if (t->tensor != NULL && smelt_tensor_is_modified (t->tensor))
        self->base_of[i] = smelt_source_get_base_tensor (source, t->tensor);
    }
  for (guint k = 0; k < self->outputs->len; k++)
    {
      Output *o = g_ptr_array_index (self->outputs, k);

      o->stats = g_new0 (ReportStats, tensors->len);
    }
  self->report_path = g_strdup_printf ("%s.report.json", stem);
  smelt_format_add_planned_file (SMELT_FORMAT (self), self->report_path, -1);
}

static const OutputType *
auto_type (SmeltGgufArchPlan *plan)
{
  /* the converter's --outtype auto: the first 2-D tensor's type, F16 for
   * anything but bf16 */
  return find_output_type (g_strcmp0 (plan->auto_outtype, "bf16") == 0 ? "BF16" : "F16");
}

/* The Hugging Face model's way: names, keys and the tokenizer as the
 * converter writes them. */
static SmeltGgufLayout *
plan_from_model (SmeltGgufQuant  *self,
                 SmeltSource     *source,
                 GPtrArray       *kinds,
                 gboolean         has_auto,
                 GError         **error)
{
  self->plan = smelt_gguf_arch_plan (source, error);
  if (self->plan == NULL)
    return NULL;
  self->vocab = smelt_gguf_vocab_load_with_pre (source, self->plan->arch, self->plan->n_vocab,
                                                self->pre && *self->pre ? self->pre : NULL, error);
  if (self->vocab == NULL)
    return NULL;
  sort_by_source_order (self->plan->tensors, source);
  if (has_auto && !g_ptr_array_find (kinds, auto_type (self->plan), NULL))
    g_ptr_array_add (kinds, (gpointer) auto_type (self->plan));
  return make_template (self, source);
}

/* The recipe's general.* options, set over a GGUF source's own keys (in
 * place where the file has them): only the options given. */
static void
override_general (SmeltGgufQuant  *self,
                  SmeltSource     *source,
                  SmeltGgufLayout *layout)
{
  set_if (layout, "general.name", self->model_name);
  set_if (layout, "general.author", self->author);
  set_if (layout, "general.version", self->version);
  set_if (layout, "general.organization", self->organization);
  set_if (layout, "general.finetune", self->finetune);
  set_if (layout, "general.description", self->description);
  set_if (layout, "general.license", self->license);
  if (self->base_models && self->base_models[0])
    {
      /* a shorter list must not leave the file's extra entries behind */
      for (guint i = 0; i < smelt_gguf_layout_get_n_kv (layout);)
        if (g_str_has_prefix (smelt_gguf_layout_get_key (layout, i), "general.base_model."))
          smelt_gguf_layout_remove (layout, smelt_gguf_layout_get_key (layout, i));
        else
          i++;
      write_base_models (self, source, layout);
    }
  set_strv (layout, "general.tags", self->tags);
  set_strv (layout, "general.languages", self->languages);
  set_if (layout, "tokenizer.ggml.pre", self->pre);
}

/* llama-quantize's way, from a GGUF model: its tensors and keys as they
 * are, every type (F16 and Q8_0 too) through llama.cpp's mixture. */
static SmeltGgufLayout *
plan_from_gguf (SmeltGgufQuant  *self,
                SmeltSource     *source,
                GPtrArray       *kinds,
                gboolean         has_auto,
                GError         **error)
{
  SmeltGgufLayout *layout;

  if (has_auto)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "Types: “auto” picks the converter's 16-bit type for a Hugging Face "
                   "model; %s is already GGUF: name the types (e.g. Types=q4_k_m;q8_0)",
                   smelt_model_get_path (smelt_source_get_model (source)));
      return NULL;
    }
  self->plan = smelt_gguf_requant_plan (source, error);
  if (self->plan == NULL)
    return NULL;
  for (guint k = 0; k < kinds->len; k++)
    {
      const OutputType *kind = g_ptr_array_index (kinds, k);

      if (kind->mix == NULL)
        kinds->pdata[k] = (gpointer) mix_output_type (smelt_gguf_mixture_lookup_ftype (kind->name));
    }
  layout = smelt_gguf_requant_template (smelt_model_get_gguf (smelt_source_get_model (source)));
  override_general (self, source, layout);
  return layout;
}

/* ---- Adapter=true: the adapters as a llama.cpp LoRA adapter ------------ */

/* The keys convert_lora_to_gguf.py writes, in its order: the base's
 * architecture, the adapter type, authorship (no size label: the
 * converter only writes one for models), the alpha, the quantization
 * version. No
 * general.file_type, hyperparameters or tokenizer: llama.cpp takes those
 * from the base model. */
static SmeltGgufLayout *
make_adapter_template (SmeltGgufQuant *self,
                       SmeltSource    *source)
{
  SmeltGgufLayout *layout = smelt_gguf_layout_new ();
  g_autofree char *name = model_display_name (self, source);
  SmeltAdapter *last = smelt_source_get_adapter (source, smelt_source_get_n_adapters (source) - 1);
  g_autofree char *license = NULL;

  /* an adapter's own card first, as the converter reads it; a LoRA of a
   * model is under that model's license otherwise */
  if (self->license && *self->license)
    license = g_strdup (self->license);
  else if ((license = card_license (smelt_adapter_get_path (last))) == NULL)
    license = card_license (smelt_model_get_path (smelt_source_get_model (source)));

  smelt_gguf_layout_set_string (layout, "general.architecture", self->plan->arch);
  smelt_gguf_layout_set_string (layout, "general.type", "adapter");
  smelt_gguf_layout_set_string (layout, "adapter.type", "lora");
  smelt_gguf_layout_set_string (layout, "general.name", name);
  set_if (layout, "general.author", self->author);
  set_if (layout, "general.version", self->version);
  set_if (layout, "general.organization", self->organization);
  set_if (layout, "general.finetune", self->finetune);
  set_if (layout, "general.description", self->description);
  set_if (layout, "general.license", license);
  write_base_models (self, source, layout);
  set_strv (layout, "general.tags", self->tags);
  set_strv (layout, "general.languages", self->languages);
  smelt_gguf_layout_set_float32 (layout, "adapter.lora.alpha", smelt_gguf_lora_get_alpha (self->lora));
  smelt_gguf_layout_set_uint32 (layout, "general.quantization_version",
                                SMELT_GGUF_QUANTIZATION_VERSION);
  return layout;
}

/* Names and the Q/K permutation come from the plan of the base model
 * alone: the adapter is loaded on the base's GGUF, whatever the adapters
 * would change in a merged one (an untied lm_head). No tensor is read in
 * the pass; the files are written in finish(). */
static gboolean
plan_adapter (SmeltGgufQuant  *self,
              SmeltSource     *source,
              GPtrArray       *kinds,
              gboolean         has_auto,
              GError         **error)
{
  SmeltModel *model = smelt_source_get_model (source);
  g_autoptr(SmeltSource) base = NULL;
  g_autoptr(SmeltGgufLayout) template = NULL;
  g_autofree char *stem = NULL;

  if (smelt_model_get_gguf (model) != NULL)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "%s: Adapter=true converts PEFT adapters, which need the Hugging Face "
                   "model they were trained on as Model=", smelt_model_get_path (model));
      return FALSE;
    }
  base = smelt_source_new (model, NULL, NULL, 0, error);
  if (base == NULL)
    return FALSE;
  self->plan = smelt_gguf_arch_plan (base, error);
  if (self->plan == NULL)
    return FALSE;
  self->lora = smelt_gguf_lora_new (source, self->plan, error);
  if (self->lora == NULL)
    return FALSE;
  if (has_auto)
    {
      const OutputType *t = find_output_type (g_str_equal (smelt_gguf_lora_get_auto_outtype (self->lora),
                                                           "bf16") ? "BF16" : "F16");

      if (!g_ptr_array_find (kinds, t, NULL))
        g_ptr_array_add (kinds, (gpointer) t);
    }
  template = make_adapter_template (self, source);
  if (self->name && *self->name)
    stem = g_strdup (self->name);
  else
    {
      g_autofree char *model_stem = file_stem (self, source);

      stem = g_strconcat (model_stem, "-lora", NULL);
    }
  for (guint k = 0; k < kinds->len; k++)
    {
      Output *o = g_new0 (Output, 1);
      Shard *s;

      o->kind = g_ptr_array_index (kinds, k);
      o->shards = g_ptr_array_new_with_free_func (shard_free);
      g_ptr_array_add (self->outputs, o);
      s = new_shard (o, smelt_gguf_layout_copy (template));
      s->path = g_strdup_printf ("%s.%s.gguf", stem, o->kind->name);
      if (!smelt_gguf_lora_add_tensors (self->lora, s->layout, o->kind->type, error))
        return FALSE;
      smelt_format_add_planned_file (SMELT_FORMAT (self), s->path,
                                     smelt_gguf_layout_get_file_size (s->layout));
    }
  return TRUE;
}

static gboolean
smelt_gguf_quant_accepts_source (SmeltFormat  *format,
                                 SmeltSource  *source,
                                 GError      **error)
{
  /* a Hugging Face model, or a GGUF one (plan_from_gguf) */
  return TRUE;
}

static gboolean
smelt_gguf_quant_plan (SmeltFormat  *format,
                       SmeltSource  *source,
                       GError      **error)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);
  SmeltGgufFile *gguf = smelt_model_get_gguf (smelt_source_get_model (source));
  g_autoptr(GPtrArray) kinds = g_ptr_array_new ();
  g_autoptr(SmeltGgufLayout) template = NULL;
  g_autofree char *stem = NULL;
  gboolean has_auto;
  guint64 max_size;

  if (!smelt_gguf_quant_check_options (format, error) ||
      !parse_types (self->types, kinds, &has_auto, error) ||
      !parse_max_size (self->max_file_size, &max_size, error))
    return FALSE;
  if (self->adapter)
    return plan_adapter (self, source, kinds, has_auto, error);
  template = gguf ? plan_from_gguf (self, source, kinds, has_auto, error)
                  : plan_from_model (self, source, kinds, has_auto, error);
  if (template == NULL)
    return FALSE;
  for (guint i = 0; i < self->plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (self->plan->tensors, i);

      if (t->tensor != NULL)
        g_hash_table_insert (self->index_of, (gpointer) smelt_tensor_get_name (t->tensor),
                             GUINT_TO_POINTER (i + 1));
    }
  stem = self->name && *self->name ? g_strdup (self->name)
       : gguf ? smelt_gguf_requant_stem (gguf) : file_stem (self, source);
  for (guint k = 0; k < kinds->len; k++)
    {
      Output *o = g_new0 (Output, 1);

      o->kind = g_ptr_array_index (kinds, k);
      o->shards = g_ptr_array_new_with_free_func (shard_free);
      g_ptr_array_add (self->outputs, o);
      if (!plan_output (self, o, template, stem, max_size, error))
        return FALSE;
    }
  if (self->report)
    plan_report (self, source, stem);
  return TRUE;
}

/* ---- encoding (worker threads) ----------------------------------------- */

static SmeltGgufTensor *
lookup (SmeltGgufQuant *self,
        SmeltTensor    *tensor,
        guint          *index)
{
  guint i = GPOINTER_TO_UINT (g_hash_table_lookup (self->index_of, smelt_tensor_get_name (tensor)));

  if (i == 0)
    return NULL;
  if (index != NULL)
    *index = i - 1;
  return g_ptr_array_index (self->plan->tensors, i - 1);
}

static SmeltRows
smelt_gguf_quant_wants_rows (SmeltFormat *format,
                             SmeltTensor *tensor)
{
  return lookup (SMELT_GGUF_QUANT (format), tensor, NULL) ? SMELT_ROWS_F32 : SMELT_ROWS_NONE;
}

static guint64
smelt_gguf_quant_row_group (SmeltFormat *format,
                            SmeltTensor *tensor)
{
  SmeltGgufTensor *t = lookup (SMELT_GGUF_QUANT (format), tensor, NULL);

  return t ? smelt_gguf_tensor_row_group (t) : 1;
}

static gboolean
check_overflow (SmeltGgufTensor *t,
                SmeltGgmlType    type,
                guint64          first_row,
                const float     *rows,
                gsize            n,
                GError         **error)
{
  SmeltDType dtype = type == SMELT_GGML_TYPE_BF16 ? SMELT_DTYPE_BF16 : SMELT_DTYPE_F16;
  gssize i;

  /* Q8_0 keeps an fp16 scale of amax/127: the same range, 127× wider */
  if (type == SMELT_GGML_TYPE_F32 || type == SMELT_GGML_TYPE_Q8_0)
    return TRUE;
  i = smelt_find_overflow (rows, n, dtype);
  if (i < 0)
    return TRUE;
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
               "%s (%s in the GGUF): value %g at row %" G_GUINT64_FORMAT ", column %" G_GUINT64_FORMAT
               " does not fit in %s%s", t->tensor ? smelt_tensor_get_name (t->tensor) : t->name,
               t->name, rows[i], first_row + i / t->ne[0], (guint64) (i % t->ne[0]),
               type == SMELT_GGML_TYPE_F16 ? "float16" : "bfloat16",
               type == SMELT_GGML_TYPE_F16 ? " (largest 65504); use Types=bf16" : "");
  return FALSE;
}

/* The delta sums of one row: @x merged, @xq its round trip, @w the base
 * row. */
static void
measure_delta_row (SmeltGgmlType  type,
                   const float   *x,
                   const float   *xq,
                   const float   *w,
                   guint64        n_per_row,
                   guint8        *wq_bytes,
                   float         *wq,
                   ReportStats   *st)
{
  smelt_ggml_encode_rows (type, w, 1, n_per_row, wq_bytes);
  smelt_ggml_decode_rows (type, wq_bytes, 1, n_per_row, wq);
  smelt_quality_measure_delta (st, x, xq, w, wq, n_per_row);
}

/* The report's sums for rows @x (@first_row on) encoded as @type in
 * @encoded; with @base (the base weights, transformed as @x), also the
 * delta's, on the rows REPORT_DELTA_STRIDE picks. */
static void
measure (SmeltGgmlType  type,
         const float   *x,
         const guint8  *encoded,
         const float   *base,
         guint64        first_row,
         guint64        n_rows,
         guint64        n_per_row,
         ReportStats   *st)
{
  gsize n = n_rows * n_per_row;
  g_autofree float *xq = g_new (float, n);

  memset (st, 0, sizeof *st);
  smelt_ggml_decode_rows (type, encoded, n_rows, n_per_row, xq);
  smelt_quality_measure (st, x, xq, n);
  if (base != NULL)
    {
      g_autofree guint8 *wq_bytes = g_malloc (smelt_ggml_type_row_size (type, n_per_row));
      g_autofree float *wq = g_new (float, n_per_row);
      guint64 r = (REPORT_DELTA_STRIDE - first_row % REPORT_DELTA_STRIDE) % REPORT_DELTA_STRIDE;

      for (; r < n_rows; r += REPORT_DELTA_STRIDE)
        measure_delta_row (type, x + r * n_per_row, xq + r * n_per_row, base + r * n_per_row,
                           n_per_row, wq_bytes, wq, st);
    }
}

/* The base rows matching merged rows [@first_row, +@n_rows) of the
 * tensor at @index, transformed as the merged rows are; NULL if the
 * tensor has no delta to measure. */
static float *
read_base_rows (SmeltGgufQuant  *self,
                SmeltGgufTensor *t,
                guint            index,
                guint64          first_row,
                guint64          n_rows,
                GError         **error)
{
  SmeltTensor *base = self->base_of ? self->base_of[index] : NULL;
  g_autofree float *rows = NULL;

  if (base == NULL || n_rows == 0)
    return NULL;
  rows = g_new (float, n_rows * t->ne[0]);
  if (!smelt_tensor_read_rows (base, first_row, n_rows, SMELT_DTYPE_F32, rows, error))
    {
      g_prefix_error (error, "report: base of %s: ", t->name);
      return NULL;
    }
  if (t->transform != SMELT_GGUF_XFORM_NONE)
    smelt_gguf_tensor_transform (t, first_row, n_rows, rows);
  return g_steal_pointer (&rows);
}

/* Each slice is appended as: u64 row count, then for every output in
 * turn the rows encoded, followed (with Report) by the slice's
 * ReportStats. write_rows() walks the same layout. */
static gboolean
smelt_gguf_quant_encode_rows (SmeltFormat  *format,
                              SmeltTensor  *tensor,
                              guint64       first_row,
                              guint64       n_rows,
                              const float  *rows,
                              GByteArray   *out,
                              GError      **error)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);
  guint index = 0;
  SmeltGgufTensor *t = lookup (self, tensor, &index);
  g_autofree float *scratch = NULL;
  g_autofree float *base = NULL;
  guint64 planned_rows = t->ne[1] * t->ne[2] * t->ne[3];
  gsize n;

  /* the converter cuts gemma3's embedding to the tokenizer's size: rows
   * past the planned ones are not written */
  n_rows = first_row >= planned_rows ? 0 : MIN (n_rows, planned_rows - first_row);
  n = n_rows * t->ne[0];
  if (t->transform != SMELT_GGUF_XFORM_NONE)
    {
      scratch = g_memdup2 (rows, n * sizeof (float));
      smelt_gguf_tensor_transform (t, first_row, n_rows, scratch);
      rows = scratch;
    }
  if (self->report)
    {
      GError *local = NULL;

      base = read_base_rows (self, t, index, first_row, n_rows, &local);
      if (local != NULL)
        {
          g_propagate_error (error, local);
          return FALSE;
        }
    }
  g_byte_array_append (out, (const guint8 *) &n_rows, sizeof n_rows);
  for (guint k = 0; k < self->outputs->len; k++)
    {
      Output *o = g_ptr_array_index (self->outputs, k);
      SmeltGgmlType type = o->tensor_type[index];
      guint64 bytes = smelt_ggml_type_row_size (type, t->ne[0]) * n_rows;
      guint old = out->len;

      if (!check_overflow (t, type, first_row, rows, n, error))
        return FALSE;
      g_byte_array_set_size (out, old + bytes);
      smelt_ggml_encode_rows (type, rows, n_rows, t->ne[0], out->data + old);
      if (self->report)
        {
          ReportStats st;

          measure (type, rows, out->data + old, base, first_row, n_rows, t->ne[0], &st);
          g_byte_array_append (out, (const guint8 *) &st, sizeof st);
        }
    }
  return TRUE;
}

/* ---- writing (the job's thread, in tensor order) ----------------------- */

static gboolean
write_bytes (Output        *o,
             const void    *data,
             gsize          len,
             GCancellable  *cancellable,
             GError       **error)
{
  if (!g_output_stream_write_all (o->out, data, len, NULL, cancellable, error))
    {
      g_prefix_error (error, "%s: ", o->open->path);
      return FALSE;
    }
  o->open->written += len;
  return TRUE;
}

static gboolean
close_shard (Output        *o,
             GCancellable  *cancellable,
             GError       **error)
{
  Shard *s = o->open;

  if (s == NULL)
    return TRUE;
  o->open = NULL;
  if (s->written != smelt_gguf_layout_get_file_size (s->layout))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: wrote %" G_GUINT64_FORMAT " bytes, planned %" G_GUINT64_FORMAT,
                   s->path, s->written, smelt_gguf_layout_get_file_size (s->layout));
      return FALSE;
    }
  if (!g_output_stream_close (o->out, cancellable, error))
    {
      g_prefix_error (error, "%s: ", s->path);
      return FALSE;
    }
  g_clear_object (&o->out);
  return TRUE;
}

static gboolean
open_shard (SmeltGgufQuant *self,
            Output         *o,
            Shard          *s,
            GCancellable   *cancellable,
            GError        **error)
{
  g_autoptr(GBytes) header = NULL;

  if (!close_shard (o, cancellable, error))
    return FALSE;
  o->out = smelt_format_create_file (SMELT_FORMAT (self), s->path, cancellable, error);
  if (o->out == NULL)
    return FALSE;
  o->open = s;
  header = smelt_gguf_layout_get_header (s->layout);
  return write_bytes (o, g_bytes_get_data (header, NULL), g_bytes_get_size (header),
                      cancellable, error);
}

static gboolean
pad_tensor (Output        *o,
            GCancellable  *cancellable,
            GError       **error)
{
  static const guint8 zeros[SMELT_GGUF_ALIGNMENT];
  gsize pad = (SMELT_GGUF_ALIGNMENT - o->tensor_written % SMELT_GGUF_ALIGNMENT) % SMELT_GGUF_ALIGNMENT;

  if (pad > 0 && !write_bytes (o, zeros, pad, cancellable, error))
    return FALSE;
  o->tensor_written = 0;
  o->next++;
  return TRUE;
}

/* Makes @o ready to receive tensor @index: opens its file, and first
 * writes every generated tensor (rope_freqs, …) planned before it. */
static gboolean
advance_to (SmeltGgufQuant *self,
            Output         *o,
            guint           index,
            GCancellable   *cancellable,
            GError        **error)
{
  while (TRUE)
    {
      SmeltGgufTensor *t;
      Shard *s;

      if (o->next < self->plan->tensors->len)
        {
          s = g_ptr_array_index (o->shards, o->tensor_shard[o->next]);
          if (s != o->open && !open_shard (self, o, s, cancellable, error))
            return FALSE;
        }
      if (o->next >= index)
        break;
      t = g_ptr_array_index (self->plan->tensors, o->next);
      if (t->tensor != NULL || o->tensor_written != 0)
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s: tensor %s was not delivered before the tensors after it",
                       o->open->path, t->name);
          return FALSE;
        }
      {
        gsize n = g_bytes_get_size (t->data) / sizeof (float);
        g_autofree guint8 *buf = g_malloc (o->tensor_size[o->next]);

        smelt_ggml_encode_rows (o->tensor_type[o->next], g_bytes_get_data (t->data, NULL),
                                n / t->ne[0], t->ne[0], buf);
        if (self->report)
          measure (o->tensor_type[o->next], g_bytes_get_data (t->data, NULL), buf, NULL,
                   0, n / t->ne[0], t->ne[0], &o->stats[o->next]);
        if (!write_bytes (o, buf, o->tensor_size[o->next], cancellable, error))
          return FALSE;
        o->tensor_written = o->tensor_size[o->next];
        if (!pad_tensor (o, cancellable, error))
          return FALSE;
      }
    }
  if (o->next != index)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor order mismatch at %u (expected %u)", index, o->next);
      return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_gguf_quant_write_rows (SmeltFormat   *format,
                             SmeltTensor   *tensor,
                             guint64        first_row,
                             guint64        n_rows,
                             GBytes        *data,
                             GCancellable  *cancellable,
                             GError       **error)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);
  guint index = 0;
  SmeltGgufTensor *t = lookup (self, tensor, &index);
  gsize len, pos = 0;
  const guint8 *bytes = g_bytes_get_data (data, &len);

  for (guint k = 0; k < self->outputs->len; k++)
    if (!advance_to (self, g_ptr_array_index (self->outputs, k), index, cancellable, error))
      return FALSE;
  while (pos < len)
    {
      guint64 n;

      memcpy (&n, bytes + pos, sizeof n);
      pos += sizeof n;
      for (guint k = 0; k < self->outputs->len; k++)
        {
          Output *o = g_ptr_array_index (self->outputs, k);
          guint64 size = smelt_ggml_type_row_size (o->tensor_type[index], t->ne[0]) * n;

          if (!write_bytes (o, bytes + pos, size, cancellable, error))
            return FALSE;
          o->tensor_written += size;
          pos += size;
          if (self->report)
            {
              ReportStats st;

              memcpy (&st, bytes + pos, sizeof st);
              smelt_quality_stats_add (&o->stats[index], &st);
              pos += sizeof st;
            }
        }
    }
  if (first_row + n_rows < smelt_tensor_get_n_rows (tensor))
    return TRUE;
  for (guint k = 0; k < self->outputs->len; k++)
    {
      Output *o = g_ptr_array_index (self->outputs, k);

      if (o->tensor_written != o->tensor_size[index])
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s: %s has %" G_GUINT64_FORMAT " bytes of data, planned %" G_GUINT64_FORMAT,
                       o->open->path, t->name, o->tensor_written, o->tensor_size[index]);
          return FALSE;
        }
      if (!pad_tensor (o, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- the quality report ----------------------------------------------- */

typedef SmeltQualityFigures ReportFigures;

static ReportFigures
report_figures (const ReportStats *st)
{
  ReportFigures f;

  smelt_quality_get_figures (st, &f);
  return f;
}

static guint64
tensor_n_elements (SmeltGgufTensor *t)
{
  return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

static gboolean
has_delta (SmeltGgufQuant *self,
           guint           index)
{
  return self->base_of != NULL && self->base_of[index] != NULL;
}

/* The sums over every tensor of @o, and over the tensors with a delta. */
static void
output_totals (SmeltGgufQuant *self,
               Output         *o,
               ReportStats    *all,
               guint64        *n_all,
               ReportStats    *changed,
               guint64        *n_changed,
               guint64        *bytes)
{
  memset (all, 0, sizeof *all);
  memset (changed, 0, sizeof *changed);
  *n_all = *n_changed = *bytes = 0;
  for (guint i = 0; i < self->plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (self->plan->tensors, i);

      smelt_quality_stats_add (all, &o->stats[i]);
      *n_all += tensor_n_elements (t);
      *bytes += o->tensor_size[i];
      if (has_delta (self, i))
        {
          smelt_quality_stats_add (changed, &o->stats[i]);
          *n_changed += tensor_n_elements (t);
        }
    }
}

static void
build_output_report (SmeltGgufQuant *self,
                     Output         *o,
                     JsonBuilder    *b)
{
  ReportStats all, changed;
  guint64 n_all, n_changed, bytes;
  guint n_modified = 0;

  output_totals (self, o, &all, &n_all, &changed, &n_changed, &bytes);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "type");
  json_builder_add_string_value (b, o->kind->name);
  json_builder_set_member_name (b, "file_type");
  json_builder_add_int_value (b, o->kind->ftype);
  json_builder_set_member_name (b, "files");
  json_builder_begin_array (b);
  for (guint i = 0; i < o->shards->len; i++)
    json_builder_add_string_value (b, ((Shard *) g_ptr_array_index (o->shards, i))->path);
  json_builder_end_array (b);

  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < self->plan->tensors->len; i++)
    {
      SmeltGgufTensor *t = g_ptr_array_index (self->plan->tensors, i);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      if (t->tensor != NULL)
        json_builder_add_string_value (b, smelt_tensor_get_name (t->tensor));
      else
        json_builder_add_null_value (b);
      json_builder_set_member_name (b, "gguf_name");
      json_builder_add_string_value (b, t->name);
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, smelt_ggml_type_get_name (o->tensor_type[i]));
      json_builder_set_member_name (b, "bytes");
      json_builder_add_int_value (b, (gint64) o->tensor_size[i]);
      json_builder_set_member_name (b, "elements");
      json_builder_add_int_value (b, (gint64) tensor_n_elements (t));
      smelt_quality_add_json (b, &o->stats[i], TRUE, has_delta (self, i));
      n_modified += has_delta (self, i);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);

  json_builder_set_member_name (b, "totals");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "bytes");
  json_builder_add_int_value (b, (gint64) bytes);
  json_builder_set_member_name (b, "elements");
  json_builder_add_int_value (b, (gint64) n_all);
  smelt_quality_add_json (b, &all, TRUE, FALSE);
  json_builder_set_member_name (b, "modified_tensors");
  json_builder_add_int_value (b, n_modified);
  smelt_quality_add_json (b, &changed, FALSE, n_modified > 0);
  json_builder_end_object (b);
  json_builder_end_object (b);
}

static GBytes *
build_report (SmeltGgufQuant *self)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  char *text;
  gsize len;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "gguf-quant");
  json_builder_set_member_name (b, "report_version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "outputs");
  json_builder_begin_array (b);
  for (guint k = 0; k < self->outputs->len; k++)
    build_output_report (self, g_ptr_array_index (self->outputs, k), b);
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  text = json_generator_to_data (gen, &len);
  text = g_realloc (text, len + 2);
  text[len] = '\n';
  text[len + 1] = '\0';
  return g_bytes_new_take (text, len + 1);
}

/* ---- the summary `smelt run` prints ------------------------------------ */

typedef struct {
  guint  index;
  double value;
} Ranked;

/* largest first; ties in plan order, so the text is deterministic */
static int
compare_ranked_desc (gconstpointer a,
                     gconstpointer b)
{
  const Ranked *ra = a, *rb = b;

  if (ra->value != rb->value)
    return ra->value > rb->value ? -1 : 1;
  return ra->index < rb->index ? -1 : ra->index > rb->index;
}

static int
compare_ranked_asc (gconstpointer a,
                    gconstpointer b)
{
  const Ranked *ra = a, *rb = b;

  if (ra->value != rb->value)
    return ra->value < rb->value ? -1 : 1;
  return ra->index < rb->index ? -1 : ra->index > rb->index;
}

#define SUMMARY_WORST 3
#define SUMMARY_DETAIL_ERROR 1e-3

/* "  worst error:  blk.0.ffn_down.weight q4_K 7.14%, …" from the first
 * entries of @ranked */
static void
append_ranked (SmeltGgufQuant *self,
               Output         *o,
               GString        *text,
               const char     *label,
               GArray         *ranked)
{
  g_string_append_printf (text, "      %-16s", label);
  for (guint j = 0; j < MIN (ranked->len, SUMMARY_WORST); j++)
    {
      Ranked *r = &g_array_index (ranked, Ranked, j);
      SmeltGgufTensor *t = g_ptr_array_index (self->plan->tensors, r->index);

      g_string_append_printf (text, "%s%s %s %.2f%%", j ? ", " : "", t->name,
                              smelt_ggml_type_get_name (o->tensor_type[r->index]), 100 * r->value);
    }
  g_string_append_c (text, '\n');
}

static void
summarize_output (SmeltGgufQuant *self,
                  Output         *o,
                  GString        *text)
{
  g_autoptr(GArray) errors = g_array_new (FALSE, FALSE, sizeof (Ranked));
  g_autoptr(GArray) deltas = g_array_new (FALSE, FALSE, sizeof (Ranked));
  ReportStats all, changed;
  guint64 n_all, n_changed, bytes;
  ReportFigures f;
  g_autofree char *size = NULL;

  output_totals (self, o, &all, &n_all, &changed, &n_changed, &bytes);
  size = smelt_format_size (bytes);
  f = report_figures (&all);
  g_string_append_printf (text, "  %-8s %10s  rel. RMS error %.3f%%", o->kind->name, size,
                          100 * f.rel_rms_error);
  if (changed.delta2 > 0)
    {
      f = report_figures (&changed);
      g_string_append_printf (text, ", fine-tune surviving %.1f%% (cosine %.3f)",
                              100 * f.delta_surviving, f.delta_cosine);
    }
  g_string_append_c (text, '\n');
  /* the tensors to look at, where quantization is more than rounding */
  if (report_figures (&all).rel_rms_error < SUMMARY_DETAIL_ERROR)
    return;
  for (guint i = 0; i < self->plan->tensors->len; i++)
    {
      Ranked r = { i, 0 };

      f = report_figures (&o->stats[i]);
      r.value = f.rel_rms_error;
      g_array_append_val (errors, r);
      if (has_delta (self, i) && o->stats[i].delta2 > 0)
        {
          r.value = f.delta_surviving;
          g_array_append_val (deltas, r);
        }
    }
  g_array_sort (errors, compare_ranked_desc);
  g_array_sort (deltas, compare_ranked_asc);
  append_ranked (self, o, text, "largest error:", errors);
  if (deltas->len > 0)
    append_ranked (self, o, text, "weakest delta:", deltas);
}

static char *
smelt_gguf_quant_get_summary (SmeltFormat *format)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);
  GString *text;

  if (self->lora != NULL)
    return g_strdup_printf ("LoRA adapter of export %s: %u tensor pairs, adapter.lora.alpha %.8g%s; "
                            "load it on the base model's GGUF (llama.cpp --lora)\n",
                            smelt_format_get_name (format), smelt_gguf_lora_get_n_pairs (self->lora),
                            smelt_gguf_lora_get_alpha (self->lora),
                            smelt_gguf_lora_is_rescaled (self->lora)
                            ? " (the scales one alpha cannot give are folded into lora_b)" : "");
  if (!self->report || self->report_path == NULL)
    return NULL;
  text = g_string_new (NULL);
  g_string_append_printf (text, "Quality of export %s (details in %s):\n",
                          smelt_format_get_name (format), self->report_path);
  for (guint k = 0; k < self->outputs->len; k++)
    summarize_output (self, g_ptr_array_index (self->outputs, k), text);
  return g_string_free (text, FALSE);
}

/* Adapter=true: every file from the adapters' own tensors */
static gboolean
finish_adapter (SmeltGgufQuant  *self,
                GCancellable    *cancellable,
                GError         **error)
{
  for (guint k = 0; k < self->outputs->len; k++)
    {
      Output *o = g_ptr_array_index (self->outputs, k);
      Shard *s = g_ptr_array_index (o->shards, 0);
      g_autoptr(GBytes) header = smelt_gguf_layout_get_header (s->layout);
      guint64 written = 0;

      o->out = smelt_format_create_file (SMELT_FORMAT (self), s->path, cancellable, error);
      if (o->out == NULL)
        return FALSE;
      o->open = s;
      if (!write_bytes (o, g_bytes_get_data (header, NULL), g_bytes_get_size (header),
                        cancellable, error))
        return FALSE;
      if (!smelt_gguf_lora_write_data (self->lora, s->layout, o->kind->type, o->out,
                                       &written, cancellable, error))
        {
          g_prefix_error (error, "%s: ", s->path);
          return FALSE;
        }
      s->written += written;
      if (!close_shard (o, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_gguf_quant_finish (SmeltFormat   *format,
                         GCancellable  *cancellable,
                         GError       **error)
{
  SmeltGgufQuant *self = SMELT_GGUF_QUANT (format);

  if (self->lora != NULL)
    return finish_adapter (self, cancellable, error);
  for (guint k = 0; k < self->outputs->len; k++)
    {
      Output *o = g_ptr_array_index (self->outputs, k);

      if (!advance_to (self, o, self->plan->tensors->len, cancellable, error) ||
          !close_shard (o, cancellable, error))
        return FALSE;
    }
  if (self->report)
    {
      g_autoptr(GBytes) report = build_report (self);

      if (!smelt_format_write_file (format, self->report_path, report, cancellable, error))
        {
          g_prefix_error (error, "%s: ", self->report_path);
          return FALSE;
        }
    }
  return TRUE;
}

/* ---- class ------------------------------------------------------------- */

static GParamSpec *
string_param (const char *name,
              const char *nick,
              const char *blurb,
              const char *def)
{
  return g_param_spec_string (name, nick, blurb, def, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
}

static GParamSpec *
strv_param (const char *name,
            const char *nick,
            const char *blurb)
{
  return g_param_spec_boxed (name, nick, blurb, G_TYPE_STRV, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
}

static void
smelt_gguf_quant_class_init (SmeltGgufQuantClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_gguf_quant_finalize;
  object_class->get_property = smelt_gguf_quant_get_property;
  object_class->set_property = smelt_gguf_quant_set_property;
  format_class->plan = smelt_gguf_quant_plan;
  format_class->wants_rows = smelt_gguf_quant_wants_rows;
  format_class->row_group = smelt_gguf_quant_row_group;
  format_class->encode_rows = smelt_gguf_quant_encode_rows;
  format_class->write_rows = smelt_gguf_quant_write_rows;
  format_class->finish = smelt_gguf_quant_finish;
  format_class->check_options = smelt_gguf_quant_check_options;
  format_class->accepts_source = smelt_gguf_quant_accepts_source;
  format_class->get_summary = smelt_gguf_quant_get_summary;

  properties[PROP_TYPES] = string_param ("types", "Types",
    "GGUF types to write from one pass: f32, f16, bf16, q8_0, auto (the model's 16-bit type), "
    "and llama-quantize's q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s/m/l, q4_k_s/m, q5_k_s/m, q6_k", "auto");
  properties[PROP_NAME] = string_param ("file-stem", "Name",
    "File name stem: NAME.Q8_0.gguf (default: the model's name)", NULL);
  properties[PROP_PRE] = string_param ("pre", "Pre",
    "tokenizer.ggml.pre for a byte-level BPE tokenizer whose fingerprint llama.cpp's converter "
    "does not know (e.g. gpt-2); default: chosen as the converter does", NULL);
  properties[PROP_MAX_FILE_SIZE] = string_param ("max-file-size", "MaxFileSize",
    "Split files larger than this (llama.cpp split format, e.g. 4GB); 0 = never", "0");
  properties[PROP_MODEL_NAME] = string_param ("model-name", "ModelName",
    "general.name (default: from config.json's repo id, else the model folder's name)", NULL);
  properties[PROP_AUTHOR] = string_param ("author", "Author", "general.author", NULL);
  properties[PROP_ORGANIZATION] = string_param ("organization", "Organization", "general.organization", NULL);
  properties[PROP_VERSION] = string_param ("version", "Version", "general.version", NULL);
  properties[PROP_FINETUNE] = string_param ("finetune", "Finetune", "general.finetune", NULL);
  properties[PROP_DESCRIPTION] = string_param ("description", "Description", "general.description", NULL);
  properties[PROP_LICENSE] = string_param ("license", "License", "general.license, e.g. apache-2.0", NULL);
  properties[PROP_BASE_MODELS] = strv_param ("base-models", "BaseModels",
    "Hub ids of the base models (general.base_model.*), e.g. meta-llama/Llama-3.2-1B");
  properties[PROP_TAGS] = strv_param ("tags", "Tags", "general.tags");
  properties[PROP_LANGUAGES] = strv_param ("languages", "Languages", "general.languages, e.g. en;fr");
  properties[PROP_REPORT] = g_param_spec_boolean ("report", "Report",
    "Measure each tensor's quantization error and how much of the adapters' change survives it; "
    "writes NAME.report.json and a summary", TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_ADAPTER] = g_param_spec_boolean ("adapter", "Adapter",
    "Write the recipe's LoRA adapters as a llama.cpp LoRA adapter GGUF (NAME-lora.F16.gguf, "
    "loaded with --lora on the base model's GGUF) instead of the merged model; Types f32, f16, "
    "bf16, q8_0", FALSE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_gguf_quant_init (SmeltGgufQuant *self)
{
  self->types = g_strdup ("auto");
  self->max_file_size = g_strdup ("0");
  self->report = TRUE;
  self->index_of = g_hash_table_new (g_str_hash, g_str_equal);
  self->outputs = g_ptr_array_new_with_free_func (output_free);
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "gguf-quant", SMELT_TYPE_GGUF_QUANT, error);
}

SMELT_PLUGIN_DEFINE ("gguf-quant",
                     "GGUF files for llama.cpp, Ollama and LM Studio, converted and quantized in one pass",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
