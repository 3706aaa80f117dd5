/* smelt-export-job.c: runs a recipe: one pass over the tensors feeding
 * every export
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltExportJob:
 *
 * Runs a #SmeltRecipe. The job opens the model and adapters, plans every
 * export, then walks the merged tensors once: each row block is merged
 * once, on a thread pool, and handed to every export that wants it.
 * Blocks are written in order, so output is byte-identical at any thread
 * count. Memory stays at a few blocks per thread, whatever the model size.
 *
 * Progress (#SmeltExportJob:stage, #SmeltExportJob:fraction,
 * #SmeltExportJob:current-tensor and the #SmeltExportJob::progress signal)
 * is always delivered on the thread that started the job: directly for
 * smelt_export_job_run(), through the caller's main context for
 * smelt_export_job_run_async().
 */

/* Target size of one block of float32 rows. Big enough that GEMM and
 * conversion run at full speed, small enough that threads × window blocks
 * stay far below the 1 GiB budget. */
#define BLOCK_BYTES (2u << 20)

typedef struct {
  SmeltTensor  *tensor;
  guint64       first_row;
  guint64       n_rows;
  guint64       group;          /* rows per slice are a multiple of this */
  gboolean      last_of_tensor;
  SmeltRows    *wants;          /* per format, shared by a tensor's blocks */
  GByteArray  **encoded;        /* per format */
  GError       *error;
  gboolean      done;
} Block;

struct _SmeltExportJob
{
  GObject        parent_instance;

  SmeltRecipe   *recipe;
  SmeltRegistry *registry;
  guint          n_threads;

  gboolean       prepared;
  gboolean       ran;
  SmeltSource   *source;
  GPtrArray     *formats;        /* SmeltFormat */
  GPtrArray     *destinations;   /* SmeltDestination */

  /* progress, as seen by the caller's thread */
  char          *stage;
  char          *current_tensor;
  double         fraction;
  guint64        bytes_done;
  guint64        bytes_total;
  guint64        plan_total;     /* the working thread's copy */
  double         rate;           /* bytes per second since "exporting" began */
  gint64         export_start;   /* monotonic µs, on the caller's thread */
  char          *reported_stage; /* a destination's last stage, on the working thread */
  /* the share of #SmeltExportJob:fraction for the export itself, and for
   * each destination whose commit reports progress (an upload): equal
   * shares, so the fraction rises once to 1 over the whole job */
  double         export_share;
  double         commit_share;
  double         commit_base;    /* where the committing destination's share starts */
  GArray        *commit_reports; /* gboolean per destination, asked once */
  guint          progress_interval; /* ms between reports, 0: every block */

  /* delivery */
  GMainContext  *context;
  gboolean       deliver_async;
  gint64         last_report;
  GMutex         report_lock;
  GCond          report_cond;
  guint          reports_sent;    /* queued for the caller's context */
  guint          reports_applied; /* seen there */

  /* the block pipeline */
  GMutex         lock;
  GCond          cond;
  GThreadPool   *pool;
  guint          n_formats;
  GPtrArray     *spare;         /* GByteArray, encoded-block buffers to reuse */
};

enum {
  PROP_0,
  PROP_RECIPE,
  PROP_REGISTRY,
  PROP_N_THREADS,
  PROP_STAGE,
  PROP_FRACTION,
  PROP_CURRENT_TENSOR,
  PROP_BYTES_DONE,
  PROP_BYTES_TOTAL,
  PROP_RATE,
  PROP_PROGRESS_INTERVAL,
  N_PROPS
};

enum {
  SIGNAL_PROGRESS,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (SmeltExportJob, smelt_export_job, G_TYPE_OBJECT)

static void
smelt_export_job_finalize (GObject *object)
{
  SmeltExportJob *self = SMELT_EXPORT_JOB (object);

  g_clear_object (&self->recipe);
  g_clear_object (&self->registry);
  g_clear_object (&self->source);
  g_clear_pointer (&self->formats, g_ptr_array_unref);
  g_clear_pointer (&self->destinations, g_ptr_array_unref);
  g_clear_pointer (&self->commit_reports, g_array_unref);
  g_free (self->stage);
  g_free (self->current_tensor);
  g_free (self->reported_stage);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);
  g_mutex_clear (&self->report_lock);
  g_cond_clear (&self->report_cond);
  g_clear_pointer (&self->spare, g_ptr_array_unref);

  G_OBJECT_CLASS (smelt_export_job_parent_class)->finalize (object);
}

