/* test-chat-template.c: reading a model's chat template and tokens,
 * recognizing its family, the fallbacks and the errors
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>

#include "smelt-chat-private.h"

/* ---- model folders -------------------------------------------------------- */

typedef struct {
  char *dir;
} Fixture;

static void
write_file (const char *dir,
            const char *name,
            const char *text)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;

  g_file_set_contents (path, text, -1, &error);
  g_assert_no_error (error);
}

/* the smallest model smelt opens: a config and one F32 tensor */
static void
fixture_setup (Fixture       *fx,
               gconstpointer  data)
{
  static const char header[] =
    "{\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]}}";
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) st = g_byte_array_new ();
  g_autofree char *st_path = NULL;
  guint64 len = GUINT64_TO_LE (sizeof header - 1);
  guint8 zero[4] = { 0, };

  fx->dir = g_dir_make_tmp ("smelt-chat-XXXXXX", &error);
  g_assert_no_error (error);
  write_file (fx->dir, "config.json", "{\"architectures\": [\"LlamaForCausalLM\"]}");
  g_byte_array_append (st, (guint8 *) &len, 8);
  g_byte_array_append (st, (const guint8 *) header, sizeof header - 1);
  g_byte_array_append (st, zero, 4);
  st_path = g_build_filename (fx->dir, "model.safetensors", NULL);
  g_file_set_contents (st_path, (const char *) st->data, st->len, &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture       *fx,
                  gconstpointer  data)
{
  g_autoptr(GDir) d = g_dir_open (fx->dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (fx->dir, name, NULL);
      g_remove (p);
    }
  g_rmdir (fx->dir);
  g_free (fx->dir);
}

/* tokenizer_config.json with @template_json (JSON text, or NULL for
 * none) and @extra members */
static void
write_config (Fixture    *fx,
              const char *template_json,
              const char *extra)
{
  g_autofree char *tmpl = template_json ? g_strdup_printf ("\"chat_template\": %s, ", template_json)
                                        : g_strdup ("");
  g_autofree char *text = g_strdup_printf (
    "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\", %s"
    "\"added_tokens_decoder\": {\"1\": {\"content\": \"<s>\"}, \"2\": {\"content\": \"</s>\"},"
    " \"7\": {\"content\": \"<|im_end|>\"}}%s}", tmpl, extra ? extra : "");

  write_file (fx->dir, "tokenizer_config.json", text);
}

static char *
json_string (const char *s)
{
  g_autoptr(JsonNode) n = json_node_init_string (json_node_alloc (), s);

  return json_to_string (n, FALSE);
}

static SmeltChatTemplate *
open_template (Fixture  *fx,
               GError  **error)
{
  g_autoptr(SmeltModel) model = smelt_model_new_for_path (fx->dir, error);

  if (model == NULL)
    return NULL;
  return smelt_chat_template_new_for_model (model, error);
}

static gboolean
strv_has (const char * const *v,
          const char         *s)
{
  return g_strv_contains (v, s);
}

static const char chatml[] =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
  "{% endif %}";

/* ---- normalization -------------------------------------------------------- */

static void
assert_same_normal_form (const char *a,
                         const char *b)
{
  g_autofree char *na = smelt_chat_template_normalize (a);
  g_autofree char *nb = smelt_chat_template_normalize (b);

  g_assert_cmpstr (na, ==, nb);
}

static void
assert_different_normal_form (const char *a,
                              const char *b)
{
  g_autofree char *na = smelt_chat_template_normalize (a);
  g_autofree char *nb = smelt_chat_template_normalize (b);

  g_assert_cmpstr (na, !=, nb);
}

