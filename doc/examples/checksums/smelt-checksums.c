/* smelt-checksums.c: an out-of-tree smelt format plugin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The "checksums" format writes the SHA-256 of every tensor of the merged
 * model, as the bytes a 16-bit (or float32) safetensors file would hold:
 * little-endian, row-major, in the type DType names. Two exports, two
 * machines or two versions of a fine-tune can then be compared tensor by
 * tensor without keeping or moving the weights:
 *
 *   tensors.sha256       "HASH  NAME" lines, one per tensor (diff-able)
 *   tensors.sha256.json  the same with each tensor's type and shape
 *
 * With the default DType=auto the sums equal those of the tensors in a
 * merged16 export of the same recipe. doc/writing-plugins.md walks
 * through this file.
 */
#include <string.h>

#include <smelt/smelt.h>

/* --- the DType option: a GEnum, so recipes get its nicks as values --- */

typedef enum {
  CHECKSUMS_DTYPE_AUTO,
  CHECKSUMS_DTYPE_BF16,
  CHECKSUMS_DTYPE_FP16,
  CHECKSUMS_DTYPE_F32,
} ChecksumsDType;

static const GEnumValue dtype_values[] = {
  { CHECKSUMS_DTYPE_AUTO, "CHECKSUMS_DTYPE_AUTO", "auto" },
  { CHECKSUMS_DTYPE_BF16, "CHECKSUMS_DTYPE_BF16", "bf16" },
  { CHECKSUMS_DTYPE_FP16, "CHECKSUMS_DTYPE_FP16", "fp16" },
  { CHECKSUMS_DTYPE_F32, "CHECKSUMS_DTYPE_F32", "f32" },
  { 0, NULL, NULL }
};

static GType
checksums_dtype_get_type (void)
{
  static gsize type;

  if (g_once_init_enter (&type))
    g_once_init_leave (&type, g_enum_register_static ("SmeltChecksumsDType", dtype_values));
  return type;
}

/* --- the format class --- */

#define SMELT_TYPE_CHECKSUMS (smelt_checksums_get_type ())
G_DECLARE_FINAL_TYPE (SmeltChecksums, smelt_checksums, SMELT, CHECKSUMS, SmeltFormat)

struct _SmeltChecksums
{
  SmeltFormat     parent_instance;

  /* options (recipe keys) */
  ChecksumsDType  dtype_option;
  char           *file_name;

  /* chosen in plan() */
  SmeltDType      out_dtype;
  char           *text_path;
  char           *json_path;

  /* filled on the job's thread by write_rows(), in tensor order */
  GChecksum      *current;      /* the sum of the tensor being written */
  SmeltTensor    *current_tensor;
  GHashTable     *sums;         /* tensor name -> hex digest */
};

enum {
  PROP_0,
  PROP_DTYPE,
  PROP_FILE_NAME,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SmeltChecksums, smelt_checksums, SMELT_TYPE_FORMAT)

static void
smelt_checksums_finalize (GObject *object)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (object);

  g_free (self->file_name);
  g_free (self->text_path);
  g_free (self->json_path);
  g_clear_pointer (&self->current, g_checksum_free);
  g_clear_pointer (&self->sums, g_hash_table_unref);
  G_OBJECT_CLASS (smelt_checksums_parent_class)->finalize (object);
}

static void
smelt_checksums_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      g_value_set_enum (value, self->dtype_option);
      break;
    case PROP_FILE_NAME:
      g_value_set_string (value, self->file_name);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_checksums_set_property (GObject      *object,
                              guint         prop_id,
                              const GValue *value,
                              GParamSpec   *pspec)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (object);

  switch (prop_id)
    {
    case PROP_DTYPE:
      self->dtype_option = g_value_get_enum (value);
      break;
    case PROP_FILE_NAME:
      g_free (self->file_name);
      self->file_name = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* Runs before any model is opened (`smelt validate` too): a file name
 * that would leave the destination is refused here, with the key's name. */
static gboolean
smelt_checksums_check_options (SmeltFormat  *format,
                               GError      **error)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);

  if (self->file_name == NULL || *self->file_name == '\0' ||
      strchr (self->file_name, '/') != NULL || g_str_equal (self->file_name, "..") ||
      g_str_equal (self->file_name, "."))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "FileName=%s: expected a plain file name",
                   self->file_name ? self->file_name : "");
      return FALSE;
    }
  return TRUE;
}

static gboolean
is_float (SmeltDType d)
{
  return d == SMELT_DTYPE_F32 || d == SMELT_DTYPE_F16 || d == SMELT_DTYPE_BF16;
}

