/* smelt-destination.c: base class of destination plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

/**
 * SmeltDestination:
 * @parent_instance: the parent instance
 *
 * Where an export puts its files. Files created with
 * smelt_destination_create_file() become visible under their final names
 * only at smelt_destination_commit(); smelt_destination_abort() removes
 * everything, so a failed or cancelled export leaves nothing behind.
 *
 * "The job's thread", in the descriptions of the virtual methods
 * (#SmeltDestinationClass), is the thread that runs
 * smelt_export_job_prepare() and smelt_export_job_run(), or the one
 * smelt_export_job_run_async() starts.
 */

typedef struct {
  char       *name;
  GHashTable *created;
  GPtrArray  *stale_patterns;  /* GPatternSpec */
  GPtrArray  *formats;         /* SmeltFormat, weak: formats hold their destination */
} SmeltDestinationPrivate;

enum {
  PROP_0,
  PROP_NAME,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (SmeltDestination, smelt_destination, G_TYPE_OBJECT)

static void
format_gone (gpointer  data,
             GObject  *where_the_format_was)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (SMELT_DESTINATION (data));

  g_ptr_array_remove (priv->formats, where_the_format_was);
}

static void
smelt_destination_finalize (GObject *object)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (SMELT_DESTINATION (object));

  g_free (priv->name);
  g_hash_table_unref (priv->created);
  g_ptr_array_unref (priv->stale_patterns);
  for (guint i = 0; i < priv->formats->len; i++)
    g_object_weak_unref (g_ptr_array_index (priv->formats, i), format_gone, object);
  g_ptr_array_unref (priv->formats);
  G_OBJECT_CLASS (smelt_destination_parent_class)->finalize (object);
}

static void
smelt_destination_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (SMELT_DESTINATION (object));

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
smelt_destination_set_property (GObject      *object,
                                guint         prop_id,
                                const GValue *value,
                                GParamSpec   *pspec)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (SMELT_DESTINATION (object));

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
 * Each virtual method is documented on the public function of the same
 * name that calls it (prepare() on smelt_destination_prepare(), and so
 * on): when their signatures match, g-ir-scanner gives the
 * <virtual-method> that function's text, in place of the text of a
 * `SmeltDestinationClass::name` block, so the reference shows one text on
 * both pages. Write there what an implementation must do.
 */

static gboolean
smelt_destination_real_prepare (SmeltDestination *self,
                                GCancellable     *cancellable,
                                GError          **error)
{
  return TRUE;
}

static char *
smelt_destination_real_describe (SmeltDestination *self)
{
  return g_strdup (G_OBJECT_TYPE_NAME (self));
}

static void
smelt_destination_class_init (SmeltDestinationClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = smelt_destination_finalize;
  object_class->get_property = smelt_destination_get_property;
  object_class->set_property = smelt_destination_set_property;
  klass->prepare = smelt_destination_real_prepare;
  klass->describe = smelt_destination_real_describe;

  /**
   * SmeltDestination:name:
   *
   * The destination's name in the recipe (`[Destination NAME]`).
   */
  properties[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                               G_PARAM_READWRITE | G_PARAM_CONSTRUCT |
                                               G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * SmeltDestination::progress:
   * @destination: the destination
   * @stage: what it is doing, such as `uploading`
   * @file: (nullable): the file it is working on
   * @done: bytes done
   * @total: bytes to do
   *
   * Emitted by smelt_destination_report_progress(), on the thread that
   * runs commit() (the job's working thread). A #SmeltExportJob turns it
   * into its own #SmeltExportJob::progress on the caller's thread;
   * connect there rather than here.
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
smelt_destination_init (SmeltDestination *self)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (self);

  priv->created = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  priv->stale_patterns = g_ptr_array_new_with_free_func ((GDestroyNotify) g_pattern_spec_free);
  priv->formats = g_ptr_array_new ();
}

/**
 * smelt_destination_prepare:
 * @self: a #SmeltDestination
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Checks that the destination can take an export, before any work.
 *
 * A #SmeltExportJob calls this from smelt_export_job_prepare(), on the
 * job's thread, once for each destination that an export of the recipe
 * writes into: after smelt_destination_check_options() and after the
 * model and adapters are open, before any format plans or creates a
 * file. An implementation checks (the folder is usable, the token and
 * the repo are valid) and creates nothing: `smelt run --dry-run` prepares
 * and stops, and when this fails the job stops without calling
 * smelt_destination_abort(). The default implementation accepts.
 *
 * Returns: %TRUE if it can, %FALSE with @error set
 */
gboolean
smelt_destination_prepare (SmeltDestination *self,
                           GCancellable     *cancellable,
                           GError          **error)
{
  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  return SMELT_DESTINATION_GET_CLASS (self)->prepare (self, cancellable, error);
}

static gboolean
is_safe_relative_path (const char *path)
{
  g_auto(GStrv) parts = NULL;

  if (path == NULL || *path == '\0' || g_path_is_absolute (path))
    return FALSE;
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i]; i++)
    if (*parts[i] == '\0' || g_str_equal (parts[i], ".") || g_str_equal (parts[i], ".."))
      return FALSE;
  return TRUE;
}

