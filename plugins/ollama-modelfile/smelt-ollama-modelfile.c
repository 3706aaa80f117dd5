/* smelt-ollama-modelfile.c: an Ollama Modelfile beside a GGUF export
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include <smelt/smelt.h>

#include "smelt-modelfile-text.h"

/* The Modelfile refers to another export of the same recipe
 * (Gguf=EXPORT:TYPE, a gguf-quant export and one of its types), found in
 * link() once every export is planned; it must land in the same
 * destination so that FROM can be a relative path. With Adapter= it is
 * FROM Base (a GGUF or an Ollama model) plus ADAPTER the GGUF LoRA.
 * TEMPLATE, SYSTEM and the stop tokens come from the model's own chat
 * template (smelt-chat-template.c), LICENSE from the base's license
 * file; sampling parameters only when the recipe sets them. */

typedef struct {
  const char *nick;      /* recipe key */
  const char *name;      /* Ollama's parameter */
  gboolean    integer;
} Sampling;

static const Sampling sampling[] = {
  { "Temperature", "temperature", FALSE },
  { "TopP", "top_p", FALSE },
  { "TopK", "top_k", TRUE },
  { "MinP", "min_p", FALSE },
  { "RepeatPenalty", "repeat_penalty", FALSE },
  { "NumCtx", "num_ctx", TRUE },
  { "NumPredict", "num_predict", TRUE },
  { "Seed", "seed", TRUE },
};

#define N_SAMPLING G_N_ELEMENTS (sampling)

static char *sampling_text (guint i, const char *value, GError **error);

struct _SmeltOllamaModelfile
{
  SmeltFormat parent_instance;

  char       *gguf;          /* EXPORT[:TYPE] */
  char       *adapter;       /* EXPORT[:TYPE] of a GGUF LoRA */
  char       *base;          /* FROM with Adapter= */
  char       *template_choice;
  char       *system;        /* NULL: the template's default */
  char      **stop;          /* added to the template's */
  char       *license;       /* auto, none or a file */
  char       *file_name;
  char       *values[N_SAMPLING];   /* as the recipe wrote them; NULL: not set */

  SmeltSource *source;
  GBytes      *text;         /* the Modelfile, made in link() */
  char        *summary;
};

#define SMELT_TYPE_OLLAMA_MODELFILE (smelt_ollama_modelfile_get_type ())
G_DECLARE_FINAL_TYPE (SmeltOllamaModelfile, smelt_ollama_modelfile, SMELT, OLLAMA_MODELFILE, SmeltFormat)
G_DEFINE_FINAL_TYPE (SmeltOllamaModelfile, smelt_ollama_modelfile, SMELT_TYPE_FORMAT)

enum {
  PROP_0,
  PROP_GGUF,
  PROP_ADAPTER,
  PROP_BASE,
  PROP_TEMPLATE,
  PROP_SYSTEM,
  PROP_STOP,
  PROP_LICENSE,
  PROP_FILE_NAME,
  PROP_SAMPLING_FIRST,
  N_PROPS = PROP_SAMPLING_FIRST + N_SAMPLING
};

static GParamSpec *properties[N_PROPS];

static void
smelt_ollama_modelfile_finalize (GObject *object)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (object);

  g_free (self->gguf);
  g_free (self->adapter);
  g_free (self->base);
  g_free (self->template_choice);
  g_free (self->system);
  g_strfreev (self->stop);
  g_free (self->license);
  g_free (self->file_name);
  for (guint i = 0; i < N_SAMPLING; i++)
    g_free (self->values[i]);
  g_clear_object (&self->source);
  g_clear_pointer (&self->text, g_bytes_unref);
  g_free (self->summary);
  G_OBJECT_CLASS (smelt_ollama_modelfile_parent_class)->finalize (object);
}

static char **
string_slot (SmeltOllamaModelfile *self,
             guint                 prop_id)
{
  switch (prop_id)
    {
    case PROP_GGUF: return &self->gguf;
    case PROP_ADAPTER: return &self->adapter;
    case PROP_BASE: return &self->base;
    case PROP_TEMPLATE: return &self->template_choice;
    case PROP_SYSTEM: return &self->system;
    case PROP_LICENSE: return &self->license;
    case PROP_FILE_NAME: return &self->file_name;
    default:
      if (prop_id >= PROP_SAMPLING_FIRST && prop_id < N_PROPS)
        return &self->values[prop_id - PROP_SAMPLING_FIRST];
      return NULL;
    }
}

