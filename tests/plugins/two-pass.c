/* A format that reads the tensors twice before it writes: the job must
 * run its scan pass first, call end_pass() before any file exists, and
 * deliver the same rows both times.
 *
 * It writes passes.txt: the log of calls ("scan" per tensor, "end 0",
 * "write" per tensor), then per tensor the sum of its rows from each pass.
 */
#include <math.h>

#include <smelt/smelt.h>

typedef struct {
  SmeltFormat parent_instance;
  GString    *log;
  GHashTable *sums[2];     /* tensor name → double * */
  gboolean    file_created_early;
} TwoPass;

typedef SmeltFormatClass TwoPassClass;

GType two_pass_get_type (void);

G_DEFINE_TYPE (TwoPass, two_pass, SMELT_TYPE_FORMAT)

static void
two_pass_finalize (GObject *object)
{
  TwoPass *self = (TwoPass *) object;

  g_string_free (self->log, TRUE);
  g_hash_table_unref (self->sums[0]);
  g_hash_table_unref (self->sums[1]);
  G_OBJECT_CLASS (two_pass_parent_class)->finalize (object);
}

static gboolean
two_pass_plan (SmeltFormat  *format,
               SmeltSource  *source,
               GError      **error)
{
  return TRUE;
}

static SmeltRows
two_pass_wants_rows (SmeltFormat *format,
                     SmeltTensor *tensor)
{
  return SMELT_ROWS_F32;
}

static guint
two_pass_get_n_passes (SmeltFormat *format)
{
  return 2;
}

static gboolean
two_pass_encode_rows (SmeltFormat  *format,
                      SmeltTensor  *tensor,
                      guint64       first_row,
                      guint64       n_rows,
                      const float  *rows,
                      GByteArray   *out,
                      GError      **error)
{
  gsize n = n_rows * smelt_tensor_get_row_length (tensor);
  double sum = 0;

  for (gsize i = 0; i < n; i++)
    sum += rows[i];
  g_byte_array_append (out, (const guint8 *) &sum, sizeof sum);
  return TRUE;
}

static gboolean
two_pass_write_rows (SmeltFormat   *format,
                     SmeltTensor   *tensor,
                     guint64        first_row,
                     guint64        n_rows,
                     GBytes        *data,
                     GCancellable  *cancellable,
                     GError       **error)
{
  TwoPass *self = (TwoPass *) format;
  guint pass = smelt_format_get_pass (format);
  const char *name = smelt_tensor_get_name (tensor);
  gsize len;
  const double *parts = g_bytes_get_data (data, &len);
  double *sum = g_hash_table_lookup (self->sums[pass], name);

  if (sum == NULL)
    {
      sum = g_new0 (double, 1);
      g_hash_table_insert (self->sums[pass], g_strdup (name), sum);
      g_string_append_printf (self->log, "%s %s\n", pass == 0 ? "scan" : "write", name);
    }
  for (gsize i = 0; i < len / sizeof (double); i++)
    *sum += parts[i];
  return TRUE;
}

static gboolean
two_pass_end_pass (SmeltFormat  *format,
                   guint         pass,
                   GError      **error)
{
  TwoPass *self = (TwoPass *) format;

  g_string_append_printf (self->log, "end %u\n", pass);
  smelt_format_add_planned_file (format, "passes.txt", -1);
  return TRUE;
}

static gboolean
two_pass_finish (SmeltFormat   *format,
                 GCancellable  *cancellable,
                 GError       **error)
{
  TwoPass *self = (TwoPass *) format;
  GHashTableIter iter;
  gpointer key, value;
  g_autoptr(GBytes) bytes = NULL;

  g_hash_table_iter_init (&iter, self->sums[0]);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      double *again = g_hash_table_lookup (self->sums[1], key);

      g_string_append_printf (self->log, "sum %s %.17g %.17g\n", (char *) key,
                              *(double *) value, again ? *again : NAN);
    }
  bytes = g_bytes_new (self->log->str, self->log->len);
  return smelt_format_write_file (format, "passes.txt", bytes, cancellable, error);
}

static void
two_pass_class_init (TwoPassClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = two_pass_finalize;
  klass->plan = two_pass_plan;
  klass->wants_rows = two_pass_wants_rows;
  klass->encode_rows = two_pass_encode_rows;
  klass->write_rows = two_pass_write_rows;
  klass->finish = two_pass_finish;
  klass->get_n_passes = two_pass_get_n_passes;
  klass->end_pass = two_pass_end_pass;
}

static void
two_pass_init (TwoPass *self)
{
  self->log = g_string_new (NULL);
  self->sums[0] = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->sums[1] = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
}

static gboolean
plugin_init (SmeltPlugin *plugin, GError **error)
{
  return smelt_plugin_register_format (plugin, "two-pass", two_pass_get_type (), error);
}

SMELT_PLUGIN_DEFINE ("two-pass", "fixture", plugin_init, "1", "LGPL-2.1-or-later", "tests")
