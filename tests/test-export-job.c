/* test-export-job.c: the library API of a job: async run, progress on the
 * caller's thread, cancellation
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <glib/gstdio.h>

#include "smelt-private.h"

typedef struct {
  GMainLoop *loop;
  GThread   *main_thread;
  double     last_fraction;
  guint      n_progress;
  gboolean   monotonic;
  gboolean   on_main_thread;
  gboolean   ok;
  GError    *error;
  char      *last_stage;
  GHashTable *tensors;   /* current-tensor names seen while exporting */
  guint      n_between; /* reports with 0 < fraction < 1 */
} State;

static char *
make_recipe (const char  *out_dir,
             SmeltRecipe **recipe)
{
  g_autofree char *model = g_build_filename (DEMO_DIR, "model", NULL);
  g_autofree char *adapter = g_build_filename (DEMO_DIR, "adapter", NULL);

  *recipe = smelt_recipe_new ();
  smelt_recipe_set_model (*recipe, model);
  smelt_recipe_add_adapter (*recipe, adapter, 1.0);
  smelt_recipe_add_destination (*recipe, "out", "localfs");
  g_assert_true (smelt_recipe_set_option (*recipe, "out", "Path", out_dir, NULL));
  smelt_recipe_add_export (*recipe, "merged", "merged16", "out");
  return g_build_filename (out_dir, "model.safetensors", NULL);
}

static void
on_progress (SmeltExportJob *job,
             State          *st)
{
  double f = smelt_export_job_get_fraction (job);

  st->n_progress++;
  st->on_main_thread &= g_thread_self () == st->main_thread;
  st->monotonic &= f >= st->last_fraction;
  st->last_fraction = f;
  g_free (st->last_stage);
  st->last_stage = g_strdup (smelt_export_job_get_stage (job));
  if (f > 0.0 && f < 1.0)
    st->n_between++;
  if (st->tensors && g_str_equal (st->last_stage, "exporting") &&
      smelt_export_job_get_current_tensor (job) != NULL)
    g_hash_table_add (st->tensors, g_strdup (smelt_export_job_get_current_tensor (job)));
}

static void
on_done (GObject      *source,
         GAsyncResult *result,
         gpointer      data)
{
  State *st = data;

  st->on_main_thread &= g_thread_self () == st->main_thread;
  st->ok = smelt_export_job_run_finish (SMELT_EXPORT_JOB (source), result, &st->error);
  g_main_loop_quit (st->loop);
}

static void
run_async (SmeltExportJob *job,
           GCancellable   *cancellable,
           State          *st)
{
  st->loop = g_main_loop_new (NULL, FALSE);
  st->main_thread = g_thread_self ();
  st->monotonic = TRUE;
  st->on_main_thread = TRUE;
  g_signal_connect (job, "progress", G_CALLBACK (on_progress), st);
  smelt_export_job_run_async (job, cancellable, on_done, st);
  g_main_loop_run (st->loop);
  while (g_main_context_iteration (NULL, FALSE));
  g_main_loop_unref (st->loop);
}

static void
test_async_progress (void)
{
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autoptr(SmeltRecipe) recipe = NULL;
  g_autofree char *shard = make_recipe (out_dir, &recipe);
  g_autoptr(SmeltExportJob) job = smelt_export_job_new (recipe, NULL);
  State st = { 0, };

  run_async (job, NULL, &st);
  g_assert_no_error (st.error);
  g_assert_true (st.ok);
  g_assert_true (st.on_main_thread);
  g_assert_true (st.monotonic);
  g_assert_cmpuint (st.n_progress, >=, 3);
  g_assert_cmpstr (st.last_stage, ==, "done");
  g_assert_cmpfloat (st.last_fraction, ==, 1.0);
  g_assert_cmpuint (smelt_export_job_get_bytes_done (job), ==, smelt_export_job_get_bytes_total (job));
  g_assert_true (g_file_test (shard, G_FILE_TEST_IS_REGULAR));
  g_assert_true (smelt_source_get_n_merged (smelt_export_job_get_source (job)) > 0);
  g_free (st.last_stage);
}

/* progress-interval 0: a report per block, each naming a tensor of the
 * model, with the fraction rising through them */