static void
test_normalize (void)
{
  /* quotes, spacing in tags, subscripts by a constant name */
  assert_same_normal_form ("{{'a\\n' + m['role']}}x", "{{ \"a\\n\"   +   m.role }}x");
  /* an output tag of a single literal is its text */
  assert_same_normal_form ("{{ '<|im_start|>assistant\\n' }}", "<|im_start|>assistant\n");
  /* trim markers, trim_blocks and lstrip_blocks */
  assert_same_normal_form ("{%- if x -%}\n    A\n{%- endif -%}", "{% if x %}A{% endif %}");
  assert_same_normal_form ("{% if x %}\n    {% set y = 1 %}\nA\n{% endif %}",
                           "{% if x %}{% set y = 1 %}A\n{% endif %}");
  assert_same_normal_form ("  {{- x }}\n", "{{ x }}");
  /* CRLF, comments, one trailing newline */
  assert_same_normal_form ("{# note #}{% if x %}\r\nA{% endif %}\n", "{% if x %}A{% endif %}");
  /* a tag delimiter inside a string does not end the tag */
  assert_same_normal_form ("{{ '}}' + x }}", "{{ \"}}\" + x }}");

  /* what changes the output keeps templates apart */
  assert_different_normal_form ("{{ 'a' }}", "{{ 'b' }}");
  assert_different_normal_form ("{{ m['role'] }}", "{{ m['content'] }}");
  assert_different_normal_form ("{{ x }} A", "{{ x }}A");
  assert_different_normal_form ("{{ x }}\n", "{{ x }}\n\n");
  assert_different_normal_form ("{% if a %}x{% endif %}", "{% if b %}x{% endif %}");
}

/* The layout a template from the wild may have that normalization must
 * see through: spaces inside every delimiter, CRLF line ends, a comment. */
static char *
reformat (const char *t)
{
  g_autoptr(GString) s = g_string_new ("{# reformatted #}");
  gboolean in_tag = FALSE;

  for (const char *p = t; *p; p++)
    {
      if (in_tag && (*p == '\'' || *p == '"'))
        {
          /* a string literal goes through untouched */
          char quote = *p;

          g_string_append_c (s, *p);
          for (p++; *p && *p != quote; p++)
            {
              if (*p == '\\' && p[1])
                g_string_append_c (s, *p++);
              g_string_append_c (s, *p);
            }
          if (*p == '\0')
            break;
          g_string_append_c (s, *p);
          continue;
        }
      if (p[0] == '{' && (p[1] == '{' || p[1] == '%'))
        {
          g_string_append_c (s, p[0]);
          g_string_append_c (s, p[1]);
          p++;
          if (p[1] == '-')
            g_string_append_c (s, *++p);
          g_string_append (s, "  ");
          in_tag = TRUE;
          continue;
        }
      if (in_tag && (p[0] == '}' || p[0] == '%') && p[1] == '}')
        {
          gboolean trim = s->len > 0 && s->str[s->len - 1] == '-';

          if (trim)
            g_string_truncate (s, s->len - 1);
          g_string_append (s, "  ");
          if (trim)
            g_string_append_c (s, '-');
          g_string_append_c (s, p[0]);
          g_string_append_c (s, '}');
          p++;
          in_tag = FALSE;
          continue;
        }
      if (p[0] == '\n')
        g_string_append_c (s, '\r');
      g_string_append_c (s, p[0]);
    }
  return g_string_free (g_steal_pointer (&s), FALSE);
}

/* every variant of the table, as a model would carry it (reformatted),
 * is recognized as its own family */
