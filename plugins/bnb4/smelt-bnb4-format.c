/* smelt-bnb4-format.c: the bnb4 format
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include <smelt/smelt.h>

#include "smelt-bnb4-plan.h"

/* Writes the merged model as bitsandbytes 4-bit safetensors, the files
 * transformers + bitsandbytes load as they are (from_pretrained of a
 * `*-bnb-4bit` checkpoint): every Linear weight of the model as the
 * pieces Linear4bit._save_to_state_dict writes (packed codes, absmax,
 * quant_map, the nested statistics and the quant-state JSON), everything
 * else in 16 bits, config.json with its quantization_config.
 *
 * With double quantization the JSON holds the mean of the weight's absmax
 * values, so its length, and with it every offset in the safetensors
 * header, is only known once the merged weights have been seen: the
 * format then asks the job for a first pass that computes those means,
 * and plans the shards after it (smelt-bnb4-plan.c). */

typedef enum {
  SMELT_BNB4_DTYPE_AUTO,
  SMELT_BNB4_DTYPE_BF16,
  SMELT_BNB4_DTYPE_FP16,
} SmeltBnb4DTypeOption;

static const GEnumValue dtype_values[] = {
  { SMELT_BNB4_DTYPE_AUTO, "SMELT_BNB4_DTYPE_AUTO", "auto" },
  { SMELT_BNB4_DTYPE_BF16, "SMELT_BNB4_DTYPE_BF16", "bf16" },
  { SMELT_BNB4_DTYPE_FP16, "SMELT_BNB4_DTYPE_FP16", "fp16" },
  { 0, NULL, NULL }
};

static GType
smelt_bnb4_dtype_option_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltBnb4DTypeOption", dtype_values));
  return type;
}

static const GEnumValue quant_type_values[] = {
  { SMELT_BNB4_NF4, "SMELT_BNB4_NF4", "nf4" },
  { SMELT_BNB4_FP4, "SMELT_BNB4_FP4", "fp4" },
  { 0, NULL, NULL }
};

static GType
smelt_bnb4_quant_type_option_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltBnb4QuantTypeOption", quant_type_values));
  return type;
}

/* beside the model: transformers ignores files it does not know */
#define REPORT_FILE "bnb4.report.json"

#define SMELT_TYPE_BNB4_FORMAT (smelt_bnb4_format_get_type ())
G_DECLARE_FINAL_TYPE (SmeltBnb4Format, smelt_bnb4_format, SMELT, BNB4_FORMAT, SmeltFormat)

struct _SmeltBnb4Format
{
  SmeltFormat           parent_instance;

  /* options */
  SmeltBnb4Type         quant_type;
  guint                 blocksize;
  gboolean              double_quant;
  SmeltBnb4DTypeOption  dtype_option;
  char                 *compute_dtype;
  char                **skip_modules;
  char                 *max_shard_size;
  gboolean              report;
  gboolean              scan_cache;

  SmeltBnb4Plan        *plan;
  guint                 next;          /* first plan entry not yet written */
  GBytes               *config;
};

enum {
  PROP_0,
  PROP_QUANT_TYPE,
  PROP_BLOCKSIZE,
  PROP_DOUBLE_QUANT,
  PROP_DTYPE,
  PROP_COMPUTE_DTYPE,
  PROP_SKIP_MODULES,
  PROP_MAX_SHARD_SIZE,
  PROP_REPORT,
  PROP_SCAN_CACHE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltBnb4Format, smelt_bnb4_format, SMELT_TYPE_FORMAT)

static void
smelt_bnb4_format_finalize (GObject *object)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (object);

  g_free (self->compute_dtype);
  g_strfreev (self->skip_modules);
  g_free (self->max_shard_size);
  g_clear_pointer (&self->plan, smelt_bnb4_plan_free);
  g_clear_pointer (&self->config, g_bytes_unref);
  G_OBJECT_CLASS (smelt_bnb4_format_parent_class)->finalize (object);
}