static void
smelt_export_job_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  SmeltExportJob *self = SMELT_EXPORT_JOB (object);

  switch (prop_id)
    {
    case PROP_RECIPE:
      g_value_set_object (value, self->recipe);
      break;
    case PROP_REGISTRY:
      g_value_set_object (value, self->registry);
      break;
    case PROP_N_THREADS:
      g_value_set_uint (value, self->n_threads);
      break;
    case PROP_STAGE:
      g_value_set_string (value, self->stage);
      break;
    case PROP_FRACTION:
      g_value_set_double (value, self->fraction);
      break;
    case PROP_CURRENT_TENSOR:
      g_value_set_string (value, self->current_tensor);
      break;
    case PROP_BYTES_DONE:
      g_value_set_uint64 (value, self->bytes_done);
      break;
    case PROP_BYTES_TOTAL:
      g_value_set_uint64 (value, self->bytes_total);
      break;
    case PROP_RATE:
      g_value_set_double (value, self->rate);
      break;
    case PROP_PROGRESS_INTERVAL:
      g_value_set_uint (value, g_atomic_int_get (&self->progress_interval));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_export_job_set_property (GObject      *object,
                               guint         prop_id,
                               const GValue *value,
                               GParamSpec   *pspec)
{
  SmeltExportJob *self = SMELT_EXPORT_JOB (object);

  switch (prop_id)
    {
    case PROP_RECIPE:
      self->recipe = g_value_dup_object (value);
      break;
    case PROP_REGISTRY:
      self->registry = g_value_dup_object (value);
      break;
    case PROP_N_THREADS:
      smelt_export_job_set_n_threads (self, g_value_get_uint (value));
      break;
    case PROP_PROGRESS_INTERVAL:
      smelt_export_job_set_progress_interval (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
smelt_export_job_class_init (SmeltExportJobClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = smelt_export_job_finalize;
  object_class->get_property = smelt_export_job_get_property;
  object_class->set_property = smelt_export_job_set_property;

  /**
   * SmeltExportJob:recipe:
   *
   * The recipe to run.
   */
  properties[PROP_RECIPE] =
    g_param_spec_object ("recipe", NULL, NULL, SMELT_TYPE_RECIPE,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:registry:
   *
   * Where plugins come from.
   */
  properties[PROP_REGISTRY] =
    g_param_spec_object ("registry", NULL, NULL, SMELT_TYPE_REGISTRY,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:n-threads:
   *
   * Worker threads; 0 means one per processor. Output does not depend on it.
   */
  properties[PROP_N_THREADS] =
    g_param_spec_uint ("n-threads", NULL, NULL, 0, 1024, 0,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:stage:
   *
   * "idle", "preparing", "exporting", "finishing", "committing" or "done";
   * or, while a destination commits, the stage it reports (such as
   * "uploading", see smelt_destination_report_progress()), during which
   * the byte counts and the rate describe the destination's work and start
   * again from 0. #SmeltExportJob:fraction does not: it covers the whole
   * job.
   */
  properties[PROP_STAGE] =
    g_param_spec_string ("stage", NULL, NULL, "idle",
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:fraction:
   *
   * Progress of the whole job from 0 to 1. It never decreases, and is 1
   * once the stage is "done".
   *
   * It counts bytes of tensor data processed over every pass. When some
   * destinations report long work of their own while they commit (an
   * upload, see smelt_destination_reports_commit_progress()), the export
   * and each of those commits get an equal share of it: with one upload,
   * the export takes the fraction to 0.5 and the upload from 0.5 to 1.
   */
  properties[PROP_FRACTION] =
    g_param_spec_double ("fraction", NULL, NULL, 0, 1, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:current-tensor:
   *
   * The tensor being written (while a destination uploads: the file).
   */
  properties[PROP_CURRENT_TENSOR] =
    g_param_spec_string ("current-tensor", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:bytes-done:
   *
   * Bytes of tensor data processed.
   */
  properties[PROP_BYTES_DONE] =
    g_param_spec_uint64 ("bytes-done", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:bytes-total:
   *
   * Bytes of tensor data to process.
   */
  properties[PROP_BYTES_TOTAL] =
    g_param_spec_uint64 ("bytes-total", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:rate:
   *
   * Bytes of tensor data processed per second since exporting began.
   */
  properties[PROP_RATE] =
    g_param_spec_double ("rate", NULL, NULL, 0, G_MAXDOUBLE, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  /**
   * SmeltExportJob:progress-interval:
   *
   * The least time between two progress reports, in milliseconds (stage
   * changes and the end are always reported). 0 reports every block of
   * rows, which suits tests and logs more than UIs.
   */
  properties[PROP_PROGRESS_INTERVAL] =
    g_param_spec_uint ("progress-interval", NULL, NULL, 0, 60000, 100,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * SmeltExportJob::progress:
   * @job: the job
   *
   * Emitted, on the thread that started the job, when the properties
   * describing progress change (at most once per
   * #SmeltExportJob:progress-interval, plus at every stage change and at
   * the end).
   */
  signals[SIGNAL_PROGRESS] =
    g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
smelt_export_job_init (SmeltExportJob *self)
{
  g_mutex_init (&self->lock);
  g_cond_init (&self->cond);
  g_mutex_init (&self->report_lock);
  g_cond_init (&self->report_cond);
  self->stage = g_strdup ("idle");
  self->progress_interval = 100;
  self->export_share = 1.0;
  self->commit_base = 1.0;
  self->spare = g_ptr_array_new_with_free_func ((GDestroyNotify) g_byte_array_unref);
}

/**
 * smelt_export_job_new:
 * @recipe: the recipe to run
 * @registry: (nullable): where plugins come from (the default registry if %NULL)
 *
 * Creates a job that runs every export of @recipe. Nothing is opened
 * until smelt_export_job_run() or smelt_export_job_run_async().
 *
 * Returns: (transfer full): a new #SmeltExportJob
 */
SmeltExportJob *
smelt_export_job_new (SmeltRecipe   *recipe,
                      SmeltRegistry *registry)
{
  g_return_val_if_fail (SMELT_IS_RECIPE (recipe), NULL);
  return g_object_new (SMELT_TYPE_EXPORT_JOB,
                       "recipe", recipe,
                       "registry", registry ? registry : smelt_registry_get_default (),
                       NULL);
}

/**
 * smelt_export_job_get_recipe:
 * @self: a #SmeltExportJob
 *
 * Gets the recipe.
 *
 * Returns: (transfer none): the recipe
 */
SmeltRecipe *
smelt_export_job_get_recipe (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  return self->recipe;
}

/**
 * smelt_export_job_set_n_threads:
 * @self: a #SmeltExportJob
 * @n_threads: worker threads, 0 for one per processor
 *
 * Sets how many threads merge and encode blocks.
 */
void
smelt_export_job_set_n_threads (SmeltExportJob *self,
                                guint           n_threads)
{
  g_return_if_fail (SMELT_IS_EXPORT_JOB (self));
  if (self->n_threads == n_threads)
    return;
  self->n_threads = n_threads;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_THREADS]);
}

/**
 * smelt_export_job_set_progress_interval:
 * @self: a #SmeltExportJob
 * @msec: the least time between two progress reports, in milliseconds;
 *   0 reports every block of rows
 *
 * Sets #SmeltExportJob:progress-interval. It may change while the job runs.
 */
void
smelt_export_job_set_progress_interval (SmeltExportJob *self,
                                        guint           msec)
{
  g_return_if_fail (SMELT_IS_EXPORT_JOB (self));
  msec = MIN (msec, 60000);
  if ((guint) g_atomic_int_get (&self->progress_interval) == msec)
    return;
  g_atomic_int_set (&self->progress_interval, msec);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PROGRESS_INTERVAL]);
}

/**
 * smelt_export_job_get_progress_interval:
 * @self: a #SmeltExportJob
 *
 * Gets #SmeltExportJob:progress-interval.
 *
 * Returns: the least time between two progress reports, in milliseconds
 */
guint
smelt_export_job_get_progress_interval (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return g_atomic_int_get (&self->progress_interval);
}

/**
 * smelt_export_job_get_n_threads:
 * @self: a #SmeltExportJob
 *
 * Gets the thread count setting (0 = one per processor).
 *
 * Returns: the thread count setting (0 = one per processor)
 */
guint
smelt_export_job_get_n_threads (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return self->n_threads;
}

/* ---- progress delivery ---- */

typedef struct {
  SmeltExportJob *job;
  char           *stage;
  char           *tensor;
  guint64         done;
  guint64         total;
  double          fraction;
} Report;

/* The job's own stages; any other comes from a destination's commit()
 * (smelt_destination_report_progress()) and measures its own work. */
static gboolean
is_job_stage (const char *stage)
{
  static const char * const stages[] = { "idle", "preparing", "scanning", "exporting",
                                         "finishing", "committing", "done", NULL };

  return g_strv_contains (stages, stage);
}

/* On the working thread: where a report puts the whole job's fraction. */
static double
job_fraction (SmeltExportJob *self,
              const char     *stage,
              guint64         done,
              guint64         total)
{
  double part = total ? (double) done / (double) total : 0.0;

  part = CLAMP (part, 0.0, 1.0);
  if (g_str_equal (stage, "done"))
    return 1.0;
  if (g_str_equal (stage, "committing"))
    return self->commit_base;
  if (is_job_stage (stage))
    return self->export_share * part;
  return self->commit_base + self->commit_share * part;
}

static void
apply_report (SmeltExportJob *self,
              const char     *stage,
              const char     *tensor,
              guint64         done,
              guint64         total,
              double          fraction)
{
  GObject *obj = G_OBJECT (self);

  g_object_freeze_notify (obj);
  if (g_strcmp0 (stage, self->stage) != 0)
    {
      if (g_str_equal (stage, "exporting") || !is_job_stage (stage))
        self->export_start = g_get_monotonic_time ();
      /* an upload after the export is new work with its own byte counts
       * and rate (the fraction goes on rising) */
      if (!is_job_stage (stage))
        {
          self->rate = 0.0;
          g_object_notify_by_pspec (obj, properties[PROP_RATE]);
        }
      g_free (self->stage);
      self->stage = g_strdup (stage);
      g_object_notify_by_pspec (obj, properties[PROP_STAGE]);
    }
  if (g_strcmp0 (tensor, self->current_tensor) != 0)
    {
      g_free (self->current_tensor);
      self->current_tensor = g_strdup (tensor);
      g_object_notify_by_pspec (obj, properties[PROP_CURRENT_TENSOR]);
    }
  fraction = CLAMP (fraction, 0.0, 1.0);
  /* never move backwards: a UI's progress bar must be monotonic */
  if (fraction > self->fraction || (fraction == 0.0 && self->fraction == 0.0))
    {
      self->fraction = fraction;
      g_object_notify_by_pspec (obj, properties[PROP_FRACTION]);
    }
  if (done != self->bytes_done)
    {
      gint64 now = g_get_monotonic_time ();

      self->bytes_done = done;
      g_object_notify_by_pspec (obj, properties[PROP_BYTES_DONE]);
      if (now > self->export_start)
        {
          self->rate = done / ((now - self->export_start) / (double) G_USEC_PER_SEC);
          g_object_notify_by_pspec (obj, properties[PROP_RATE]);
        }
    }
  if (total != self->bytes_total)
    {
      self->bytes_total = total;
      g_object_notify_by_pspec (obj, properties[PROP_BYTES_TOTAL]);
    }
  g_object_thaw_notify (obj);
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0);
}

static gboolean
deliver_report (gpointer data)
{
  Report *r = data;
  SmeltExportJob *self = r->job;

  apply_report (self, r->stage, r->tensor, r->done, r->total, r->fraction);
  g_mutex_lock (&self->report_lock);
  self->reports_applied++;
  g_cond_broadcast (&self->report_cond);
  g_mutex_unlock (&self->report_lock);
  return G_SOURCE_REMOVE;
}

static void
wake_report_waiter (GCancellable   *cancellable,
                    SmeltExportJob *self)
{
  g_mutex_lock (&self->report_lock);
  g_cond_broadcast (&self->report_cond);
  g_mutex_unlock (&self->report_lock);
}

/* On the working thread, before a destination commits: waits until the
 * caller's context has run every progress report sent so far (or the job
 * is cancelled). A caller that cancels from a progress handler before it
 * has seen stage "committing" therefore always cancels the job, however
 * fast the worker is: nothing reaches a final name behind its back. The
 * caller iterates its context anyway, to receive the job's result. */
static void
wait_for_caller (SmeltExportJob *self,
                 GCancellable   *cancellable)
{
  gulong handler = 0;

  if (!self->deliver_async)
    return;
  if (cancellable)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (wake_report_waiter), self, NULL);
  g_mutex_lock (&self->report_lock);
  while (self->reports_applied < self->reports_sent &&
         !g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&self->report_cond, &self->report_lock);
  g_mutex_unlock (&self->report_lock);
  if (handler)
    g_cancellable_disconnect (cancellable, handler);
}

static void
report_free (gpointer data)
{
  Report *r = data;

  g_object_unref (r->job);
  g_free (r->stage);
  g_free (r->tensor);
  g_free (r);
}

/* Called on the job's working thread. @force for stage changes and the end;
 * otherwise reports are throttled to one per #SmeltExportJob:progress-interval. */
static void
report_total (SmeltExportJob *self,
              const char     *stage,
              const char     *tensor,
              guint64         done,
              guint64         total,
              gboolean        force)
{
  gint64 now = g_get_monotonic_time ();
  gint64 interval = (gint64) g_atomic_int_get (&self->progress_interval) * 1000;
  double fraction;
  Report *r;

  if (!force && now - self->last_report < interval)
    return;
  self->last_report = now;
  fraction = job_fraction (self, stage, done, total);
  if (!self->deliver_async)
    {
      apply_report (self, stage, tensor, done, total, fraction);
      return;
    }
  g_mutex_lock (&self->report_lock);
  self->reports_sent++;
  g_mutex_unlock (&self->report_lock);
  r = g_new0 (Report, 1);
  r->job = g_object_ref (self);
  r->stage = g_strdup (stage);
  r->tensor = g_strdup (tensor);
  r->done = done;
  r->total = total;
  r->fraction = fraction;
  /* Always through a source: g_main_context_invoke() would run the report
   * right here, on the worker, whenever the caller's context happens to be
   * free to acquire (it is the global default one, between iterations). */
  {
    GSource *source = g_idle_source_new ();

    g_source_set_priority (source, G_PRIORITY_DEFAULT);
    g_source_set_callback (source, deliver_report, r, report_free);
    g_source_set_static_name (source, "[smelt] export progress");
    g_source_attach (source, self->context);
    g_source_unref (source);
  }
}

static void
report (SmeltExportJob *self,
        const char     *stage,
        const char     *tensor,
        guint64         done,
        gboolean        force)
{
  report_total (self, stage, tensor, done, self->plan_total, force);
}

/* A destination's commit() reports its upload, on the working thread;
 * the first report of a stage and the one that completes it always go
 * through. */
static void
on_destination_progress (SmeltDestination *destination,
                         const char       *stage,
                         const char       *file,
                         guint64           done,
                         guint64           total,
                         SmeltExportJob   *self)
{
  report_total (self, stage, file, done, total,
                g_strcmp0 (stage, self->reported_stage) != 0 || (total > 0 && done >= total));
  g_free (self->reported_stage);
  self->reported_stage = g_strdup (stage);
}

/* ---- preparing ---- */

/* MergeInto=original16: the 16-bit model @quantized was made from, which
 * the source is then built on. Its 4-bit weights must all be there with
 * their shapes, or Original is some other model. */
static SmeltModel *
open_original (SmeltExportJob  *self,
               SmeltModel      *quantized,
               GError         **error)
{
  const char *where = smelt_recipe_get_filename (self->recipe);
  g_autofree char *path = _smelt_recipe_get_original (self->recipe);
  g_autoptr(SmeltModel) original = NULL;

  where = where ? where : "(recipe)";
  if (!smelt_model_is_bnb4 (quantized))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [Source] MergeInto=original16: Model %s is not a bitsandbytes "
                   "4-bit model, so there is nothing to choose; remove MergeInto and "
                   "Original", where, smelt_model_get_path (quantized));
      return NULL;
    }
  original = smelt_model_new_for_path (path, error);
  if (original == NULL)
    return NULL;
  if (smelt_model_is_bnb4 (original) || smelt_model_get_gguf (original) != NULL)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s: [Source] Original=%s is not a 16-bit Hugging Face model; it must be "
                   "the model the 4-bit Model was quantized from", where, path);
      return NULL;
    }
  for (guint i = 0; i < smelt_model_get_n_tensors (quantized); i++)
    {
      SmeltTensor *q = smelt_model_get_tensor (quantized, i);
      SmeltTensor *o;
      guint nq, no = 0;
      const guint64 *sq, *so = NULL;

      if (!SMELT_IS_BNB4_TENSOR (q))
        continue;
      sq = smelt_tensor_get_shape (q, &nq);
      o = smelt_model_lookup_tensor (original, smelt_tensor_get_name (q));
      if (o != NULL)
        so = smelt_tensor_get_shape (o, &no);
      if (o == NULL || no != nq || memcmp (so, sq, nq * sizeof (guint64)) != 0)
        {
          g_autofree char *want = _smelt_shape_to_string (sq, nq);
          g_autofree char *have = o ? _smelt_shape_to_string (so, no) : NULL;

          g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_MISMATCH,
                       "%s: tensor “%s” %s%s, but it is a %s 4-bit weight of Model %s: "
                       "Original is not the model Model was quantized from",
                       smelt_model_get_path (original), smelt_tensor_get_name (q),
                       o ? "has shape " : "is missing", o ? have : "", want,
                       smelt_model_get_path (quantized));
          return NULL;
        }
    }
  return g_steal_pointer (&original);
}

static gboolean
open_source (SmeltExportJob  *self,
             GError         **error)
{
  g_autofree char *model_path = smelt_recipe_get_model (self->recipe);
  g_auto(GStrv) adapter_paths = smelt_recipe_get_adapters (self->recipe);
  g_autoptr(GArray) weights = NULL;
  g_autoptr(SmeltModel) model = NULL;
  g_autoptr(GPtrArray) adapters = g_ptr_array_new_with_free_func (g_object_unref);
  SmeltMergeInto merge_into;

  if (!smelt_recipe_get_adapter_weights (self->recipe, &weights, error) ||
      !_smelt_recipe_get_merge_into (self->recipe, &merge_into, error))
    return FALSE;
  model = smelt_model_new_for_path (model_path, error);
  if (model == NULL)
    return FALSE;
  if (merge_into == SMELT_MERGE_INTO_ORIGINAL16)
    {
      SmeltModel *original = open_original (self, model, error);

      if (original == NULL)
        return FALSE;
      g_object_unref (model);
      model = original;
    }
  for (guint i = 0; adapter_paths[i]; i++)
    {
      SmeltAdapter *a = smelt_adapter_new_for_path (adapter_paths[i], error);

      if (a == NULL)
        return FALSE;
      g_ptr_array_add (adapters, a);
    }
  self->source = smelt_source_new (model, (SmeltAdapter **) adapters->pdata,
                                   (const double *) weights->data, adapters->len, error);
  return self->source != NULL;
}

/* The bytes one pass reads (each tensor once, whatever the number of
 * formats that want it). */
static guint64
compute_pass_total (SmeltExportJob *self)
{
  guint64 total = 0;

  for (guint i = 0; i < smelt_source_get_n_tensors (self->source); i++)
    {
      SmeltTensor *t = smelt_source_get_tensor (self->source, i);

      for (guint f = 0; f < self->formats->len; f++)
        if (smelt_format_wants_rows (g_ptr_array_index (self->formats, f), t) != SMELT_ROWS_NONE)
          {
            total += smelt_tensor_get_n_bytes (t);
            break;
          }
    }
  return total;
}

static guint
max_passes (SmeltExportJob *self)
{
  guint n = 1;

  for (guint f = 0; f < self->formats->len; f++)
    n = MAX (n, smelt_format_get_n_passes (g_ptr_array_index (self->formats, f)));
  return n;
}

/* Tells every format which of its passes job pass @pass is: a format of
 * n passes takes part in the job's last n. */
static void
set_pass (SmeltExportJob *self,
          guint           pass)
{
  guint total = max_passes (self);

  for (guint f = 0; f < self->formats->len; f++)
    {
      SmeltFormat *format = g_ptr_array_index (self->formats, f);
      guint n = smelt_format_get_n_passes (format);

      _smelt_format_set_pass (format, pass + n >= total ? pass + n - total : _SMELT_FORMAT_PASS_IDLE);
    }
}

/* Progress covers every pass, so the fraction rises once, to 1. */
static guint64
compute_total (SmeltExportJob *self)
{
  guint passes = max_passes (self);
  guint64 total = 0;

  for (guint pass = 0; pass < passes; pass++)
    {
      set_pass (self, pass);
      total += compute_pass_total (self);
    }
  /* until the run: every format as in its writing pass */
  set_pass (self, passes - 1);
  return total;
}

/* Exports sharing a destination must not plan the same file (merged16 and
 * safetensors-lora both copy tokenizer.json, for instance). */
static gboolean
check_collisions (SmeltExportJob  *self,
                  GError         **error)
{
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  for (guint i = 0; i < self->formats->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (self->formats, i);
      GPtrArray *files = smelt_format_get_planned_files (f);
      SmeltDestination *d = smelt_format_get_destination (f);

      for (guint j = 0; j < files->len; j++)
        {
          SmeltPlannedFile *pf = g_ptr_array_index (files, j);
          char *key = g_strdup_printf ("%p/%s", (void *) d, pf->path);
          SmeltFormat *other = g_hash_table_lookup (seen, key);

          if (other != NULL)
            {
              g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_CONFLICT,
                           "exports “%s” and “%s” both write %s into destination “%s”; "
                           "give them different destinations", smelt_format_get_name (other),
                           smelt_format_get_name (f), pf->path, smelt_destination_get_name (d));
              g_free (key);
              return FALSE;
            }
          g_hash_table_insert (seen, key, f);
        }
    }
  return TRUE;
}

/**
 * smelt_export_job_prepare:
 * @self: a #SmeltExportJob
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Validates the recipe, opens the model and adapters, matches every
 * adapter tensor, checks the destinations and plans every file, without
 * writing anything. smelt_export_job_run() calls it if needed; call it
 * yourself to show the plan (`smelt run --dry-run`).
 *
 * Returns: %TRUE if the job can run
 */
gboolean
smelt_export_job_prepare (SmeltExportJob  *self,
                          GCancellable    *cancellable,
                          GError         **error)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), FALSE);

  if (self->prepared)
    return TRUE;
  if (!_smelt_recipe_instantiate (self->recipe, self->registry, &self->formats,
                                  &self->destinations, error))
    return FALSE;
  if (g_cancellable_set_error_if_cancelled (cancellable, error) || !open_source (self, error))
    return FALSE;
  for (guint i = 0; i < self->destinations->len; i++)
    if (!smelt_destination_prepare (g_ptr_array_index (self->destinations, i), cancellable, error))
      return FALSE;
  for (guint i = 0; i < self->formats->len; i++)
    _smelt_format_set_siblings (g_ptr_array_index (self->formats, i), self->formats);
  for (guint i = 0; i < self->formats->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (self->formats, i);

      if (!smelt_format_plan (f, self->source, error))
        {
          g_prefix_error (error, "export “%s”: ", smelt_format_get_name (f));
          return FALSE;
        }
    }
  /* references between exports, once every file is planned */
  for (guint i = 0; i < self->formats->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (self->formats, i);

      if (!smelt_format_link (f, error))
        {
          g_prefix_error (error, "export “%s”: ", smelt_format_get_name (f));
          return FALSE;
        }
    }
  if (!check_collisions (self, error))
    return FALSE;
  self->plan_total = compute_total (self);
  self->n_formats = self->formats->len;
  self->prepared = TRUE;
  return TRUE;
}