static void
test_table_variants (Fixture       *fx,
                     gconstpointer  data)
{
  GPtrArray *all = _smelt_chat_families ();

  g_assert_cmpuint (all->len, >=, 20);
  for (guint i = 0; i < all->len; i++)
    {
      SmeltChatFamily *f = g_ptr_array_index (all, i);

      g_assert_cmpuint (f->variants->len, >, 0);
      g_assert_nonnull (f->ollama);
      g_assert_nonnull (strstr (f->ollama, ".Messages"));
      g_assert_cmpuint (g_strv_length (f->stops), >, 0);
      /* no two variants alike: each one must add a text that matches */
      for (guint j = 0; j < f->variants->len; j++)
        for (guint k = j + 1; k < f->variants->len; k++)
          g_assert_cmpstr (((SmeltChatVariant *) g_ptr_array_index (f->variants, j))->normalized, !=,
                           ((SmeltChatVariant *) g_ptr_array_index (f->variants, k))->normalized);
      for (guint j = 0; j < f->variants->len; j++)
        {
          SmeltChatVariant *v = g_ptr_array_index (f->variants, j);
          g_autofree char *wild = reformat (v->jinja);
          g_autoptr(GError) error = NULL;
          g_autoptr(SmeltChatTemplate) t = NULL;

          write_file (fx->dir, "chat_template.jinja", wild);
          t = open_template (fx, &error);
          g_assert_no_error (error);
          if (smelt_chat_template_get_match (t) != SMELT_CHAT_MATCH_EXACT)
            g_error ("%s/%s reformatted: %s", f->id, v->file, smelt_chat_template_get_reason (t));
          g_assert_cmpstr (smelt_chat_template_get_family (t), ==, f->id);
          g_assert_cmpstr (smelt_chat_template_get_variant (t), ==, v->file);
          g_assert_null (smelt_chat_template_get_warning (t));
          g_assert_null (strstr (smelt_chat_template_get_ollama_template (t), "@EOS_TOKEN@"));
          g_assert_null (strstr (smelt_chat_template_get_ollama_template (t), "@BOS_TOKEN@"));
        }
    }
}

static void
test_list_families (void)
{
  g_auto(GStrv) ids = smelt_chat_template_list_families ();
  static const char * const wanted[] = {
    "llama2", "llama3", "llama3.1", "mistral", "mistral-v1", "mistral-v3", "mistral-v3-tekken",
    "mistral-v7", "chatml", "qwen2", "qwen2.5", "qwen3", "gemma", "gemma3", "phi3", "phi3.5",
    "phi4", "zephyr", "vicuna", "alpaca", "deepseek2", "deepseek3", "deepseek-r1", "granite",
    "command-r", NULL
  };

  for (guint i = 0; wanted[i]; i++)
    g_assert_true (g_strv_contains ((const char * const *) ids, wanted[i]));
  for (guint i = 0; ids[i]; i++)
    for (guint j = i + 1; ids[j]; j++)
      g_assert_cmpstr (ids[i], !=, ids[j]);
}

/* ---- reading models ------------------------------------------------------- */

static void
test_no_template (Fixture       *fx,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  const char * const *stops;

  write_config (fx, NULL, NULL);
  write_file (fx->dir, "generation_config.json", "{\"eos_token_id\": [2, 7]}");
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_NONE);
  g_assert_null (smelt_chat_template_get_jinja (t));
  g_assert_null (smelt_chat_template_get_family (t));
  g_assert_null (smelt_chat_template_get_ollama_template (t));
  g_assert_nonnull (smelt_chat_template_get_warning (t));
  g_assert_nonnull (smelt_chat_template_get_reason (t));
  stops = smelt_chat_template_get_stop_tokens (t);
  /* tokenizer_config's eos_token, then generation_config's ids resolved */
  g_assert_cmpuint (g_strv_length ((char **) stops), ==, 2);
  g_assert_cmpstr (stops[0], ==, "</s>");
  g_assert_cmpstr (stops[1], ==, "<|im_end|>");
}

static void
test_exact (Fixture       *fx,
            gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string (chatml);
  const char * const *stops;

  write_config (fx, tj, NULL);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_EXACT);
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "chatml");
  g_assert_cmpstr (smelt_chat_template_get_family_name (t), ==, "ChatML");
  g_assert_cmpstr (smelt_chat_template_get_source (t), ==, "tokenizer_config.json");
  g_assert_cmpstr (smelt_chat_template_get_jinja (t), ==, chatml);
  g_assert_nonnull (strstr (smelt_chat_template_get_reason (t), "ChatML"));
  g_assert_nonnull (strstr (smelt_chat_template_get_ollama_template (t), "<|im_start|>"));
  g_assert_null (smelt_chat_template_get_default_system (t));
  stops = smelt_chat_template_get_stop_tokens (t);
  g_assert_true (strv_has (stops, "<|im_end|>"));
  g_assert_true (strv_has (stops, "</s>"));
}