/* auto: what merged16 writes by default, so the sums can be compared */
static SmeltDType
choose_dtype (SmeltChecksums *self,
              SmeltSource    *source)
{
  SmeltDType base = smelt_model_get_dtype (smelt_source_get_model (source));

  switch (self->dtype_option)
    {
    case CHECKSUMS_DTYPE_BF16:
      return SMELT_DTYPE_BF16;
    case CHECKSUMS_DTYPE_FP16:
      return SMELT_DTYPE_F16;
    case CHECKSUMS_DTYPE_F32:
      return SMELT_DTYPE_F32;
    case CHECKSUMS_DTYPE_AUTO:
    default:
      return base == SMELT_DTYPE_F16 ? SMELT_DTYPE_F16 : SMELT_DTYPE_BF16;
    }
}

/* The type a tensor is hashed in: float tensors in the chosen type, others
 * (integer buffers) as they are stored. */
static SmeltDType
hashed_dtype (SmeltChecksums *self,
              SmeltTensor    *tensor)
{
  SmeltDType d = smelt_tensor_get_dtype (tensor);

  return is_float (d) ? self->out_dtype : d;
}

/* Everything is decided before data flows: the files and (where known)
 * their sizes. The sizes of these two files depend only on names and
 * shapes, but -1 ("known once written") keeps the example short. */
static gboolean
smelt_checksums_plan (SmeltFormat  *format,
                      SmeltSource  *source,
                      GError      **error)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);

  self->out_dtype = choose_dtype (self, source);
  self->text_path = g_strdup (self->file_name);
  self->json_path = g_strconcat (self->file_name, ".json", NULL);
  smelt_format_add_planned_file (format, self->text_path, -1);
  smelt_format_add_planned_file (format, self->json_path, -1);
  return TRUE;
}

/* F32 rows are merged rows (W + s·B·A) that encode_rows() converts; STORED
 * rows are the file's own bytes, for tensors already in the hashed type
 * that no adapter touches (smelt then skips converting them). */
static SmeltRows
smelt_checksums_wants_rows (SmeltFormat *format,
                            SmeltTensor *tensor)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);
  SmeltDType d = smelt_tensor_get_dtype (tensor);
  g_autoptr(GBytes) stored = NULL;

  if (!is_float (d))
    return SMELT_ROWS_STORED;
  if (d == self->out_dtype && (stored = smelt_tensor_get_bytes (tensor)) != NULL)
    return SMELT_ROWS_STORED;
  return SMELT_ROWS_F32;
}

/* Worker threads call this concurrently: it only reads the format. */
static gboolean
smelt_checksums_encode_rows (SmeltFormat  *format,
                             SmeltTensor  *tensor,
                             guint64       first_row,
                             guint64       n_rows,
                             const float  *rows,
                             GByteArray   *out,
                             GError      **error)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);
  guint64 row_len = smelt_tensor_get_row_length (tensor);
  gsize n = n_rows * row_len;
  guint old_len = out->len;

  /* hashing an inf that a real export would refuse would be a lie */
  if (!smelt_check_rows_fit (smelt_tensor_get_name (tensor), rows, n, row_len,
                             first_row, self->out_dtype, error))
    return FALSE;
  g_byte_array_set_size (out, old_len + n * (smelt_dtype_get_bits (self->out_dtype) / 8));
  smelt_convert (SMELT_DTYPE_F32, rows, self->out_dtype, out->data + old_len, n, NULL);
  return TRUE;
}

static void
close_current (SmeltChecksums *self)
{
  if (self->current == NULL)
    return;
  g_hash_table_replace (self->sums, g_strdup (smelt_tensor_get_name (self->current_tensor)),
                        g_strdup (g_checksum_get_string (self->current)));
  g_clear_pointer (&self->current, g_checksum_free);
  self->current_tensor = NULL;
}

/* The job's thread calls this in tensor order, rows in increasing order,
 * so one running checksum is enough. */
static gboolean
smelt_checksums_write_rows (SmeltFormat   *format,
                            SmeltTensor   *tensor,
                            guint64        first_row,
                            guint64        n_rows,
                            GBytes        *data,
                            GCancellable  *cancellable,
                            GError       **error)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);
  gsize len;
  const guint8 *bytes = g_bytes_get_data (data, &len);

  if (tensor != self->current_tensor)
    {
      close_current (self);
      self->current = g_checksum_new (G_CHECKSUM_SHA256);
      self->current_tensor = tensor;
    }
  g_checksum_update (self->current, bytes, len);
  return TRUE;
}

/* A tensor without elements never reaches write_rows(): its sum is that
 * of no bytes. */
