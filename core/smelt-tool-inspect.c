/* smelt-tool-inspect.c: smelt inspect
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "smelt-tool.h"

/* Opening a path with the library's own readers validates it as an
 * export would, so `smelt inspect` is also the way to check a download. */

static void
add_tensor_json (JsonBuilder *b,
                 SmeltTensor *t)
{
  guint n;
  const guint64 *shape = smelt_tensor_get_shape (t, &n);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, smelt_tensor_get_name (t));
  json_builder_set_member_name (b, "dtype");
  json_builder_add_string_value (b, smelt_dtype_to_string (smelt_tensor_get_dtype (t)));
  json_builder_set_member_name (b, "shape");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    json_builder_add_int_value (b, (gint64) shape[i]);
  json_builder_end_array (b);
  if (SMELT_IS_BNB4_TENSOR (t))
    {
      json_builder_set_member_name (b, "quant_type");
      json_builder_add_string_value (b, smelt_bnb4_type_to_string (
        smelt_bnb4_tensor_get_quant_type (SMELT_BNB4_TENSOR (t))));
    }
  json_builder_end_object (b);
}

/* A 4-bit weight is listed with its 4-bit type: what is stored, while
 * its dtype is what it dequantizes to. */
static void
print_tensor (SmeltTensor *t)
{
  guint n;
  const guint64 *shape = smelt_tensor_get_shape (t, &n);
  GString *s = g_string_new (NULL);
  const char *type = SMELT_IS_BNB4_TENSOR (t)
    ? smelt_bnb4_type_to_string (smelt_bnb4_tensor_get_quant_type (SMELT_BNB4_TENSOR (t)))
    : smelt_dtype_to_string (smelt_tensor_get_dtype (t));

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", shape[i]);
  printf ("  %-60s %-5s [%s]\n", smelt_tensor_get_name (t), type, s->str);
  g_string_free (s, TRUE);
}

/* The bitsandbytes 4-bit weights of a model, grouped by how they are
 * quantized (one group in every checkpoint bitsandbytes writes). */
typedef struct {
  SmeltBnb4Type type;
  guint         blocksize;
  gboolean      nested;
  SmeltDType    dtype;
  guint         n_weights;
} Bnb4Group;

static GArray *
bnb4_groups (SmeltModel *model)
{
  GArray *groups = g_array_new (FALSE, TRUE, sizeof (Bnb4Group));

  for (guint i = 0; i < smelt_model_get_n_tensors (model); i++)
    {
      SmeltTensor *t = smelt_model_get_tensor (model, i);
      SmeltBnb4Tensor *b;
      Bnb4Group g = { 0, };
      guint k;

      if (!SMELT_IS_BNB4_TENSOR (t))
        continue;
      b = SMELT_BNB4_TENSOR (t);
      g.type = smelt_bnb4_tensor_get_quant_type (b);
      g.blocksize = smelt_bnb4_tensor_get_blocksize (b);
      g.nested = smelt_bnb4_tensor_is_nested (b);
      g.dtype = smelt_tensor_get_dtype (t);
      for (k = 0; k < groups->len; k++)
        {
          Bnb4Group *h = &g_array_index (groups, Bnb4Group, k);

          if (h->type == g.type && h->blocksize == g.blocksize && h->nested == g.nested &&
              h->dtype == g.dtype)
            break;
        }
      if (k == groups->len)
        g_array_append_val (groups, g);
      g_array_index (groups, Bnb4Group, k).n_weights++;
    }
  return groups;
}

static void
add_bnb4_group_json (JsonBuilder     *b,
                     const Bnb4Group *g,
                     guint            n_weights)
{
  json_builder_set_member_name (b, "quant_type");
  json_builder_add_string_value (b, smelt_bnb4_type_to_string (g->type));
  json_builder_set_member_name (b, "blocksize");
  json_builder_add_int_value (b, g->blocksize);
  json_builder_set_member_name (b, "nested");
  json_builder_add_boolean_value (b, g->nested);
  json_builder_set_member_name (b, "dtype");
  json_builder_add_string_value (b, smelt_dtype_to_string (g->dtype));
  json_builder_set_member_name (b, "weights");
  json_builder_add_int_value (b, n_weights);
}

/* "bnb4": the most common kind of 4-bit weight and the number of 4-bit
 * weights at the top level, each kind with its count in "groups"; null
 * for a model without 4-bit weights. */
