/* chat-template-dump: smelt's chat-template table and its reading of a
 * model, as JSON, for the rendering test (render-check.mjs)
 *
 *   chat-template-dump table        every family with its variants
 *   chat-template-dump model DIR    what SmeltChatTemplate makes of DIR
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>

#include "smelt-chat-private.h"

static void
add_string (JsonBuilder *b,
            const char  *name,
            const char  *value)
{
  json_builder_set_member_name (b, name);
  if (value)
    json_builder_add_string_value (b, value);
  else
    json_builder_add_null_value (b);
}

static void
add_strv (JsonBuilder        *b,
          const char         *name,
          const char * const *values)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_array (b);
  for (guint i = 0; values && values[i]; i++)
    json_builder_add_string_value (b, values[i]);
  json_builder_end_array (b);
}

static void
dump_table (JsonBuilder *b)
{
  GPtrArray *all = _smelt_chat_families ();

  json_builder_begin_array (b);
  for (guint i = 0; i < all->len; i++)
    {
      SmeltChatFamily *f = g_ptr_array_index (all, i);

      json_builder_begin_object (b);
      add_string (b, "id", f->id);
      add_string (b, "name", f->name);
      add_string (b, "ollama", f->ollama);
      add_string (b, "default_system", f->default_system);
      add_strv (b, "stops", (const char * const *) f->stops);
      add_strv (b, "markers", (const char * const *) f->markers);
      json_builder_set_member_name (b, "fold_system");
      json_builder_add_boolean_value (b, f->fold_system);
      add_string (b, "bos_token", f->bos_token);
      add_string (b, "eos_token", f->eos_token);
      json_builder_set_member_name (b, "variants");
      json_builder_begin_array (b);
      for (guint j = 0; j < f->variants->len; j++)
        {
          SmeltChatVariant *v = g_ptr_array_index (f->variants, j);

          json_builder_begin_object (b);
          add_string (b, "file", v->file);
          add_string (b, "jinja", v->jinja);
          add_string (b, "normalized", v->normalized);
          json_builder_end_object (b);
        }
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
}

static gboolean
dump_model (JsonBuilder  *b,
            const char   *dir,
            GError      **error)
{
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (dir, error);
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autoptr(GEnumClass) klass = g_type_class_ref (SMELT_TYPE_CHAT_MATCH);

  if (model == NULL || (t = smelt_chat_template_new_for_model (model, error)) == NULL)
    return FALSE;
  json_builder_begin_object (b);
  add_string (b, "match", g_enum_get_value (klass, smelt_chat_template_get_match (t))->value_nick);
  add_string (b, "family", smelt_chat_template_get_family (t));
  add_string (b, "family_name", smelt_chat_template_get_family_name (t));
  add_string (b, "variant", smelt_chat_template_get_variant (t));
  add_string (b, "source", smelt_chat_template_get_source (t));
  add_string (b, "reason", smelt_chat_template_get_reason (t));
  add_string (b, "warning", smelt_chat_template_get_warning (t));
  add_string (b, "jinja", smelt_chat_template_get_jinja (t));
  add_string (b, "ollama", smelt_chat_template_get_ollama_template (t));
  add_string (b, "default_system", smelt_chat_template_get_default_system (t));
  add_string (b, "bos_token", smelt_chat_template_get_bos_token (t));
  add_strv (b, "eos_tokens", smelt_chat_template_get_eos_tokens (t));
  add_strv (b, "stops", smelt_chat_template_get_stop_tokens (t));
  json_builder_end_object (b);
  return TRUE;
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;

  if (argc == 2 && g_str_equal (argv[1], "table"))
    dump_table (b);
  else if (argc == 3 && g_str_equal (argv[1], "model"))
    {
      if (!dump_model (b, argv[2], &error))
        {
          fprintf (stderr, "chat-template-dump: %s\n", error->message);
          return 1;
        }
    }
  else
    {
      fprintf (stderr, "usage: chat-template-dump table | model DIR\n");
      return 2;
    }
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, NULL);
  printf ("%s\n", text);
  return 0;
}
