/* smelt-safetensors-lora.c: the safetensors-lora format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <smelt/smelt.h>

/* Re-exports the recipe's adapter as PEFT's save_pretrained writes it:
 * adapter_config.json as it was, adapter_model.safetensors with the keys
 * PEFT saves (adapter names such as ".default" removed, the
 * "base_model.model." prefix present), laid out like safetensors'
 * save_file, optionally converted to another float type, plus the
 * tokenizer files. The merged tensors are not needed: everything is
 * written in finish(), streaming tensor by tensor. */

typedef enum {
  SMELT_LORA_DTYPE_AUTO,
  SMELT_LORA_DTYPE_F32,
  SMELT_LORA_DTYPE_BF16,
  SMELT_LORA_DTYPE_FP16,
} SmeltLoraDType;

static const GEnumValue dtype_values[] = {
  { SMELT_LORA_DTYPE_AUTO, "SMELT_LORA_DTYPE_AUTO", "auto" },
  { SMELT_LORA_DTYPE_F32, "SMELT_LORA_DTYPE_F32", "f32" },
  { SMELT_LORA_DTYPE_BF16, "SMELT_LORA_DTYPE_BF16", "bf16" },
  { SMELT_LORA_DTYPE_FP16, "SMELT_LORA_DTYPE_FP16", "fp16" },
  { 0, NULL, NULL }
};

static GType
smelt_lora_dtype_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltLoraExportDType", dtype_values));
  return type;
}

#define SMELT_TYPE_SAFETENSORS_LORA (smelt_safetensors_lora_get_type ())
G_DECLARE_FINAL_TYPE (SmeltSafetensorsLora, smelt_safetensors_lora, SMELT, SAFETENSORS_LORA, SmeltFormat)

struct _SmeltSafetensorsLora
{
  SmeltFormat             parent_instance;

  SmeltLoraDType          dtype_option;
  SmeltAdapter           *adapter;
  SmeltSafetensorsLayout *layout;
  GHashTable             *tensor_of;   /* output key -> SmeltTensor */
};

enum {
  PROP_0,
  PROP_DTYPE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltSafetensorsLora, smelt_safetensors_lora, SMELT_TYPE_FORMAT)

static void
smelt_safetensors_lora_finalize (GObject *object)
{
  SmeltSafetensorsLora *self = SMELT_SAFETENSORS_LORA (object);

  g_clear_object (&self->adapter);
  g_clear_object (&self->layout);
  g_hash_table_unref (self->tensor_of);
  G_OBJECT_CLASS (smelt_safetensors_lora_parent_class)->finalize (object);
}

