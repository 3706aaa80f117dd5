/* smelt-format.c: base class of format plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>

#include "smelt-private.h"

/**
 * SmeltFormat:
 * @parent_instance: the parent instance
 *
 * A way of writing the merged model. A job calls, in order:
 * plan() once; then for each tensor of the source, in order, for each row
 * block: encode_rows() on a worker thread (for %SMELT_ROWS_F32) and
 * write_rows() on the job's thread, in row order; finally finish().
 *
 * "The job's thread", in the descriptions of the virtual methods
 * (#SmeltFormatClass), is the thread that runs smelt_export_job_prepare()
 * and smelt_export_job_run(), or the one smelt_export_job_run_async()
 * starts; only encode_rows() runs on other threads.
 *
 * Options are GObject properties; the property's nick is its recipe key
 * (e.g. a property "max-shard-size" with nick "MaxShardSize").
 */

typedef struct {
  char             *name;
  SmeltSource      *source;
  SmeltDestination *destination;
  GPtrArray        *planned;
  guint             pass;      /* SMELT_FORMAT_PASS_IDLE: sits this pass out */
  GPtrArray        *siblings;  /* the job's formats (not owned), or NULL */
} SmeltFormatPrivate;

enum {
  PROP_0,
  PROP_NAME,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (SmeltFormat, smelt_format, G_TYPE_OBJECT)

G_DEFINE_BOXED_TYPE (SmeltPlannedFile, smelt_planned_file, smelt_planned_file_copy, smelt_planned_file_free)

/**
 * smelt_planned_file_copy:
 * @file: a #SmeltPlannedFile
 *
 * Copies @file.
 *
 * Returns: (transfer full): a copy
 */
SmeltPlannedFile *
smelt_planned_file_copy (const SmeltPlannedFile *file)
{
  SmeltPlannedFile *copy = g_new (SmeltPlannedFile, 1);

  copy->path = g_strdup (file->path);
  copy->size = file->size;
  return copy;
}

/**
 * smelt_planned_file_free:
 * @file: a #SmeltPlannedFile
 *
 * Frees @file.
 */
void
smelt_planned_file_free (SmeltPlannedFile *file)
{
  if (file == NULL)
    return;
  g_free (file->path);
  g_free (file);
}

static void
smelt_format_finalize (GObject *object)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (SMELT_FORMAT (object));

  g_free (priv->name);
  g_clear_object (&priv->source);
  g_clear_object (&priv->destination);
  g_ptr_array_unref (priv->planned);
  G_OBJECT_CLASS (smelt_format_parent_class)->finalize (object);
}