static void
smelt_bnb4_format_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (object);

  switch (prop_id)
    {
    case PROP_QUANT_TYPE:
      g_value_set_enum (value, self->quant_type);
      break;
    case PROP_BLOCKSIZE:
      g_value_set_uint (value, self->blocksize);
      break;
    case PROP_DOUBLE_QUANT:
      g_value_set_boolean (value, self->double_quant);
      break;
    case PROP_DTYPE:
      g_value_set_enum (value, self->dtype_option);
      break;
    case PROP_COMPUTE_DTYPE:
      g_value_set_string (value, self->compute_dtype);
      break;
    case PROP_SKIP_MODULES:
      g_value_set_boxed (value, self->skip_modules);
      break;
    case PROP_MAX_SHARD_SIZE:
      g_value_set_string (value, self->max_shard_size);
      break;
    case PROP_REPORT:
      g_value_set_boolean (value, self->report);
      break;
    case PROP_SCAN_CACHE:
      g_value_set_boolean (value, self->scan_cache);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_bnb4_format_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (object);

  switch (prop_id)
    {
    case PROP_QUANT_TYPE:
      self->quant_type = g_value_get_enum (value);
      break;
    case PROP_BLOCKSIZE:
      self->blocksize = g_value_get_uint (value);
      break;
    case PROP_DOUBLE_QUANT:
      self->double_quant = g_value_get_boolean (value);
      break;
    case PROP_DTYPE:
      self->dtype_option = g_value_get_enum (value);
      break;
    case PROP_COMPUTE_DTYPE:
      g_free (self->compute_dtype);
      self->compute_dtype = g_value_dup_string (value);
      break;
    case PROP_SKIP_MODULES:
      g_strfreev (self->skip_modules);
      self->skip_modules = g_value_dup_boxed (value);
      break;
    case PROP_MAX_SHARD_SIZE:
      g_free (self->max_shard_size);
      self->max_shard_size = g_value_dup_string (value);
      break;
    case PROP_REPORT:
      self->report = g_value_get_boolean (value);
      break;
    case PROP_SCAN_CACHE:
      self->scan_cache = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* ---- options and planning ---------------------------------------------- */

static const char *
compute_dtype_name (SmeltBnb4Format *self,
                    SmeltDType       out_dtype)
{
  if (self->compute_dtype == NULL || *self->compute_dtype == '\0' ||
      g_str_equal (self->compute_dtype, "auto"))
    return smelt_bnb4_torch_dtype_name (out_dtype);
  return self->compute_dtype;
}

static gboolean
smelt_bnb4_format_check_options (SmeltFormat  *format,
                                 GError      **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  static const char * const compute[] = { "auto", "bfloat16", "float16", "float32", NULL };
  guint64 size;

  if (!smelt_bnb4_blocksize_is_valid (self->blocksize))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "BlockSize: %u is not one bitsandbytes uses (32, 64, 128, … 4096)",
                   self->blocksize);
      return FALSE;
    }
  if (self->compute_dtype && *self->compute_dtype &&
      !g_strv_contains (compute, self->compute_dtype))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "ComputeDType: “%s” is not auto, bfloat16, float16 or float32",
                   self->compute_dtype);
      return FALSE;
    }
  if (!smelt_parse_size (self->max_shard_size, &size, error))
    {
      g_prefix_error (error, "MaxShardSize: ");
      return FALSE;
    }
  return TRUE;
}

static SmeltDType
choose_dtype (SmeltBnb4Format *self,
              SmeltSource     *source)
{
  SmeltDType base = smelt_model_get_dtype (smelt_source_get_model (source));

  switch (self->dtype_option)
    {
    case SMELT_BNB4_DTYPE_BF16:
      return SMELT_DTYPE_BF16;
    case SMELT_BNB4_DTYPE_FP16:
      return SMELT_DTYPE_F16;
    case SMELT_BNB4_DTYPE_AUTO:
    default:
      return base == SMELT_DTYPE_F16 ? SMELT_DTYPE_F16 : SMELT_DTYPE_BF16;
    }
}

/* The shards' sizes are known once the plan is final and no quant
 * state's length is still to come. */
static void
add_planned_files (SmeltBnb4Format *self)
{
  smelt_shard_set_plan_files (self->plan->shards, SMELT_FORMAT (self),
                              self->plan->final && !self->plan->deferred);
}

