/* smelt-tool.c: the smelt command-line tool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <glib-unix.h>

#include "smelt-tool.h"

static void
print_error (const GError *error)
{
  fprintf (stderr, "smelt: error: %s\n", error->message);
}

/* Recipe problems are the user's to fix before anything runs (exit 2);
 * everything else means the export itself failed (exit 1). */
static int
exit_code_for (const GError *error)
{
  if (error->domain == SMELT_RECIPE_ERROR || error->domain == G_OPTION_ERROR)
    return SMELT_EXIT_USAGE;
  return SMELT_EXIT_FAILED;
}

static int
usage_error (GOptionContext *ctx,
             const char     *fmt,
             ...) G_GNUC_PRINTF (2, 3);

static int
usage_error (GOptionContext *ctx,
             const char     *fmt,
             ...)
{
  va_list args;
  g_autofree char *msg = NULL;

  va_start (args, fmt);
  msg = g_strdup_vprintf (fmt, args);
  va_end (args);
  /* one line, like every other error; --help has the details */
  fprintf (stderr, "smelt: error: %s (see “smelt help”)\n", msg);
  return SMELT_EXIT_USAGE;
}

/* ---- running a job ---- */

typedef struct {
  GMainLoop    *loop;
  GCancellable *cancellable;
  gboolean      ok;
  GError       *error;
  gboolean      interrupted;
} RunState;

static gboolean
on_signal (gpointer data)
{
  RunState *st = data;

  if (!st->interrupted)
    fprintf (stderr, "\nsmelt: interrupted, removing partial files…\n");
  st->interrupted = TRUE;
  g_cancellable_cancel (st->cancellable);
  return G_SOURCE_CONTINUE;
}

static void
on_done (GObject      *source,
         GAsyncResult *result,
         gpointer      data)
{
  RunState *st = data;

  st->ok = smelt_export_job_run_finish (SMELT_EXPORT_JOB (source), result, &st->error);
  g_main_loop_quit (st->loop);
}

static void
print_plan (SmeltExportJob *job,
            gboolean        done)
{
  g_auto(GStrv) exports = smelt_export_job_list_exports (job);
  SmeltSource *source = smelt_export_job_get_source (job);
  guint64 grand = 0;

  if (!done)
    {
      SmeltModel *model = smelt_source_get_model (source);
      guint64 n = smelt_model_get_n_parameters (model);
      g_autofree char *params = n >= 1000000000 ? g_strdup_printf ("%.2fB", n / 1e9)
                                                : g_strdup_printf ("%.2fM", n / 1e6);

      printf ("Model   %s (%s, %s parameters, %u tensors)\n", smelt_model_get_path (model),
              smelt_model_get_architecture (model) ? smelt_model_get_architecture (model) : "?",
              params, smelt_model_get_n_tensors (model));
      for (guint i = 0; i < smelt_source_get_n_adapters (source); i++)
        printf ("Adapter %s (weight %g)\n", smelt_adapter_get_path (smelt_source_get_adapter (source, i)),
                smelt_source_get_adapter_weight (source, i));
      printf ("Merge   %u of %u output tensors change\n\n", smelt_source_get_n_merged (source),
              smelt_source_get_n_tensors (source));
    }
  for (guint i = 0; exports[i]; i++)
    {
      g_autoptr(GPtrArray) files = smelt_export_job_get_planned_files (job, exports[i]);
      g_autofree char *where = smelt_export_job_describe_destination (job, exports[i]);
      guint64 total = 0;

      printf ("%s %s → %s\n", done ? "Wrote" : "Export", exports[i], where);
      for (guint j = 0; files && j < files->len; j++)
        {
          SmeltPlannedFile *f = g_ptr_array_index (files, j);
          g_autofree char *size = f->size >= 0 ? smelt_format_size (f->size) : g_strdup ("?");

          printf ("  %-44s %10s\n", f->path, size);
          total += f->size > 0 ? f->size : 0;
        }
      grand += total;
    }
  {
    g_autofree char *size = smelt_format_size (grand);
    printf ("%s %s\n", done ? "Total written:" : "Total to write:", size);
  }
}