/**
 * smelt_export_job_get_source:
 * @self: a prepared #SmeltExportJob
 *
 * Gets the merged model, once prepared.
 *
 * Returns: (transfer none) (nullable): the merged model, once prepared
 */
SmeltSource *
smelt_export_job_get_source (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  return self->source;
}

/**
 * smelt_export_job_list_exports:
 * @self: a #SmeltExportJob
 *
 * Gets the export names.
 *
 * Returns: (transfer full) (array zero-terminated=1): the export names
 */
char **
smelt_export_job_list_exports (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  return smelt_recipe_list_exports (self->recipe);
}

static SmeltFormat *
find_format (SmeltExportJob *self,
             const char     *name)
{
  for (guint i = 0; self->formats && i < self->formats->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (self->formats, i);

      if (g_strcmp0 (smelt_format_get_name (f), name) == 0)
        return f;
    }
  return NULL;
}

/**
 * smelt_export_job_get_planned_files:
 * @self: a prepared #SmeltExportJob
 * @export_name: an export name
 *
 * Gets the files the export will write.
 *
 * Returns: (transfer container) (element-type SmeltPlannedFile) (nullable):
 *   the files the export will write
 */
GPtrArray *
smelt_export_job_get_planned_files (SmeltExportJob *self,
                                    const char     *export_name)
{
  SmeltFormat *f;

  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  f = find_format (self, export_name);
  return f ? g_ptr_array_ref (smelt_format_get_planned_files (f)) : NULL;
}