static gboolean
smelt_bnb4_format_plan (SmeltFormat  *format,
                        SmeltSource  *source,
                        GError      **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltModel *model = smelt_source_get_model (source);
  SmeltBnb4Options opt = { 0 };
  guint64 max_size;

  if (!smelt_bnb4_format_check_options (format, error))
    return FALSE;
  smelt_parse_size (self->max_shard_size, &max_size, NULL);
  opt.quant_type = self->quant_type;
  opt.blocksize = self->blocksize;
  opt.nested = self->double_quant;
  opt.dtype = choose_dtype (self, source);
  opt.skip_modules = (const char * const *) self->skip_modules;
  opt.max_shard_size = max_size;
  opt.report = self->report;
  opt.cache = self->scan_cache;
  opt.seekable = smelt_format_get_destination (format) != NULL &&
                 smelt_destination_has_seekable_files (smelt_format_get_destination (format));
  self->plan = smelt_bnb4_plan_new (source, &opt, error);
  if (self->plan == NULL)
    return FALSE;
  if (smelt_format_get_destination (format))
    {
      SmeltDestination *dest = smelt_format_get_destination (format);

      smelt_destination_replace_pattern (dest, "model.safetensors");
      smelt_destination_replace_pattern (dest, "model-*-of-*.safetensors");
      smelt_destination_replace_pattern (dest, "model.safetensors.index.json");
    }
  add_planned_files (self);
  self->config = smelt_bnb4_plan_make_config (self->plan, source,
                                              compute_dtype_name (self, opt.dtype));
  smelt_format_add_planned_file (format, "config.json", g_bytes_get_size (self->config));
  if (smelt_model_get_generation_config (model))
    {
      g_autofree char *p = g_build_filename (smelt_model_get_path (model), "generation_config.json", NULL);
      smelt_format_plan_copy (format, p, "generation_config.json");
    }
  smelt_format_plan_tokenizer_files (format, source);
  if (self->report)
    smelt_format_add_planned_file (format, REPORT_FILE, -1);
  return TRUE;
}

static guint
smelt_bnb4_format_get_n_passes (SmeltFormat *format)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);

  return self->plan && !self->plan->final ? 2 : 1;
}

static gboolean
smelt_bnb4_format_end_pass (SmeltFormat  *format,
                            guint         pass,
                            GError      **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);

  if (!smelt_bnb4_plan_finalize (self->plan, error))
    return FALSE;
  add_planned_files (self);
  return TRUE;
}

/* ---- encoding (worker threads) ----------------------------------------- */

static SmeltRows
smelt_bnb4_format_wants_rows (SmeltFormat *format,
                              SmeltTensor *tensor)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltBnb4Entry *e = smelt_bnb4_plan_lookup (self->plan, tensor);
  gboolean scanning = smelt_format_get_n_passes (format) == 2 && smelt_format_get_pass (format) == 0;

  if (e == NULL)
    return SMELT_ROWS_NONE;
  if (scanning)
    return e->kind == SMELT_BNB4_ENTRY_QUANT ? SMELT_ROWS_F32 : SMELT_ROWS_NONE;
  switch (e->kind)
    {
    case SMELT_BNB4_ENTRY_QUANT:
      /* the scan kept its codes: no need to merge it again */
      return e->spilled ? SMELT_ROWS_NONE : SMELT_ROWS_F32;
    case SMELT_BNB4_ENTRY_STORED:
      return SMELT_ROWS_STORED;
    case SMELT_BNB4_ENTRY_CONVERT:
      return SMELT_ROWS_F32;
    case SMELT_BNB4_ENTRY_COPY:
    default:
      /* written from its stored pieces when the cursor reaches it */
      return SMELT_ROWS_NONE;
    }
}

static guint64
smelt_bnb4_format_row_group (SmeltFormat *format,
                             SmeltTensor *tensor)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltBnb4Entry *e = smelt_bnb4_plan_lookup (self->plan, tensor);

  return e && e->kind == SMELT_BNB4_ENTRY_QUANT ? smelt_bnb4_entry_row_group (e, self->blocksize) : 1;
}

static gboolean
smelt_bnb4_format_encode_rows (SmeltFormat  *format,
                               SmeltTensor  *tensor,
                               guint64       first_row,
                               guint64       n_rows,
                               const float  *rows,
                               GByteArray   *out,
                               GError      **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltBnb4Entry *e = smelt_bnb4_plan_lookup (self->plan, tensor);
  gboolean scanning = !self->plan->final && !smelt_bnb4_plan_scans_fully (self->plan);

  if (e->kind != SMELT_BNB4_ENTRY_QUANT)
    return smelt_bnb4_encode_plain (self->plan, e, first_row, n_rows, rows, out, error);
  return smelt_bnb4_encode_quant (self->plan, e, first_row, n_rows, rows, scanning, out, error);
}

/* ---- writing (the job's thread, in tensor order) ----------------------- */

static gboolean
write_all (SmeltBnb4Format  *self,
           SmeltBnb4Entry   *e,
           const void       *data,
           gsize             len,
           GCancellable     *cancellable,
           GError          **error)
{
  return smelt_shard_set_write (self->plan->shards, SMELT_FORMAT (self), e->shard, data, len,
                                cancellable, error);
}

