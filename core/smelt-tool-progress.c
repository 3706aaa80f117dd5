/* smelt-tool-progress.c: progress on a terminal, as plain lines, or JSON
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <unistd.h>

#include "smelt-tool.h"

struct _SmeltProgressView
{
  SmeltExportJob    *job;
  SmeltProgressMode  mode;
  gulong             handler;
  gint64             start;
  gint64             last_plain;
  double             last_plain_fraction;
  char              *last_stage;
  gboolean           bar_drawn;
};

gboolean
smelt_tool_parse_progress_mode (const char        *text,
                                SmeltProgressMode *mode)
{
  static const char * const names[] = { "auto", "bar", "plain", "json", "none", NULL };

  for (guint i = 0; names[i]; i++)
    if (g_str_equal (text, names[i]))
      {
        *mode = (SmeltProgressMode) i;
        return TRUE;
      }
  return FALSE;
}

static double
rate_of (SmeltProgressView *view)
{
  return smelt_export_job_get_rate (view->job);
}

static char *
format_eta (SmeltProgressView *view)
{
  double rate = rate_of (view);
  guint64 left = smelt_export_job_get_bytes_total (view->job) - smelt_export_job_get_bytes_done (view->job);
  guint64 secs;

  if (rate <= 0 || smelt_export_job_get_bytes_done (view->job) == 0)
    return g_strdup ("--:--");
  secs = (guint64) (left / rate);
  if (secs >= 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u:%02u", secs / 3600,
                            (guint) (secs / 60 % 60), (guint) (secs % 60));
  return g_strdup_printf ("%u:%02u", (guint) (secs / 60), (guint) (secs % 60));
}

static void
draw_bar (SmeltProgressView *view)
{
  SmeltExportJob *job = view->job;
  double f = smelt_export_job_get_fraction (job);
  const guint width = 28;
  guint filled = (guint) (f * width);
  g_autofree char *done = smelt_format_size (smelt_export_job_get_bytes_done (job));
  g_autofree char *total = smelt_format_size (smelt_export_job_get_bytes_total (job));
  g_autofree char *rate = smelt_format_size ((guint64) rate_of (view));
  g_autofree char *eta = format_eta (view);
  GString *bar = g_string_new (NULL);

  for (guint i = 0; i < width; i++)
    g_string_append_c (bar, i < filled ? '=' : (i == filled ? '>' : ' '));
  fprintf (stderr, "\r\033[K%-10s %3d%% [%s] %s / %s  %s/s  ETA %s",
           smelt_export_job_get_stage (job), (int) (f * 100), bar->str, done, total, rate, eta);
  fflush (stderr);
  g_string_free (bar, TRUE);
  view->bar_drawn = TRUE;
}

static void
print_plain (SmeltProgressView *view)
{
  SmeltExportJob *job = view->job;
  const char *stage = smelt_export_job_get_stage (job);
  double f = smelt_export_job_get_fraction (job);
  gint64 now = g_get_monotonic_time ();
  gboolean stage_changed = g_strcmp0 (stage, view->last_stage) != 0;
  g_autofree char *done = NULL;
  g_autofree char *total = NULL;
  g_autofree char *rate = NULL;

  /* a line per stage, then every 10% or 10 s: readable in CI logs */
  if (!stage_changed && f - view->last_plain_fraction < 0.1 &&
      now - view->last_plain < 10 * G_USEC_PER_SEC)
    return;
  done = smelt_format_size (smelt_export_job_get_bytes_done (job));
  total = smelt_format_size (smelt_export_job_get_bytes_total (job));
  rate = smelt_format_size ((guint64) rate_of (view));
  fprintf (stderr, "smelt: %s %3d%% %s / %s (%s/s)\n", stage, (int) (f * 100), done, total, rate);
  g_free (view->last_stage);
  view->last_stage = g_strdup (stage);
  view->last_plain = now;
  view->last_plain_fraction = f;
}

static void
print_json (SmeltProgressView *view)
{
  SmeltExportJob *job = view->job;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "stage");
  json_builder_add_string_value (b, smelt_export_job_get_stage (job));
  json_builder_set_member_name (b, "fraction");
  json_builder_add_double_value (b, smelt_export_job_get_fraction (job));
  json_builder_set_member_name (b, "bytes_done");
  json_builder_add_int_value (b, (gint64) smelt_export_job_get_bytes_done (job));
  json_builder_set_member_name (b, "bytes_total");
  json_builder_add_int_value (b, (gint64) smelt_export_job_get_bytes_total (job));
  json_builder_set_member_name (b, "rate");
  json_builder_add_double_value (b, rate_of (view));
  json_builder_set_member_name (b, "tensor");
  if (smelt_export_job_get_current_tensor (job))
    json_builder_add_string_value (b, smelt_export_job_get_current_tensor (job));
  else
    json_builder_add_null_value (b);
  /* at the end, where each export went (a Hub destination names its
   * commit here), as the other modes print it */
  if (g_str_equal (smelt_export_job_get_stage (job), "done"))
    {
      g_auto(GStrv) exports = smelt_export_job_list_exports (job);

      json_builder_set_member_name (b, "exports");
      json_builder_begin_array (b);
      for (guint i = 0; exports[i]; i++)
        {
          g_autofree char *where = smelt_export_job_describe_destination (job, exports[i]);

          json_builder_begin_object (b);
          json_builder_set_member_name (b, "name");
          json_builder_add_string_value (b, exports[i]);
          json_builder_set_member_name (b, "destination");
          if (where)
            json_builder_add_string_value (b, where);
          else
            json_builder_add_null_value (b);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = json_to_string (root, FALSE);
  printf ("%s\n", text);
  fflush (stdout);
}

static void
on_progress (SmeltExportJob    *job,
             SmeltProgressView *view)
{
  switch (view->mode)
    {
    case SMELT_PROGRESS_BAR:
      draw_bar (view);
      break;
    case SMELT_PROGRESS_PLAIN:
      print_plain (view);
      break;
    case SMELT_PROGRESS_JSON:
      print_json (view);
      break;
    case SMELT_PROGRESS_AUTO:
    case SMELT_PROGRESS_NONE:
    default:
      break;
    }
}

SmeltProgressView *
smelt_progress_view_new (SmeltExportJob    *job,
                         SmeltProgressMode  mode)
{
  SmeltProgressView *view = g_new0 (SmeltProgressView, 1);

  if (mode == SMELT_PROGRESS_AUTO)
    mode = isatty (STDERR_FILENO) ? SMELT_PROGRESS_BAR : SMELT_PROGRESS_PLAIN;
  view->job = g_object_ref (job);
  view->mode = mode;
  view->start = g_get_monotonic_time ();
  view->last_plain_fraction = -1;
  view->handler = g_signal_connect (job, "progress", G_CALLBACK (on_progress), view);
  return view;
}

void
smelt_progress_view_finish (SmeltProgressView *view,
                            gboolean           success)
{
  if (view->mode == SMELT_PROGRESS_BAR && view->bar_drawn)
    fprintf (stderr, success ? "\n" : "\r\033[K");
}

void
smelt_progress_view_free (SmeltProgressView *view)
{
  g_signal_handler_disconnect (view->job, view->handler);
  g_object_unref (view->job);
  g_free (view->last_stage);
  g_free (view);
}