static void
add_bnb4_json (JsonBuilder *b,
               SmeltModel  *model)
{
  g_autoptr(GArray) groups = bnb4_groups (model);
  guint total = 0, best = 0;

  json_builder_set_member_name (b, "bnb4");
  if (groups->len == 0)
    {
      json_builder_add_null_value (b);
      return;
    }
  for (guint k = 0; k < groups->len; k++)
    {
      total += g_array_index (groups, Bnb4Group, k).n_weights;
      if (g_array_index (groups, Bnb4Group, k).n_weights > g_array_index (groups, Bnb4Group, best).n_weights)
        best = k;
    }
  json_builder_begin_object (b);
  add_bnb4_group_json (b, &g_array_index (groups, Bnb4Group, best), total);
  json_builder_set_member_name (b, "groups");
  json_builder_begin_array (b);
  for (guint k = 0; k < groups->len; k++)
    {
      Bnb4Group *g = &g_array_index (groups, Bnb4Group, k);

      json_builder_begin_object (b);
      add_bnb4_group_json (b, g, g->n_weights);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
print_bnb4 (SmeltModel *model)
{
  g_autoptr(GArray) groups = bnb4_groups (model);

  for (guint k = 0; k < groups->len; k++)
    {
      Bnb4Group *g = &g_array_index (groups, Bnb4Group, k);

      printf ("  bitsandbytes 4-bit: %s, blocksize %u, %s, dequantized to %s: %u weight%s\n",
              smelt_bnb4_type_to_string (g->type), g->blocksize,
              g->nested ? "nested (double quantization)" : "not nested",
              smelt_dtype_to_string (g->dtype), g->n_weights, g->n_weights == 1 ? "" : "s");
    }
}

static void
emit_json (JsonBuilder *b)
{
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = smelt_json_to_string (root, TRUE, FALSE);

  printf ("%s\n", text);
}

static int
inspect_safetensors (const char *path,
                     gboolean    json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltSafetensorsFile) file = smelt_safetensors_file_new (path, &error);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_auto(GStrv) meta = NULL;
  guint n;

  if (file == NULL)
    {
      fprintf (stderr, "smelt: error: %s\n", error->message);
      return SMELT_EXIT_FAILED;
    }
  n = smelt_safetensors_file_get_n_tensors (file);
  meta = smelt_safetensors_file_list_metadata (file);
  if (json)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "kind");
      json_builder_add_string_value (b, "safetensors");
      json_builder_set_member_name (b, "metadata");
      json_builder_begin_object (b);
      for (guint i = 0; meta[i]; i++)
        {
          json_builder_set_member_name (b, meta[i]);
          json_builder_add_string_value (b, smelt_safetensors_file_get_metadata (file, meta[i]));
        }
      json_builder_end_object (b);
      json_builder_set_member_name (b, "tensors");
      json_builder_begin_array (b);
      for (guint i = 0; i < n; i++)
        add_tensor_json (b, smelt_safetensors_file_get_tensor (file, i));
      json_builder_end_array (b);
      json_builder_end_object (b);
      emit_json (b);
      return SMELT_EXIT_OK;
    }
  printf ("safetensors %s: %u tensors, header %" G_GUINT64_FORMAT " bytes\n", path, n,
          smelt_safetensors_file_get_header_size (file));
  for (guint i = 0; meta[i]; i++)
    printf ("  metadata %s = %s\n", meta[i], smelt_safetensors_file_get_metadata (file, meta[i]));
  for (guint i = 0; i < n; i++)
    print_tensor (smelt_safetensors_file_get_tensor (file, i));
  return SMELT_EXIT_OK;
}

/* ---- chat template: the family smelt recognizes and why ---- */

static const char *
chat_match_nick (SmeltChatMatch match)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (SMELT_TYPE_CHAT_MATCH);
  GEnumValue *v = g_enum_get_value (klass, match);

  return v ? v->value_nick : "?";
}