static void
test_jinja_file_first (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string ("{{ messages }}");

  write_config (fx, tj, NULL);
  write_file (fx->dir, "chat_template.jinja", chatml);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (smelt_chat_template_get_source (t), ==, "chat_template.jinja");
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "chatml");
}

static void
test_list_form (Fixture       *fx,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string (chatml);
  g_autofree char *list = g_strdup_printf (
    "[{\"name\": \"tool_use\", \"template\": \"{{ tools }}\"}, {\"name\": \"default\", \"template\": %s},"
    " {\"name\": \"rag\", \"template\": \"{{ documents }}\"}]", tj);

  write_config (fx, list, NULL);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_EXACT);
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "chatml");
  g_clear_object (&t);

  /* a list without "default" is refused, as transformers refuses it */
  write_config (fx, "[{\"name\": \"tool_use\", \"template\": \"x\"}]", NULL);
  t = open_template (fx, &error);
  g_assert_null (t);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "tokenizer_config.json"));
  g_assert_nonnull (strstr (error->message, "default"));
}

static void
test_fallback_markers (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  /* ChatML markers, a layout no variant has */
  g_autofree char *tj = json_string (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content | trim }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n");

  write_config (fx, tj, NULL);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_FALLBACK);
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "chatml");
  g_assert_nonnull (strstr (smelt_chat_template_get_reason (t), "markers"));
  g_assert_nonnull (strstr (smelt_chat_template_get_reason (t), "not by its text"));
  g_assert_nonnull (smelt_chat_template_get_warning (t));
  g_assert_nonnull (strstr (smelt_chat_template_get_ollama_template (t), "<|im_start|>"));
}

static void
test_fallback_generic (Fixture       *fx,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string (
    "{% for m in messages %}### {{ m['role'] | upper }}:\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}### ASSISTANT:\n{% endif %}");
  const char * const *stops;

  write_config (fx, tj, NULL);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_FALLBACK);
  g_assert_null (smelt_chat_template_get_family (t));
  g_assert_nonnull (strstr (smelt_chat_template_get_reason (t), "generic"));
  g_assert_nonnull (smelt_chat_template_get_warning (t));
  g_assert_nonnull (strstr (smelt_chat_template_get_ollama_template (t), ".Messages"));
  stops = smelt_chat_template_get_stop_tokens (t);
  g_assert_true (strv_has (stops, "### User:"));
  g_assert_true (strv_has (stops, "</s>"));
}

static void
test_set_family (Fixture       *fx,
                 gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string (chatml);
  const char *go;

  write_config (fx, tj, NULL);
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_true (smelt_chat_template_set_family (t, "zephyr", &error));
  g_assert_no_error (error);
  g_assert_cmpint (smelt_chat_template_get_match (t), ==, SMELT_CHAT_MATCH_CHOSEN);
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "zephyr");
  g_assert_nonnull (strstr (smelt_chat_template_get_reason (t), "ChatML"));
  go = smelt_chat_template_get_ollama_template (t);
  /* the model's eos_token in place of Jinja's eos_token */
  g_assert_nonnull (strstr (go, "{{ .Content }}</s>"));
  g_assert_true (strv_has (smelt_chat_template_get_stop_tokens (t), "<|user|>"));
  g_assert_false (strv_has (smelt_chat_template_get_stop_tokens (t), "<|im_end|>"));

  g_assert_false (smelt_chat_template_set_family (t, "no-such-family", &error));
  g_assert_nonnull (strstr (error->message, "no-such-family"));
  g_assert_nonnull (strstr (error->message, "llama3.1"));
  g_assert_cmpstr (smelt_chat_template_get_family (t), ==, "zephyr");
}