static void
smelt_format_get_property (GObject    *object,
                           guint       prop_id,
                           GValue     *value,
                           GParamSpec *pspec)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (SMELT_FORMAT (object));

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, priv->name);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_format_set_property (GObject      *object,
                           guint         prop_id,
                           const GValue *value,
                           GParamSpec   *pspec)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (SMELT_FORMAT (object));

  switch (prop_id)
    {
    case PROP_NAME:
      g_free (priv->name);
      priv->name = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

/* ---- virtual methods ----
 *
 * A virtual method that a public function of the same name calls (plan()
 * and smelt_format_plan(), and so on) is documented on that function:
 * when their signatures match, g-ir-scanner gives the <virtual-method>
 * the function's text, in place of the text of a `SmeltFormatClass::name`
 * block, so the reference shows one text on both pages. Write there what
 * an implementation must do. The two below have no such function.
 */

/**
 * SmeltFormatClass::accepts_source:
 * @self: a #SmeltFormat
 * @source: the merged model the job is about to export
 * @error: return location for a #GError
 *
 * Says whether the format can write from @source at all.
 *
 * smelt_format_plan() calls this on the job's thread just before plan(),
 * with @source already set (smelt_format_get_source()) and nothing
 * planned yet. A refusal fails smelt_export_job_prepare() before anything
 * is planned or written; the job puts the export's name before the
 * message.
 *
 * The default implementation refuses a source whose model is a GGUF file
 * (smelt_model_get_gguf() is not %NULL) with
 * %SMELT_FORMAT_ERROR_UNSUPPORTED: such a model has llama.cpp's tensor
 * names and no Hugging Face configuration. Formats that read GGUF
 * metadata (gguf-quant, ollama-modelfile) override it. An override
 * replaces that check; chain up to keep it.
 *
 * Returns: %TRUE if the format can write from @source; %FALSE with
 *   @error set, saying why, if not
 */

/**
 * SmeltFormatClass::row_group:
 * @self: a #SmeltFormat
 * @tensor: a tensor the format wants as %SMELT_ROWS_F32 in this pass
 *
 * Says how many consecutive rows of @tensor must reach encode_rows()
 * together, for a format that reorders rows inside groups (gguf-quant
 * permutes the rows of each attention head of the Q and K projections).
 *
 * The job calls this through smelt_format_get_row_group(), on its thread,
 * in each pass before it cuts @tensor into blocks, and only when the
 * format wants the tensor's rows as float32. When several exports do, it
 * takes the least common multiple of their groups: every block given to
 * write_rows() and every slice given to encode_rows() then starts at a
 * multiple of it and holds whole groups, except at the end of a tensor
 * whose number of rows (smelt_tensor_get_n_rows()) is not a multiple.
 *
 * Optional: without it, or when it returns 0, the group is 1 row.
 *
 * Returns: the group size in rows
 */

static SmeltRows
smelt_format_real_wants_rows (SmeltFormat *self,
                              SmeltTensor *tensor)
{
  return SMELT_ROWS_NONE;
}

static gboolean
smelt_format_real_finish (SmeltFormat  *self,
                          GCancellable *cancellable,
                          GError      **error)
{
  return TRUE;
}

/* A GGUF model has llama.cpp's names and an empty configuration: a
 * format that does not ask for it would write nonsense from it. */
static gboolean
smelt_format_real_accepts_source (SmeltFormat  *self,
                                  SmeltSource  *source,
                                  GError      **error)
{
  SmeltModel *model = smelt_source_get_model (source);

  if (smelt_model_get_gguf (model) == NULL)
    return TRUE;
  g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
               "%s is a GGUF file; this format needs the Hugging Face model "
               "directory (only gguf-quant reads GGUF models)",
               smelt_model_get_path (model));
  return FALSE;
}