/**
 * smelt_export_job_get_summary:
 * @self: a #SmeltExportJob that has run
 * @export_name: an export name
 *
 * The export's own account of what it wrote (smelt_format_get_summary()),
 * for printing after a successful run.
 *
 * Returns: (transfer full) (nullable): text, or %NULL if the export's
 *   format has none
 */
char *
smelt_export_job_get_summary (SmeltExportJob *self,
                              const char     *export_name)
{
  SmeltFormat *f;

  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  f = find_format (self, export_name);
  return f ? smelt_format_get_summary (f) : NULL;
}

/**
 * smelt_export_job_describe_destination:
 * @self: a prepared #SmeltExportJob
 * @export_name: an export name
 *
 * Gets where the export's files go.
 *
 * Returns: (transfer full) (nullable): where the export's files go
 */
char *
smelt_export_job_describe_destination (SmeltExportJob *self,
                                       const char     *export_name)
{
  SmeltFormat *f;

  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  f = find_format (self, export_name);
  return f && smelt_format_get_destination (f) ? smelt_destination_describe (smelt_format_get_destination (f)) : NULL;
}

/* ---- the block pipeline ---- */

/* Encoded blocks are a few MiB each; allocating each afresh would have the
 * kernel map and zero gigabytes of pages over an export, so the buffers
 * cycle through a small spare list instead. */