static gboolean
write_pieces (SmeltBnb4Format  *self,
              SmeltBnb4Entry   *e,
              GPtrArray        *pieces,
              GCancellable     *cancellable,
              GError          **error)
{
  for (guint i = 0; i < pieces->len; i++)
    {
      GBytes *b = g_ptr_array_index (pieces, i);

      if (!write_all (self, e, g_bytes_get_data (b, NULL), g_bytes_get_size (b), cancellable, error))
        return FALSE;
    }
  return TRUE;
}

#define SPILL_CHUNK (4u << 20)

/* Copies [@at, @at + @len) of the scan's temporary file to the shard. */
static gboolean
copy_spill (SmeltBnb4Format  *self,
            SmeltBnb4Entry   *e,
            guint64           at,
            guint64           len,
            GCancellable     *cancellable,
            GError          **error)
{
  g_autofree guint8 *buf = g_malloc (MIN (len, SPILL_CHUNK) + 1);

  for (guint64 done = 0; done < len;)
    {
      gsize n = MIN (len - done, SPILL_CHUNK);

      if (!smelt_bnb4_entry_read_spill (self->plan, e, at + done, buf, n, error) ||
          !write_all (self, e, buf, n, cancellable, error))
        return FALSE;
      done += n;
    }
  return TRUE;
}

/* A 4-bit weight the scan pass quantized: its codes, then its other
 * pieces, all from the temporary file. */
static gboolean
write_spilled (SmeltBnb4Format  *self,
               SmeltBnb4Entry   *e,
               GCancellable     *cancellable,
               GError          **error)
{
  return copy_spill (self, e, e->spill_packed_at, (e->n + 1) / 2, cancellable, error) &&
         copy_spill (self, e, e->spill_tail_at, e->spill_tail_len, cancellable, error);
}

/* Writes the entries before @until that the job does not deliver rows
 * for: untouched 4-bit weights whose stored pieces are copied as they
 * are, and weights the scan pass already quantized. */
