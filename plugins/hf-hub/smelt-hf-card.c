/* smelt-hf-card.c: the model card (README.md) of an upload
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <smelt/smelt.h>

#include <string.h>

#include "smelt-hf-card.h"

/* A card the Hub can use (hub.md §5): base_model for the model tree,
 * library_name and pipeline_tag set explicitly (the Hub no longer infers
 * them), the license inherited from the base, tags naming what was
 * written; then what each file is and how to run it. Unsloth's GGUF
 * cards omit all of that; its merged cards hard-code apache-2.0. */

void
smelt_hf_card_file_free (SmeltHfCardFile *file)
{
  g_free (file->path);
  g_free (file->type);
  g_free (file);
}

/* ---- what the files hold ---- */

/* llama.cpp's llama_ftype values (include/llama.h) and the names
 * llama-quantize gives them */
static const struct {
  guint32     ftype;
  const char *name;
} ftypes[] = {
  { 0, "F32" }, { 1, "F16" }, { 2, "Q4_0" }, { 3, "Q4_1" }, { 7, "Q8_0" }, { 8, "Q5_0" },
  { 9, "Q5_1" }, { 10, "Q2_K" }, { 11, "Q3_K_S" }, { 12, "Q3_K_M" }, { 13, "Q3_K_L" },
  { 14, "Q4_K_S" }, { 15, "Q4_K_M" }, { 16, "Q5_K_S" }, { 17, "Q5_K_M" }, { 18, "Q6_K" },
  { 19, "IQ2_XXS" }, { 20, "IQ2_XS" }, { 21, "Q2_K_S" }, { 22, "IQ3_XS" }, { 23, "IQ3_XXS" },
  { 24, "IQ1_S" }, { 25, "IQ4_NL" }, { 26, "IQ3_S" }, { 27, "IQ3_M" }, { 28, "IQ2_S" },
  { 29, "IQ2_M" }, { 30, "IQ4_XS" }, { 31, "IQ1_M" }, { 32, "BF16" }, { 36, "TQ1_0" },
  { 37, "TQ2_0" }, { 38, "MXFP4_MOE" },
};

static char *
type_from_name (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *up = g_ascii_strup (base, -1);

  /* NAME.Q4_K_M.gguf, NAME-Q4_K_M.gguf, NAME.Q4_K_M-00001-of-00003.gguf:
   * the longest known name that appears wins (Q4_K_M over Q4_K) */
  const char *best = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (ftypes); i++)
    {
      const char *hit = strstr (up, ftypes[i].name);
      gsize n = strlen (ftypes[i].name);

      if (hit && (hit == up || !g_ascii_isalnum (hit[-1])) && !g_ascii_isalnum (hit[n]) &&
          (best == NULL || n > strlen (best)))
        best = ftypes[i].name;
    }
  return g_strdup (best);
}

char *
smelt_hf_gguf_type (const char *local)
{
  g_autoptr(SmeltGgufFile) file = smelt_gguf_file_new (local, NULL);
  int k = file ? smelt_gguf_file_find_key (file, "general.file_type") : -1;

  if (k >= 0)
    {
      g_autoptr(GVariant) v = smelt_gguf_file_get_value (file, (guint) k);
      gint64 ft = -1;

      if (v && g_variant_is_of_type (v, G_VARIANT_TYPE_UINT32))
        ft = g_variant_get_uint32 (v);
      else if (v && g_variant_is_of_type (v, G_VARIANT_TYPE_INT32))
        ft = g_variant_get_int32 (v);
      for (guint i = 0; i < G_N_ELEMENTS (ftypes); i++)
        if (ftypes[i].ftype == ft)
          return g_strdup (ftypes[i].name);
    }
  /* a split file's later parts have no general.* keys */
  return type_from_name (local);
}

/* The dtype holding most bytes, from the JSON header; bitsandbytes 4-bit
 * weights are recognized by their quant_state companions. */