/**
 * smelt_destination_create_file:
 * @self: a #SmeltDestination
 * @path: a relative path such as `model-00001-of-00002.safetensors`
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Creates a file that appears under @path at commit.
 *
 * During an export, formats call this on the job's thread, from
 * write_rows() and finish(), through smelt_format_create_file(),
 * smelt_format_write_file() and smelt_format_copy_file(). Before the
 * virtual method runs, this function refuses a path that is absolute,
 * empty or has an empty, `.` or `..` component
 * (%SMELT_DESTINATION_ERROR_FAILED), and one this destination has already
 * created (%SMELT_DESTINATION_ERROR_CONFLICT): an implementation can take
 * @path as new and inside the destination, possibly with folders.
 *
 * It returns a stream that writes the file without showing it under
 * @path before smelt_destination_commit() (localfs writes `PATH.partial`
 * files; hf-hub stages them), and keeps what commit() and abort() need
 * to find it. The caller owns and closes the stream. When
 * smelt_destination_has_seekable_files() says so, the stream implements
 * #GSeekable and can seek back.
 *
 * Returns: (transfer full): a stream to write the file, or %NULL with
 *   @error set
 */
GOutputStream *
smelt_destination_create_file (SmeltDestination *self,
                               const char       *path,
                               GCancellable     *cancellable,
                               GError          **error)
{
  SmeltDestinationPrivate *priv;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), NULL);
  priv = smelt_destination_get_instance_private (self);

  if (!is_safe_relative_path (path))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_FAILED,
                   "“%s” is not a relative path inside the destination", path);
      return NULL;
    }
  if (g_hash_table_contains (priv->created, path))
    {
      g_set_error (error, SMELT_DESTINATION_ERROR, SMELT_DESTINATION_ERROR_CONFLICT,
                   "two exports write %s in destination “%s”; give them different "
                   "destinations", path, priv->name ? priv->name : "?");
      return NULL;
    }
  g_hash_table_add (priv->created, g_strdup (path));
  return SMELT_DESTINATION_GET_CLASS (self)->create_file (self, path, cancellable, error);
}

/**
 * smelt_destination_commit:
 * @self: a #SmeltDestination
 * @message: (nullable): a description of the change (commit message)
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Makes every created file visible under its final name.
 *
 * A #SmeltExportJob calls this on the job's thread once every export has
 * finished, for one destination after the other in the recipe's order,
 * with a @message naming the recipe and the smelt version (hf-hub makes
 * it the commit's title unless told otherwise). Just before, the job
 * checks @cancellable and, when run with smelt_export_job_run_async(),
 * waits until the caller has seen its progress reports.
 *
 * An implementation makes the files of smelt_destination_create_file()
 * appear together, removes those smelt_destination_is_stale() names, and
 * may report long work with smelt_destination_report_progress() (see
 * smelt_destination_reports_commit_progress()). It checks @cancellable
 * before anything becomes visible (localfs does before renaming), not
 * after: the job's result must say whether files were committed. When
 * this fails, the job calls smelt_destination_abort() on every
 * destination, this one and those that have already committed included.
 *
 * Returns: %TRUE on success, %FALSE with @error set
 */
gboolean
smelt_destination_commit (SmeltDestination *self,
                          const char       *message,
                          GCancellable     *cancellable,
                          GError          **error)
{
  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  return SMELT_DESTINATION_GET_CLASS (self)->commit (self, message, cancellable, error);
}

/**
 * smelt_destination_abort:
 * @self: a #SmeltDestination
 *
 * Removes everything created since the destination was made.
 *
 * A #SmeltExportJob calls this on the job's thread, on every destination
 * of the job, when the run fails or is cancelled once
 * smelt_export_job_prepare() has succeeded: while the formats write or
 * finish, or when a commit fails, in which case destinations that have
 * already committed are aborted too. A commit cannot be undone: an
 * implementation removes what is not committed (partial or staged files,
 * the folders it made for them) and leaves visible files alone, as
 * localfs and hf-hub do. It must be safe to call at any time and more
 * than once: before any file was created, after commit(), after an
 * earlier abort(). It cannot fail. localfs also calls it when a
 * destination that never committed is finalized.
 */