static void
smelt_format_class_init (SmeltFormatClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = smelt_format_finalize;
  object_class->get_property = smelt_format_get_property;
  object_class->set_property = smelt_format_set_property;
  klass->wants_rows = smelt_format_real_wants_rows;
  klass->finish = smelt_format_real_finish;
  klass->accepts_source = smelt_format_real_accepts_source;

  /**
   * SmeltFormat:name:
   *
   * The export's name in the recipe (`[Export NAME]`).
   */
  properties[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                               G_PARAM_READWRITE | G_PARAM_CONSTRUCT |
                                               G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_format_init (SmeltFormat *self)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (self);

  priv->planned = g_ptr_array_new_with_free_func ((GDestroyNotify) smelt_planned_file_free);
}

/**
 * smelt_format_plan:
 * @self: a #SmeltFormat
 * @source: the merged model
 * @error: return location for a #GError
 *
 * Plans every file of the export from shapes and types, before any data
 * is read.
 *
 * A #SmeltExportJob calls this from smelt_export_job_prepare(), on the
 * job's thread, for each export in the recipe's order, once every
 * destination is prepared. It keeps @source (smelt_format_get_source()),
 * drops any earlier plan and asks accepts_source() first; the format's
 * destination is set (smelt_format_get_destination()).
 *
 * Every format implements plan(). It records each file it will write with
 * smelt_format_add_planned_file() (its size, or -1 when only writing will
 * tell), and whatever else the layout needs: shard boundaries, headers,
 * smelt_format_plan_tokenizer_files(), smelt_destination_replace_pattern().
 * It writes nothing: `smelt run --dry-run` prints the plan and stops
 * here. Other exports may not be planned yet; refer to them in link().
 * A model the format cannot represent is an error
 * (%SMELT_FORMAT_ERROR_UNSUPPORTED, naming the tensor or setting); the
 * job puts the export's name before the message.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_format_plan (SmeltFormat  *self,
                   SmeltSource  *source,
                   GError      **error)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  g_return_val_if_fail (SMELT_IS_SOURCE (source), FALSE);
  priv = smelt_format_get_instance_private (self);
  g_set_object (&priv->source, source);
  g_ptr_array_set_size (priv->planned, 0);
  if (!SMELT_FORMAT_GET_CLASS (self)->accepts_source (self, source, error))
    return FALSE;
  return SMELT_FORMAT_GET_CLASS (self)->plan (self, source, error);
}

/**
 * smelt_format_wants_rows:
 * @self: a #SmeltFormat
 * @tensor: a tensor of the source
 *
 * Gets what the format needs of @tensor.
 *
 * The job asks on its thread for every tensor of the source, in
 * smelt_source_get_tensor() order: in smelt_export_job_prepare(), to
 * count the bytes progress covers, and again before it streams the
 * tensor, in each pass; the answer for a tensor must be the same both
 * times. In a pass the format sits out (see smelt_format_get_n_passes())
 * the job does not ask and takes %SMELT_ROWS_NONE.
 *
 * %SMELT_ROWS_F32 sends the tensor's merged rows through encode_rows() to
 * write_rows(); %SMELT_ROWS_STORED sends its stored bytes straight to
 * write_rows(), and when smelt_tensor_get_bytes() is %NULL (a computed
 * tensor) the job sends float32 rows through encode_rows() instead;
 * %SMELT_ROWS_NONE sends nothing. The default implementation
 * wants nothing.
 *
 * Returns: what the format needs of @tensor
 */
SmeltRows
smelt_format_wants_rows (SmeltFormat *self,
                         SmeltTensor *tensor)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), SMELT_ROWS_NONE);
  priv = smelt_format_get_instance_private (self);
  if (priv->pass == _SMELT_FORMAT_PASS_IDLE)
    return SMELT_ROWS_NONE;
  return SMELT_FORMAT_GET_CLASS (self)->wants_rows (self, tensor);
}

/**
 * smelt_format_encode_rows:
 * @self: a #SmeltFormat
 * @tensor: the tensor
 * @first_row: index of the first row, from the start of the tensor
 * @n_rows: number of rows
 * @rows: (type gpointer) (not nullable): @n_rows rows of float32 values
 * @out: where to append the encoded bytes
 * @error: return location for a #GError
 *
 * Encodes float32 rows into the bytes the file holds; called from worker
 * threads.
 *
 * The job calls this for the tensors the format wants as
 * %SMELT_ROWS_F32 (see smelt_format_wants_rows()), on worker threads,
 * several at once: an implementation must only read the format's state.
 * A block of rows is encoded in one or more calls, consecutive slices in
 * row order on one thread, all appending to the same @out, and
 * write_rows() then receives everything appended for the block. Slices
 * start at multiples of the row group (see smelt_format_get_row_group()).
 *
 * @rows holds @n_rows × smelt_tensor_get_row_length() values, merged
 * (every adapter of the recipe applied); it belongs to the job and is
 * valid during the call only. Append the encoded bytes to @out, which
 * may already hold the block's earlier slices, and write nothing to the
 * destination here. A value the file cannot hold is an error
 * (%SMELT_FORMAT_ERROR_OVERFLOW, naming the tensor and row; see
 * smelt_check_rows_fit()), never a silent infinity; the job puts the
 * export's name before the message and fails.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_format_encode_rows (SmeltFormat  *self,
                          SmeltTensor  *tensor,
                          guint64       first_row,
                          guint64       n_rows,
                          const float  *rows,
                          GByteArray   *out,
                          GError      **error)
{
  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  return SMELT_FORMAT_GET_CLASS (self)->encode_rows (self, tensor, first_row, n_rows, rows, out, error);
}

/**
 * smelt_format_write_rows:
 * @self: a #SmeltFormat
 * @tensor: the tensor
 * @first_row: index of the first row
 * @n_rows: number of rows
 * @data: the encoded (or stored) bytes of the block
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Writes a block, in order.
 *
 * The job calls this on its thread for every block of every tensor the
 * format wants, in smelt_source_get_tensor() order and row order; the
 * blocks of a tensor cover each row once. @data holds what encode_rows()
 * appended for the block (%SMELT_ROWS_F32), or the block's rows of
 * smelt_tensor_get_bytes() as stored (%SMELT_ROWS_STORED).
 *
 * The format writes @data to its files (smelt_format_create_file()) or,
 * like a checksum, only reads it; in a pass before its last (see
 * smelt_format_get_n_passes()) it creates no file. Keep no reference to
 * the bytes once this returns: their buffer goes back to the job for
 * later blocks, which keeps memory bounded. Pass @cancellable on to
 * stream calls. An error fails the job, with the export's name before
 * the message, and the destinations remove what was written.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_format_write_rows (SmeltFormat  *self,
                         SmeltTensor  *tensor,
                         guint64       first_row,
                         guint64       n_rows,
                         GBytes       *data,
                         GCancellable *cancellable,
                         GError      **error)
{
  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  return SMELT_FORMAT_GET_CLASS (self)->write_rows (self, tensor, first_row, n_rows, data, cancellable, error);
}

/**
 * smelt_format_finish:
 * @self: a #SmeltFormat
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Writes what remains once all tensors are written.
 *
 * The job calls this on its thread after the last block of its last pass
 * went through write_rows(), for each export in the recipe's order,
 * checking @cancellable before each; destinations commit only once every
 * export has finished. The format writes what streaming could not:
 * indexes, configuration files, copies of the model's files
 * (smelt_format_copy_tokenizer_files()). The default implementation
 * writes nothing. An error fails the job, with the export's name before
 * the message, and nothing is committed.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_format_finish (SmeltFormat  *self,
                     GCancellable *cancellable,
                     GError      **error)
{
  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  return SMELT_FORMAT_GET_CLASS (self)->finish (self, cancellable, error);
}

/**
 * smelt_format_get_name:
 * @self: a #SmeltFormat
 *
 * Gets the export's name in the recipe.
 *
 * Returns: (nullable): the export's name in the recipe
 */