static void
smelt_ollama_modelfile_get_property (GObject    *object,
                                     guint       prop_id,
                                     GValue     *value,
                                     GParamSpec *pspec)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (object);
  char **slot = string_slot (self, prop_id);

  if (slot)
    g_value_set_string (value, *slot);
  else if (prop_id == PROP_STOP)
    g_value_set_boxed (value, self->stop);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
smelt_ollama_modelfile_set_property (GObject      *object,
                                     guint         prop_id,
                                     const GValue *value,
                                     GParamSpec   *pspec)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (object);
  char **slot = string_slot (self, prop_id);

  if (slot)
    {
      g_free (*slot);
      *slot = g_value_dup_string (value);
    }
  else if (prop_id == PROP_STOP)
    {
      g_strfreev (self->stop);
      self->stop = g_value_dup_boxed (value);
    }
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

/* ---- options ------------------------------------------------------------- */

static gboolean
split_reference (const char  *key,
                 const char  *ref,
                 char       **export_name,
                 char       **type,
                 GError     **error)
{
  const char *colon = strchr (ref, ':');

  *export_name = colon ? g_strndup (ref, colon - ref) : g_strdup (ref);
  *type = colon && colon[1] ? g_ascii_strup (colon + 1, -1) : NULL;
  if (**export_name == '\0')
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: expected EXPORT or EXPORT:TYPE, the name of a gguf-quant export "
                   "of this recipe and one of its types (e.g. gguf:q4_k_m)", key, ref);
      g_clear_pointer (export_name, g_free);
      g_clear_pointer (type, g_free);
      return FALSE;
    }
  return TRUE;
}

/* Template= is auto, none or a family of the table: checked with the
 * other keys, so that `smelt validate` catches a typo. */
static gboolean
check_template_choice (const char  *choice,
                       GError     **error)
{
  g_auto(GStrv) families = smelt_chat_template_list_families ();
  g_autofree char *known = NULL;

  if (choice == NULL || g_str_equal (choice, "auto") || g_str_equal (choice, "none") ||
      g_strv_contains ((const char * const *) families, choice))
    return TRUE;
  known = g_strjoinv (", ", families);
  g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
               "Template=%s: expected auto, none or a chat-template family: %s", choice, known);
  return FALSE;
}

static gboolean
smelt_ollama_modelfile_check_options (SmeltFormat  *format,
                                      GError      **error)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (format);
  g_autofree char *e = NULL, *t = NULL;

  if ((self->gguf == NULL) == (self->adapter == NULL))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "ollama-modelfile needs either Gguf= (the model: a gguf-quant export and "
                   "type, e.g. gguf:q4_k_m) or Adapter= with Base= (a GGUF LoRA export on a base)");
      return FALSE;
    }
  if (self->adapter && (self->base == NULL || *self->base == '\0'))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "Adapter=%s needs Base=: the base model the adapter applies to (a GGUF "
                   "file, or an Ollama model such as llama3.2:1b)", self->adapter);
      return FALSE;
    }
  if (!split_reference (self->gguf ? "Gguf" : "Adapter", self->gguf ? self->gguf : self->adapter,
                        &e, &t, error))
    return FALSE;
  if (!check_template_choice (self->template_choice, error))
    return FALSE;
  for (guint i = 0; i < N_SAMPLING; i++)
    {
      g_autofree char *text = self->values[i] ? sampling_text (i, self->values[i], error) : NULL;

      if (self->values[i] && text == NULL)
        return FALSE;
    }
  if (self->file_name == NULL || *self->file_name == '\0' || strstr (self->file_name, "..") ||
      g_path_is_absolute (self->file_name))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "FileName=%s: expected a file name inside the destination",
                   self->file_name ? self->file_name : "");
      return FALSE;
    }
  return TRUE;
}

/* ---- plan and link ------------------------------------------------------- */