static GByteArray *
take_buffer (SmeltExportJob *self,
             gsize           hint)
{
  GByteArray *buf = NULL;

  g_mutex_lock (&self->lock);
  if (self->spare->len > 0)
    buf = g_ptr_array_steal_index_fast (self->spare, self->spare->len - 1);
  g_mutex_unlock (&self->lock);
  if (buf == NULL)
    return g_byte_array_sized_new (hint);
  g_byte_array_set_size (buf, 0);
  return buf;
}

typedef struct {
  SmeltExportJob *job;
  GByteArray     *buf;
} Lent;

/* Called when the format drops the GBytes it was given. */
static void
return_buffer (gpointer data)
{
  Lent *lent = data;

  g_mutex_lock (&lent->job->lock);
  if (lent->job->spare->len < 64)
    g_ptr_array_add (lent->job->spare, g_steal_pointer (&lent->buf));
  g_mutex_unlock (&lent->job->lock);
  if (lent->buf)
    g_byte_array_unref (lent->buf);
  g_object_unref (lent->job);
  g_free (lent);
}

static GBytes *
lend_buffer (SmeltExportJob *self,
             GByteArray     *buf)
{
  Lent *lent = g_new (Lent, 1);

  lent->job = g_object_ref (self);
  lent->buf = buf;
  return g_bytes_new_with_free_func (buf->data, buf->len, return_buffer, lent);
}