const char *
smelt_format_get_name (SmeltFormat *self)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  priv = smelt_format_get_instance_private (self);
  return priv->name;
}

/**
 * smelt_format_get_source:
 * @self: a #SmeltFormat
 *
 * Gets the source being exported, once planned.
 *
 * Returns: (transfer none) (nullable): the source being exported, once planned
 */
SmeltSource *
smelt_format_get_source (SmeltFormat *self)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  priv = smelt_format_get_instance_private (self);
  return priv->source;
}

/**
 * smelt_format_get_destination:
 * @self: a #SmeltFormat
 *
 * Gets where the files go.
 *
 * Returns: (transfer none) (nullable): where the files go
 */
SmeltDestination *
smelt_format_get_destination (SmeltFormat *self)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  priv = smelt_format_get_instance_private (self);
  return priv->destination;
}

/**
 * smelt_format_set_destination:
 * @self: a #SmeltFormat
 * @destination: where the files go
 *
 * Sets the destination. The job does this from the recipe.
 */
void
smelt_format_set_destination (SmeltFormat      *self,
                              SmeltDestination *destination)
{
  SmeltFormatPrivate *priv;

  g_return_if_fail (SMELT_IS_FORMAT (self));
  priv = smelt_format_get_instance_private (self);
  if (priv->destination == destination)
    return;
  if (priv->destination)
    _smelt_destination_remove_format (priv->destination, self);
  g_set_object (&priv->destination, destination);
  if (destination)
    _smelt_destination_add_format (destination, self);
}

/**
 * smelt_format_add_planned_file:
 * @self: a #SmeltFormat
 * @path: path relative to the destination
 * @size: size in bytes, or -1 if not known before writing
 *
 * Records a file the export will write; call from plan() (or from
 * end_pass(), for sizes a scan pass found). A path given again updates
 * its size.
 */