static gboolean
smelt_ollama_modelfile_plan (SmeltFormat  *format,
                             SmeltSource  *source,
                             GError      **error)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (format);

  if (!smelt_ollama_modelfile_check_options (format, error))
    return FALSE;
  g_set_object (&self->source, source);
  /* its size is known in link(), once the GGUF it names is planned */
  smelt_format_add_planned_file (format, self->file_name, -1);
  return TRUE;
}

static gboolean
is_gguf_of_type (const char *path,
                 const char *type)
{
  g_autofree char *upper = g_ascii_strup (path, -1);
  g_autofree char *suffix = type ? g_strdup_printf (".%s.GGUF", type) : NULL;

  if (!g_str_has_suffix (upper, ".GGUF"))
    return FALSE;
  return suffix == NULL || g_str_has_suffix (upper, suffix);
}

static gboolean
is_split_part (const char *path)
{
  return g_regex_match_simple ("-[0-9]{5}-of-[0-9]{5}\\.gguf$", path, G_REGEX_CASELESS, 0);
}

/* The one GGUF file of export @ref (EXPORT[:TYPE]) in this destination,
 * as a path relative to the Modelfile. */
static char *
resolve_gguf (SmeltOllamaModelfile  *self,
              const char            *key,
              const char            *ref,
              GError               **error)
{
  SmeltFormat *format = SMELT_FORMAT (self);
  g_autofree char *export_name = NULL, *type = NULL;
  SmeltFormat *other;
  GPtrArray *files;
  g_autoptr(GPtrArray) found = g_ptr_array_new ();
  g_autoptr(GString) all = g_string_new (NULL);
  g_autofree char *dir = NULL;

  if (!split_reference (key, ref, &export_name, &type, error))
    return NULL;
  other = smelt_format_lookup_export (format, export_name);
  if (other == NULL || other == format)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: the recipe has no other export named “%s”", key, ref, export_name);
      return NULL;
    }
  files = smelt_format_get_planned_files (other);
  for (guint i = 0; i < files->len; i++)
    {
      SmeltPlannedFile *f = g_ptr_array_index (files, i);

      if (g_str_has_suffix (f->path, ".gguf") || g_str_has_suffix (f->path, ".GGUF"))
        g_string_append_printf (all, "%s%s", all->len ? ", " : "", f->path);
      if (is_gguf_of_type (f->path, type))
        g_ptr_array_add (found, f->path);
    }
  if (found->len == 0)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: export “%s” writes no GGUF%s%s (it writes: %s)", key, ref, export_name,
                   type ? " of type " : "", type ? type : "", all->len ? all->str : "no GGUF file");
      return NULL;
    }
  if (found->len > 1 && !is_split_part (g_ptr_array_index (found, 0)))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: export “%s” writes several GGUF files (%s); name the type, "
                   "e.g. %s:%s", key, ref, export_name, all->str, export_name, "q4_k_m");
      return NULL;
    }
  if (is_split_part (g_ptr_array_index (found, 0)))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: export “%s” splits that GGUF into parts (%s), which Ollama does "
                   "not load; raise its MaxShardSize", key, ref, export_name, all->str);
      return NULL;
    }
  if (smelt_format_get_destination (other) != smelt_format_get_destination (format))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: export “%s” writes to another destination; the Modelfile must sit "
                   "beside the GGUF it names (give both exports the same Destination=)",
                   key, ref, export_name);
      return NULL;
    }
  dir = g_path_get_dirname (self->file_name);
  if (g_strcmp0 (dir, ".") != 0)
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "FileName=%s: the Modelfile must sit at the destination's top, beside the "
                   "GGUF files", self->file_name);
      return NULL;
    }
  return g_strconcat ("./", (const char *) g_ptr_array_index (found, 0), NULL);
}

/* ---- what goes in it --------------------------------------------------- */

/* LICENSE: the base model's license file, when it ships one. */
static char *
read_license (SmeltOllamaModelfile  *self,
              GError               **error)
{
  static const char * const names[] = { "LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", NULL };
  const char *dir = smelt_model_get_path (smelt_source_get_model (self->source));
  char *text = NULL;

  if (g_strcmp0 (self->license, "none") == 0)
    return NULL;
  if (g_strcmp0 (self->license, "auto") != 0)
    {
      if (!g_file_get_contents (self->license, &text, NULL, error))
        {
          g_prefix_error (error, "License=%s: ", self->license);
          return NULL;
        }
      return text;
    }
  for (guint i = 0; names[i]; i++)
    {
      g_autofree char *p = g_build_filename (dir, names[i], NULL);

      if (g_file_test (p, G_FILE_TEST_IS_REGULAR) && g_file_get_contents (p, &text, NULL, NULL))
        return text;
    }
  return NULL;
}

