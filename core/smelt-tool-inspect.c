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
  json_builder_end_object (b);
}

static void
print_tensor (SmeltTensor *t)
{
  guint n;
  const guint64 *shape = smelt_tensor_get_shape (t, &n);
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s%" G_GUINT64_FORMAT, i ? ", " : "", shape[i]);
  printf ("  %-60s %-5s [%s]\n", smelt_tensor_get_name (t),
          smelt_dtype_to_string (smelt_tensor_get_dtype (t)), s->str);
  g_string_free (s, TRUE);
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

static int
inspect_model (const char *path,
               gboolean    json)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (path, &error);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  const char * const *tok;
  g_autofree char *size = NULL;

  if (model == NULL)
    {
      fprintf (stderr, "smelt: error: %s\n", error->message);
      return SMELT_EXIT_FAILED;
    }
  tok = smelt_model_get_tokenizer_files (model);
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
      json_builder_set_member_name (b, "tokenizer_files");
      json_builder_begin_array (b);
      for (guint i = 0; tok[i]; i++)
        json_builder_add_string_value (b, tok[i]);
      json_builder_end_array (b);
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
  printf ("  tokenizer files:");
  for (guint i = 0; tok[i]; i++)
    printf (" %s", tok[i]);
  printf ("%s\n", tok[0] ? "" : " none");
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
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    fprintf (stderr, "smelt: error: %s: no such file or directory\n", path);
  else
    fprintf (stderr, "smelt: error: %s: not a model directory, adapter directory or "
             ".safetensors file (GGUF inspection comes with the gguf-quant plugin)\n", path);
  return SMELT_EXIT_FAILED;
}
