/* smelt-chat-families.c: the table of chat-template families, read from
 * the data files compiled into libsmelt (data/chat-templates)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-chat-private.h"
#include "smelt-chat-resources.h"

#define PREFIX "/org/smelt/chat-templates/"

static void
variant_free (gpointer data)
{
  SmeltChatVariant *v = data;

  g_free (v->file);
  g_free (v->jinja);
  g_free (v->normalized);
  g_free (v);
}

static void
family_free (gpointer data)
{
  SmeltChatFamily *f = data;

  g_free (f->id);
  g_free (f->name);
  g_free (f->ollama);
  g_free (f->default_system);
  g_strfreev (f->stops);
  g_strfreev (f->markers);
  g_free (f->bos_token);
  g_free (f->eos_token);
  g_clear_pointer (&f->variants, g_ptr_array_unref);
  g_free (f);
}

/* A file of the table as text; the table is part of the library, so a
 * missing file is a packaging bug, reported with its name. */
static char *
read_resource (const char  *name,
               GError     **error)
{
  g_autofree char *path = g_strconcat (PREFIX, name, NULL);
  g_autoptr(GBytes) bytes = g_resource_lookup_data (_smelt_chat_get_resource (), path,
                                                    G_RESOURCE_LOOKUP_FLAGS_NONE, error);
  gsize len;
  const char *data;

  if (bytes == NULL)
    return NULL;
  data = g_bytes_get_data (bytes, &len);
  if (!g_utf8_validate_len (data, len, NULL) || memchr (data, '\0', len) != NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "%s: not UTF-8 text", path);
      return NULL;
    }
  return g_strndup (data, len);
}

/* "" in a keyfile means "none" */
static char *
get_optional (GKeyFile   *kf,
              const char *key)
{
  g_autofree char *s = g_key_file_get_string (kf, "Family", key, NULL);

  return s && *s ? g_steal_pointer (&s) : NULL;
}

static GStrv
get_list (GKeyFile   *kf,
          const char *key)
{
  GStrv l = g_key_file_get_string_list (kf, "Family", key, NULL, NULL);

  return l ? l : g_new0 (char *, 1);
}

static SmeltChatFamily *
load_family (const char  *id,
             GError     **error)
{
  g_autoptr(GKeyFile) kf = g_key_file_new ();
  g_autofree char *kf_name = g_strconcat (id, ".family", NULL);
  g_autofree char *text = read_resource (kf_name, error);
  g_autofree char *go_name = g_strconcat (id, ".gotmpl", NULL);
  g_auto(GStrv) files = NULL;
  SmeltChatFamily *f;

  if (text == NULL || !g_key_file_load_from_data (kf, text, -1, G_KEY_FILE_NONE, error))
    {
      g_prefix_error (error, "%s: ", kf_name);
      return NULL;
    }
  f = g_new0 (SmeltChatFamily, 1);
  f->id = g_strdup (id);
  f->name = g_key_file_get_string (kf, "Family", "Name", error);
  f->ollama = read_resource (go_name, error);
  f->default_system = get_optional (kf, "DefaultSystem");
  f->stops = get_list (kf, "Stops");
  f->markers = get_list (kf, "Markers");
  f->fold_system = g_key_file_get_boolean (kf, "Family", "FoldSystem", NULL);
  f->bos_token = get_optional (kf, "BosToken");
  f->eos_token = get_optional (kf, "EosToken");
  f->variants = g_ptr_array_new_with_free_func (variant_free);
  files = get_list (kf, "Variants");
  for (guint i = 0; f->name && f->ollama && files[i]; i++)
    {
      g_autofree char *path = g_strconcat ("jinja/", files[i], NULL);
      SmeltChatVariant *v = g_new0 (SmeltChatVariant, 1);

      v->file = g_strdup (files[i]);
      v->jinja = read_resource (path, error);
      g_ptr_array_add (f->variants, v);
      if (v->jinja == NULL)
        break;
      v->normalized = smelt_chat_template_normalize (v->jinja);
    }
  if (error && *error)
    {
      g_prefix_error (error, "%s: ", kf_name);
      family_free (f);
      return NULL;
    }
  return f;
}

static GPtrArray *families;
static SmeltChatFamily *generic;

static gpointer
load_table (gpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *index = NULL;
  g_auto(GStrv) lines = NULL;

  /* makes the static resource's GResource (it also registers it, under a
   * prefix of its own); it stays for the life of the process */
  _smelt_chat_register_resource ();
  index = read_resource ("index", &error);

  families = g_ptr_array_new_with_free_func (family_free);
  if (index == NULL)
    {
      g_critical ("chat-template table: %s", error->message);
      return NULL;
    }
  lines = g_strsplit (index, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      const char *id = g_strstrip (lines[i]);
      SmeltChatFamily *f;

      if (*id == '\0' || *id == '#')
        continue;
      f = load_family (id, &error);
      if (f == NULL)
        {
          g_critical ("chat-template table: %s", error->message);
          g_clear_error (&error);
          continue;
        }
      g_ptr_array_add (families, f);
    }
  generic = load_family ("generic", &error);
  if (generic == NULL)
    g_critical ("chat-template table: %s", error->message);
  return NULL;
}

static void
ensure_table (void)
{
  static GOnce once = G_ONCE_INIT;

  g_once (&once, load_table, NULL);
}

GPtrArray *
_smelt_chat_families (void)
{
  ensure_table ();
  return families;
}

const SmeltChatFamily *
_smelt_chat_family_lookup (const char *id)
{
  GPtrArray *all = _smelt_chat_families ();

  for (guint i = 0; id && i < all->len; i++)
    {
      SmeltChatFamily *f = g_ptr_array_index (all, i);

      if (g_str_equal (f->id, id))
        return f;
    }
  return NULL;
}

const char *
_smelt_chat_generic_template (void)
{
  ensure_table ();
  return generic ? generic->ollama : "{{ .Prompt }}";
}

const char * const *
_smelt_chat_generic_stops (void)
{
  static const char * const none[] = { NULL };

  ensure_table ();
  return generic ? (const char * const *) generic->stops : none;
}

/**
 * smelt_chat_template_list_families:
 *
 * The ids of the chat-template families smelt knows, in the order the
 * marker fallback tries them (doc/chat-templates.md has the table).
 *
 * Returns: (transfer full) (array zero-terminated=1): the family ids
 */
char **
smelt_chat_template_list_families (void)
{
  GPtrArray *all = _smelt_chat_families ();
  GStrvBuilder *b = g_strv_builder_new ();
  char **ids;

  for (guint i = 0; i < all->len; i++)
    g_strv_builder_add (b, ((SmeltChatFamily *) g_ptr_array_index (all, i))->id);
  ids = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  return ids;
}