static void
test_tokens (Fixture       *fx,
             gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltChatTemplate) t = NULL;
  g_autofree char *tj = json_string (chatml);
  g_autofree char *config = g_strdup_printf (
    "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<|begin|>\"},"
    " \"eos_token\": {\"content\": \"<|end|>\"}, \"chat_template\": %s}", tj);
  const char * const *eos;

  /* AddedToken objects; ids found in tokenizer.json's added tokens and
   * vocabulary, not in tokenizer_config.json */
  write_file (fx->dir, "tokenizer_config.json", config);
  write_file (fx->dir, "tokenizer.json",
              "{\"added_tokens\": [{\"id\": 100, \"content\": \"<|end|>\"},"
              " {\"id\": 101, \"content\": \"<|eom|>\"}],"
              " \"model\": {\"vocab\": {\"a\": 0, \"<|stop|>\": 5}}}");
  write_file (fx->dir, "generation_config.json", "{\"eos_token_id\": [100, 101, 5, 101]}");
  t = open_template (fx, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (smelt_chat_template_get_bos_token (t), ==, "<|begin|>");
  eos = smelt_chat_template_get_eos_tokens (t);
  g_assert_cmpuint (g_strv_length ((char **) eos), ==, 3);
  g_assert_cmpstr (eos[0], ==, "<|end|>");
  g_assert_cmpstr (eos[1], ==, "<|eom|>");
  g_assert_cmpstr (eos[2], ==, "<|stop|>");
  g_assert_true (strv_has (smelt_chat_template_get_stop_tokens (t), "<|eom|>"));
  g_clear_object (&t);

  /* an id that is no token: the generation config lies */
  write_file (fx->dir, "generation_config.json", "{\"eos_token_id\": 999}");
  t = open_template (fx, &error);
  g_assert_null (t);
  g_assert_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "generation_config.json"));
  g_assert_nonnull (strstr (error->message, "999"));
}

static void
test_broken_files (Fixture       *fx,
                   gconstpointer  data)
{
  static const struct {
    const char *file;
    const char *text;
  } cases[] = {
    { "tokenizer_config.json", "{\"chat_template\": " },
    { "tokenizer_config.json", "[1, 2]" },
    { "tokenizer_config.json", "{\"chat_template\": 42}" },
    { "tokenizer_config.json", "{\"eos_token\": [1]}" },
    { "chat_template.jinja", "\xff\xfe not UTF-8" },
    { "generation_config.json", "{\"eos_token_id\": \"</s>\"}" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(SmeltChatTemplate) t = NULL;
      g_autofree char *p = NULL;

      write_config (fx, NULL, NULL);
      g_remove ((p = g_build_filename (fx->dir, "chat_template.jinja", NULL)));
      g_free (p);
      g_remove ((p = g_build_filename (fx->dir, "generation_config.json", NULL)));
      write_file (fx->dir, cases[i].file, cases[i].text);
      t = open_template (fx, &error);
      g_assert_null (t);
      g_assert_nonnull (error);
      if (!strstr (error->message, cases[i].file))
        g_error ("case %u: the error does not name %s: %s", i, cases[i].file, error->message);
    }
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/chat-template/normalize", test_normalize);
  g_test_add_func ("/chat-template/list-families", test_list_families);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/chat-template/table-variants", test_table_variants);
  ADD ("/chat-template/no-template", test_no_template);
  ADD ("/chat-template/exact", test_exact);
  ADD ("/chat-template/jinja-file-first", test_jinja_file_first);
  ADD ("/chat-template/list-form", test_list_form);
  ADD ("/chat-template/fallback-markers", test_fallback_markers);
  ADD ("/chat-template/fallback-generic", test_fallback_generic);
  ADD ("/chat-template/set-family", test_set_family);
  ADD ("/chat-template/tokens", test_tokens);
  ADD ("/chat-template/broken-files", test_broken_files);
#undef ADD
  return g_test_run ();
}