void
smelt_format_add_planned_file (SmeltFormat *self,
                               const char  *path,
                               gint64       size)
{
  SmeltFormatPrivate *priv;
  SmeltPlannedFile file = { (char *) path, size };

  g_return_if_fail (SMELT_IS_FORMAT (self));
  priv = smelt_format_get_instance_private (self);
  /* a format that learns a size late (after a scan pass) sets it again */
  for (guint i = 0; i < priv->planned->len; i++)
    {
      SmeltPlannedFile *p = g_ptr_array_index (priv->planned, i);

      if (g_str_equal (p->path, path))
        {
          p->size = size;
          return;
        }
    }
  g_ptr_array_add (priv->planned, smelt_planned_file_copy (&file));
}

/**
 * smelt_format_get_planned_files:
 * @self: a #SmeltFormat
 *
 * Gets the planned files.
 *
 * Returns: (transfer none) (element-type SmeltPlannedFile): the planned files
 */
GPtrArray *
smelt_format_get_planned_files (SmeltFormat *self)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  priv = smelt_format_get_instance_private (self);
  return priv->planned;
}

/**
 * smelt_format_create_file:
 * @self: a #SmeltFormat
 * @path: path relative to the destination
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Creates a file in the export's destination.
 *
 * Returns: (transfer full): a stream, or %NULL with @error set
 */
GOutputStream *
smelt_format_create_file (SmeltFormat  *self,
                          const char   *path,
                          GCancellable *cancellable,
                          GError      **error)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  priv = smelt_format_get_instance_private (self);
  if (priv->destination == NULL)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "export “%s” has no destination", priv->name ? priv->name : "?");
      return NULL;
    }
  return smelt_destination_create_file (priv->destination, path, cancellable, error);
}

/**
 * smelt_format_write_file:
 * @self: a #SmeltFormat
 * @path: path relative to the destination
 * @contents: the whole file
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Writes a small file in one go.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_format_write_file (SmeltFormat  *self,
                         const char   *path,
                         GBytes       *contents,
                         GCancellable *cancellable,
                         GError      **error)
{
  g_autoptr(GOutputStream) out = smelt_format_create_file (self, path, cancellable, error);
  gsize len;
  const guint8 *data;

  if (out == NULL)
    return FALSE;
  data = g_bytes_get_data (contents, &len);
  return g_output_stream_write_all (out, data, len, NULL, cancellable, error) &&
         g_output_stream_close (out, cancellable, error);
}

/**
 * smelt_format_copy_file:
 * @self: a #SmeltFormat
 * @source_path: (type filename): a local file to copy
 * @path: path relative to the destination
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Copies a file (tokenizer files, for instance) into the export.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_format_copy_file (SmeltFormat  *self,
                        const char   *source_path,
                        const char   *path,
                        GCancellable *cancellable,
                        GError      **error)
{
  g_autoptr(GFile) file = g_file_new_for_path (source_path);
  g_autoptr(GFileInputStream) in = g_file_read (file, cancellable, error);
  g_autoptr(GOutputStream) out = NULL;

  if (in == NULL)
    return FALSE;
  out = smelt_format_create_file (self, path, cancellable, error);
  if (out == NULL)
    return FALSE;
  return g_output_stream_splice (out, G_INPUT_STREAM (in),
                                 G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                                 G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                 cancellable, error) >= 0;
}

/**
 * smelt_format_check_options:
 * @self: a #SmeltFormat
 * @error: return location for a #GError
 *
 * Checks the option values, without a model. Recipes call this after
 * setting the options, so that `smelt validate` reports bad values.
 *
 * A #SmeltRecipe calls this from smelt_recipe_validate() and, for every
 * job, from smelt_export_job_prepare(), on a new format right after it
 * set the keys of the `[Export NAME]` group as properties: the format has
 * no destination and no source yet, and no model is open. smelt has
 * already checked types, ranges and enum values; an implementation
 * checks what only the format can judge, and opens nothing. The recipe
 * reports a failure as %SMELT_RECIPE_ERROR_BAD_VALUE, with the recipe
 * file and group before @error's message, so the message names the key
 * (`Key=value: …`). Without an implementation every value is accepted.
 *
 * Returns: %TRUE if the options are usable, %FALSE with @error set
 */
gboolean
smelt_format_check_options (SmeltFormat  *self,
                            GError      **error)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->check_options ? klass->check_options (self, error) : TRUE;
}