static void
smelt_safetensors_lora_get_property (GObject    *object,
                                     guint       prop_id,
                                     GValue     *value,
                                     GParamSpec *pspec)
{
  SmeltSafetensorsLora *self = SMELT_SAFETENSORS_LORA (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      g_value_set_enum (value, self->dtype_option);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_safetensors_lora_set_property (GObject      *object,
                                     guint         prop_id,
                                     const GValue *value,
                                     GParamSpec   *pspec)
{
  SmeltSafetensorsLora *self = SMELT_SAFETENSORS_LORA (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      self->dtype_option = g_value_get_enum (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static SmeltDType
output_dtype (SmeltSafetensorsLora *self,
              SmeltDType            d)
{
  if (d != SMELT_DTYPE_F32 && d != SMELT_DTYPE_F16 && d != SMELT_DTYPE_BF16)
    return d;
  switch (self->dtype_option)
    {
    case SMELT_LORA_DTYPE_F32:
      return SMELT_DTYPE_F32;
    case SMELT_LORA_DTYPE_BF16:
      return SMELT_DTYPE_BF16;
    case SMELT_LORA_DTYPE_FP16:
      return SMELT_DTYPE_F16;
    case SMELT_LORA_DTYPE_AUTO:
    default:
      return d;
    }
}

/* PEFT's saved name: no adapter name, "modules_to_save.<name>." dropped,
 * the "base_model.model." prefix present. */
static char *
peft_key (const char *key)
{
  g_auto(GStrv) comps = g_strsplit (g_str_has_prefix (key, "base_model.model.")
                                    ? key + strlen ("base_model.model.") : key, ".", -1);
  static const char * const lora_parts[] = {
    "lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", NULL
  };
  GString *out = g_string_new ("base_model.model");

  for (guint i = 0; comps[i]; i++)
    {
      if (g_str_equal (comps[i], "modules_to_save") && comps[i + 1] && comps[i + 2])
        {
          i++;
          continue;
        }
      g_string_append_printf (out, ".%s", comps[i]);
      /* after a LoRA part, whatever is not weight/bias is an adapter name;
       * PEFT saves the DoRA magnitude without ".weight" */
      if (g_strv_contains (lora_parts, comps[i]))
        {
          gboolean magnitude = g_str_equal (comps[i], "lora_magnitude_vector");

          for (i++; comps[i]; i++)
            if (!magnitude && (g_str_equal (comps[i], "weight") || g_str_equal (comps[i], "bias")))
              g_string_append_printf (out, ".%s", comps[i]);
          break;
        }
    }
  return g_string_free (out, FALSE);
}

static gboolean
smelt_safetensors_lora_plan (SmeltFormat  *format,
                             SmeltSource  *source,
                             GError      **error)
{
  SmeltSafetensorsLora *self = SMELT_SAFETENSORS_LORA (format);
  SmeltSafetensorsFile *file;
  g_autofree char *config = NULL;
  guint n;

  if (smelt_source_get_n_adapters (source) != 1)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "safetensors-lora exports exactly one adapter; the recipe has %u in "
                   "[Source] Adapters", smelt_source_get_n_adapters (source));
      return FALSE;
    }
  g_set_object (&self->adapter, smelt_source_get_adapter (source, 0));
  file = smelt_adapter_get_file (self->adapter);
  g_clear_object (&self->layout);
  self->layout = smelt_safetensors_layout_new ();
  g_hash_table_remove_all (self->tensor_of);

  n = smelt_safetensors_file_get_n_tensors (file);
  for (guint i = 0; i < n; i++)
    {
      SmeltTensor *t = smelt_safetensors_file_get_tensor (file, i);
      g_autofree char *key = peft_key (smelt_tensor_get_name (t));
      guint n_dims;
      const guint64 *shape = smelt_tensor_get_shape (t, &n_dims);

      if (g_hash_table_contains (self->tensor_of, key))
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s: two tensors are both saved as “%s”",
                       smelt_safetensors_file_get_path (file), key);
          return FALSE;
        }
      if (!smelt_safetensors_layout_add_tensor (self->layout, key,
                                                output_dtype (self, smelt_tensor_get_dtype (t)),
                                                shape, n_dims, error))
        return FALSE;
      g_hash_table_insert (self->tensor_of, g_steal_pointer (&key), t);
    }
  smelt_safetensors_layout_sort (self->layout);

  config = g_build_filename (smelt_adapter_get_path (self->adapter), "adapter_config.json", NULL);
  smelt_format_plan_copy (format, config, "adapter_config.json");
  smelt_format_add_planned_file (format, "adapter_model.safetensors",
                                 smelt_safetensors_layout_get_file_size (self->layout));
  smelt_format_plan_tokenizer_files (format, source);
  return TRUE;
}

/* Copies or converts one tensor in slices, so a large saved embedding
 * never sits in memory whole. */
static gboolean
write_tensor (SmeltSafetensorsLora  *self,
              GOutputStream         *out,
              SmeltTensor           *t,
              SmeltDType             want,
              GCancellable          *cancellable,
              GError               **error)
{
  g_autoptr(GBytes) stored = smelt_tensor_get_bytes (t);
  guint64 n_rows = smelt_tensor_get_n_rows (t);
  guint64 row_len = smelt_tensor_get_row_length (t);
  guint64 per = MAX ((4u << 20) / MAX (row_len * 4, 1), 1);
  g_autofree guint8 *buf = NULL;
  g_autofree guint8 *out_buf = NULL;

  if (want == smelt_tensor_get_dtype (t))
    return g_output_stream_write_all (out, g_bytes_get_data (stored, NULL), g_bytes_get_size (stored),
                                      NULL, cancellable, error);
  buf = g_malloc (MAX (per * row_len * 4, 1));
  out_buf = g_malloc (MAX (per * row_len * 4, 1));
  for (guint64 first = 0; first < n_rows; first += per)
    {
      guint64 rows = MIN (per, n_rows - first);
      gsize n = rows * row_len;
      gssize bad;

      if (!smelt_tensor_read_rows (t, first, rows, SMELT_DTYPE_F32, buf, error))
        return FALSE;
      /* narrowing must not turn a finite value into a silent inf */
      bad = smelt_find_overflow ((const float *) buf, n, want);
      if (bad >= 0)
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
                       "%s: value %g does not fit in %s; use a wider DType",
                       smelt_tensor_get_name (t), ((const float *) buf)[bad],
                       smelt_dtype_to_string (want));
          return FALSE;
        }
      smelt_convert (SMELT_DTYPE_F32, buf, want, out_buf, n, NULL);
      if (!g_output_stream_write_all (out, out_buf, n * smelt_dtype_get_bits (want) / 8,
                                      NULL, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
write_weights (SmeltSafetensorsLora  *self,
               GCancellable          *cancellable,
               GError               **error)
{
  g_autoptr(GOutputStream) out = NULL;
  g_autoptr(GBytes) header = smelt_safetensors_layout_get_header (self->layout);
  guint n = smelt_safetensors_layout_get_n_tensors (self->layout);

  out = smelt_format_create_file (SMELT_FORMAT (self), "adapter_model.safetensors", cancellable, error);
  if (out == NULL)
    return FALSE;
  if (!g_output_stream_write_all (out, g_bytes_get_data (header, NULL), g_bytes_get_size (header),
                                  NULL, cancellable, error))
    goto fail;
  for (guint i = 0; i < n; i++)
    {
      const char *key = smelt_safetensors_layout_get_tensor_name (self->layout, i);
      SmeltTensor *t = g_hash_table_lookup (self->tensor_of, key);

      if (!write_tensor (self, out, t, output_dtype (self, smelt_tensor_get_dtype (t)), cancellable, error))
        goto fail;
    }
  if (g_output_stream_close (out, cancellable, error))
    return TRUE;
fail:
  g_prefix_error (error, "adapter_model.safetensors: ");
  return FALSE;
}

static gboolean
smelt_safetensors_lora_finish (SmeltFormat   *format,
                               GCancellable  *cancellable,
                               GError       **error)
{
  SmeltSafetensorsLora *self = SMELT_SAFETENSORS_LORA (format);
  g_autofree char *config = g_build_filename (smelt_adapter_get_path (self->adapter),
                                              "adapter_config.json", NULL);

  /* the config is copied byte for byte: nothing in it changes */
  return smelt_format_copy_file (format, config, "adapter_config.json", cancellable, error) &&
         write_weights (self, cancellable, error) &&
         smelt_format_copy_tokenizer_files (format, cancellable, error);
}

static void
smelt_safetensors_lora_class_init (SmeltSafetensorsLoraClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_safetensors_lora_finalize;
  object_class->get_property = smelt_safetensors_lora_get_property;
  object_class->set_property = smelt_safetensors_lora_set_property;
  format_class->plan = smelt_safetensors_lora_plan;
  format_class->finish = smelt_safetensors_lora_finish;

  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType",
                       "auto (keep each tensor's type), f32, bf16 or fp16",
                       smelt_lora_dtype_get_type (), SMELT_LORA_DTYPE_AUTO,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_safetensors_lora_init (SmeltSafetensorsLora *self)
{
  self->tensor_of = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "safetensors-lora", SMELT_TYPE_SAFETENSORS_LORA, error);
}

SMELT_PLUGIN_DEFINE ("safetensors-lora", "The LoRA adapter itself, as PEFT loads it",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