void
smelt_destination_abort (SmeltDestination *self)
{
  g_return_if_fail (SMELT_IS_DESTINATION (self));
  SMELT_DESTINATION_GET_CLASS (self)->abort (self);
}

/**
 * smelt_destination_describe:
 * @self: a #SmeltDestination
 *
 * Gets where the files go, for people.
 *
 * Used in plans and messages: `smelt run` prints it for each export,
 * through smelt_export_job_describe_destination(), with the plan
 * (`--dry-run`) and after the run. It may be asked at any time, before
 * smelt_destination_prepare() as after smelt_destination_commit(), when
 * an implementation may say what happened (hf-hub names the commit or
 * pull request it made). The default implementation gives the type's
 * name.
 *
 * Returns: (transfer full): where the files go, for people
 */
char *
smelt_destination_describe (SmeltDestination *self)
{
  g_return_val_if_fail (SMELT_IS_DESTINATION (self), NULL);
  return SMELT_DESTINATION_GET_CLASS (self)->describe (self);
}

/**
 * smelt_destination_has_seekable_files:
 * @self: a #SmeltDestination
 *
 * Whether the files this destination creates can seek back while they
 * are written (a local file can; an upload that hashes the bytes as they
 * come cannot).
 *
 * Formats ask in plan() (bnb4 does), to rewrite the start of a file once
 * the data is written instead of taking a second pass, so the answer
 * holds for the whole export. An implementation that says %TRUE returns
 * streams from smelt_destination_create_file() that implement #GSeekable
 * and can seek back. Without an implementation the answer is %FALSE.
 *
 * Returns: %TRUE if the streams of smelt_destination_create_file() can seek
 */
gboolean
smelt_destination_has_seekable_files (SmeltDestination *self)
{
  SmeltDestinationClass *klass;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  klass = SMELT_DESTINATION_GET_CLASS (self);
  return klass->has_seekable_files ? klass->has_seekable_files (self) : FALSE;
}

/**
 * smelt_destination_reports_commit_progress:
 * @self: a #SmeltDestination
 *
 * Whether smelt_destination_commit() does long work of its own, such as
 * uploading the files, and reports it with
 * smelt_destination_report_progress(). An export job asks once, on its
 * working thread, after every destination was prepared and before any
 * data is computed, so that its #SmeltExportJob:fraction can keep a share
 * for that work and never move backwards.
 *
 * Implementations: the answer must not depend on what gets written. Leave
 * the vfunc unset (the default: no) when commit only renames or closes
 * files; a destination that says yes should report its commit's progress
 * from the first byte to the last.
 *
 * Returns: %TRUE if committing reports progress of its own
 */
gboolean
smelt_destination_reports_commit_progress (SmeltDestination *self)
{
  SmeltDestinationClass *klass;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  klass = SMELT_DESTINATION_GET_CLASS (self);
  return klass->reports_commit_progress ? klass->reports_commit_progress (self) : FALSE;
}

/**
 * smelt_destination_get_name:
 * @self: a #SmeltDestination
 *
 * Gets the destination's name in the recipe.
 *
 * Returns: (nullable): the destination's name in the recipe
 */
const char *
smelt_destination_get_name (SmeltDestination *self)
{
  SmeltDestinationPrivate *priv;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), NULL);
  priv = smelt_destination_get_instance_private (self);
  return priv->name;
}

/**
 * smelt_destination_check_options:
 * @self: a #SmeltDestination
 * @error: return location for a #GError
 *
 * Checks the option values before anything is opened. Recipes call this
 * after setting the options, so that `smelt validate` reports bad values.
 *
 * A #SmeltRecipe calls this from smelt_recipe_validate() and, for every
 * job, from smelt_export_job_prepare(), on a new destination right after
 * it set the keys of the `[Destination NAME]` group as properties, before
 * smelt_destination_prepare(). smelt has already checked types, ranges
 * and enum values; an implementation checks what only the destination
 * can judge, and opens nothing: no file, no connection. The recipe
 * reports a failure as %SMELT_RECIPE_ERROR_BAD_VALUE, with the recipe
 * file and group before @error's message, so the message names the key
 * (`Key=value: …`). Without an implementation every value is accepted.
 *
 * Returns: %TRUE if the options are usable, %FALSE with @error set
 */