/**
 * smelt_format_get_row_group:
 * @self: a #SmeltFormat
 * @tensor: a tensor the format wants
 *
 * How many consecutive rows of @tensor must reach one call of
 * smelt_format_encode_rows() together: a format that reorders rows inside
 * groups (GGUF's Q/K head permutation) asks for whole groups, and every
 * block and slice of @tensor then starts at a multiple of the group and
 * holds whole groups. Formats that do not implement the
 * #SmeltFormatClass.row_group vfunc get 1.
 *
 * Returns: the group size in rows, at least 1
 */
guint64
smelt_format_get_row_group (SmeltFormat *self,
                            SmeltTensor *tensor)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), 1);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->row_group ? MAX (klass->row_group (self, tensor), 1) : 1;
}

/**
 * smelt_format_plan_copy:
 * @self: a #SmeltFormat
 * @source_path: (type filename): the local file that will be copied
 * @path: path relative to the destination
 *
 * Records a planned file that is a copy of @source_path, with its size.
 */
void
smelt_format_plan_copy (SmeltFormat *self,
                        const char  *source_path,
                        const char  *path)
{
  GStatBuf st;

  g_return_if_fail (SMELT_IS_FORMAT (self));
  smelt_format_add_planned_file (self, path,
                                 g_stat (source_path, &st) == 0 ? (gint64) st.st_size : -1);
}

/**
 * smelt_format_plan_tokenizer_files:
 * @self: a #SmeltFormat
 * @source: the source being planned
 *
 * Records the tokenizer files every export of a model carries (see
 * smelt_source_get_tokenizer_files()). Call from plan().
 */
void
smelt_format_plan_tokenizer_files (SmeltFormat *self,
                                   SmeltSource *source)
{
  const char * const *files = smelt_source_get_tokenizer_files (source);

  g_return_if_fail (SMELT_IS_FORMAT (self));
  for (guint i = 0; files[i]; i++)
    smelt_format_plan_copy (self, smelt_source_get_tokenizer_path (source, files[i]), files[i]);
}

/**
 * smelt_format_copy_tokenizer_files:
 * @self: a planned #SmeltFormat
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Copies the tokenizer files recorded by
 * smelt_format_plan_tokenizer_files(). Call from finish().
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_format_copy_tokenizer_files (SmeltFormat   *self,
                                   GCancellable  *cancellable,
                                   GError       **error)
{
  SmeltSource *source;
  const char * const *files;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  source = smelt_format_get_source (self);
  files = smelt_source_get_tokenizer_files (source);
  for (guint i = 0; files[i]; i++)
    if (!smelt_format_copy_file (self, smelt_source_get_tokenizer_path (source, files[i]),
                                 files[i], cancellable, error))
      return FALSE;
  return TRUE;
}

/**
 * smelt_format_get_summary:
 * @self: a #SmeltFormat whose export has finished
 *
 * A short text for people about what the export wrote, beyond the list
 * of files: gguf-quant's quality report, for instance. `smelt run` and
 * `smelt export` print it after a successful run. Formats that do not
 * implement the #SmeltFormatClass.get_summary vfunc have none.
 *
 * Applications read it through smelt_export_job_get_summary() once the
 * job has succeeded; an implementation describes what finish() left, in
 * lines that each end in a newline.
 *
 * Returns: (transfer full) (nullable): lines of text, each ending in a
 *   newline, or %NULL
 */
char *
smelt_format_get_summary (SmeltFormat *self)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->get_summary ? klass->get_summary (self) : NULL;
}

/**
 * smelt_format_link:
 * @self: a planned #SmeltFormat
 * @error: return location for a #GError
 *
 * Resolves the format's references to other exports of its job.
 *
 * smelt_export_job_prepare() calls this on the job's thread for each
 * export in the recipe's order, once every export is planned and before
 * anything is written (`smelt run --dry-run` included). A format that
 * refers to another export's files (a Modelfile naming a GGUF) finds it
 * here with smelt_format_lookup_export(), whose planned files are now
 * complete, and refuses a reference that leads nowhere; the job puts the
 * export's name before the message. Without an implementation a format
 * has no references.
 *
 * Returns: %TRUE if the format's references to other exports hold,
 *   %FALSE with @error set
 */
