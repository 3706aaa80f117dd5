/* smelt-merged16.c: the merged16 format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <smelt/smelt.h>

/* Writes the merged model the way transformers' save_pretrained does:
 * model.safetensors or model-0000i-of-0000N.safetensors shards split in
 * tensor order at MaxShardSize, model.safetensors.index.json, config.json
 * with torch_dtype set and quantization_config removed, and the
 * generation and tokenizer files copied. Every shard's header is planned
 * before any data, so the files stream straight to the destination. */

typedef enum {
  SMELT_MERGED16_DTYPE_AUTO,
  SMELT_MERGED16_DTYPE_BF16,
  SMELT_MERGED16_DTYPE_FP16,
} SmeltMerged16DType;

static const GEnumValue dtype_values[] = {
  { SMELT_MERGED16_DTYPE_AUTO, "SMELT_MERGED16_DTYPE_AUTO", "auto" },
  { SMELT_MERGED16_DTYPE_BF16, "SMELT_MERGED16_DTYPE_BF16", "bf16" },
  { SMELT_MERGED16_DTYPE_FP16, "SMELT_MERGED16_DTYPE_FP16", "fp16" },
  { 0, NULL, NULL }
};

static GType
smelt_merged16_dtype_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltMerged16DType", dtype_values));
  return type;
}

#define SMELT_TYPE_MERGED16 (smelt_merged16_get_type ())
G_DECLARE_FINAL_TYPE (SmeltMerged16, smelt_merged16, SMELT, MERGED16, SmeltFormat)

struct _SmeltMerged16
{
  SmeltFormat         parent_instance;

  SmeltMerged16DType  dtype_option;
  char               *max_shard_size;

  SmeltDType          out_dtype;
  SmeltShardSet      *shards;
  GBytes             *config;
};

enum {
  PROP_0,
  PROP_DTYPE,
  PROP_MAX_SHARD_SIZE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltMerged16, smelt_merged16, SMELT_TYPE_FORMAT)

static void
smelt_merged16_finalize (GObject *object)
{
  SmeltMerged16 *self = SMELT_MERGED16 (object);

  g_free (self->max_shard_size);
  g_clear_object (&self->shards);
  g_clear_pointer (&self->config, g_bytes_unref);
  G_OBJECT_CLASS (smelt_merged16_parent_class)->finalize (object);
}

static void
smelt_merged16_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  SmeltMerged16 *self = SMELT_MERGED16 (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      g_value_set_enum (value, self->dtype_option);
      break;
    case PROP_MAX_SHARD_SIZE:
      g_value_set_string (value, self->max_shard_size);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_merged16_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  SmeltMerged16 *self = SMELT_MERGED16 (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      self->dtype_option = g_value_get_enum (value);
      break;
    case PROP_MAX_SHARD_SIZE:
      g_free (self->max_shard_size);
      self->max_shard_size = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static gboolean
is_convertible (SmeltDType d)
{
  return d == SMELT_DTYPE_F32 || d == SMELT_DTYPE_F16 || d == SMELT_DTYPE_BF16;
}

/* auto keeps the base's 16-bit type; a float32 base becomes bf16, which
 * keeps float32's range (fp16 would overflow large activations' weights). */
static SmeltDType
choose_dtype (SmeltMerged16 *self,
              SmeltSource   *source)
{
  SmeltDType base = smelt_model_get_dtype (smelt_source_get_model (source));

  switch (self->dtype_option)
    {
    case SMELT_MERGED16_DTYPE_BF16:
      return SMELT_DTYPE_BF16;
    case SMELT_MERGED16_DTYPE_FP16:
      return SMELT_DTYPE_F16;
    case SMELT_MERGED16_DTYPE_AUTO:
    default:
      return base == SMELT_DTYPE_F16 ? SMELT_DTYPE_F16 : SMELT_DTYPE_BF16;
    }
}

static SmeltDType
output_dtype (SmeltMerged16 *self,
              SmeltTensor   *tensor)
{
  SmeltDType d = smelt_tensor_get_dtype (tensor);

  return is_convertible (d) ? self->out_dtype : d;
}

static const char *
torch_name (SmeltDType d)
{
  return d == SMELT_DTYPE_F16 ? "float16" : "bfloat16";
}

static gboolean
plan_shards (SmeltMerged16  *self,
             SmeltSource    *source,
             guint64         max_size,
             GError        **error)
{
  self->shards = smelt_shard_set_new (max_size);
  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    {
      SmeltTensor *t = smelt_source_get_tensor (source, i);
      SmeltDType d = output_dtype (self, t);
      guint n_dims;
      const guint64 *shape = smelt_tensor_get_shape (t, &n_dims);

      smelt_shard_set_begin_group (self->shards, smelt_tensor_get_n_elements (t) * smelt_dtype_get_bits (d) / 8);
      if (!smelt_shard_set_add_tensor (self->shards, smelt_tensor_get_name (t), d, shape, n_dims, error))
        return FALSE;
    }
  smelt_shard_set_close_plan (self->shards);
  return TRUE;
}

static gboolean
smelt_merged16_plan (SmeltFormat  *format,
                     SmeltSource  *source,
                     GError      **error)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  const char *model_dir = smelt_model_get_path (smelt_source_get_model (source));
  guint64 max_size;

  if (!smelt_parse_size (self->max_shard_size, &max_size, error))
    {
      g_prefix_error (error, "MaxShardSize: ");
      return FALSE;
    }
  self->out_dtype = choose_dtype (self, source);
  if (!plan_shards (self, source, max_size, error))
    return FALSE;
  /* a re-export with other sharding replaces every weight file and index,
   * as save_pretrained does; a stale index would point at old shards */
  if (smelt_format_get_destination (format))
    {
      SmeltDestination *dest = smelt_format_get_destination (format);

      smelt_destination_replace_pattern (dest, "model.safetensors");
      smelt_destination_replace_pattern (dest, "model-*-of-*.safetensors");
      smelt_destination_replace_pattern (dest, "model.safetensors.index.json");
      smelt_destination_replace_pattern (dest, "pytorch_model*.bin");
      smelt_destination_replace_pattern (dest, "pytorch_model.bin.index.json");
    }
  smelt_shard_set_plan_files (self->shards, format, TRUE);
  self->config = smelt_source_make_config_json (source, torch_name (self->out_dtype), NULL);
  smelt_format_add_planned_file (format, "config.json", g_bytes_get_size (self->config));
  if (smelt_model_get_generation_config (smelt_source_get_model (source)))
    {
      g_autofree char *p = g_build_filename (model_dir, "generation_config.json", NULL);
      smelt_format_plan_copy (format, p, "generation_config.json");
    }
  smelt_format_plan_tokenizer_files (format, source);
  return TRUE;
}

static gboolean
smelt_merged16_check_options (SmeltFormat  *format,
                              GError      **error)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  guint64 size;

  if (!smelt_parse_size (self->max_shard_size, &size, error))
    {
      g_prefix_error (error, "MaxShardSize: ");
      return FALSE;
    }
  return TRUE;
}