gboolean
smelt_destination_check_options (SmeltDestination *self,
                                 GError          **error)
{
  SmeltDestinationClass *klass;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  klass = SMELT_DESTINATION_GET_CLASS (self);
  return klass->check_options ? klass->check_options (self, error) : TRUE;
}

/**
 * smelt_destination_replace_pattern:
 * @self: a #SmeltDestination
 * @glob: a file-name pattern such as `model-*-of-*.safetensors`
 *
 * Declares that the export owns every file matching @glob: at commit, a
 * matching file already in the destination that this commit does not
 * write is removed, so re-exporting with fewer shards does not leave a
 * stale shard or index beside the new files. Formats call this from
 * plan().
 */
void
smelt_destination_replace_pattern (SmeltDestination *self,
                                   const char       *glob)
{
  SmeltDestinationPrivate *priv;

  g_return_if_fail (SMELT_IS_DESTINATION (self));
  priv = smelt_destination_get_instance_private (self);
  g_ptr_array_add (priv->stale_patterns, g_pattern_spec_new (glob));
}

/**
 * smelt_destination_is_stale:
 * @self: a #SmeltDestination
 * @path: a path relative to the destination, of a file it already holds
 *
 * Destinations call this at commit for the files they already hold.
 *
 * Returns: %TRUE if @path matches a pattern given to
 *   smelt_destination_replace_pattern() and was not written by this commit
 */
gboolean
smelt_destination_is_stale (SmeltDestination *self,
                            const char       *path)
{
  SmeltDestinationPrivate *priv;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), FALSE);
  priv = smelt_destination_get_instance_private (self);
  if (g_hash_table_contains (priv->created, path))
    return FALSE;
  for (guint i = 0; i < priv->stale_patterns->len; i++)
    if (g_pattern_spec_match_string (g_ptr_array_index (priv->stale_patterns, i), path))
      return TRUE;
  return FALSE;
}

/* Called by smelt_format_set_destination(). */
void
_smelt_destination_add_format (SmeltDestination *self,
                               SmeltFormat      *format)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (self);

  if (g_ptr_array_find (priv->formats, format, NULL))
    return;
  g_ptr_array_add (priv->formats, format);
  g_object_weak_ref (G_OBJECT (format), format_gone, self);
}

void
_smelt_destination_remove_format (SmeltDestination *self,
                                  SmeltFormat      *format)
{
  SmeltDestinationPrivate *priv = smelt_destination_get_instance_private (self);

  if (g_ptr_array_remove (priv->formats, format))
    g_object_weak_unref (G_OBJECT (format), format_gone, self);
}

/**
 * smelt_destination_list_formats:
 * @self: a #SmeltDestination
 *
 * The exports that write into this destination, so that a destination can
 * describe what it holds (the hf-hub destination's model card reads their
 * source: the base model's name and license; and their planned files).
 *
 * Returns: (transfer container) (element-type SmeltFormat): the formats
 *   whose destination is @self, in the recipe's order
 */
GPtrArray *
smelt_destination_list_formats (SmeltDestination *self)
{
  SmeltDestinationPrivate *priv;
  GPtrArray *list;

  g_return_val_if_fail (SMELT_IS_DESTINATION (self), NULL);
  priv = smelt_destination_get_instance_private (self);
  list = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = 0; i < priv->formats->len; i++)
    g_ptr_array_add (list, g_object_ref (g_ptr_array_index (priv->formats, i)));
  return list;
}

/**
 * smelt_destination_report_progress:
 * @self: a #SmeltDestination
 * @stage: what the destination is doing, such as `uploading`
 * @file: (nullable): the file it is working on
 * @done: bytes done so far
 * @total: bytes to do in all
 *
 * Reports the progress of slow work in commit() (an upload), as
 * #SmeltDestination::progress. A #SmeltExportJob shows it through its own
 * progress properties: #SmeltExportJob:stage becomes @stage and
 * #SmeltExportJob:fraction, #SmeltExportJob:bytes-done,
 * #SmeltExportJob:bytes-total and #SmeltExportJob:rate describe this work.
 * Call it from commit() only, as often as convenient: the job throttles.
 */
void
smelt_destination_report_progress (SmeltDestination *self,
                                   const char       *stage,
                                   const char       *file,
                                   guint64           done,
                                   guint64           total)
{
  g_return_if_fail (SMELT_IS_DESTINATION (self));
  g_return_if_fail (stage != NULL);
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, stage, file, done, total);
}