gboolean
smelt_format_link (SmeltFormat  *self,
                   GError      **error)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->link ? klass->link (self, error) : TRUE;
}

/* The job's formats, so that one export can find another by name. */
void
_smelt_format_set_siblings (SmeltFormat *self,
                            GPtrArray   *formats)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (self);

  priv->siblings = formats;
}

/**
 * smelt_format_lookup_export:
 * @self: a #SmeltFormat run by a job
 * @name: the name of another export of the same recipe
 *
 * Finds another export of the job, to refer to its planned files (see
 * smelt_format_get_planned_files(); they are complete in link()).
 *
 * Returns: (transfer none) (nullable): its format, or %NULL
 */
SmeltFormat *
smelt_format_lookup_export (SmeltFormat *self,
                            const char  *name)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);
  priv = smelt_format_get_instance_private (self);
  for (guint i = 0; priv->siblings && i < priv->siblings->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (priv->siblings, i);

      if (g_strcmp0 (smelt_format_get_name (f), name) == 0)
        return f;
    }
  return NULL;
}

/**
 * smelt_format_get_n_passes:
 * @self: a #SmeltFormat
 *
 * Gets how many passes over the tensors the format needs: more than one
 * for a format whose layout depends on the data itself (bnb4's double
 * quantization stores a mean in each header).
 *
 * The job asks on its thread, first after link() and then in every pass;
 * the answer must stay the same. It makes as many passes as the export
 * that needs most, and a format of n passes takes part in the job's last
 * n, so every format writes in the job's last pass. In the passes before
 * its last the format only reads, and the job reports them as the stage
 * `scanning`: rows arrive through wants_rows(), encode_rows() and
 * write_rows() as usual, smelt_format_get_pass() tells which pass it is,
 * no file may be created, and end_pass() follows each of them. Without
 * an implementation, or when it returns 0, a format needs one pass.
 *
 * Returns: how many passes over the tensors the format needs, at least 1
 */
guint
smelt_format_get_n_passes (SmeltFormat *self)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), 1);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->get_n_passes ? MAX (klass->get_n_passes (self), 1) : 1;
}

/**
 * smelt_format_get_pass:
 * @self: a #SmeltFormat
 *
 * Gets the format's own pass under way, from 0 to
 * smelt_format_get_n_passes() - 1 (the writing one).
 *
 * Returns: the format's own pass under way, from 0 to
 *   smelt_format_get_n_passes() - 1 (the writing one)
 */
guint
smelt_format_get_pass (SmeltFormat *self)
{
  SmeltFormatPrivate *priv;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), 0);
  priv = smelt_format_get_instance_private (self);
  return priv->pass == _SMELT_FORMAT_PASS_IDLE ? 0 : priv->pass;
}

/* The job's: which of the format's passes the job's pass is, or
 * _SMELT_FORMAT_PASS_IDLE when the format has none in it. */
void
_smelt_format_set_pass (SmeltFormat *self,
                        guint        pass)
{
  SmeltFormatPrivate *priv = smelt_format_get_instance_private (self);

  priv->pass = pass;
}

/**
 * smelt_format_end_pass:
 * @self: a #SmeltFormat
 * @pass: the pass that ended (not the last)
 * @error: return location for a #GError
 *
 * Tells the format that read-only pass @pass is over, so it can complete
 * its plan.
 *
 * The job calls this on its thread once every tensor of the pass has gone
 * through write_rows(), after each of the format's passes but the last
 * (see smelt_format_get_n_passes()), with the format's own pass number,
 * counted from 0 as smelt_format_get_pass() said during the pass. The
 * format completes its plan here: sizes the pass found go to
 * smelt_format_add_planned_file() again. Without an implementation
 * nothing happens. An error fails the job, with the export's name before
 * the message.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_format_end_pass (SmeltFormat  *self,
                       guint         pass,
                       GError      **error)
{
  SmeltFormatClass *klass;

  g_return_val_if_fail (SMELT_IS_FORMAT (self), FALSE);
  klass = SMELT_FORMAT_GET_CLASS (self);
  return klass->end_pass ? klass->end_pass (self, pass, error) : TRUE;
}
