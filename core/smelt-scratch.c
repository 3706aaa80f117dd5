/* smelt-scratch.c: per-thread scratch buffers for row blocks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "smelt-private.h"

typedef struct {
  gpointer data[SMELT_SCRATCH_N_SLOTS];
  gsize    size[SMELT_SCRATCH_N_SLOTS];
} Scratch;

static void
scratch_free (gpointer p)
{
  Scratch *s = p;

  for (guint i = 0; i < SMELT_SCRATCH_N_SLOTS; i++)
    g_free (s->data[i]);
  g_free (s);
}

static GPrivate scratch_key = G_PRIVATE_INIT (scratch_free);

gpointer
_smelt_scratch_get (SmeltScratchSlot slot,
                    gsize            size)
{
  Scratch *s = g_private_get (&scratch_key);

  if (s == NULL)
    {
      s = g_new0 (Scratch, 1);
      g_private_set (&scratch_key, s);
    }
  if (s->size[slot] < size)
    {
      g_free (s->data[slot]);
      s->data[slot] = g_malloc (MAX (size, 64));
      s->size[slot] = size;
    }
  return s->data[slot];
}