static SmeltRows
smelt_merged16_wants_rows (SmeltFormat *format,
                           SmeltTensor *tensor)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  SmeltDType d = smelt_tensor_get_dtype (tensor);
  g_autoptr(GBytes) stored = NULL;

  if (!is_convertible (d))
    return SMELT_ROWS_STORED;
  /* an untouched tensor already in the output type is copied as it is */
  if (d == self->out_dtype && (stored = smelt_tensor_get_bytes (tensor)) != NULL)
    return SMELT_ROWS_STORED;
  return SMELT_ROWS_F32;
}

static gboolean
smelt_merged16_encode_rows (SmeltFormat  *format,
                            SmeltTensor  *tensor,
                            guint64       first_row,
                            guint64       n_rows,
                            const float  *rows,
                            GByteArray   *out,
                            GError      **error)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  gsize n = n_rows * smelt_tensor_get_row_length (tensor);
  guint old_len = out->len;

  /* a value that rounds to infinity is an error, never a silent inf */
  if (!smelt_check_rows_fit (smelt_tensor_get_name (tensor), rows, n,
                             smelt_tensor_get_row_length (tensor), first_row, self->out_dtype, error))
    return FALSE;
  g_byte_array_set_size (out, old_len + n * 2);
  smelt_convert (SMELT_DTYPE_F32, rows, self->out_dtype, out->data + old_len, n, NULL);
  return TRUE;
}

static gboolean
smelt_merged16_write_rows (SmeltFormat   *format,
                           SmeltTensor   *tensor,
                           guint64        first_row,
                           guint64        n_rows,
                           GBytes        *data,
                           GCancellable  *cancellable,
                           GError       **error)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  int shard = smelt_shard_set_lookup (self->shards, smelt_tensor_get_name (tensor));
  gsize len;
  const guint8 *bytes = g_bytes_get_data (data, &len);

  return smelt_shard_set_write (self->shards, format, shard, bytes, len, cancellable, error);
}

static gboolean
smelt_merged16_finish (SmeltFormat   *format,
                       GCancellable  *cancellable,
                       GError       **error)
{
  SmeltMerged16 *self = SMELT_MERGED16 (format);
  SmeltSource *source = smelt_format_get_source (format);
  SmeltModel *model = smelt_source_get_model (source);

  if (!smelt_shard_set_finish (self->shards, format, cancellable, error))
    return FALSE;
  if (!smelt_format_write_file (format, "config.json", self->config, cancellable, error))
    return FALSE;
  if (smelt_model_get_generation_config (model))
    {
      g_autofree char *p = g_build_filename (smelt_model_get_path (model), "generation_config.json", NULL);

      if (!smelt_format_copy_file (format, p, "generation_config.json", cancellable, error))
        return FALSE;
    }
  return smelt_format_copy_tokenizer_files (format, cancellable, error);
}

static void
smelt_merged16_class_init (SmeltMerged16Class *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_merged16_finalize;
  object_class->get_property = smelt_merged16_get_property;
  object_class->set_property = smelt_merged16_set_property;
  format_class->plan = smelt_merged16_plan;
  format_class->wants_rows = smelt_merged16_wants_rows;
  format_class->encode_rows = smelt_merged16_encode_rows;
  format_class->write_rows = smelt_merged16_write_rows;
  format_class->finish = smelt_merged16_finish;
  format_class->check_options = smelt_merged16_check_options;

  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType",
                       "bf16, fp16, or auto: the base's 16-bit type (bf16 for a float32 base)",
                       smelt_merged16_dtype_get_type (), SMELT_MERGED16_DTYPE_AUTO,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_MAX_SHARD_SIZE] =
    g_param_spec_string ("max-shard-size", "MaxShardSize",
                         "Largest shard, e.g. 5GB, 500MB, 2GiB (decimal units as transformers)",
                         "5GB", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_merged16_init (SmeltMerged16 *self)
{
  self->max_shard_size = g_strdup ("5GB");
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "merged16", SMELT_TYPE_MERGED16, error);
}

SMELT_PLUGIN_DEFINE ("merged16", "Merged 16-bit safetensors model, loadable by transformers",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