static void
test_every_block (void)
{
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autoptr(SmeltRecipe) recipe = NULL;
  g_autofree char *shard = make_recipe (out_dir, &recipe);
  g_autoptr(SmeltExportJob) job = smelt_export_job_new (recipe, NULL);
  g_autoptr(GHashTable) tensors = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  State st = { 0, };
  SmeltModel *model;
  guint n_model;

  g_assert_cmpuint (smelt_export_job_get_progress_interval (job), ==, 100);
  g_object_set (job, "progress-interval", 0, NULL);
  g_assert_cmpuint (smelt_export_job_get_progress_interval (job), ==, 0);
  st.tensors = tensors;
  run_async (job, NULL, &st);
  g_assert_no_error (st.error);
  g_assert_true (st.ok && st.monotonic && st.on_main_thread);
  g_assert_cmpfloat (st.last_fraction, ==, 1.0);
  model = smelt_source_get_model (smelt_export_job_get_source (job));
  n_model = smelt_model_get_n_tensors (model);
  /* every tensor is a block or more of this small model */
  g_assert_cmpuint (g_hash_table_size (tensors), ==, n_model);
  g_assert_cmpuint (st.n_between, >=, n_model - 1);
  {
    GHashTableIter it;
    gpointer name;

    g_hash_table_iter_init (&it, tensors);
    while (g_hash_table_iter_next (&it, &name, NULL))
      g_assert_nonnull (smelt_model_lookup_tensor (model, name));
  }
  g_free (st.last_stage);
}

static void
test_cancelled (void)
{
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autoptr(SmeltRecipe) recipe = NULL;
  g_autofree char *shard = make_recipe (out_dir, &recipe);
  g_autoptr(SmeltExportJob) job = smelt_export_job_new (recipe, NULL);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GDir) d = NULL;
  State st = { 0, };

  g_cancellable_cancel (cancellable);
  run_async (job, cancellable, &st);
  g_assert_false (st.ok);
  g_assert_error (st.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&st.error);
  /* nothing at all: no final names, no .partial files */
  g_assert_false (g_file_test (shard, G_FILE_TEST_EXISTS));
  d = g_dir_open (out_dir, 0, NULL);
  g_assert_true (d == NULL || g_dir_read_name (d) == NULL);
  g_free (st.last_stage);
}