/* A sampling value as the recipe wrote it: a number (an integer where
 * Ollama wants one), written back in the C locale. */
static char *
sampling_text (guint        i,
               const char  *value,
               GError     **error)
{
  char *end = NULL;
  double v;

  errno = 0;
  v = g_ascii_strtod (value, &end);
  if (end == value || *end != '\0' || errno != 0 || !isfinite (v) ||
      (sampling[i].integer && v != floor (v)))
    {
      g_set_error (error, SMELT_RECIPE_ERROR, SMELT_RECIPE_ERROR_BAD_VALUE,
                   "%s=%s: expected %s", sampling[i].nick, value,
                   sampling[i].integer ? "an integer" : "a number");
      return NULL;
    }
  if (sampling[i].integer)
    return g_strdup_printf ("%" G_GINT64_FORMAT, (gint64) v);
  return g_strdup (value);
}

static gboolean
append_sampling (SmeltOllamaModelfile  *self,
                 GString               *out,
                 GError               **error)
{
  for (guint i = 0; i < N_SAMPLING; i++)
    {
      g_autofree char *text = NULL;
      g_autofree char *instruction = NULL;

      if (self->values[i] == NULL)
        continue;
      text = sampling_text (i, self->values[i], error);
      instruction = g_strconcat ("PARAMETER ", sampling[i].name, NULL);
      if (text == NULL || !smelt_modelfile_append (out, instruction, text, FALSE, error))
        return FALSE;
    }
  return TRUE;
}

/* What the model's chat template says, as the Modelfile needs it. */
typedef struct {
  char      *family;     /* table id, or NULL for the fallback */
  char      *reason;     /* why it matched, for the summary */
  char      *warning;    /* set for the fallback */
  char      *go_template;
  char      *system;     /* the template's default system prompt, or NULL */
  GPtrArray *stops;      /* char * */
} Chat;

static void
chat_clear (Chat *c)
{
  g_free (c->family);
  g_free (c->reason);
  g_free (c->warning);
  g_free (c->go_template);
  g_free (c->system);
  g_clear_pointer (&c->stops, g_ptr_array_unref);
}

static void
add_stop (GPtrArray  *stops,
          const char *s)
{
  if (s == NULL || *s == '\0')
    return;
  for (guint i = 0; i < stops->len; i++)
    if (g_str_equal (g_ptr_array_index (stops, i), s))
      return;
  g_ptr_array_add (stops, g_strdup (s));
}

/* TEMPLATE and its company from the model's chat template, matched
 * against smelt's table of families (smelt-chat-template.c), or the
 * family the recipe names; Template=none writes no TEMPLATE, so Ollama
 * passes the prompt through raw. */
static gboolean
describe_chat (SmeltOllamaModelfile  *self,
               Chat                  *chat,
               GError               **error)
{
  SmeltModel *model = smelt_source_get_model (self->source);
  g_autoptr(SmeltChatTemplate) t = smelt_chat_template_new_for_model (model, error);
  const char * const *stops;
  const char *s;

  if (t == NULL)
    return FALSE;
  if (g_strcmp0 (self->template_choice, "auto") != 0 &&
      g_strcmp0 (self->template_choice, "none") != 0 &&
      !smelt_chat_template_set_family (t, self->template_choice, error))
    {
      g_prefix_error (error, "Template=%s: ", self->template_choice);
      return FALSE;
    }
  stops = smelt_chat_template_get_stop_tokens (t);
  for (guint i = 0; stops && stops[i]; i++)
    add_stop (chat->stops, stops[i]);
  if (g_strcmp0 (self->template_choice, "none") == 0)
    {
      chat->reason = g_strdup ("Template=none");
      return TRUE;
    }
  chat->family = g_strdup (smelt_chat_template_get_family (t));
  chat->reason = g_strdup (smelt_chat_template_get_reason (t));
  chat->warning = g_strdup (smelt_chat_template_get_warning (t));
  chat->go_template = g_strdup (smelt_chat_template_get_ollama_template (t));
  s = smelt_chat_template_get_default_system (t);
  chat->system = s ? g_strdup (s) : NULL;
  return TRUE;
}