char *
smelt_hf_safetensors_type (const char *local,
                           gboolean   *bnb4)
{
  g_autoptr(GFile) file = g_file_new_for_path (local);
  g_autoptr(GFileInputStream) in = g_file_read (file, NULL, NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GHashTable) bytes = g_hash_table_new (g_str_hash, g_str_equal);
  g_autofree char *header = NULL;
  guint8 len8[8];
  guint64 n = 0;
  gsize got = 0;
  JsonObject *obj;
  GList *names;
  const char *best = NULL;
  guint64 best_bytes = 0;
  const char *quant = NULL;

  *bnb4 = FALSE;
  if (in == NULL ||
      !g_input_stream_read_all (G_INPUT_STREAM (in), len8, 8, &got, NULL, NULL) || got != 8)
    return NULL;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | len8[i];
  if (n == 0 || n > (100u << 20))
    return NULL;
  header = g_malloc (n);
  if (!g_input_stream_read_all (G_INPUT_STREAM (in), header, n, &got, NULL, NULL) || got != n ||
      !json_parser_load_from_data (parser, header, (gssize) n, NULL) ||
      !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    return NULL;
  obj = json_node_get_object (json_parser_get_root (parser));
  names = json_object_get_members (obj);
  for (GList *l = names; l; l = l->next)
    {
      const char *name = l->data;
      JsonNode *t = json_object_get_member (obj, name);
      JsonObject *to = JSON_NODE_HOLDS_OBJECT (t) ? json_node_get_object (t) : NULL;
      JsonArray *off = to && json_object_has_member (to, "data_offsets") &&
                       JSON_NODE_HOLDS_ARRAY (json_object_get_member (to, "data_offsets"))
                       ? json_object_get_array_member (to, "data_offsets") : NULL;
      const char *dtype = to ? json_object_get_string_member_with_default (to, "dtype", NULL) : NULL;
      guint64 size;

      if (g_str_has_suffix (name, "bitsandbytes__nf4"))
        quant = "NF4";
      else if (g_str_has_suffix (name, "bitsandbytes__fp4"))
        quant = "FP4";
      if (dtype == NULL || off == NULL || json_array_get_length (off) != 2)
        continue;
      size = (guint64) (json_array_get_int_element (off, 1) - json_array_get_int_element (off, 0));
      size += GPOINTER_TO_SIZE (g_hash_table_lookup (bytes, dtype));
      g_hash_table_insert (bytes, (gpointer) dtype, GSIZE_TO_POINTER (size));
      if (size > best_bytes)
        {
          best_bytes = size;
          best = dtype;
        }
    }
  g_list_free (names);
  if (quant)
    {
      *bnb4 = TRUE;
      return g_strdup (quant);
    }
  return g_strdup (best);
}

gboolean
smelt_hf_is_repo_id (const char *text)
{
  return text != NULL &&
         g_regex_match_simple ("^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", text, 0, 0) &&
         strstr (text, "..") == NULL && strstr (text, "--") == NULL &&
         !g_str_has_suffix (text, ".git") && !g_file_test (text, G_FILE_TEST_EXISTS);
}

/* `license:` of the front matter, as a plain scalar or quoted; a list or
 * a block is not a license id. */
char *
smelt_hf_card_license (const char *readme_path)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;

  if (!g_file_get_contents (readme_path, &text, NULL, NULL) || !g_str_has_prefix (text, "---"))
    return NULL;
  lines = g_strsplit (text, "\n", 400);
  for (guint i = 1; lines[i] != NULL && !g_str_has_prefix (lines[i], "---"); i++)
    if (g_str_has_prefix (lines[i], "license:"))
      {
        char *v = g_strstrip (lines[i] + strlen ("license:"));
        gsize n = strlen (v);

        if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0])
          {
            v[n - 1] = '\0';
            v++;
          }
        if (*v == '\0' || strpbrk (v, "[]{}:#\"'") != NULL || !g_utf8_validate (v, -1, NULL))
          return NULL;
        return g_strdup (v);
      }
  return NULL;
}