/* t is NULL when the model's template files could not be read (error) */
static void
add_chat_template_json (JsonBuilder       *b,
                        SmeltChatTemplate *t,
                        const GError      *error)
{
  const char * const *stops;
  struct { const char *key, *value; } members[7];

  json_builder_set_member_name (b, "chat_template");
  json_builder_begin_object (b);
  if (t == NULL)
    {
      json_builder_set_member_name (b, "error");
      json_builder_add_string_value (b, error->message);
      json_builder_end_object (b);
      return;
    }
  members[0].key = "match", members[0].value = chat_match_nick (smelt_chat_template_get_match (t));
  members[1].key = "family", members[1].value = smelt_chat_template_get_family (t);
  members[2].key = "family_name", members[2].value = smelt_chat_template_get_family_name (t);
  members[3].key = "variant", members[3].value = smelt_chat_template_get_variant (t);
  members[4].key = "source", members[4].value = smelt_chat_template_get_source (t);
  members[5].key = "reason", members[5].value = smelt_chat_template_get_reason (t);
  members[6].key = "warning", members[6].value = smelt_chat_template_get_warning (t);
  for (guint i = 0; i < G_N_ELEMENTS (members); i++)
    {
      json_builder_set_member_name (b, members[i].key);
      if (members[i].value)
        json_builder_add_string_value (b, members[i].value);
      else
        json_builder_add_null_value (b);
    }
  json_builder_set_member_name (b, "stop_tokens");
  json_builder_begin_array (b);
  stops = smelt_chat_template_get_stop_tokens (t);
  for (guint i = 0; stops[i]; i++)
    json_builder_add_string_value (b, stops[i]);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
print_chat_template (SmeltChatTemplate *t,
                     const GError      *error)
{
  g_autofree char *stops = NULL;

  if (t == NULL)
    {
      printf ("  chat template: unreadable: %s\n", error->message);
      return;
    }
  if (smelt_chat_template_get_family (t))
    printf ("  chat template: %s (%s), %s match\n", smelt_chat_template_get_family_name (t),
            smelt_chat_template_get_family (t), chat_match_nick (smelt_chat_template_get_match (t)));
  else
    printf ("  chat template: %s, %s match\n",
            smelt_chat_template_get_match (t) == SMELT_CHAT_MATCH_NONE ? "none" : "generic",
            chat_match_nick (smelt_chat_template_get_match (t)));
  printf ("    why: %s\n", smelt_chat_template_get_reason (t));
  stops = g_strjoinv (" ", (char **) smelt_chat_template_get_stop_tokens (t));
  printf ("    stop tokens: %s\n", *stops ? stops : "none");
  if (smelt_chat_template_get_warning (t))
    printf ("    warning: %s\n", smelt_chat_template_get_warning (t));
}

static int
inspect_model (const char *path,
               gboolean    json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (path, &error);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(SmeltChatTemplate) chat = NULL;
  g_autoptr(GError) chat_error = NULL;
  const char * const *tok;
  g_autofree char *size = NULL;

  if (model == NULL)
    {
      fprintf (stderr, "smelt: error: %s\n", error->message);
      return SMELT_EXIT_FAILED;
    }
  tok = smelt_model_get_tokenizer_files (model);
  chat = smelt_chat_template_new_for_model (model, &chat_error);
  if (json)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "kind");
      json_builder_add_string_value (b, "model");
      json_builder_set_member_name (b, "architecture");
      json_builder_add_string_value (b, smelt_model_get_architecture (model));
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, smelt_dtype_to_string (smelt_model_get_dtype (model)));
      json_builder_set_member_name (b, "parameters");
      json_builder_add_int_value (b, (gint64) smelt_model_get_n_parameters (model));
      json_builder_set_member_name (b, "bytes");
      json_builder_add_int_value (b, (gint64) smelt_model_get_n_bytes (model));
      json_builder_set_member_name (b, "shards");
      json_builder_add_int_value (b, smelt_model_get_n_shards (model));
      add_bnb4_json (b, model);
      json_builder_set_member_name (b, "tokenizer_files");
      json_builder_begin_array (b);
      for (guint i = 0; tok[i]; i++)
        json_builder_add_string_value (b, tok[i]);
      json_builder_end_array (b);
      add_chat_template_json (b, chat, chat_error);
      json_builder_set_member_name (b, "tensors");
      json_builder_begin_array (b);
      for (guint i = 0; i < smelt_model_get_n_tensors (model); i++)
        add_tensor_json (b, smelt_model_get_tensor (model, i));
      json_builder_end_array (b);
      json_builder_end_object (b);
      emit_json (b);
      return SMELT_EXIT_OK;
    }
  size = smelt_format_size (smelt_model_get_n_bytes (model));
  printf ("model %s\n  architecture %s, %s, %u tensors, %" G_GUINT64_FORMAT " parameters, %s in %u shard%s\n",
          smelt_model_get_path (model),
          smelt_model_get_architecture (model) ? smelt_model_get_architecture (model) : "?",
          smelt_dtype_to_string (smelt_model_get_dtype (model)),
          smelt_model_get_n_tensors (model), smelt_model_get_n_parameters (model), size, smelt_model_get_n_shards (model),
          smelt_model_get_n_shards (model) == 1 ? "" : "s");
  print_bnb4 (model);
  printf ("  tokenizer files:");
  for (guint i = 0; tok[i]; i++)
    printf (" %s", tok[i]);
  printf ("%s\n", tok[0] ? "" : " none");
  print_chat_template (chat, chat_error);
  for (guint i = 0; i < smelt_model_get_n_tensors (model); i++)
    print_tensor (smelt_model_get_tensor (model, i));
  return SMELT_EXIT_OK;
}