static GBytes *
make_text (SmeltOllamaModelfile  *self,
           const char            *from,
           const char            *adapter,
           Chat                  *chat,
           GError               **error)
{
  g_autoptr(GString) out = g_string_new (NULL);
  g_autofree char *license = NULL;
  g_autoptr(GError) local = NULL;
  const char *system = self->system ? self->system : chat->system;

  g_string_append_printf (out, "# Made by smelt %s for `ollama create NAME -f %s`\n",
                          SMELT_VERSION_S, self->file_name);
  g_string_append_printf (out, "# chat template: %s (%s)\n",
                          chat->family ? chat->family : "none", chat->reason);
  if (chat->warning)
    g_string_append_printf (out, "# warning: %s\n", chat->warning);
  if (!smelt_modelfile_append (out, "FROM", from, FALSE, error))
    return NULL;
  if (adapter && !smelt_modelfile_append (out, "ADAPTER", adapter, FALSE, error))
    return NULL;
  if (chat->go_template && !smelt_modelfile_append (out, "TEMPLATE", chat->go_template, TRUE, error))
    return NULL;
  if (system && *system && !smelt_modelfile_append (out, "SYSTEM", system, TRUE, error))
    return NULL;
  for (guint i = 0; i < chat->stops->len; i++)
    if (!smelt_modelfile_append (out, "PARAMETER stop", g_ptr_array_index (chat->stops, i), FALSE,
                                 error))
      return NULL;
  if (!append_sampling (self, out, error))
    return NULL;
  license = read_license (self, &local);
  if (local)
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return NULL;
    }
  if (license && !smelt_modelfile_append (out, "LICENSE", g_strchomp (license), TRUE, error))
    return NULL;
  return g_string_free_to_bytes (g_steal_pointer (&out));
}

static gboolean
smelt_ollama_modelfile_link (SmeltFormat  *format,
                             GError      **error)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (format);
  g_autofree char *from = NULL;
  g_autofree char *adapter = NULL;
  Chat chat = { 0 };
  gboolean ok = FALSE;

  if (self->gguf)
    from = resolve_gguf (self, "Gguf", self->gguf, error);
  else
    {
      from = g_strdup (self->base);
      adapter = resolve_gguf (self, "Adapter", self->adapter, error);
    }
  if (from == NULL || (self->adapter && adapter == NULL))
    return FALSE;
  chat.stops = g_ptr_array_new_with_free_func (g_free);
  if (describe_chat (self, &chat, error))
    {
      for (guint i = 0; self->stop && self->stop[i]; i++)
        add_stop (chat.stops, self->stop[i]);
      g_clear_pointer (&self->text, g_bytes_unref);
      self->text = make_text (self, from, adapter, &chat, error);
      ok = self->text != NULL;
    }
  if (ok)
    {
      g_free (self->summary);
      self->summary = g_strdup_printf ("%s: FROM %s%s%s, chat template %s (%s), %u stop token%s\n",
                                       self->file_name, from, adapter ? " + ADAPTER " : "",
                                       adapter ? adapter : "", chat.family ? chat.family : "none",
                                       chat.reason, chat.stops->len,
                                       chat.stops->len == 1 ? "" : "s");
      if (chat.warning)
        g_warning ("export “%s”: %s", smelt_format_get_name (format), chat.warning);
      smelt_format_add_planned_file (format, self->file_name, g_bytes_get_size (self->text));
    }
  chat_clear (&chat);
  return ok;
}

static gboolean
smelt_ollama_modelfile_finish (SmeltFormat   *format,
                               GCancellable  *cancellable,
                               GError       **error)
{
  SmeltOllamaModelfile *self = SMELT_OLLAMA_MODELFILE (format);

  return smelt_format_write_file (format, self->file_name, self->text, cancellable, error);
}

static SmeltRows
smelt_ollama_modelfile_wants_rows (SmeltFormat *format,
                                   SmeltTensor *tensor)
{
  return SMELT_ROWS_NONE;
}

static char *
smelt_ollama_modelfile_get_summary (SmeltFormat *format)
{
  return g_strdup (SMELT_OLLAMA_MODELFILE (format)->summary);
}