/* ---- writing the card ---- */

/* A YAML double-quoted scalar: JSON's string syntax is valid YAML */
static void
yaml_string (GString    *out,
             const char *s)
{
  g_autoptr(JsonNode) node = json_node_init_string (json_node_alloc (), s);
  g_autofree char *text = json_to_string (node, FALSE);

  g_string_append (out, text);
}

static void
front_matter (GString           *out,
              const SmeltHfCard *card)
{
  g_string_append (out, "---\n");
  if (card->base_model)
    {
      g_string_append (out, "base_model: ");
      yaml_string (out, card->base_model);
      g_string_append_c (out, '\n');
    }
  if (card->library_name)
    g_string_append_printf (out, "library_name: %s\n", card->library_name);
  if (card->pipeline_tag)
    g_string_append_printf (out, "pipeline_tag: %s\n", card->pipeline_tag);
  if (card->license)
    {
      g_string_append (out, "license: ");
      yaml_string (out, card->license);
      g_string_append_c (out, '\n');
    }
  if (card->tags && card->tags[0])
    {
      g_string_append (out, "tags:\n");
      for (guint i = 0; card->tags[i]; i++)
        {
          g_string_append (out, "- ");
          yaml_string (out, card->tags[i]);
          g_string_append_c (out, '\n');
        }
    }
  g_string_append (out, "---\n\n");
}

static const char *
kind_name (SmeltHfFileKind kind)
{
  switch (kind)
    {
    case SMELT_HF_KIND_SAFETENSORS:
      return "safetensors";
    case SMELT_HF_KIND_ADAPTER:
      return "LoRA adapter (safetensors)";
    case SMELT_HF_KIND_GGUF:
      return "GGUF";
    case SMELT_HF_KIND_OTHER:
    default:
      return "";
    }
}

/* A file name inside a Markdown table: | would end the cell */
static void
md_cell (GString    *out,
         const char *s)
{
  for (const char *p = s; *p; p++)
    {
      if (*p == '|' || *p == '`' || *p == '\\')
        g_string_append_c (out, '\\');
      g_string_append_c (out, *p);
    }
}

static gboolean
has_kind (const SmeltHfCard *card,
          SmeltHfFileKind    kind)
{
  for (guint i = 0; i < card->files->len; i++)
    if (((SmeltHfCardFile *) g_ptr_array_index (card->files, i))->kind == kind)
      return TRUE;
  return FALSE;
}