static int
inspect_adapter (const char *path,
                 gboolean    json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltAdapter) adapter = smelt_adapter_new_for_path (path, &error);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  SmeltSafetensorsFile *file;
  guint n;

  if (adapter == NULL)
    {
      fprintf (stderr, "smelt: error: %s\n", error->message);
      return SMELT_EXIT_FAILED;
    }
  file = smelt_adapter_get_file (adapter);
  n = smelt_safetensors_file_get_n_tensors (file);
  if (json)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "kind");
      json_builder_add_string_value (b, "adapter");
      json_builder_set_member_name (b, "r");
      json_builder_add_int_value (b, smelt_adapter_get_rank (adapter));
      json_builder_set_member_name (b, "lora_alpha");
      json_builder_add_double_value (b, smelt_adapter_get_alpha (adapter));
      json_builder_set_member_name (b, "use_rslora");
      json_builder_add_boolean_value (b, smelt_adapter_get_use_rslora (adapter));
      json_builder_set_member_name (b, "use_dora");
      json_builder_add_boolean_value (b, smelt_adapter_get_use_dora (adapter));
      json_builder_set_member_name (b, "tensors");
      json_builder_begin_array (b);
      for (guint i = 0; i < n; i++)
        add_tensor_json (b, smelt_safetensors_file_get_tensor (file, i));
      json_builder_end_array (b);
      json_builder_end_object (b);
      emit_json (b);
      return SMELT_EXIT_OK;
    }
  printf ("adapter %s\n  LoRA r=%u alpha=%g%s%s%s, %u tensors\n", smelt_adapter_get_path (adapter),
          smelt_adapter_get_rank (adapter), smelt_adapter_get_alpha (adapter),
          smelt_adapter_get_use_rslora (adapter) ? ", rsLoRA" : "",
          smelt_adapter_get_use_dora (adapter) ? ", DoRA" : "",
          smelt_adapter_get_fan_in_fan_out (adapter) ? ", fan_in_fan_out" : "", n);
  for (guint i = 0; i < n; i++)
    print_tensor (smelt_safetensors_file_get_tensor (file, i));
  return SMELT_EXIT_OK;
}

static void
add_gguf_json (JsonBuilder       *b,
               SmeltGgufFile     *file,
               SmeltChatTemplate *chat)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "kind");
  json_builder_add_string_value (b, "gguf");
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, smelt_gguf_file_get_version (file));
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  for (guint i = 0; i < smelt_gguf_file_get_n_kv (file); i++)
    {
      g_autoptr(GVariant) v = smelt_gguf_file_get_value (file, i);

      json_builder_set_member_name (b, smelt_gguf_file_get_key (file, i));
      json_builder_add_value (b, json_gvariant_serialize (v));
    }
  json_builder_end_object (b);
  add_chat_template_json (b, chat, NULL);
  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < smelt_gguf_file_get_n_tensors (file); i++)
    {
      guint64 ne[4];
      guint n = smelt_gguf_file_get_tensor_shape (file, i, ne);

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, smelt_gguf_file_get_tensor_name (file, i));
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, smelt_ggml_type_get_name (smelt_gguf_file_get_tensor_type (file, i)));
      json_builder_set_member_name (b, "ne");
      json_builder_begin_array (b);
      for (guint d = 0; d < n; d++)
        json_builder_add_int_value (b, (gint64) ne[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "offset");
      json_builder_add_int_value (b, (gint64) smelt_gguf_file_get_tensor_offset (file, i));
      json_builder_set_member_name (b, "size");
      json_builder_add_int_value (b, (gint64) smelt_gguf_file_get_tensor_size (file, i));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

/* Counts tensors per type, for the one-line summary people look for:
 * "q8_0: 154, f32: 65". */
static char *
gguf_type_summary (SmeltGgufFile *file)
{
  guint counts[64] = { 0 };
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < smelt_gguf_file_get_n_tensors (file); i++)
    counts[MIN ((guint) smelt_gguf_file_get_tensor_type (file, i), 63)]++;
  for (guint t = 0; t < G_N_ELEMENTS (counts); t++)
    if (counts[t] > 0)
      g_string_append_printf (s, "%s%s: %u", s->len ? ", " : "", smelt_ggml_type_get_name (t), counts[t]);
  return g_string_free (s, FALSE);
}