/* What each export says of its own work (gguf-quant's quality report),
 * after the list of files. */
static void
print_summaries (SmeltExportJob *job)
{
  g_auto(GStrv) exports = smelt_export_job_list_exports (job);

  for (guint i = 0; exports[i]; i++)
    {
      g_autofree char *summary = smelt_export_job_get_summary (job, exports[i]);

      if (summary != NULL && *summary != '\0')
        printf ("\n%s", summary);
    }
}

static int
run_job (SmeltRecipe       *recipe,
         guint              n_threads,
         gboolean           dry_run,
         SmeltProgressMode  mode)
{
  g_autoptr(SmeltExportJob) job = smelt_export_job_new (recipe, NULL);
  g_autoptr(GError) error = NULL;
  RunState st = { 0, };
  SmeltProgressView *view;
  guint sigint, sigterm;

  smelt_export_job_set_n_threads (job, n_threads);
  if (dry_run)
    {
      if (!smelt_export_job_prepare (job, NULL, &error))
        {
          print_error (error);
          return exit_code_for (error);
        }
      print_plan (job, FALSE);
      return SMELT_EXIT_OK;
    }

  st.loop = g_main_loop_new (NULL, FALSE);
  st.cancellable = g_cancellable_new ();
  sigint = g_unix_signal_add (SIGINT, on_signal, &st);
  sigterm = g_unix_signal_add (SIGTERM, on_signal, &st);
  view = smelt_progress_view_new (job, mode);

  smelt_export_job_run_async (job, st.cancellable, on_done, &st);
  g_main_loop_run (st.loop);
  /* let the last progress reports through before printing the summary */
  while (g_main_context_iteration (NULL, FALSE));

  smelt_progress_view_finish (view, st.ok);
  smelt_progress_view_free (view);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_main_loop_unref (st.loop);
  g_object_unref (st.cancellable);

  if (!st.ok)
    {
      int code = exit_code_for (st.error);

      if (g_error_matches (st.error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        fprintf (stderr, "smelt: cancelled; no output was kept\n");
      else
        print_error (st.error);
      g_error_free (st.error);
      return st.interrupted ? 130 : code;
    }
  if (mode != SMELT_PROGRESS_JSON && mode != SMELT_PROGRESS_NONE)
    {
      print_plan (job, TRUE);
      print_summaries (job);
    }
  return SMELT_EXIT_OK;
}

/* ---- smelt run / validate ---- */

static gboolean
apply_overrides (SmeltRecipe  *recipe,
                 char        **sets,
                 GError      **error)
{
  for (guint i = 0; sets && sets[i]; i++)
    if (!smelt_recipe_override (recipe, sets[i], error))
      return FALSE;
  return TRUE;
}

static int
cmd_run (int    argc,
         char **argv,
         gboolean validate_only)
{
  gboolean dry_run = FALSE;
  int jobs = 0;
  g_auto(GStrv) sets = NULL;
  g_autofree char *progress = NULL;
  SmeltProgressMode mode = SMELT_PROGRESS_AUTO;
  GOptionEntry entries[] = {
    { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run, "Print the plan (files and sizes) and stop", NULL },
    { "jobs", 'j', 0, G_OPTION_ARG_INT, &jobs, "Worker threads (default: one per CPU)", "N" },
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &sets, "Override a recipe key", "NAME.Key=Value" },
    { "progress", 0, 0, G_OPTION_ARG_STRING, &progress, "auto, bar, plain, json or none", "MODE" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new (validate_only ? "RECIPE" : "RECIPE");
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltRecipe) recipe = NULL;

  g_option_context_set_summary (ctx, validate_only
                                ? "Check a recipe against the installed plugins without running it."
                                : "Run every export of a recipe in one pass over the model.");
  if (validate_only)
    {
      /* validate takes --set only */
      entries[0] = entries[2];
      entries[1] = (GOptionEntry) { NULL };
    }
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, "%s", error->message);
  if (argc != 2)
    return usage_error (ctx, "expected exactly one recipe file");
  if (progress && !smelt_tool_parse_progress_mode (progress, &mode))
    return usage_error (ctx, "--progress must be auto, bar, plain, json or none");
  if (jobs < 0 || jobs > 1024)
    return usage_error (ctx, "--jobs must be between 1 and 1024");

  recipe = smelt_recipe_new_from_file (argv[1], &error);
  if (recipe == NULL || !apply_overrides (recipe, sets, &error))
    {
      print_error (error);
      return SMELT_EXIT_USAGE;
    }
  if (validate_only)
    {
      if (!smelt_recipe_validate (recipe, NULL, &error))
        {
          print_error (error);
          return SMELT_EXIT_USAGE;
        }
      printf ("%s: valid\n", argv[1]);
      return SMELT_EXIT_OK;
    }
  return run_job (recipe, (guint) jobs, dry_run, mode);
}

/* ---- smelt export ---- */

static int
cmd_export (int    argc,
            char **argv)
{
  g_autofree char *model = NULL;
  g_auto(GStrv) adapters = NULL;
  g_auto(GStrv) weights = NULL;
  g_autofree char *format = NULL;
  g_autofree char *to = NULL;
  g_auto(GStrv) sets = NULL;
  g_auto(GStrv) dest_sets = NULL;
  g_autofree char *hf_repo = NULL;
  g_autofree char *progress = NULL;
  g_autofree char *merge_into = NULL;
  g_autofree char *original = NULL;
  gboolean print_recipe = FALSE, dry_run = FALSE, overwrite = FALSE;
  int jobs = 0;
  SmeltProgressMode mode = SMELT_PROGRESS_AUTO;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model, "Base model directory", "DIR" },
    { "adapter", 'a', 0, G_OPTION_ARG_FILENAME_ARRAY, &adapters, "PEFT adapter directory (repeatable)", "DIR" },
    { "weight", 'w', 0, G_OPTION_ARG_STRING_ARRAY, &weights, "Weight of each adapter (repeatable)", "W" },
    { "merge-into", 0, 0, G_OPTION_ARG_STRING, &merge_into,
      "With a bitsandbytes 4-bit model: merge into its dequantized weights (default) or into --original",
      "dequantized|original16" },
    { "original", 0, 0, G_OPTION_ARG_FILENAME, &original,
      "The 16-bit model the 4-bit --model was quantized from (with --merge-into=original16)", "DIR" },
    { "format", 'f', 0, G_OPTION_ARG_STRING, &format, "Format, e.g. merged16 or safetensors-lora", "NAME" },
    { "to", 't', 0, G_OPTION_ARG_FILENAME, &to, "Output directory, or hf://owner/repo[@branch]", "PATH" },
    { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &sets, "Format option", "Key=Value" },
    { "dest-set", 0, 0, G_OPTION_ARG_STRING_ARRAY, &dest_sets,
      "Destination option, e.g. Private=true for hf://", "Key=Value" },
    { "overwrite", 0, 0, G_OPTION_ARG_NONE, &overwrite, "Write into a non-empty directory", NULL },
    { "print-recipe", 0, 0, G_OPTION_ARG_NONE, &print_recipe, "Print the equivalent recipe and stop", NULL },
    { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &dry_run, "Print the plan and stop", NULL },
    { "jobs", 'j', 0, G_OPTION_ARG_INT, &jobs, "Worker threads", "N" },
    { "progress", 0, 0, G_OPTION_ARG_STRING, &progress, "auto, bar, plain, json or none", "MODE" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new (NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltRecipe) recipe = smelt_recipe_new ();

  g_option_context_set_summary (ctx, "Run a one-off export without writing a recipe.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, "%s", error->message);
  if (argc != 1)
    return usage_error (ctx, "unexpected argument “%s”", argv[1]);
  if (!model || !format || !to)
    return usage_error (ctx, "--model, --format and --to are required");
  if (progress && !smelt_tool_parse_progress_mode (progress, &mode))
    return usage_error (ctx, "--progress must be auto, bar, plain, json or none");
  if (weights && g_strv_length (weights) != (adapters ? g_strv_length (adapters) : 0))
    return usage_error (ctx, "give one --weight per --adapter");
  if (g_str_has_prefix (to, "hf://"))
    {
      /* hf://owner/repo[@branch]: the hf-hub destination */
      const char *at = strchr (to + 5, '@');

      if (smelt_registry_lookup_feature (smelt_registry_get_default (), SMELT_FEATURE_DESTINATION,
                                         "hf-hub") == NULL)
        {
          fprintf (stderr, "smelt: error: hf:// destinations need the hf-hub plugin, which is not "
                   "installed; use a local directory\n");
          return SMELT_EXIT_USAGE;
        }
      if (overwrite)
        return usage_error (ctx, "--overwrite is for local directories; a Hub repo keeps its history");
      hf_repo = at ? g_strndup (to + 5, at - (to + 5)) : g_strdup (to + 5);
      if (*hf_repo == '\0' || (at && at[1] == '\0'))
        return usage_error (ctx, "--to %s: expected hf://owner/repo or hf://owner/repo@branch", to);
    }

  /* absolute paths, so that a printed recipe works from anywhere */
  {
    g_autofree char *abs = g_canonicalize_filename (model, NULL);
    smelt_recipe_set_model (recipe, abs);
  }
  smelt_recipe_set_name (recipe, "export");
  if (merge_into)
    smelt_recipe_set_option (recipe, "Source", "MergeInto", merge_into, NULL);
  if (original)
    {
      g_autofree char *abs = g_canonicalize_filename (original, NULL);
      smelt_recipe_set_option (recipe, "Source", "Original", abs, NULL);
    }
  for (guint i = 0; adapters && adapters[i]; i++)
    {
      char *end = NULL;
      double w = weights ? g_ascii_strtod (weights[i], &end) : 1.0;

      g_autofree char *abs = g_canonicalize_filename (adapters[i], NULL);

      if (weights && (*end != '\0' || end == weights[i]))
        return usage_error (ctx, "--weight “%s” is not a number", weights[i]);
      smelt_recipe_add_adapter (recipe, abs, w);
    }
  if (hf_repo)
    {
      const char *at = strchr (to + 5, '@');

      smelt_recipe_add_destination (recipe, "out", "hf-hub");
      smelt_recipe_set_option (recipe, "out", "Repo", hf_repo, NULL);
      if (at)
        smelt_recipe_set_option (recipe, "out", "Revision", at + 1, NULL);
    }
  else
    {
      g_autofree char *abs = g_canonicalize_filename (to, NULL);

      smelt_recipe_add_destination (recipe, "out", "localfs");
      smelt_recipe_set_option (recipe, "out", "Path", abs, NULL);
    }
  if (overwrite)
    smelt_recipe_set_option (recipe, "out", "Overwrite", "true", NULL);
  for (guint i = 0; dest_sets && dest_sets[i]; i++)
    {
      const char *eq = strchr (dest_sets[i], '=');
      g_autofree char *key = eq ? g_strndup (dest_sets[i], eq - dest_sets[i]) : NULL;

      if (key == NULL || *key == '\0')
        return usage_error (ctx, "--dest-set expects Key=Value, not “%s”", dest_sets[i]);
      smelt_recipe_set_option (recipe, "out", key, eq + 1, NULL);
    }
  smelt_recipe_add_export (recipe, "export", format, "out");
  for (guint i = 0; sets && sets[i]; i++)
    {
      const char *eq = strchr (sets[i], '=');
      g_autofree char *key = eq ? g_strndup (sets[i], eq - sets[i]) : NULL;

      if (key == NULL || *key == '\0')
        return usage_error (ctx, "--set expects Key=Value, not “%s”", sets[i]);
      smelt_recipe_set_option (recipe, "export", key, eq + 1, NULL);
    }
  if (print_recipe)
    {
      g_autofree char *text = smelt_recipe_to_data (recipe, NULL);
      fputs (text, stdout);
      return SMELT_EXIT_OK;
    }
  return run_job (recipe, (guint) MAX (jobs, 0), dry_run, mode);
}

/* ---- smelt plugins ---- */

static const char *
state_name (SmeltPluginState state)
{
  switch (state)
    {
    case SMELT_PLUGIN_STATE_LISTED:
      return "listed";
    case SMELT_PLUGIN_STATE_LOADED:
      return "loaded";
    case SMELT_PLUGIN_STATE_ERROR:
    default:
      return "error";
    }
}

static char *
default_string (GParamSpec *pspec)
{
  const GValue *def = g_param_spec_get_default_value (pspec);
  GType type = G_PARAM_SPEC_VALUE_TYPE (pspec);

  if (G_TYPE_IS_ENUM (type))
    {
      GEnumClass *klass = g_type_class_ref (type);
      GEnumValue *v = g_enum_get_value (klass, g_value_get_enum (def));
      char *s = g_strdup (v ? v->value_nick : "?");

      g_type_class_unref (klass);
      return s;
    }
  if (type == G_TYPE_STRING)
    return g_strdup (g_value_get_string (def) ? g_value_get_string (def) : "");
  if (type == G_TYPE_BOOLEAN)
    return g_strdup (g_value_get_boolean (def) ? "true" : "false");
  if (type == G_TYPE_STRV)
    return g_strjoinv (";", g_value_get_boxed (def) ? g_value_get_boxed (def) : (char *[]) { NULL });
  return g_strdup_value_contents (def);
}

/* "integer", with the range when the property narrows its type's */
static char *
integer_type_string (gint64  lo,
                     guint64 hi,
                     gint64  type_lo,
                     guint64 type_hi)
{
  if (lo == type_lo && hi == type_hi)
    return g_strdup ("integer");
  if (hi == type_hi)
    return g_strdup_printf ("integer ≥ %" G_GINT64_FORMAT, lo);
  return g_strdup_printf ("integer %" G_GINT64_FORMAT "–%" G_GUINT64_FORMAT, lo, hi);
}

static char *
type_string (GParamSpec *pspec)
{
  GType type = G_PARAM_SPEC_VALUE_TYPE (pspec);

  if (G_TYPE_IS_ENUM (type))
    {
      GEnumClass *klass = g_type_class_ref (type);
      GString *s = g_string_new (NULL);

      for (guint i = 0; i < klass->n_values; i++)
        g_string_append_printf (s, "%s%s", i ? "|" : "", klass->values[i].value_nick);
      g_type_class_unref (klass);
      return g_string_free (s, FALSE);
    }
  if (type == G_TYPE_STRING)
    return g_strdup (pspec->flags & SMELT_PARAM_PATH ? "path" : "string");
  if (type == G_TYPE_BOOLEAN)
    return g_strdup ("true|false");
  if (type == G_TYPE_STRV)
    return g_strdup ("list (a;b;c)");
  if (type == G_TYPE_UINT)
    return integer_type_string (G_PARAM_SPEC_UINT (pspec)->minimum, G_PARAM_SPEC_UINT (pspec)->maximum,
                                0, G_MAXUINT);
  if (type == G_TYPE_INT)
    return integer_type_string (G_PARAM_SPEC_INT (pspec)->minimum, G_PARAM_SPEC_INT (pspec)->maximum,
                                G_MININT, G_MAXINT);
  if (type == G_TYPE_UINT64)
    return integer_type_string (G_PARAM_SPEC_UINT64 (pspec)->minimum, G_PARAM_SPEC_UINT64 (pspec)->maximum,
                                0, G_MAXUINT64);
  if (type == G_TYPE_INT64)
    return integer_type_string (G_PARAM_SPEC_INT64 (pspec)->minimum, G_PARAM_SPEC_INT64 (pspec)->maximum,
                                G_MININT64, G_MAXINT64);
  if (type == G_TYPE_DOUBLE)
    return g_strdup ("number");
  return g_strdup (g_type_name (type));
}

static void
add_properties_json (JsonBuilder *b,
                     GType        type)
{
  GObjectClass *klass = g_type_class_ref (type);
  guint n;
  g_autofree GParamSpec **specs = g_object_class_list_properties (klass, &n);

  json_builder_set_member_name (b, "options");
  json_builder_begin_array (b);
  for (guint i = 0; i < n; i++)
    {
      g_autofree char *def = NULL;
      g_autofree char *ty = NULL;

      if (!(specs[i]->flags & G_PARAM_WRITABLE) || g_str_equal (specs[i]->name, "name"))
        continue;
      def = default_string (specs[i]);
      ty = type_string (specs[i]);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "key");
      json_builder_add_string_value (b, g_param_spec_get_nick (specs[i]));
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, ty);
      json_builder_set_member_name (b, "default");
      json_builder_add_string_value (b, def);
      json_builder_set_member_name (b, "description");
      json_builder_add_string_value (b, g_param_spec_get_blurb (specs[i]));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  g_type_class_unref (klass);
}

static void
print_properties (GType type)
{
  GObjectClass *klass = g_type_class_ref (type);
  guint n;
  g_autofree GParamSpec **specs = g_object_class_list_properties (klass, &n);

  for (guint i = 0; i < n; i++)
    {
      g_autofree char *def = NULL;
      g_autofree char *ty = NULL;

      if (!(specs[i]->flags & G_PARAM_WRITABLE) || g_str_equal (specs[i]->name, "name"))
        continue;
      def = default_string (specs[i]);
      ty = type_string (specs[i]);
      printf ("    %-16s %-20s default %s\n", g_param_spec_get_nick (specs[i]), ty, *def ? def : "(none)");
      printf ("    %-16s %s\n", "", g_param_spec_get_blurb (specs[i]));
    }
  g_type_class_unref (klass);
}

static void
plugin_json (JsonBuilder *b,
             SmeltPlugin *p,
             gboolean     detail)
{
  g_auto(GStrv) features = smelt_plugin_list_features (p);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, smelt_plugin_get_name (p));
  json_builder_set_member_name (b, "description");
  json_builder_add_string_value (b, smelt_plugin_get_description (p));
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, smelt_plugin_get_version (p));
  json_builder_set_member_name (b, "filename");
  json_builder_add_string_value (b, smelt_plugin_get_filename (p));
  json_builder_set_member_name (b, "state");
  json_builder_add_string_value (b, state_name (smelt_plugin_get_state (p)));
  json_builder_set_member_name (b, "error");
  if (smelt_plugin_get_error (p))
    json_builder_add_string_value (b, smelt_plugin_get_error (p)->message);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "features");
  json_builder_begin_array (b);
  for (guint i = 0; features[i]; i++)
    {
      SmeltFeatureKind kind = SMELT_FEATURE_FORMAT;

      smelt_plugin_get_feature_kind (p, features[i], &kind);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, features[i]);
      json_builder_set_member_name (b, "kind");
      json_builder_add_string_value (b, kind == SMELT_FEATURE_FORMAT ? "format" : "destination");
      json_builder_set_member_name (b, "description");
      json_builder_add_string_value (b, smelt_plugin_get_feature_description (p, features[i]));
      if (detail && smelt_plugin_get_state (p) == SMELT_PLUGIN_STATE_LOADED)
        add_properties_json (b, smelt_plugin_get_feature_type (p, features[i]));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
}

