/* smelt-hf-encode.c: smelt's tokenizer.json encoder on the command line
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   smelt-hf-encode TOKENIZER_DIR < texts.json
 *
 * TOKENIZER_DIR holds tokenizer.json (and optionally tokenizer_config.json
 * and special_tokens_map.json). For each string of the JSON array on
 * standard input, prints the ids of tokenizer.encode(text) with special
 * tokens added, as a JSON array of arrays, and on a last line
 * {"pre_hash": …, "pre": …}: the encoder the GGUF converter's
 * pre-tokenizer fingerprint needs, for test_gguf_tokenize.py to hold
 * against Hugging Face's own implementation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smelt-gguf-vocab-private.h"

static SmeltJsonDoc *
load_optional (const char *dir,
               const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  g_autoptr(GError) error = NULL;
  SmeltJsonDoc *doc;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  doc = smelt_json_doc_load (path, &error);
  if (!doc)
    {
      g_printerr ("smelt-hf-encode: %s\n", error->message);
      exit (1);
    }
  return doc;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltJsonDoc) tj = NULL;
  g_autoptr(SmeltJsonDoc) tc = NULL;
  g_autoptr(SmeltJsonDoc) stm = NULL;
  g_autoptr(SmeltJsonDoc) texts = NULL;
  g_autoptr(SmeltHfTokenizer) tok = NULL;
  g_autofree char *path = NULL;
  g_autofree char *input = NULL;
  g_autofree char *hash = NULL;
  g_autoptr(GString) out = g_string_new ("[");
  SmeltJson *root;
  gsize len;

  if (argc != 2)
    {
      g_printerr ("usage: smelt-hf-encode TOKENIZER_DIR < texts.json\n");
      return 2;
    }
  path = g_build_filename (argv[1], "tokenizer.json", NULL);
  tj = smelt_json_doc_load (path, &error);
  if (!tj)
    {
      g_printerr ("smelt-hf-encode: %s\n", error->message);
      return 1;
    }
  tc = load_optional (argv[1], "tokenizer_config.json");
  stm = load_optional (argv[1], "special_tokens_map.json");
  tok = smelt_hf_tokenizer_new (smelt_json_doc_get_root (tj), tc ? smelt_json_doc_get_root (tc) : NULL,
                                stm ? smelt_json_doc_get_root (stm) : NULL, NULL, path, &error);
  if (!tok)
    {
      g_printerr ("smelt-hf-encode: %s\n", error->message);
      return 1;
    }

  {
    GIOChannel *in = g_io_channel_unix_new (0);

    g_io_channel_set_encoding (in, NULL, NULL);
    if (g_io_channel_read_to_end (in, &input, &len, &error) != G_IO_STATUS_NORMAL)
      {
        g_printerr ("smelt-hf-encode: standard input: %s\n", error->message);
        return 1;
      }
    g_io_channel_unref (in);
  }
  texts = smelt_json_doc_parse (input ? input : "", len, "standard input", &error);
  if (!texts)
    {
      g_printerr ("smelt-hf-encode: %s\n", error->message);
      return 1;
    }
  root = smelt_json_doc_get_root (texts);
  if (root->type != SMELT_JSON_ARRAY)
    {
      g_printerr ("smelt-hf-encode: standard input: expected a JSON array of strings\n");
      return 1;
    }

  for (gsize i = 0; i < root->n; i++)
    {
      g_autoptr(GArray) ids = NULL;

      if (root->u.items[i]->type != SMELT_JSON_STRING)
        {
          g_printerr ("smelt-hf-encode: standard input: item %" G_GSIZE_FORMAT " is not a string\n", i);
          return 1;
        }
      ids = smelt_hf_tokenizer_encode (tok, root->u.items[i]->u.s, TRUE, &error);
      if (!ids)
        {
          g_printerr ("smelt-hf-encode: %s\n", error->message);
          return 1;
        }
      g_string_append (out, i ? ", [" : "[");
      for (guint k = 0; k < ids->len; k++)
        g_string_append_printf (out, k ? ", %u" : "%u", g_array_index (ids, guint32, k));
      g_string_append_c (out, ']');
    }
  g_string_append (out, "]\n");

  hash = smelt_hf_tokenizer_pre_hash (tok, &error);
  if (!hash)
    {
      g_printerr ("smelt-hf-encode: %s\n", error->message);
      return 1;
    }
  g_string_append_printf (out, "{\"pre_hash\": \"%s\", \"pre\": ", hash);
  if (smelt_gguf_vocab_pre_lookup (hash))
    g_string_append_printf (out, "\"%s\"}\n", smelt_gguf_vocab_pre_lookup (hash));
  else
    g_string_append (out, "null}\n");
  fwrite (out->str, 1, out->len, stdout);
  return 0;
}