static void
block_free (Block *b,
            guint  n_formats)
{
  for (guint f = 0; f < n_formats; f++)
    if (b->encoded[f])
      g_byte_array_unref (b->encoded[f]);
  g_free (b->encoded);
  g_clear_error (&b->error);
  g_object_unref (b->tensor);
  g_free (b);
}

/* Bytes of one row in the tensor's natural dtype. */
static guint64
row_bytes_of (SmeltTensor *tensor)
{
  return smelt_tensor_get_n_bytes (tensor) / MAX (smelt_tensor_get_n_rows (tensor), 1);
}

static gboolean
block_needs_f32 (Block *b,
                 guint  n_formats)
{
  for (guint f = 0; f < n_formats; f++)
    if (b->wants[f] == SMELT_ROWS_F32)
      return TRUE;
  return FALSE;
}

/* Rows are merged and encoded in slices of about this many bytes of
 * float32, so that a slice stays in the core's L2 cache from the merge
 * through every format's encoding, instead of streaming the whole block
 * through memory once per pass. */
#define SLICE_BYTES (64u << 10)

/* Worker thread: merge the block's rows once, encode them for every
 * format that wants float32 rows. */
static void
work_block (gpointer data,
            gpointer user_data)
{
  Block *b = data;
  SmeltExportJob *self = user_data;
  guint64 row_len = MAX (smelt_tensor_get_row_length (b->tensor), 1);
  guint64 per_slice = MAX (SLICE_BYTES / (row_len * sizeof (float)) / b->group, 1) * b->group;
  float *rows = _smelt_scratch_get (SMELT_SCRATCH_ROWS, MIN (per_slice, b->n_rows) * row_len * sizeof (float));
  GError *error = NULL;

  for (guint f = 0; f < self->n_formats; f++)
    if (b->wants[f] == SMELT_ROWS_F32)
      /* sized for 16-bit output, the common case; it grows if needed */
      b->encoded[f] = take_buffer (self, b->n_rows * row_len * 2);

  for (guint64 first = 0; first < b->n_rows && error == NULL; first += per_slice)
    {
      guint64 n = MIN (per_slice, b->n_rows - first);

      if (!smelt_tensor_read_rows (b->tensor, b->first_row + first, n, SMELT_DTYPE_F32, rows, &error))
        break;
      for (guint f = 0; f < self->n_formats && error == NULL; f++)
        if (b->wants[f] == SMELT_ROWS_F32)
          {
            SmeltFormat *format = g_ptr_array_index (self->formats, f);

            if (!smelt_format_encode_rows (format, b->tensor, b->first_row + first, n,
                                           rows, b->encoded[f], &error))
              g_prefix_error (&error, "export “%s”: ", smelt_format_get_name (format));
          }
    }

  g_mutex_lock (&self->lock);
  b->error = error;
  b->done = TRUE;
  g_cond_broadcast (&self->cond);
  g_mutex_unlock (&self->lock);
}

static void
wait_block (SmeltExportJob *self,
            Block          *b)
{
  g_mutex_lock (&self->lock);
  while (!b->done)
    g_cond_wait (&self->cond, &self->lock);
  g_mutex_unlock (&self->lock);
}

/* Job thread: write a finished block to every export, in order. */
static gboolean
write_block (SmeltExportJob  *self,
             Block           *b,
             GCancellable    *cancellable,
             GError         **error)
{
  g_autoptr(GBytes) stored = NULL;

  if (b->error)
    {
      g_propagate_error (error, g_steal_pointer (&b->error));
      return FALSE;
    }
  for (guint f = 0; f < self->n_formats; f++)
    {
      SmeltFormat *format = g_ptr_array_index (self->formats, f);
      g_autoptr(GBytes) data = NULL;

      if (b->wants[f] == SMELT_ROWS_NONE)
        continue;
      if (b->wants[f] == SMELT_ROWS_F32)
        data = lend_buffer (self, g_steal_pointer (&b->encoded[f]));
      else
        {
          guint64 row_bytes = row_bytes_of (b->tensor);

          if (stored == NULL)
            stored = smelt_tensor_get_bytes (b->tensor);
          if (stored == NULL)
            {
              g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                           "export “%s” asked for the stored bytes of %s, which is computed",
                           smelt_format_get_name (format), smelt_tensor_get_name (b->tensor));
              return FALSE;
            }
          data = g_bytes_new_from_bytes (stored, b->first_row * row_bytes, b->n_rows * row_bytes);
        }
      if (!smelt_format_write_rows (format, b->tensor, b->first_row, b->n_rows, data, cancellable, error))
        {
          g_prefix_error (error, "export “%s”: ", smelt_format_get_name (format));
          return FALSE;
        }
    }
  return TRUE;
}

typedef struct {
  GQueue      queue;       /* Block, in output order */
  guint       window;
  guint64     done_bytes;
  GPtrArray  *wants;       /* owns every tensor's SmeltRows array */
  const char *stage;       /* "scanning" or "exporting" */
} Pipeline;

static gboolean
drain_one (SmeltExportJob  *self,
           Pipeline        *p,
           GCancellable    *cancellable,
           GError         **error)
{
  Block *b = g_queue_pop_head (&p->queue);
  gboolean ok;

  wait_block (self, b);
  ok = !g_cancellable_set_error_if_cancelled (cancellable, error) &&
       write_block (self, b, cancellable, error);
  if (ok)
    {
      p->done_bytes += b->n_rows * row_bytes_of (b->tensor);
      report (self, p->stage, smelt_tensor_get_name (b->tensor), p->done_bytes, FALSE);
      /* drop mapped pages behind the cursor: memory stays bounded even
       * inside a multi-GB embedding; then the tensor's caches */
      smelt_tensor_release_rows (b->tensor, b->first_row, b->n_rows);
      if (b->last_of_tensor)
        smelt_tensor_release (b->tensor);
    }
  block_free (b, self->n_formats);
  return ok;
}

