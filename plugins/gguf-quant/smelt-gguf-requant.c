/* smelt-gguf-requant.c: a GGUF model as the source (llama-quantize's job)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "smelt-gguf-requant.h"

/* People who already have a 16-bit GGUF (from the converter, from smelt,
 * from the Hub) quantize it with llama-quantize. gguf-quant does the same
 * job from the same file: tensors and metadata pass through unchanged and
 * llama.cpp's mixture picks each tensor's type, so the output equals
 * llama_model_quantize()'s. */

/* An integer hyperparameter: a scalar of any integer type, or the first
 * element of a per-layer array (llama.cpp reads layer 0's head counts). */
static gboolean
read_uint (SmeltGgufFile *f,
           const char    *key,
           guint         *out)
{
  int i = smelt_gguf_file_find_key (f, key);
  g_autoptr(GVariant) v = NULL;
  g_autoptr(GVariant) first = NULL;
  GVariant *x;
  gint64 n;

  if (i < 0)
    return FALSE;
  v = smelt_gguf_file_get_value (f, i);
  x = v;
  if (g_variant_is_container (v))
    {
      if (g_variant_n_children (v) == 0)
        return FALSE;
      first = g_variant_get_child_value (v, 0);
      x = first;
    }
  if (g_variant_is_of_type (x, G_VARIANT_TYPE_BYTE))
    n = g_variant_get_byte (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_INT16))
    n = g_variant_get_int16 (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_UINT16))
    n = g_variant_get_uint16 (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_INT32))
    n = g_variant_get_int32 (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_UINT32))
    n = g_variant_get_uint32 (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_INT64))
    n = g_variant_get_int64 (x);
  else if (g_variant_is_of_type (x, G_VARIANT_TYPE_UINT64))
    n = (gint64) MIN (g_variant_get_uint64 (x), (guint64) G_MAXINT64);
  else
    return FALSE;
  if (n < 0 || n > G_MAXUINT)
    return FALSE;
  *out = (guint) n;
  return TRUE;
}

static guint
arch_uint (SmeltGgufFile *f,
           const char    *arch,
           const char    *suffix,
           guint          fallback)
{
  g_autofree char *key = g_strconcat (arch, ".", suffix, NULL);
  guint v = fallback;

  read_uint (f, key, &v);
  return v;
}

static SmeltGgmlType
ggml_type_of (SmeltDType dtype)
{
  switch (dtype)
    {
    case SMELT_DTYPE_F16:
      return SMELT_GGML_TYPE_F16;
    case SMELT_DTYPE_BF16:
      return SMELT_GGML_TYPE_BF16;
    case SMELT_DTYPE_F32:
    default:
      return SMELT_GGML_TYPE_F32;
    }
}

static void
add_tensor (SmeltGgufArchPlan *plan,
            SmeltTensor       *tensor)
{
  SmeltGgufTensor *t = g_new0 (SmeltGgufTensor, 1);
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (tensor, &n_dims);

  t->name = g_strdup (smelt_tensor_get_name (tensor));
  t->tensor = g_object_ref (tensor);
  t->n_dims = MAX (n_dims, 1);
  for (guint d = 0; d < 4; d++)
    t->ne[d] = d < n_dims ? shape[n_dims - 1 - d] : 1;
  t->source_type = ggml_type_of (smelt_tensor_get_dtype (tensor));
  g_ptr_array_add (plan->tensors, t);
  g_hash_table_insert (plan->by_source, t->name, t);
}

SmeltGgufArchPlan *
smelt_gguf_requant_plan (SmeltSource  *source,
                         GError      **error)
{
  SmeltModel *model = smelt_source_get_model (source);
  SmeltGgufFile *f = smelt_model_get_gguf (model);
  const char *arch = smelt_model_get_architecture (model);
  g_autoptr(SmeltGgufArchPlan) plan = NULL;

  g_return_val_if_fail (f != NULL && arch != NULL, NULL);

  plan = smelt_gguf_arch_plan_new_empty (arch);
  plan->from_gguf = TRUE;
  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    add_tensor (plan, smelt_source_get_tensor (source, i));
  if (plan->tensors->len == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: the GGUF file holds no tensors", smelt_model_get_path (model));
      return NULL;
    }
  plan->n_head = arch_uint (f, arch, "attention.head_count", 0);
  plan->n_head_kv = arch_uint (f, arch, "attention.head_count_kv", plan->n_head);
  plan->n_layer = arch_uint (f, arch, "block_count", 0);
  plan->n_expert = arch_uint (f, arch, "expert_count", 0);
  plan->n_layer_nextn = arch_uint (f, arch, "nextn_predict_layers", 0);
  plan->tied_output = g_hash_table_lookup (plan->by_source, "output.weight") == NULL;
  if (plan->n_layer == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: no %s.block_count in the metadata: not a model llama.cpp loads",
                   smelt_model_get_path (model), arch);
      return NULL;
    }
  return g_steal_pointer (&plan);
}

static gboolean
is_split_key (const char *key)
{
  return strcmp (key, "split.no") == 0 || strcmp (key, "split.count") == 0 ||
         strcmp (key, "split.tensors.count") == 0;
}

SmeltGgufLayout *
smelt_gguf_requant_template (SmeltGgufFile *file)
{
  SmeltGgufLayout *layout = smelt_gguf_layout_new ();

  for (guint i = 0; i < smelt_gguf_file_get_n_kv (file); i++)
    if (!is_split_key (smelt_gguf_file_get_key (file, i)))
      smelt_gguf_layout_copy_kv (layout, file, i);
  return layout;
}

char *
smelt_gguf_requant_stem (SmeltGgufFile *file)
{
  static const char * const types[] = { "f32", "f16", "bf16", NULL };
  g_autofree char *base = g_path_get_basename (smelt_gguf_file_get_path (file));
  gsize n;

  if (g_str_has_suffix (base, ".gguf"))
    base[strlen (base) - 5] = '\0';
  n = strlen (base);
  for (guint i = 0; types[i]; i++)
    {
      gsize k = strlen (types[i]);

      if (n > k + 1 && g_ascii_strcasecmp (base + n - k, types[i]) == 0 &&
          strchr (".-_", base[n - k - 1]) != NULL)
        {
          base[n - k - 1] = '\0';
          break;
        }
    }
  return *base ? g_steal_pointer (&base) : g_strdup ("model");
}