static const char *
sum_of (SmeltChecksums *self,
        SmeltTensor    *tensor,
        GChecksum      *empty)
{
  const char *sum = g_hash_table_lookup (self->sums, smelt_tensor_get_name (tensor));

  return sum ? sum : g_checksum_get_string (empty);
}

static GBytes *
make_text (SmeltChecksums *self,
           SmeltSource    *source,
           GChecksum      *empty)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    {
      SmeltTensor *t = smelt_source_get_tensor (source, i);

      g_string_append_printf (s, "%s  %s\n", sum_of (self, t, empty), smelt_tensor_get_name (t));
    }
  return g_string_free_to_bytes (s);
}

static JsonNode *
tensor_node (SmeltChecksums *self,
             SmeltTensor    *t,
             GChecksum      *empty)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (t, &n_dims);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, smelt_tensor_get_name (t));
  json_builder_set_member_name (b, "dtype");
  json_builder_add_string_value (b, smelt_dtype_to_string (hashed_dtype (self, t)));
  json_builder_set_member_name (b, "shape");
  json_builder_begin_array (b);
  for (guint d = 0; d < n_dims; d++)
    json_builder_add_int_value (b, (gint64) shape[d]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "sha256");
  json_builder_add_string_value (b, sum_of (self, t, empty));
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static GBytes *
make_json (SmeltChecksums *self,
           SmeltSource    *source,
           GChecksum      *empty)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "smelt-tensor-checksums/1");
  json_builder_set_member_name (b, "dtype");
  json_builder_add_string_value (b, smelt_dtype_to_string (self->out_dtype));
  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    json_builder_add_value (b, tensor_node (self, smelt_source_get_tensor (source, i), empty));
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  /* indented, keys in the order written, ending in a newline */
  text = smelt_json_to_string (root, TRUE, FALSE);
  return g_bytes_new_take (g_strconcat (text, "\n", NULL), strlen (text) + 1);
}

/* After the last row: write both files through the destination, which
 * makes them appear under their names only when the whole job succeeds. */
static gboolean
smelt_checksums_finish (SmeltFormat   *format,
                        GCancellable  *cancellable,
                        GError       **error)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);
  SmeltSource *source = smelt_format_get_source (format);
  g_autoptr(GChecksum) empty = g_checksum_new (G_CHECKSUM_SHA256);
  g_autoptr(GBytes) text = NULL;
  g_autoptr(GBytes) json = NULL;

  close_current (self);
  text = make_text (self, source, empty);
  json = make_json (self, source, empty);
  return smelt_format_write_file (format, self->text_path, text, cancellable, error) &&
         smelt_format_write_file (format, self->json_path, json, cancellable, error);
}

static char *
smelt_checksums_get_summary (SmeltFormat *format)
{
  SmeltChecksums *self = SMELT_CHECKSUMS (format);

  return g_strdup_printf ("%u tensor checksums (SHA-256 of %s bytes) in %s\n",
                          g_hash_table_size (self->sums),
                          smelt_dtype_to_string (self->out_dtype), self->text_path);
}

static void
smelt_checksums_class_init (SmeltChecksumsClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_checksums_finalize;
  object_class->get_property = smelt_checksums_get_property;
  object_class->set_property = smelt_checksums_set_property;
  format_class->check_options = smelt_checksums_check_options;
  format_class->plan = smelt_checksums_plan;
  format_class->wants_rows = smelt_checksums_wants_rows;
  format_class->encode_rows = smelt_checksums_encode_rows;
  format_class->write_rows = smelt_checksums_write_rows;
  format_class->finish = smelt_checksums_finish;
  format_class->get_summary = smelt_checksums_get_summary;

  /* the nick is the recipe key, the blurb is what `smelt plugins` shows */
  properties[PROP_DTYPE] =
    g_param_spec_enum ("dtype", "DType",
                       "The type float tensors are hashed in: auto (what merged16 writes: the base's 16-bit type), bf16, fp16 or f32",
                       checksums_dtype_get_type (), CHECKSUMS_DTYPE_AUTO,
                       G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_FILE_NAME] =
    g_param_spec_string ("file-name", "FileName",
                         "The sums file; NAME.json holds the same with types and shapes",
                         "tensors.sha256", G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_checksums_init (SmeltChecksums *self)
{
  self->file_name = g_strdup ("tensors.sha256");
  self->sums = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

/* --- the plugin entry point --- */

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "checksums", SMELT_TYPE_CHECKSUMS, error);
}

SMELT_PLUGIN_DEFINE ("checksums", "SHA-256 of every tensor of the merged model",
                     plugin_init, "1.0.0", "LGPL-2.1-or-later",
                     "smelt's doc/examples/checksums")