/* After a failure: let in-flight workers finish before freeing blocks. */
static void
drain_all_quietly (SmeltExportJob *self,
                   Pipeline       *p)
{
  Block *b;

  while ((b = g_queue_pop_head (&p->queue)))
    {
      wait_block (self, b);
      block_free (b, self->n_formats);
    }
}

static SmeltRows *
tensor_wants (SmeltExportJob *self,
              SmeltTensor    *t,
              gboolean       *any)
{
  SmeltRows *wants = g_new0 (SmeltRows, self->n_formats);
  g_autoptr(GBytes) stored = smelt_tensor_get_bytes (t);

  *any = FALSE;
  for (guint f = 0; f < self->n_formats; f++)
    {
      wants[f] = smelt_format_wants_rows (g_ptr_array_index (self->formats, f), t);
      if (wants[f] == SMELT_ROWS_STORED && stored == NULL)
        wants[f] = SMELT_ROWS_F32;
      *any |= wants[f] != SMELT_ROWS_NONE;
    }
  return wants;
}

static guint64
gcd64 (guint64 a,
       guint64 b)
{
  while (b != 0)
    {
      guint64 t = a % b;
      a = b;
      b = t;
    }
  return a;
}

/* The least common multiple of the formats' row groups for @t. */
static guint64
tensor_row_group (SmeltExportJob *self,
                  SmeltTensor    *t,
                  SmeltRows      *wants)
{
  guint64 group = 1;

  for (guint f = 0; f < self->n_formats; f++)
    if (wants[f] == SMELT_ROWS_F32)
      {
        guint64 g = smelt_format_get_row_group (g_ptr_array_index (self->formats, f), t);
        group = group / gcd64 (group, g) * g;
      }
  return group;
}

static gboolean
stream_tensors (SmeltExportJob  *self,
                const char      *stage,
                guint64          done_before,
                GCancellable    *cancellable,
                GError         **error)
{
  Pipeline p = { G_QUEUE_INIT, 0, done_before, g_ptr_array_new_with_free_func (g_free), stage };
  guint n_threads = self->n_threads ? self->n_threads : g_get_num_processors ();
  gboolean ok = TRUE;

  p.window = 2 * n_threads + 1;
  self->pool = g_thread_pool_new (work_block, self, (int) n_threads, FALSE, NULL);

  for (guint i = 0; ok && i < smelt_source_get_n_tensors (self->source); i++)
    {
      SmeltTensor *t = smelt_source_get_tensor (self->source, i);
      guint64 n_rows = smelt_tensor_get_n_rows (t);
      guint64 per_block = _smelt_rows_per_block (t, BLOCK_BYTES);
      guint64 group;
      gboolean any;
      SmeltRows *wants = tensor_wants (self, t, &any);

      group = tensor_row_group (self, t, wants);
      per_block = MAX (per_block / group, 1) * group;

      g_ptr_array_add (p.wants, wants);
      if (!any)
        continue;
      for (guint64 first = 0; ok && first < n_rows; first += per_block)
        {
          Block *b = g_new0 (Block, 1);

          b->tensor = g_object_ref (t);
          b->first_row = first;
          b->n_rows = MIN (per_block, n_rows - first);
          b->group = group;
          b->last_of_tensor = first + b->n_rows >= n_rows;
          b->wants = wants;
          b->encoded = g_new0 (GByteArray *, self->n_formats);
          g_queue_push_tail (&p.queue, b);
          if (block_needs_f32 (b, self->n_formats))
            g_thread_pool_push (self->pool, b, NULL);
          else
            b->done = TRUE;
          while (ok && p.queue.length >= p.window)
            ok = drain_one (self, &p, cancellable, error);
        }
      if (!ok)
        break;
    }
  while (ok && p.queue.length > 0)
    ok = drain_one (self, &p, cancellable, error);
  if (!ok)
    drain_all_quietly (self, &p);
  g_thread_pool_free (self->pool, FALSE, TRUE);
  self->pool = NULL;
  g_ptr_array_unref (p.wants);
  return ok;
}

/* Every pass but the last only reads; each ends with the formats' end_pass(). */
static gboolean
run_passes (SmeltExportJob  *self,
            GCancellable    *cancellable,
            GError         **error)
{
  guint passes = max_passes (self);
  guint64 done = 0;

  for (guint pass = 0; pass < passes; pass++)
    {
      gboolean last = pass + 1 == passes;

      set_pass (self, pass);
      if (!stream_tensors (self, last ? "exporting" : "scanning", done, cancellable, error))
        return FALSE;
      done += compute_pass_total (self);
      for (guint f = 0; !last && f < self->formats->len; f++)
        {
          SmeltFormat *format = g_ptr_array_index (self->formats, f);
          guint n = smelt_format_get_n_passes (format);

          if (pass + n < passes || pass + n - passes + 1 >= n)
            continue;
          if (!smelt_format_end_pass (format, pass + n - passes, error))
            {
              g_prefix_error (error, "export “%s”: ", smelt_format_get_name (format));
              return FALSE;
            }
        }
    }
  return TRUE;
}

static gboolean
finish_and_commit (SmeltExportJob  *self,
                   GCancellable    *cancellable,
                   GError         **error)
{
  g_autofree char *name = smelt_recipe_get_name (self->recipe);
  g_autofree char *message = g_strdup_printf ("Export %s with smelt %s", name, SMELT_VERSION_S);

  report (self, "finishing", NULL, self->plan_total, TRUE);
  for (guint i = 0; i < self->formats->len; i++)
    {
      SmeltFormat *f = g_ptr_array_index (self->formats, i);

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      if (!smelt_format_finish (f, cancellable, error))
        {
          g_prefix_error (error, "export “%s”: ", smelt_format_get_name (f));
          return FALSE;
        }
    }
  for (guint i = 0; i < self->destinations->len; i++)
    {
      SmeltDestination *d = g_ptr_array_index (self->destinations, i);
      gulong handler;
      gboolean ok;

      /* once per destination: each upload a destination reports starts a
       * stage of its own */
      report (self, "committing", NULL, self->plan_total, TRUE);
      g_clear_pointer (&self->reported_stage, g_free);
      wait_for_caller (self, cancellable);
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return FALSE;
      handler = g_signal_connect (d, "progress", G_CALLBACK (on_destination_progress), self);
      ok = smelt_destination_commit (d, message, cancellable, error);
      g_signal_handler_disconnect (d, handler);
      if (!ok)
        return FALSE;
      if (g_array_index (self->commit_reports, gboolean, i))
        self->commit_base = MIN (self->commit_base + self->commit_share, 1.0);
    }
  return TRUE;
}