static void
print_gguf (SmeltGgufFile     *file,
            const char        *path,
            SmeltChatTemplate *chat)
{
  g_autofree char *summary = gguf_type_summary (file);
  guint64 total = 0;
  g_autofree char *size = NULL;

  for (guint i = 0; i < smelt_gguf_file_get_n_tensors (file); i++)
    total += smelt_gguf_file_get_tensor_size (file, i);
  size = smelt_format_size (total);
  printf ("GGUF v%u %s: %u keys, %u tensors (%s of data; %s)\n", smelt_gguf_file_get_version (file),
          path, smelt_gguf_file_get_n_kv (file), smelt_gguf_file_get_n_tensors (file), size, summary);
  for (guint i = 0; i < smelt_gguf_file_get_n_kv (file); i++)
    {
      g_autofree char *value = smelt_gguf_file_format_value (file, i, 8);

      /* chat templates run to kilobytes: keep the listing readable */
      if (g_utf8_strlen (value, -1) > 200)
        {
          char *end = g_utf8_offset_to_pointer (value, 197);
          strcpy (end, "…");
        }
      printf ("  %-45s %s\n", smelt_gguf_file_get_key (file, i), value);
    }
  print_chat_template (chat, NULL);
  for (guint i = 0; i < smelt_gguf_file_get_n_tensors (file); i++)
    {
      guint64 ne[4];
      guint n = smelt_gguf_file_get_tensor_shape (file, i, ne);
      GString *s = g_string_new (NULL);

      for (guint d = 0; d < n; d++)
        g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, d ? ", " : "", ne[d]);
      printf ("  %-45s %-6s [%s]\n", smelt_gguf_file_get_tensor_name (file, i),
              smelt_ggml_type_get_name (smelt_gguf_file_get_tensor_type (file, i)), s->str);
      g_string_free (s, TRUE);
    }
}

static int
inspect_gguf (const char *path,
              gboolean    json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltGgufFile) file = smelt_gguf_file_new (path, &error);
  g_autoptr(SmeltChatTemplate) chat = NULL;

  if (file == NULL)
    {
      fprintf (stderr, "smelt: error: %s\n", error->message);
      return SMELT_EXIT_FAILED;
    }
  chat = smelt_chat_template_new_for_gguf (file);
  if (json)
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();

      add_gguf_json (b, file, chat);
      emit_json (b);
    }
  else
    print_gguf (file, path, chat);
  return SMELT_EXIT_OK;
}

int
smelt_tool_inspect (const char *path,
                    gboolean    json)
{
  g_autofree char *adapter_cfg = g_build_filename (path, "adapter_config.json", NULL);

  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      if (g_file_test (adapter_cfg, G_FILE_TEST_EXISTS))
        return inspect_adapter (path, json);
      return inspect_model (path, json);
    }
  if (g_str_has_suffix (path, ".safetensors"))
    return inspect_safetensors (path, json);
  if (g_str_has_suffix (path, ".gguf"))
    return inspect_gguf (path, json);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    fprintf (stderr, "smelt: error: %s: no such file or directory\n", path);
  else
    fprintf (stderr, "smelt: error: %s: not a model directory, adapter directory, "
             ".safetensors or .gguf file\n", path);
  return SMELT_EXIT_FAILED;
}