static void
print_plugin (SmeltPlugin *p,
              gboolean     detail)
{
  g_auto(GStrv) features = smelt_plugin_list_features (p);

  printf ("%-18s %-7s %s\n", smelt_plugin_get_name (p), state_name (smelt_plugin_get_state (p)),
          smelt_plugin_get_description (p) ? smelt_plugin_get_description (p) : "");
  if (smelt_plugin_get_error (p))
    printf ("  error: %s\n", smelt_plugin_get_error (p)->message);
  for (guint i = 0; features[i]; i++)
    {
      SmeltFeatureKind kind = SMELT_FEATURE_FORMAT;

      smelt_plugin_get_feature_kind (p, features[i], &kind);
      printf ("  %s %s: %s\n", kind == SMELT_FEATURE_FORMAT ? "format" : "destination", features[i],
              smelt_plugin_get_feature_description (p, features[i]) ?: "");
      if (detail && smelt_plugin_get_state (p) == SMELT_PLUGIN_STATE_LOADED)
        print_properties (smelt_plugin_get_feature_type (p, features[i]));
    }
}

static int
cmd_plugins (int    argc,
             char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Machine-readable output", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("[NAME]");
  g_autoptr(GError) error = NULL;
  SmeltRegistry *registry = smelt_registry_get_default ();
  GListModel *list = G_LIST_MODEL (registry);
  g_autoptr(JsonBuilder) b = json_builder_new ();
  gboolean broken = FALSE;

  g_option_context_set_summary (ctx, "List plugins, or show one plugin's features and options.\n"
                                "Plugins that fail to load are listed with the reason.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, "%s", error->message);
  if (argc > 2)
    return usage_error (ctx, "expected at most one plugin name");

  if (argc == 2)
    {
      SmeltPlugin *p = smelt_registry_lookup_plugin (registry, argv[1]);

      if (p == NULL)
        p = smelt_registry_lookup_feature (registry, SMELT_FEATURE_FORMAT, argv[1]);
      if (p == NULL)
        p = smelt_registry_lookup_feature (registry, SMELT_FEATURE_DESTINATION, argv[1]);
      if (p == NULL)
        {
          fprintf (stderr, "smelt: error: no plugin or feature named “%s”\n", argv[1]);
          return SMELT_EXIT_USAGE;
        }
      smelt_plugin_load (p, NULL);
      if (json)
        {
          g_autoptr(JsonNode) root = NULL;
          g_autofree char *text = NULL;

          plugin_json (b, p, TRUE);
          root = json_builder_get_root (b);
          text = smelt_json_to_string (root, TRUE, FALSE);
          printf ("%s\n", text);
        }
      else
        print_plugin (p, TRUE);
      return smelt_plugin_get_state (p) == SMELT_PLUGIN_STATE_LOADED ? SMELT_EXIT_OK : SMELT_EXIT_FAILED;
    }

  json_builder_begin_array (b);
  for (guint i = 0; i < g_list_model_get_n_items (list); i++)
    {
      g_autoptr(SmeltPlugin) p = g_list_model_get_item (list, i);

      /* load each one so broken modules are reported, not just listed */
      smelt_plugin_load (p, NULL);
      broken |= smelt_plugin_get_state (p) == SMELT_PLUGIN_STATE_ERROR;
      if (json)
        plugin_json (b, p, FALSE);
      else
        print_plugin (p, FALSE);
    }
  json_builder_end_array (b);
  if (json)
    {
      g_autoptr(JsonNode) root = json_builder_get_root (b);
      g_autofree char *text = smelt_json_to_string (root, TRUE, FALSE);
      printf ("%s\n", text);
    }
  else if (g_list_model_get_n_items (list) == 0)
    {
      g_auto(GStrv) paths = smelt_registry_get_paths (registry);
      g_autofree char *joined = g_strjoinv (":", paths);
      fprintf (stderr, "smelt: no plugins found in %s\n", joined);
    }
  return broken ? SMELT_EXIT_FAILED : SMELT_EXIT_OK;
}

static int
cmd_inspect (int    argc,
             char **argv)
{
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Machine-readable output", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("PATH");
  g_autoptr(GError) error = NULL;

  g_option_context_set_summary (ctx, "Describe a model directory, an adapter directory or a "
                                ".safetensors file, validating it.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return usage_error (ctx, "%s", error->message);
  if (argc != 2)
    return usage_error (ctx, "expected exactly one path");
  return smelt_tool_inspect (argv[1], json);
}

static void
print_usage (FILE *to)
{
  fprintf (to,
           "Usage: smelt COMMAND [OPTIONS]\n\n"
           "Turn a fine-tuned model (base + LoRA adapters) into what people deploy.\n\n"
           "Commands:\n"
           "  run RECIPE        run every export of a recipe (--dry-run, --jobs, --set, --progress)\n"
           "  export            one-off export: --model DIR [--adapter DIR] --format NAME\n"
           "                    --to PATH|hf://owner/repo[@branch]\n"
           "  validate RECIPE   check a recipe without running it\n"
           "  plugins [NAME]    list plugins, or show one plugin's options (--json)\n"
           "  inspect PATH      describe a model, adapter or safetensors file (--json)\n"
           "  version           print the version\n\n"
           "Run “smelt COMMAND --help” for a command's options. Exit status: 0 success,\n"
           "1 export failed, 2 bad usage or invalid recipe.\n");
}

/* Warnings from the library and its plugins (an unknown chat template, a
 * retried upload) are for the user: one plain line each, as the tool's
 * own errors read, rather than GLib's "(smelt:PID): smelt-WARNING **". */
static GLogWriterOutput
write_log (GLogLevelFlags   level,
           const GLogField *fields,
           gsize            n_fields,
           gpointer         user_data)
{
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE))
    for (gsize i = 0; i < n_fields; i++)
      if (g_str_equal (fields[i].key, "MESSAGE"))
        {
          fprintf (stderr, "smelt: %s: %s\n", (level & G_LOG_LEVEL_WARNING) ? "warning" : "note",
                   (const char *) fields[i].value);
          return G_LOG_WRITER_HANDLED;
        }
  return g_log_writer_default (level, fields, n_fields, user_data);
}