/* Any model: the Modelfile reads no tensor (the GGUF export does). */
static gboolean
smelt_ollama_modelfile_accepts_source (SmeltFormat  *format,
                                       SmeltSource  *source,
                                       GError      **error)
{
  return TRUE;
}

static GParamSpec *
string_param (const char *name,
              const char *nick,
              const char *blurb,
              const char *def)
{
  return g_param_spec_string (name, nick, blurb, def, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
}

static void
smelt_ollama_modelfile_class_init (SmeltOllamaModelfileClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  SmeltFormatClass *format_class = SMELT_FORMAT_CLASS (klass);

  object_class->finalize = smelt_ollama_modelfile_finalize;
  object_class->get_property = smelt_ollama_modelfile_get_property;
  object_class->set_property = smelt_ollama_modelfile_set_property;
  format_class->check_options = smelt_ollama_modelfile_check_options;
  format_class->plan = smelt_ollama_modelfile_plan;
  format_class->link = smelt_ollama_modelfile_link;
  format_class->wants_rows = smelt_ollama_modelfile_wants_rows;
  format_class->finish = smelt_ollama_modelfile_finish;
  format_class->get_summary = smelt_ollama_modelfile_get_summary;
  format_class->accepts_source = smelt_ollama_modelfile_accepts_source;

  properties[PROP_GGUF] =
    string_param ("gguf", "Gguf", "The GGUF to run: EXPORT:TYPE, a gguf-quant export of this "
                  "recipe and one of its types (e.g. gguf:q4_k_m); the type may be left out "
                  "when the export writes one GGUF", NULL);
  properties[PROP_ADAPTER] =
    string_param ("adapter", "Adapter", "Instead of Gguf: a gguf-quant export with Adapter=true "
                  "(EXPORT[:TYPE]), written as ADAPTER over Base", NULL);
  properties[PROP_BASE] =
    string_param ("base", "Base", "With Adapter: FROM, the base the adapter was trained on (a "
                  "GGUF path or an Ollama model such as llama3.2:1b)", NULL);
  properties[PROP_TEMPLATE] =
    string_param ("template", "Template", "Chat template: auto (matched from the model's own "
                  "chat template), a family id of the table (smelt inspect lists it), or none", "auto");
  properties[PROP_SYSTEM] =
    string_param ("system", "System", "SYSTEM prompt; default: the chat template's own default, "
                  "if it has one; empty for none", NULL);
  properties[PROP_STOP] =
    g_param_spec_boxed ("stop", "Stop", "More stop strings, besides the model's end-of-turn and "
                        "EOS tokens", G_TYPE_STRV, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  properties[PROP_LICENSE] =
    string_param ("license", "License", "LICENSE: auto (the base model's LICENSE file, when it "
                  "has one), none, or a file to include", "auto");
  properties[PROP_FILE_NAME] =
    string_param ("file-name", "FileName", "The Modelfile's name in the destination", "Modelfile");
  for (guint i = 0; i < N_SAMPLING; i++)
    {
      g_autofree char *name = g_strdelimit (g_ascii_strdown (sampling[i].name, -1), "_", '-');
      g_autofree char *blurb = g_strdup_printf ("PARAMETER %s (%s); written only when set",
                                                sampling[i].name,
                                                sampling[i].integer ? "an integer" : "a number");

      properties[PROP_SAMPLING_FIRST + i] =
        g_param_spec_string (g_intern_string (name), sampling[i].nick, g_intern_string (blurb),
                             NULL, G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
    }
  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
smelt_ollama_modelfile_init (SmeltOllamaModelfile *self)
{
  self->template_choice = g_strdup ("auto");
  self->license = g_strdup ("auto");
  self->file_name = g_strdup ("Modelfile");
}

static gboolean
plugin_init (SmeltPlugin  *plugin,
             GError      **error)
{
  return smelt_plugin_register_format (plugin, "ollama-modelfile", SMELT_TYPE_OLLAMA_MODELFILE, error);
}

SMELT_PLUGIN_DEFINE ("ollama-modelfile", "An Ollama Modelfile for a GGUF export, with the model's chat template",
                     plugin_init, "0.1.0", "LGPL-2.1-or-later", "smelt")
