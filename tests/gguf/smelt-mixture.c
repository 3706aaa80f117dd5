/* smelt-mixture.c: smelt's prediction of llama-quantize's tensor types
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   smelt-mixture IN.gguf FTYPE     "ftype<TAB>number<TAB>name", then
 *                                   name<TAB>type per tensor, in file order
 *   smelt-mixture IN.gguf --order   the names in llama-quantize's order
 *
 * Reads the tensor list and the hyperparameters the rules need from a
 * GGUF file (smelt's reader) and runs smelt_gguf_mixture_choose() for
 * FTYPE (any name smelt_gguf_mixture_lookup_ftype() knows, supported or
 * not). Exit status 0; 1 when the choice fails the way llama-quantize
 * would (the message on stderr); 2 for a usage or file error.
 */
#include <stdio.h>
#include <string.h>

#include "smelt-gguf-mixture.h"

/* An integer key, or the first element of an integer array (layer 0). */
static gboolean
key_uint (SmeltGgufFile *file,
          const char    *arch,
          const char    *suffix,
          guint         *out)
{
  g_autofree char *key = g_strdup_printf ("%s.%s", arch, suffix);
  int index = smelt_gguf_file_find_key (file, key);
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GVariant) inner = NULL;
  GVariant *scalar;

  if (index < 0)
    return FALSE;
  v = smelt_gguf_file_get_value (file, index);
  scalar = v;
  if (g_variant_is_of_type (v, G_VARIANT_TYPE ("av")))
    {
      g_autoptr(GVariant) child = NULL;

      if (g_variant_n_children (v) == 0)
        return FALSE;
      child = g_variant_get_child_value (v, 0);
      inner = g_variant_get_variant (child);
      scalar = inner;
    }
  if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_BYTE))
    *out = g_variant_get_byte (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_INT16))
    *out = (guint) g_variant_get_int16 (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_UINT16))
    *out = g_variant_get_uint16 (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_INT32))
    *out = (guint) g_variant_get_int32 (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_UINT32))
    *out = g_variant_get_uint32 (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_INT64))
    *out = (guint) g_variant_get_int64 (scalar);
  else if (g_variant_is_of_type (scalar, G_VARIANT_TYPE_UINT64))
    *out = (guint) g_variant_get_uint64 (scalar);
  else
    return FALSE;
  return TRUE;
}

static int
die (const char *message)
{
  fprintf (stderr, "smelt-mixture: %s\n", message);
  return 2;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(SmeltGgufFile) file = NULL;
  g_autofree SmeltGgufMixTensor *tensors = NULL;
  g_autofree SmeltGgmlType *types = NULL;
  g_autofree char *arch = NULL;
  const SmeltGgufFtype *ftype = NULL;
  SmeltGgufMixHparams hp = { 0 };
  int arch_key;
  guint n;

  if (argc != 3)
    return die ("usage: smelt-mixture IN.gguf FTYPE|--order");
  file = smelt_gguf_file_new (argv[1], &error);
  if (file == NULL)
    return die (error->message);

  n = smelt_gguf_file_get_n_tensors (file);
  tensors = g_new0 (SmeltGgufMixTensor, MAX (n, 1));
  types = g_new0 (SmeltGgmlType, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      guint64 ne[4] = { 1, 1, 1, 1 };
      guint n_dims = smelt_gguf_file_get_tensor_shape (file, i, ne);

      for (guint d = n_dims; d < 4; d++)
        ne[d] = 1;
      tensors[i].name = smelt_gguf_file_get_tensor_name (file, i);
      memcpy (tensors[i].ne, ne, sizeof ne);
      tensors[i].type = smelt_gguf_file_get_tensor_type (file, i);
    }

  if (strcmp (argv[2], "--order") == 0)
    {
      smelt_gguf_mixture_sort (tensors, n);
      for (guint i = 0; i < n; i++)
        printf ("%s\n", tensors[i].name);
      return 0;
    }

  ftype = smelt_gguf_mixture_lookup_ftype (argv[2]);
  if (ftype == NULL)
    return die ("unknown file type");
  arch_key = smelt_gguf_file_find_key (file, "general.architecture");
  if (arch_key < 0)
    return die ("no general.architecture");
  {
    g_autoptr(GVariant) v = smelt_gguf_file_get_value (file, arch_key);
    arch = g_variant_dup_string (v, NULL);
  }
  hp.arch = arch;
  if (!key_uint (file, arch, "block_count", &hp.n_layer))
    return die ("no block_count");
  if (!key_uint (file, arch, "attention.head_count", &hp.n_head))
    hp.n_head = 0;
  /* llama.cpp: head_count_kv defaults to head_count */
  if (!key_uint (file, arch, "attention.head_count_kv", &hp.n_head_kv))
    hp.n_head_kv = hp.n_head;
  if (!key_uint (file, arch, "expert_count", &hp.n_expert))
    hp.n_expert = 0;
  if (!key_uint (file, arch, "nextn_predict_layers", &hp.n_layer_nextn))
    hp.n_layer_nextn = 0;

  if (!smelt_gguf_mixture_choose (ftype, &hp, tensors, n, types, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 1;
    }
  printf ("ftype\t%u\t%s\n", ftype->ftype, ftype->name);
  for (guint i = 0; i < n; i++)
    printf ("%s\t%s\n", tensors[i].name, smelt_ggml_type_get_name (types[i]));
  return 0;
}
