/* test-adapter-keys.c: PEFT key spellings map onto base tensor names
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>

#include "smelt-private.h"

typedef struct {
  const char          *key;
  const char          *module;
  SmeltAdapterKeyKind  kind;
} KeyCase;

static const KeyCase good[] = {
  { "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "model.layers.0.self_attn.q_proj", SMELT_ADAPTER_KEY_LORA_A },
  { "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "model.layers.0.self_attn.q_proj", SMELT_ADAPTER_KEY_LORA_B },
  { "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", "model.layers.0.self_attn.q_proj", SMELT_ADAPTER_KEY_LORA_B_BIAS },
  /* raw state-dict dumps keep the adapter name */
  { "base_model.model.model.layers.0.mlp.up_proj.lora_A.default.weight", "model.layers.0.mlp.up_proj", SMELT_ADAPTER_KEY_LORA_A },
  { "base_model.model.model.layers.0.mlp.up_proj.lora_B.my_adapter.bias", "model.layers.0.mlp.up_proj", SMELT_ADAPTER_KEY_LORA_B_BIAS },
  { "base_model.model.model.embed_tokens.lora_embedding_A", "model.embed_tokens", SMELT_ADAPTER_KEY_EMBEDDING_A },
  { "base_model.model.model.embed_tokens.lora_embedding_B.default", "model.embed_tokens", SMELT_ADAPTER_KEY_EMBEDDING_B },
  { "base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector", "model.layers.1.self_attn.v_proj", SMELT_ADAPTER_KEY_MAGNITUDE },
  { "base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector.default.weight", "model.layers.1.self_attn.v_proj", SMELT_ADAPTER_KEY_MAGNITUDE },
  /* full tensors */
  { "base_model.model.lm_head.weight", "lm_head.weight", SMELT_ADAPTER_KEY_FULL },
  { "base_model.model.model.layers.0.self_attn.q_proj.base_layer.bias", "model.layers.0.self_attn.q_proj.bias", SMELT_ADAPTER_KEY_FULL },
  { "base_model.model.score.modules_to_save.default.weight", "score.weight", SMELT_ADAPTER_KEY_FULL },
  { "base_model.model.model.embed_tokens.base_layer.weight", "model.embed_tokens.weight", SMELT_ADAPTER_KEY_FULL },
  /* adapters trained on the bare model, without the prefix */
  { "layers.0.self_attn.q_proj.lora_A.weight", "layers.0.self_attn.q_proj", SMELT_ADAPTER_KEY_LORA_A },
};

static const char * const bad[] = {
  "base_model.model.lora_A.weight",                        /* no module */
  "base_model.model.x.q_proj.lora_A.bias",                 /* lora_A has no bias */
  "base_model.model.x.q_proj.lora_A",                      /* no weight */
  "base_model.model.x.q_proj.lora_B.default.extra.weight", /* too much after the part */
  "base_model.model.x.embed.lora_embedding_A.default.weight",
};

static void
test_good (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autofree char *module = NULL;
      g_autoptr(GError) error = NULL;
      SmeltAdapterKeyKind kind;

      g_assert_true (_smelt_parse_adapter_key (good[i].key, &module, &kind, &error));
      g_assert_no_error (error);
      g_assert_cmpstr (module, ==, good[i].module);
      g_assert_cmpint (kind, ==, good[i].kind);
    }
}

static void
test_bad (void)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *module = NULL;
      g_autoptr(GError) error = NULL;
      SmeltAdapterKeyKind kind;

      g_assert_false (_smelt_parse_adapter_key (bad[i], &module, &kind, &error));
      g_assert_error (error, SMELT_MODEL_ERROR, error->code);
      g_assert_nonnull (strstr (error->message, bad[i]));
    }
}

static void
test_natural_order (void)
{
  g_assert_cmpint (_smelt_natural_compare ("layers.2.x", "layers.10.x"), <, 0);
  g_assert_cmpint (_smelt_natural_compare ("layers.10.x", "layers.2.x"), >, 0);
  g_assert_cmpint (_smelt_natural_compare ("a.01", "a.1"), ==, 0);
  g_assert_cmpint (_smelt_natural_compare ("lm_head", "model"), <, 0);
  g_assert_cmpint (_smelt_natural_compare ("abc", "abc"), ==, 0);
  g_assert_cmpint (_smelt_natural_compare ("abc", "abcd"), <, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/adapter-keys/good", test_good);
  g_test_add_func ("/adapter-keys/bad", test_bad);
  g_test_add_func ("/adapter-keys/natural-order", test_natural_order);
  return g_test_run ();
}
