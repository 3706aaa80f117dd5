/* smelt-lora-target.c: what a PEFT adapter key refers to
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/* PEFT saves keys as base_model.model.<module>.<part>[.<adapter>][.weight];
 * raw state-dict dumps keep the adapter name ("lora_A.default.weight") and
 * wrappers add ".base_layer." or ".modules_to_save.<adapter>.". Everything
 * here maps those spellings onto the base checkpoint's names. */

static const struct {
  const char          *part;
  SmeltAdapterKeyKind  kind;
} lora_parts[] = {
  { "lora_A", SMELT_ADAPTER_KEY_LORA_A },
  { "lora_B", SMELT_ADAPTER_KEY_LORA_B },
  { "lora_embedding_A", SMELT_ADAPTER_KEY_EMBEDDING_A },
  { "lora_embedding_B", SMELT_ADAPTER_KEY_EMBEDDING_B },
  { "lora_magnitude_vector", SMELT_ADAPTER_KEY_MAGNITUDE },
};

static int
find_lora_part (char               **comps,
                SmeltAdapterKeyKind *kind)
{
  for (int i = 0; comps[i]; i++)
    for (guint p = 0; p < G_N_ELEMENTS (lora_parts); p++)
      if (g_str_equal (comps[i], lora_parts[p].part))
        {
          *kind = lora_parts[p].kind;
          return i;
        }
  return -1;
}

/* The module path before the LoRA part, without wrapper components. */
static char *
join_module (char **comps,
             int    end)
{
  GString *s = g_string_new (NULL);

  for (int i = 0; i < end; i++)
    {
      if (g_str_equal (comps[i], "base_layer"))
        continue;
      if (s->len)
        g_string_append_c (s, '.');
      g_string_append (s, comps[i]);
    }
  return g_string_free (s, FALSE);
}

/* What may follow a LoRA part: an optional adapter name, then for Linear
 * parts "weight" or "bias". */
static gboolean
check_tail (const char           *key,
            char                **tail,
            SmeltAdapterKeyKind  *kind,
            GError              **error)
{
  guint n = g_strv_length (tail);
  const char *last = n ? tail[n - 1] : NULL;
  gboolean linear = *kind == SMELT_ADAPTER_KEY_LORA_A || *kind == SMELT_ADAPTER_KEY_LORA_B;
  gboolean ok;

  if (linear)
    {
      ok = (n == 1 || n == 2) && (g_str_equal (last, "weight") || g_str_equal (last, "bias"));
      if (ok && g_str_equal (last, "bias"))
        {
          if (*kind == SMELT_ADAPTER_KEY_LORA_A)
            ok = FALSE;
          else
            *kind = SMELT_ADAPTER_KEY_LORA_B_BIAS;
        }
    }
  else if (*kind == SMELT_ADAPTER_KEY_MAGNITUDE)
    ok = n <= 2 && (n < 2 || g_str_equal (last, "weight"));
  else
    ok = n <= 1;

  if (!ok)
    g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_UNSUPPORTED,
                 "adapter tensor “%s” has a LoRA part smelt does not know how to merge", key);
  return ok;
}

/* A full tensor: drop wrapper components and the adapter name that
 * follows "modules_to_save". */
static char *
join_full (char **comps)
{
  GString *s = g_string_new (NULL);

  for (int i = 0; comps[i]; i++)
    {
      if (g_str_equal (comps[i], "base_layer") || g_str_equal (comps[i], "original_module"))
        continue;
      if (g_str_equal (comps[i], "modules_to_save"))
        {
          if (comps[i + 1] && comps[i + 2])
            i++;
          continue;
        }
      if (s->len)
        g_string_append_c (s, '.');
      g_string_append (s, comps[i]);
    }
  return g_string_free (s, FALSE);
}

gboolean
_smelt_parse_adapter_key (const char           *key,
                          char                **module,
                          SmeltAdapterKeyKind  *kind,
                          GError              **error)
{
  const char *rest = key;
  g_auto(GStrv) comps = NULL;
  int at;

  if (g_str_has_prefix (rest, "base_model.model."))
    rest += strlen ("base_model.model.");
  comps = g_strsplit (rest, ".", -1);

  at = find_lora_part (comps, kind);
  if (at < 0)
    {
      *kind = SMELT_ADAPTER_KEY_FULL;
      *module = join_full (comps);
      return TRUE;
    }
  if (at == 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "adapter tensor “%s” names no module", key);
      return FALSE;
    }
  if (!check_tail (key, comps + at + 1, kind, error))
    return FALSE;
  *module = join_module (comps, at);
  return TRUE;
}