int
main (int    argc,
      char **argv)
{
  const char *cmd;

  setlocale (LC_ALL, "");
  g_log_set_writer_func (write_log, NULL, NULL);
  if (argc < 2)
    {
      print_usage (stderr);
      return SMELT_EXIT_USAGE;
    }
  cmd = argv[1];
  /* shift so each command parses its own options */
  argv[1] = g_strdup_printf ("smelt %s", cmd);
  if (g_str_equal (cmd, "run"))
    return cmd_run (argc - 1, argv + 1, FALSE);
  if (g_str_equal (cmd, "validate"))
    return cmd_run (argc - 1, argv + 1, TRUE);
  if (g_str_equal (cmd, "export"))
    return cmd_export (argc - 1, argv + 1);
  if (g_str_equal (cmd, "plugins"))
    return cmd_plugins (argc - 1, argv + 1);
  if (g_str_equal (cmd, "inspect"))
    return cmd_inspect (argc - 1, argv + 1);
  if (g_str_equal (cmd, "version") || g_str_equal (cmd, "--version"))
    {
      printf ("smelt %s (plugin ABI %d.%d)\n", SMELT_VERSION_S, SMELT_PLUGIN_ABI_MAJOR, SMELT_PLUGIN_ABI_MINOR);
      return SMELT_EXIT_OK;
    }
  if (g_str_equal (cmd, "help") || g_str_equal (cmd, "--help") || g_str_equal (cmd, "-h"))
    {
      print_usage (stdout);
      return SMELT_EXIT_OK;
    }
  fprintf (stderr, "smelt: unknown command “%s”\n\n", cmd);
  print_usage (stderr);
  return SMELT_EXIT_USAGE;
}