static void
abort_all (SmeltExportJob *self)
{
  for (guint i = 0; self->destinations && i < self->destinations->len; i++)
    smelt_destination_abort (g_ptr_array_index (self->destinations, i));
}

/* Equal shares of the fraction for the export and for each commit that
 * reports its own work: no way to know upload speed in advance, and a
 * fixed rule keeps the bar honest about there being a second phase. */
static void
share_fraction (SmeltExportJob *self)
{
  guint n = 0;

  g_clear_pointer (&self->commit_reports, g_array_unref);
  self->commit_reports = g_array_sized_new (FALSE, FALSE, sizeof (gboolean), self->destinations->len);
  for (guint i = 0; i < self->destinations->len; i++)
    {
      gboolean reports = smelt_destination_reports_commit_progress (g_ptr_array_index (self->destinations, i));

      g_array_append_val (self->commit_reports, reports);
      n += reports ? 1 : 0;
    }
  self->export_share = 1.0 / (n + 1);
  self->commit_share = n ? self->export_share : 0.0;
  self->commit_base = self->export_share;
}

static gboolean
run_internal (SmeltExportJob  *self,
              GCancellable    *cancellable,
              GError         **error)
{
  if (self->ran)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "this export job has already run");
      return FALSE;
    }
  self->ran = TRUE;
  report (self, "preparing", NULL, 0, TRUE);
  if (!smelt_export_job_prepare (self, cancellable, error))
    return FALSE;
  share_fraction (self);
  report (self, "exporting", NULL, 0, TRUE);
  if (!run_passes (self, cancellable, error) ||
      !finish_and_commit (self, cancellable, error))
    {
      abort_all (self);
      return FALSE;
    }
  report (self, "done", NULL, self->plan_total, TRUE);
  return TRUE;
}

/**
 * smelt_export_job_run:
 * @self: a #SmeltExportJob
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Runs the job on this thread (with worker threads underneath). On
 * failure or cancellation no file is left under a final name.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_export_job_run (SmeltExportJob  *self,
                      GCancellable    *cancellable,
                      GError         **error)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), FALSE);
  self->deliver_async = FALSE;
  return run_internal (self, cancellable, error);
}

static void
run_thread (GTask        *task,
            gpointer      source_object,
            gpointer      task_data,
            GCancellable *cancellable)
{
  SmeltExportJob *self = source_object;
  GError *error = NULL;

  if (run_internal (self, cancellable, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/**
 * smelt_export_job_run_async:
 * @self: a #SmeltExportJob
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the job is done
 * @user_data: data for @callback
 *
 * Runs the job in a thread; progress and @callback arrive on the thread
 * default main context of the caller, which must be iterated until
 * @callback runs.
 *
 * Cancelling @cancellable stops the job at the next row block or file,
 * removes what it wrote, and smelt_export_job_run_finish() then fails
 * with %G_IO_ERROR_CANCELLED. Before each destination commits, the job
 * waits until the caller's context has run every #SmeltExportJob::progress
 * emission sent so far, so a cancel issued from a progress handler before
 * #SmeltExportJob:stage is "committing" always wins, however small the
 * model. A cancel that comes once a destination has begun committing may
 * come too late: the job then reports what really happened.
 */
void
smelt_export_job_run_async (SmeltExportJob      *self,
                            GCancellable        *cancellable,
                            GAsyncReadyCallback  callback,
                            gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (SMELT_IS_EXPORT_JOB (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, smelt_export_job_run_async);
  /* the result says whether files were committed, not whether someone
   * pressed cancel after the fact */
  g_task_set_check_cancellable (task, FALSE);
  g_clear_pointer (&self->context, g_main_context_unref);
  self->context = g_main_context_ref_thread_default ();
  self->deliver_async = TRUE;
  g_task_run_in_thread (task, run_thread);
}

/**
 * smelt_export_job_run_finish:
 * @self: a #SmeltExportJob
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Finishes smelt_export_job_run_async(). A job that failed or was
 * cancelled (%G_IO_ERROR_CANCELLED) has removed what it wrote.
 *
 * Returns: %TRUE if the job succeeded
 */
gboolean
smelt_export_job_run_finish (SmeltExportJob  *self,
                             GAsyncResult    *result,
                             GError         **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * smelt_export_job_get_stage:
 * @self: a #SmeltExportJob
 *
 * Gets the current stage.
 *
 * Returns: the current stage
 */
const char *
smelt_export_job_get_stage (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  return self->stage;
}

/**
 * smelt_export_job_get_fraction:
 * @self: a #SmeltExportJob
 *
 * Gets progress from 0 to 1.
 *
 * Returns: progress from 0 to 1
 */
double
smelt_export_job_get_fraction (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return self->fraction;
}

/**
 * smelt_export_job_get_current_tensor:
 * @self: a #SmeltExportJob
 *
 * Gets the tensor being written.
 *
 * Returns: (nullable): the tensor being written
 */
const char *
smelt_export_job_get_current_tensor (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), NULL);
  return self->current_tensor;
}

/**
 * smelt_export_job_get_bytes_done:
 * @self: a #SmeltExportJob
 *
 * Gets bytes of tensor data processed.
 *
 * Returns: bytes of tensor data processed
 */
guint64
smelt_export_job_get_bytes_done (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return self->bytes_done;
}

/**
 * smelt_export_job_get_rate:
 * @self: a #SmeltExportJob
 *
 * Gets bytes of tensor data processed per second so far.
 *
 * Returns: bytes of tensor data processed per second so far
 */
double
smelt_export_job_get_rate (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return self->rate;
}

/**
 * smelt_export_job_get_bytes_total:
 * @self: a #SmeltExportJob
 *
 * Gets bytes of tensor data to process.
 *
 * Returns: bytes of tensor data to process
 */
guint64
smelt_export_job_get_bytes_total (SmeltExportJob *self)
{
  g_return_val_if_fail (SMELT_IS_EXPORT_JOB (self), 0);
  return self->bytes_total;
}