static void
usage (GString           *out,
       const SmeltHfCard *card)
{
  g_autoptr(GPtrArray) quants = g_ptr_array_new ();
  gboolean bnb4 = FALSE;

  for (guint i = 0; i < card->files->len; i++)
    {
      SmeltHfCardFile *f = g_ptr_array_index (card->files, i);

      if (f->kind == SMELT_HF_KIND_GGUF && f->type &&
          !g_ptr_array_find_with_equal_func (quants, f->type, g_str_equal, NULL))
        g_ptr_array_add (quants, f->type);
      if (f->kind == SMELT_HF_KIND_SAFETENSORS && f->type &&
          (g_str_equal (f->type, "NF4") || g_str_equal (f->type, "FP4")))
        bnb4 = TRUE;
    }

  g_string_append (out, "## How to use\n\n");
  if (quants->len > 0)
    {
      const char *q = g_ptr_array_index (quants, 0);

      g_string_append (out, "### llama.cpp\n\n```sh\n");
      for (guint i = 0; i < quants->len; i++)
        g_string_append_printf (out, "llama-cli -hf %s:%s\n", card->repo_id,
                                (const char *) g_ptr_array_index (quants, i));
      g_string_append_printf (out, "llama-server -hf %s:%s\n```\n\n", card->repo_id, q);
      g_string_append (out, "### Ollama\n\n```sh\n");
      for (guint i = 0; i < quants->len; i++)
        g_string_append_printf (out, "ollama run hf.co/%s:%s\n", card->repo_id,
                                (const char *) g_ptr_array_index (quants, i));
      g_string_append (out, "```\n\n");
    }
  if (has_kind (card, SMELT_HF_KIND_SAFETENSORS))
    {
      g_string_append (out, "### transformers\n\n```python\n"
                            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n");
      g_string_append_printf (out, "model = AutoModelForCausalLM.from_pretrained(\"%s\"%s)\n",
                              card->repo_id, bnb4 ? ", device_map=\"auto\"" : "");
      g_string_append_printf (out, "tokenizer = AutoTokenizer.from_pretrained(\"%s\")\n```\n\n",
                              card->repo_id);
      if (bnb4)
        g_string_append (out, "The weights are bitsandbytes 4-bit: loading them needs the "
                              "`bitsandbytes` package and a GPU.\n\n");
    }
  if (has_kind (card, SMELT_HF_KIND_ADAPTER))
    {
      g_string_append (out, "### PEFT (the adapter alone)\n\n```python\n"
                            "from peft import AutoPeftModelForCausalLM\n\n");
      g_string_append_printf (out, "model = AutoPeftModelForCausalLM.from_pretrained(\"%s\")\n```\n\n",
                              card->repo_id);
    }
}

GBytes *
smelt_hf_card_render (const SmeltHfCard *card)
{
  GString *out = g_string_new (NULL);
  const char *name = strchr (card->repo_id, '/') ? strchr (card->repo_id, '/') + 1 : card->repo_id;

  front_matter (out, card);
  g_string_append_printf (out, "# %s\n\n", name);
  if (card->base_model && card->n_adapters > 0)
    g_string_append_printf (out, "A fine-tune of [%s](https://huggingface.co/%s): %s LoRA "
                            "adapter%s merged into its weights.\n\n", card->base_model,
                            card->base_model, card->n_adapters == 1 ? "a" : "several",
                            card->n_adapters == 1 ? "" : "s");
  else if (card->base_model)
    g_string_append_printf (out, "Converted from [%s](https://huggingface.co/%s).\n\n",
                            card->base_model, card->base_model);
  g_string_append_printf (out, "Exported with smelt %s in one pass over the weights; "
                          "every file below came from the same merge.\n\n", SMELT_VERSION_S);

  g_string_append (out, "## Files\n\n| File | Size | Format | Type |\n|---|---:|---|---|\n");
  for (guint i = 0; i < card->files->len; i++)
    {
      SmeltHfCardFile *f = g_ptr_array_index (card->files, i);
      g_autofree char *size = NULL;

      if (f->kind == SMELT_HF_KIND_OTHER)
        continue;
      size = smelt_format_size (f->size);
      g_string_append (out, "| ");
      md_cell (out, f->path);
      g_string_append_printf (out, " | %s | %s | %s |\n", size, kind_name (f->kind),
                              f->type ? f->type : "");
    }
  {
    guint others = 0;

    for (guint i = 0; i < card->files->len; i++)
      others += ((SmeltHfCardFile *) g_ptr_array_index (card->files, i))->kind == SMELT_HF_KIND_OTHER;
    if (others > 0)
      {
        g_string_append (out, "\nAlso: ");
        for (guint i = 0, k = 0; i < card->files->len; i++)
          {
            SmeltHfCardFile *f = g_ptr_array_index (card->files, i);

            if (f->kind != SMELT_HF_KIND_OTHER)
              continue;
            g_string_append_printf (out, "%s`%s`", k++ ? ", " : "", f->path);
          }
        g_string_append (out, ".\n");
      }
  }
  g_string_append_c (out, '\n');
  usage (out, card);
  if (card->license)
    g_string_append_printf (out, "## License\n\n`%s`%s.\n\n", card->license,
                            card->base_model ? ", as the base model" : "");
  g_string_append (out, SMELT_HF_CARD_MARKER "\n");
  return g_string_free_to_bytes (out);
}