static gboolean
advance_to (SmeltBnb4Format  *self,
            guint             until,
            GCancellable     *cancellable,
            GError          **error)
{
  for (; self->next < until; self->next++)
    {
      SmeltBnb4Entry *e = g_ptr_array_index (self->plan->entries, self->next);
      g_autoptr(GPtrArray) pieces = NULL;

      if (e->kind == SMELT_BNB4_ENTRY_QUANT && e->spilled)
        {
          if (!write_spilled (self, e, cancellable, error))
            return FALSE;
          continue;
        }
      if (e->kind != SMELT_BNB4_ENTRY_COPY)
        continue;
      pieces = smelt_bnb4_entry_copy_pieces (e);
      if (!write_pieces (self, e, pieces, cancellable, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
smelt_bnb4_format_write_rows (SmeltFormat   *format,
                              SmeltTensor   *tensor,
                              guint64        first_row,
                              guint64        n_rows,
                              GBytes        *data,
                              GCancellable  *cancellable,
                              GError       **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltBnb4Entry *e = smelt_bnb4_plan_lookup (self->plan, tensor);
  g_autoptr(GPtrArray) pieces = NULL;
  gsize len;
  const guint8 *bytes = g_bytes_get_data (data, &len);

  if (!self->plan->final)
    return smelt_bnb4_entry_scan (self->plan, e, data, error);
  if (!advance_to (self, e->index, cancellable, error))
    return FALSE;
  if (e->kind != SMELT_BNB4_ENTRY_QUANT)
    {
      self->next = e->index + (first_row + n_rows >= smelt_tensor_get_n_rows (tensor));
      return write_all (self, e, bytes, len, cancellable, error);
    }
  pieces = smelt_bnb4_entry_take_rows (self->plan, e, data, error);
  if (pieces == NULL || !write_pieces (self, e, pieces, cancellable, error))
    return FALSE;
  if (e->rows_done >= smelt_tensor_get_n_rows (tensor))
    {
      g_autoptr(GPtrArray) tail = smelt_bnb4_entry_finish (self->plan, e, error);

      if (tail == NULL || !write_pieces (self, e, tail, cancellable, error))
        return FALSE;
      self->next = e->index + 1;
    }
  return TRUE;
}

static gboolean
smelt_bnb4_format_finish (SmeltFormat   *format,
                          GCancellable  *cancellable,
                          GError       **error)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);
  SmeltSource *source = smelt_format_get_source (format);
  SmeltModel *model = smelt_source_get_model (source);

  if (!advance_to (self, self->plan->entries->len, cancellable, error) ||
      !smelt_shard_set_finish (self->plan->shards, format, cancellable, error))
    return FALSE;
  if (self->plan->deferred)
    smelt_shard_set_plan_files (self->plan->shards, format, TRUE);
  if (!smelt_format_write_file (format, "config.json", self->config, cancellable, error))
    return FALSE;
  if (smelt_model_get_generation_config (model))
    {
      g_autofree char *p = g_build_filename (smelt_model_get_path (model), "generation_config.json", NULL);

      if (!smelt_format_copy_file (format, p, "generation_config.json", cancellable, error))
        return FALSE;
    }
  if (self->report)
    {
      g_autoptr(GBytes) report = smelt_bnb4_plan_make_report (self->plan);

      if (!smelt_format_write_file (format, REPORT_FILE, report, cancellable, error))
        return FALSE;
    }
  return smelt_format_copy_tokenizer_files (format, cancellable, error);
}

static char *
smelt_bnb4_format_get_summary (SmeltFormat *format)
{
  SmeltBnb4Format *self = SMELT_BNB4_FORMAT (format);

  return smelt_bnb4_plan_summary (self->plan);
}

static void
smelt_bnb4_format_class_init (SmeltBnb4FormatClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_bnb4_format_finalize;
  object_class->get_property = smelt_bnb4_format_get_property;
  object_class->set_property = smelt_bnb4_format_set_property;
  format_class->plan = smelt_bnb4_format_plan;
  format_class->check_options = smelt_bnb4_format_check_options;
  format_class->wants_rows = smelt_bnb4_format_wants_rows;
  format_class->row_group = smelt_bnb4_format_row_group;
  format_class->encode_rows = smelt_bnb4_format_encode_rows;
  format_class->write_rows = smelt_bnb4_format_write_rows;
  format_class->finish = smelt_bnb4_format_finish;
  format_class->get_n_passes = smelt_bnb4_format_get_n_passes;
  format_class->end_pass = smelt_bnb4_format_end_pass;
  format_class->get_summary = smelt_bnb4_format_get_summary;

  properties[PROP_QUANT_TYPE] =
    g_param_spec_enum ("quant-type", "QuantType",
                       "nf4 (NormalFloat4, QLoRA's) or fp4",
                       smelt_bnb4_quant_type_option_get_type (), SMELT_BNB4_NF4,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_BLOCKSIZE] =
    g_param_spec_uint ("block-size", "BlockSize",
                       "Elements per absmax block: 32, 64, 128, … 4096",
                       32, 4096, 64, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_DOUBLE_QUANT] =
    g_param_spec_boolean ("double-quant", "DoubleQuant",
                          "Quantize the absmax values too (bnb_4bit_use_double_quant)",
                          TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType",
                       "The 16-bit type of the weights before quantization and of every "
                       "other tensor: bf16, fp16, or auto (the base's; bf16 for float32)",
                       smelt_bnb4_dtype_option_get_type (), SMELT_BNB4_DTYPE_AUTO,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_COMPUTE_DTYPE] =
    g_param_spec_string ("compute-dtype", "ComputeDType",
                         "bnb_4bit_compute_dtype: auto (the weights' 16-bit type), "
                         "bfloat16, float16 or float32",
                         "auto", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_SKIP_MODULES] =
    g_param_spec_boxed ("skip-modules", "SkipModules",
                        "Linear modules kept in 16 bits besides lm_head (a name or a "
                        "module path, e.g. mlp.down_proj or model.layers.0.mlp)",
                        G_TYPE_STRV, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_MAX_SHARD_SIZE] =
    g_param_spec_string ("max-shard-size", "MaxShardSize",
                         "Largest shard, e.g. 5GB, 500MB, 2GiB (decimal units as transformers)",
                         "5GB", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_SCAN_CACHE] =
    g_param_spec_boolean ("scan-cache", "ScanCache",
                          "With double quantization to a destination that cannot rewrite a "
                          "file's start (hf-hub), keep the first pass's codes in a temporary "
                          "file (about 0.56 bytes per weight) instead of reading and merging "
                          "the weights again",
                          TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_REPORT] =
    g_param_spec_boolean ("report", "Report",
                          "Measure each weight's quantization error and how much of the "
                          "adapters' change survives; writes " REPORT_FILE " and a summary",
                          TRUE, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_bnb4_format_init (SmeltBnb4Format *self)
{
  self->quant_type = SMELT_BNB4_NF4;
  self->blocksize = 64;
  self->double_quant = TRUE;
  self->compute_dtype = g_strdup ("auto");
  self->max_shard_size = g_strdup ("5GB");
  self->report = TRUE;
  self->scan_cache = TRUE;
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "bnb4", SMELT_TYPE_BNB4_FORMAT, error);
}

SMELT_PLUGIN_DEFINE ("bnb4", "bitsandbytes 4-bit (NF4/FP4) safetensors, loadable by transformers",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