static void
test_sync_matches_async (void)
{
  /* the same recipe, run synchronously at 1 and 3 threads: same bytes */
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  char *bytes[2] = { NULL, NULL };
  gsize len[2];

  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *out_dir = g_strdup_printf ("%s/out%u", dir, i);
      g_autoptr(SmeltRecipe) recipe = NULL;
      g_autofree char *shard = make_recipe (out_dir, &recipe);
      g_autoptr(SmeltExportJob) job = smelt_export_job_new (recipe, NULL);
      g_autoptr(GError) error = NULL;

      smelt_export_job_set_n_threads (job, i == 0 ? 1 : 3);
      g_assert_true (smelt_export_job_run (job, NULL, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (smelt_export_job_get_stage (job), ==, "done");
      g_assert_true (g_file_get_contents (shard, &bytes[i], &len[i], NULL));
      /* a job runs once */
      g_assert_false (smelt_export_job_run (job, NULL, &error));
    }
  g_assert_cmpmem (bytes[0], len[0], bytes[1], len[1]);
  g_free (bytes[0]);
  g_free (bytes[1]);
}

static void
copy_into (const char *from_dir,
           const char *name,
           const char *to_dir)
{
  g_autofree char *from = g_build_filename (from_dir, name, NULL);
  g_autofree char *to = g_build_filename (to_dir, name, NULL);
  g_autofree char *data = NULL;
  gsize len;

  g_assert_true (g_file_get_contents (from, &data, &len, NULL));
  g_assert_true (g_file_set_contents (to, data, len, NULL));
}

static void
test_tokenizer_files (void)
{
  /* an adapter that saved only tokenizer_config.json: that file comes from
   * the adapter, every other tokenizer file still from the base */
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *adapter = g_build_filename (dir, "adapter", NULL);
  g_autofree char *demo_adapter = g_build_filename (DEMO_DIR, "adapter", NULL);
  g_autofree char *demo_model = g_build_filename (DEMO_DIR, "model", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autofree char *marker = g_build_filename (adapter, "tokenizer_config.json", NULL);
  g_autoptr(SmeltRecipe) recipe = smelt_recipe_new ();
  g_autoptr(SmeltExportJob) job = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *got = NULL;
  g_autofree char *base_tok = NULL;
  g_autofree char *out_tok = NULL;
  g_autofree char *out_cfg = g_build_filename (out_dir, "tokenizer_config.json", NULL);
  g_autofree char *out_json = g_build_filename (out_dir, "tokenizer.json", NULL);
  g_autofree char *base_json = g_build_filename (demo_model, "tokenizer.json", NULL);

  g_assert_cmpint (g_mkdir (adapter, 0755), ==, 0);
  copy_into (demo_adapter, "adapter_config.json", adapter);
  copy_into (demo_adapter, "adapter_model.safetensors", adapter);
  g_assert_true (g_file_set_contents (marker, "{\"from\": \"adapter\"}", -1, NULL));

  smelt_recipe_set_model (recipe, demo_model);
  smelt_recipe_add_adapter (recipe, adapter, 1.0);
  smelt_recipe_add_destination (recipe, "out", "localfs");
  g_assert_true (smelt_recipe_set_option (recipe, "out", "Path", out_dir, NULL));
  smelt_recipe_add_export (recipe, "merged", "merged16", "out");
  job = smelt_export_job_new (recipe, NULL);
  g_assert_true (smelt_export_job_run (job, NULL, &error));
  g_assert_no_error (error);

  g_assert_true (g_file_get_contents (out_cfg, &got, NULL, NULL));
  g_assert_cmpstr (got, ==, "{\"from\": \"adapter\"}");
  g_assert_true (g_file_get_contents (base_json, &base_tok, NULL, NULL));
  g_assert_true (g_file_get_contents (out_json, &out_tok, NULL, NULL));
  g_assert_cmpstr (out_tok, ==, base_tok);
}

static void
run_merged (const char *out_dir,
            const char *max_shard_size)
{
  g_autoptr(SmeltRecipe) recipe = NULL;
  g_autofree char *shard = make_recipe (out_dir, &recipe);
  g_autoptr(SmeltExportJob) job = NULL;
  g_autoptr(GError) error = NULL;

  g_assert_true (smelt_recipe_set_option (recipe, "out", "Overwrite", "true", NULL));
  g_assert_true (smelt_recipe_set_option (recipe, "merged", "MaxShardSize", max_shard_size, NULL));
  job = smelt_export_job_new (recipe, NULL);
  g_assert_true (smelt_export_job_run (job, NULL, &error));
  g_assert_no_error (error);
}

static void
test_stale_shards (void)
{
  /* re-exporting unsharded over a sharded export removes the old shards
   * and index (a stale index would point loaders at them) and nothing else */
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autofree char *index = g_build_filename (out_dir, "model.safetensors.index.json", NULL);
  g_autofree char *single = g_build_filename (out_dir, "model.safetensors", NULL);
  g_autofree char *notes = g_build_filename (out_dir, "notes.txt", NULL);
  g_autoptr(GDir) d = NULL;
  const char *name;
  guint n_shards = 0;

  run_merged (out_dir, "100kB");
  g_assert_true (g_file_test (index, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (single, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_set_contents (notes, "mine", -1, NULL));

  run_merged (out_dir, "5GB");
  g_assert_false (g_file_test (index, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (single, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (notes, G_FILE_TEST_EXISTS));
  d = g_dir_open (out_dir, 0, NULL);
  while ((name = g_dir_read_name (d)))
    n_shards += g_str_has_prefix (name, "model-");
  g_assert_cmpuint (n_shards, ==, 0);
}

/* A two-pass format (tests/plugins/two-pass.c) next to merged16: the
 * scan pass sees every tensor before end_pass(), end_pass() comes before
 * anything is written, both passes see the same rows, and progress rises
 * once to 1 over both. */
static void
test_two_passes (void)
{
  g_autofree char *dir = g_dir_make_tmp ("smelt-job-XXXXXX", NULL);
  g_autofree char *out_dir = g_build_filename (dir, "out", NULL);
  g_autofree char *log_path = g_build_filename (out_dir, "passes.txt", NULL);
  g_autoptr(SmeltRecipe) recipe = NULL;
  g_autofree char *shard = make_recipe (out_dir, &recipe);
  g_autoptr(SmeltExportJob) job = NULL;
  g_autofree char *log = NULL;
  g_auto(GStrv) lines = NULL;
  guint n_scan = 0, n_write = 0, n_sums = 0;
  gboolean ended = FALSE;
  State st = { 0, };

  smelt_recipe_add_export (recipe, "twice", "two-pass", "out");
  job = smelt_export_job_new (recipe, NULL);
  run_async (job, NULL, &st);
  g_assert_no_error (st.error);
  g_assert_true (st.ok);
  g_assert_true (st.monotonic);
  g_assert_cmpfloat (st.last_fraction, ==, 1.0);
  g_assert_true (g_file_test (shard, G_FILE_TEST_IS_REGULAR));
  g_assert_true (g_file_get_contents (log_path, &log, NULL, NULL));
  lines = g_strsplit (log, "\n", -1);
  for (guint i = 0; lines[i] && *lines[i]; i++)
    {
      if (g_str_has_prefix (lines[i], "scan "))
        {
          g_assert_false (ended);
          n_scan++;
        }
      else if (g_str_equal (lines[i], "end 0"))
        {
          g_assert_false (ended);
          ended = TRUE;
        }
      else if (g_str_has_prefix (lines[i], "write "))
        {
          g_assert_true (ended);
          n_write++;
        }
      else
        {
          g_auto(GStrv) f = g_strsplit (lines[i], " ", -1);

          g_assert_cmpstr (f[0], ==, "sum");
          g_assert_cmpuint (g_strv_length (f), ==, 4);
          /* same rows, same slices, same order: bit-identical sums */
          g_assert_cmpstr (f[2], ==, f[3]);
          n_sums++;
        }
    }
  g_assert_true (ended);
  g_assert_cmpuint (n_scan, ==, smelt_source_get_n_tensors (smelt_export_job_get_source (job)));
  g_assert_cmpuint (n_write, ==, n_scan);
  g_assert_cmpuint (n_sums, ==, n_scan);
  g_free (st.last_stage);
}

/* Only the two-pass fixture beside the real plugins: the other fixtures
 * are broken on purpose. */
static void
add_two_pass_plugin (const char *tmp)
{
  const char *files[] = { "libsmelt-two-pass.so", "two-pass.plugin" };
  const char *old = g_getenv ("SMELT_PLUGIN_PATH");
  g_autofree char *path = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *from = g_build_filename (FIXTURE_PLUGIN_DIR, files[i], NULL);
      g_autofree char *to = g_build_filename (tmp, files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, NULL));
      g_assert_true (g_file_set_contents (to, data, len, NULL));
    }
  path = old && *old ? g_strconcat (old, G_SEARCHPATH_SEPARATOR_S, tmp, NULL) : g_strdup (tmp);
  g_setenv ("SMELT_PLUGIN_PATH", path, TRUE);
}

int
main (int argc, char **argv)
{
  g_autofree char *plugins = g_dir_make_tmp ("smelt-job-plugins-XXXXXX", NULL);
  int ret;

  g_test_init (&argc, &argv, NULL);
  add_two_pass_plugin (plugins);
  g_test_add_func ("/export-job/async-progress", test_async_progress);
  g_test_add_func ("/export-job/every-block", test_every_block);
  g_test_add_func ("/export-job/cancelled", test_cancelled);
  g_test_add_func ("/export-job/sync-and-threads", test_sync_matches_async);
  g_test_add_func ("/export-job/tokenizer-files", test_tokenizer_files);
  g_test_add_func ("/export-job/stale-shards", test_stale_shards);
  g_test_add_func ("/export-job/two-passes", test_two_passes);
  ret = g_test_run ();
  for (guint i = 0; i < 2; i++)
    {
      g_autofree char *p = g_build_filename (plugins, i ? "two-pass.plugin" : "libsmelt-two-pass.so", NULL);
      g_unlink (p);
    }
  g_rmdir (plugins);
  return ret;
}
