/* smelt-shard-set.c: the safetensors shards of an export, planned then streamed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "smelt-private.h"

/**
 * SmeltShardSet:
 *
 * The weight files of a transformers-style export: `model.safetensors`,
 * or `model-0000i-of-0000N.safetensors` shards split by
 * huggingface_hub's rule (a group of tensors that would take a shard past
 * the limit starts the next one; one larger than the limit gets a shard of
 * its own), with `model.safetensors.index.json`.
 *
 * A format plans the shards in its plan() (begin a group, add its
 * tensors, close the plan), then streams each tensor's bytes in order
 * with smelt_shard_set_write(): shards are created, given their header and
 * closed as the stream moves through them, and each is checked to hold
 * exactly the planned bytes. smelt_shard_set_finish() writes the index.
 *
 * A tensor whose length is only known once it is made can be planned at
 * its longest and given its shape with smelt_shard_set_set_tensor_shape()
 * before its bytes are written; if its shard's header was written by
 * then, it is written again, padded to its first length, when the shard
 * closes (which needs a destination whose files can seek, see
 * smelt_destination_has_seekable_files()).
 */

typedef struct {
  char                   *file_name;
  SmeltSafetensorsLayout *layout;
  guint64                 planned;    /* bytes of tensors so far, for the split rule */
  guint64                 written;
  gboolean                created;
  gsize                   header_len;  /* as written when the file was created */
  gboolean                rewrite;     /* a shape changed since: rewrite it at the end */
} Shard;

struct _SmeltShardSet
{
  GObject        parent_instance;

  guint64        max_size;
  GPtrArray     *shards;     /* Shard */
  GHashTable    *shard_of;   /* tensor name → shard index + 1 */
  int            open;       /* shard being written, or -1 */
  GOutputStream *out;
};

G_DEFINE_FINAL_TYPE (SmeltShardSet, smelt_shard_set, G_TYPE_OBJECT)

static void
shard_free (gpointer data)
{
  Shard *s = data;

  g_free (s->file_name);
  g_clear_object (&s->layout);
  g_free (s);
}

static void
smelt_shard_set_finalize (GObject *object)
{
  SmeltShardSet *self = SMELT_SHARD_SET (object);

  g_ptr_array_unref (self->shards);
  g_hash_table_unref (self->shard_of);
  g_clear_object (&self->out);
  G_OBJECT_CLASS (smelt_shard_set_parent_class)->finalize (object);
}

static void
smelt_shard_set_class_init (SmeltShardSetClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_shard_set_finalize;
}

static void
smelt_shard_set_init (SmeltShardSet *self)
{
  self->shards = g_ptr_array_new_with_free_func (shard_free);
  self->shard_of = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->open = -1;
}

/**
 * smelt_shard_set_new:
 * @max_shard_size: the largest shard in bytes (of tensor data)
 *
 * Creates a set of safetensors shards, to be planned tensor by tensor;
 * a shard closes before it would exceed @max_shard_size.
 *
 * Returns: (transfer full): a set with no shard yet
 */
SmeltShardSet *
smelt_shard_set_new (guint64 max_shard_size)
{
  SmeltShardSet *self = g_object_new (SMELT_TYPE_SHARD_SET, NULL);

  self->max_size = max_shard_size;
  return self;
}

static Shard *
shard_at (SmeltShardSet *self,
          guint          shard)
{
  g_return_val_if_fail (shard < self->shards->len, NULL);
  return g_ptr_array_index (self->shards, shard);
}

/**
 * smelt_shard_set_begin_group:
 * @self: a set
 * @size: the data bytes of the tensors that follow, which share a shard
 *
 * Starts a group of tensors (one tensor, or the pieces of one quantized
 * weight), in a new shard if it does not fit the current one.
 *
 * Returns: the shard the group goes in
 */
guint
smelt_shard_set_begin_group (SmeltShardSet *self,
                             guint64        size)
{
  Shard *current;

  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), 0);

  current = self->shards->len ? g_ptr_array_index (self->shards, self->shards->len - 1) : NULL;
  if (current == NULL || (current->planned > 0 && current->planned + size > self->max_size))
    {
      current = g_new0 (Shard, 1);
      current->layout = smelt_safetensors_layout_new ();
      g_ptr_array_add (self->shards, current);
    }
  current->planned += size;
  return self->shards->len - 1;
}

/**
 * smelt_shard_set_add_tensor:
 * @self: a set
 * @name: the tensor's name
 * @dtype: its type
 * @shape: (array length=n_dims): its shape
 * @n_dims: its rank
 * @error: return location for a #GError
 *
 * Adds a tensor to the current group's shard.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_shard_set_add_tensor (SmeltShardSet *self,
                            const char    *name,
                            SmeltDType     dtype,
                            const guint64 *shape,
                            guint          n_dims,
                            GError       **error)
{
  Shard *s;

  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), FALSE);
  g_return_val_if_fail (self->shards->len > 0, FALSE);

  s = g_ptr_array_index (self->shards, self->shards->len - 1);
  if (!smelt_safetensors_layout_add_tensor (s->layout, name, dtype, shape, n_dims, error))
    return FALSE;
  g_hash_table_insert (self->shard_of, g_strdup (name), GUINT_TO_POINTER (self->shards->len));
  return TRUE;
}

/**
 * smelt_shard_set_close_plan:
 * @self: a set
 *
 * Names the files once every tensor is planned: `model.safetensors` for
 * one shard, `model-0000i-of-0000N.safetensors` for several.
 */
void
smelt_shard_set_close_plan (SmeltShardSet *self)
{
  g_return_if_fail (SMELT_IS_SHARD_SET (self));

  /* a model without tensors still gets its (empty) file */
  if (self->shards->len == 0)
    smelt_shard_set_begin_group (self, 0);
  for (guint i = 0; i < self->shards->len; i++)
    {
      Shard *s = g_ptr_array_index (self->shards, i);

      g_free (s->file_name);
      s->file_name = self->shards->len == 1
        ? g_strdup ("model.safetensors")
        : g_strdup_printf ("model-%05u-of-%05u.safetensors", i + 1, self->shards->len);
    }
}

/**
 * smelt_shard_set_get_n_shards:
 * @self: a set
 *
 * Gets the number of shards.
 *
 * Returns: the number of shards
 */
guint
smelt_shard_set_get_n_shards (SmeltShardSet *self)
{
  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), 0);
  return self->shards->len;
}

/**
 * smelt_shard_set_get_file_name:
 * @self: a set
 * @shard: a shard index
 *
 * Gets the shard's file name, once the plan is closed.
 *
 * Returns: (nullable): the shard's file name, once the plan is closed
 */
const char *
smelt_shard_set_get_file_name (SmeltShardSet *self,
                               guint          shard)
{
  Shard *s = shard_at (self, shard);

  return s ? s->file_name : NULL;
}

/**
 * smelt_shard_set_get_layout:
 * @self: a set
 * @shard: a shard index
 *
 * Gets the shard's layout.
 *
 * Returns: (transfer none): the shard's layout
 */
SmeltSafetensorsLayout *
smelt_shard_set_get_layout (SmeltShardSet *self,
                            guint          shard)
{
  Shard *s = shard_at (self, shard);

  return s ? s->layout : NULL;
}

/**
 * smelt_shard_set_lookup:
 * @self: a set
 * @name: a tensor name
 *
 * Gets the shard holding @name, or -1.
 *
 * Returns: the shard holding @name, or -1
 */
int
smelt_shard_set_lookup (SmeltShardSet *self,
                        const char    *name)
{
  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), -1);
  return (int) GPOINTER_TO_UINT (g_hash_table_lookup (self->shard_of, name)) - 1;
}

static GBytes *make_index (SmeltShardSet *self);

/**
 * smelt_shard_set_plan_files:
 * @self: a set
 * @format: the format writing it
 * @sizes_known: whether the shards' sizes are final
 *
 * Records the shards (and the index, when there are several) as planned
 * files of @format; call again with the final sizes when they come later.
 */
void
smelt_shard_set_plan_files (SmeltShardSet *self,
                            SmeltFormat   *format,
                            gboolean       sizes_known)
{
  g_return_if_fail (SMELT_IS_SHARD_SET (self));

  for (guint i = 0; i < self->shards->len; i++)
    {
      Shard *s = g_ptr_array_index (self->shards, i);

      smelt_format_add_planned_file (format, s->file_name,
                                     sizes_known ? (gint64) smelt_safetensors_layout_get_file_size (s->layout)
                                                 : -1);
    }
  if (self->shards->len > 1)
    {
      g_autoptr(GBytes) index = sizes_known ? make_index (self) : NULL;

      smelt_format_add_planned_file (format, "model.safetensors.index.json",
                                     index ? (gint64) g_bytes_get_size (index) : -1);
    }
}

/* Writes the shard's header again over the one it was created with,
 * padded to the same length: the data does not move. */
static gboolean
rewrite_header (SmeltShardSet  *self,
                Shard          *s,
                GCancellable   *cancellable,
                GError        **error)
{
  g_autoptr(GBytes) header = smelt_safetensors_layout_get_header_sized (s->layout, s->header_len);

  if (header == NULL)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: the final header is longer than the %zu bytes planned for it",
                   s->file_name, s->header_len);
      return FALSE;
    }
  if (!G_IS_SEEKABLE (self->out) || !g_seekable_can_seek (G_SEEKABLE (self->out)))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: the destination cannot rewrite the header of a file it is writing",
                   s->file_name);
      return FALSE;
    }
  if (!g_seekable_seek (G_SEEKABLE (self->out), 0, G_SEEK_SET, cancellable, error) ||
      !g_output_stream_write_all (self->out, g_bytes_get_data (header, NULL),
                                  g_bytes_get_size (header), NULL, cancellable, error))
    {
      g_prefix_error (error, "%s: ", s->file_name);
      return FALSE;
    }
  s->rewrite = FALSE;
  return TRUE;
}

static gboolean
close_open (SmeltShardSet  *self,
            GCancellable   *cancellable,
            GError        **error)
{
  Shard *s;

  if (self->open < 0)
    return TRUE;
  s = g_ptr_array_index (self->shards, self->open);
  if (s->written != smelt_safetensors_layout_get_data_size (s->layout))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: wrote %" G_GUINT64_FORMAT " bytes of data, planned %" G_GUINT64_FORMAT,
                   s->file_name, s->written, smelt_safetensors_layout_get_data_size (s->layout));
      return FALSE;
    }
  self->open = -1;
  if (s->rewrite && !rewrite_header (self, s, cancellable, error))
    return FALSE;
  if (!g_output_stream_close (self->out, cancellable, error))
    {
      g_prefix_error (error, "%s: ", s->file_name);
      return FALSE;
    }
  g_clear_object (&self->out);
  return TRUE;
}

static gboolean
open_shard (SmeltShardSet  *self,
            SmeltFormat    *format,
            guint           shard,
            GCancellable   *cancellable,
            GError        **error)
{
  Shard *s = g_ptr_array_index (self->shards, shard);
  g_autoptr(GBytes) header = NULL;

  if (!close_open (self, cancellable, error))
    return FALSE;
  self->out = smelt_format_create_file (format, s->file_name, cancellable, error);
  if (self->out == NULL)
    return FALSE;
  self->open = shard;
  s->created = TRUE;
  header = smelt_safetensors_layout_get_header (s->layout);
  s->header_len = g_bytes_get_size (header);
  if (!g_output_stream_write_all (self->out, g_bytes_get_data (header, NULL),
                                  g_bytes_get_size (header), NULL, cancellable, error))
    {
      g_prefix_error (error, "%s: ", s->file_name);
      return FALSE;
    }
  return TRUE;
}

/**
 * smelt_shard_set_write:
 * @self: a set
 * @format: the format writing it
 * @shard: the shard the bytes belong to (never an earlier one than the last)
 * @data: (array length=len) (element-type guint8): tensor data, in the planned order
 * @len: its length
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Appends tensor data, creating the shard's file (and closing the one
 * before) when the stream enters it.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_shard_set_write (SmeltShardSet  *self,
                       SmeltFormat    *format,
                       guint           shard,
                       const void     *data,
                       gsize           len,
                       GCancellable   *cancellable,
                       GError        **error)
{
  Shard *s;

  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), FALSE);
  g_return_val_if_fail (shard < self->shards->len, FALSE);

  if ((int) shard != self->open && !open_shard (self, format, shard, cancellable, error))
    return FALSE;
  s = g_ptr_array_index (self->shards, shard);
  if (!g_output_stream_write_all (self->out, data, len, NULL, cancellable, error))
    {
      g_prefix_error (error, "%s: ", s->file_name);
      return FALSE;
    }
  s->written += len;
  return TRUE;
}

/**
 * smelt_shard_set_set_tensor_shape:
 * @self: a set
 * @name: a planned tensor whose bytes are not written yet
 * @shape: (array length=n_dims): its final shape
 * @n_dims: its rank
 * @error: return location for a #GError
 *
 * Gives a tensor planned at its longest its final shape, no longer than
 * planned. The tensors after it in its shard move; if the shard's file
 * exists already, its header is rewritten when it closes.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_shard_set_set_tensor_shape (SmeltShardSet  *self,
                                  const char     *name,
                                  const guint64  *shape,
                                  guint           n_dims,
                                  GError        **error)
{
  int shard;
  Shard *s;
  guint64 before;

  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), FALSE);

  shard = smelt_shard_set_lookup (self, name);
  if (shard < 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "tensor “%s” is not planned in any shard", name);
      return FALSE;
    }
  s = g_ptr_array_index (self->shards, shard);
  before = smelt_safetensors_layout_get_data_size (s->layout);
  if (!smelt_safetensors_layout_set_shape (s->layout, name, shape, n_dims, error))
    return FALSE;
  if (smelt_safetensors_layout_get_data_size (s->layout) > before)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: tensor “%s” grew past its planned length", s->file_name, name);
      return FALSE;
    }
  s->rewrite = s->rewrite || s->created;
  return TRUE;
}

static GBytes *
make_index (SmeltShardSet *self)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  guint64 total = 0;
  g_autofree char *text = NULL;

  for (guint i = 0; i < self->shards->len; i++)
    total += smelt_safetensors_layout_get_data_size (((Shard *) g_ptr_array_index (self->shards, i))->layout);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "metadata");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "total_size");
  json_builder_add_int_value (b, (gint64) total);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "weight_map");
  json_builder_begin_object (b);
  for (guint i = 0; i < self->shards->len; i++)
    {
      Shard *s = g_ptr_array_index (self->shards, i);

      for (guint k = 0; k < smelt_safetensors_layout_get_n_tensors (s->layout); k++)
        {
          json_builder_set_member_name (b, smelt_safetensors_layout_get_tensor_name (s->layout, k));
          json_builder_add_string_value (b, s->file_name);
        }
    }
  json_builder_end_object (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  /* as save_pretrained: indent 2, keys sorted */
  text = smelt_json_to_string (root, TRUE, TRUE);
  return g_bytes_new_take (g_strconcat (text, "\n", NULL), strlen (text) + 1);
}

/**
 * smelt_shard_set_finish:
 * @self: a set
 * @format: the format writing it
 * @cancellable: (nullable): a #GCancellable
 * @error: return location for a #GError
 *
 * Closes the last shard, writes the shards no data reached (tensors of no
 * elements) and, for several shards, `model.safetensors.index.json`.
 *
 * Returns: %TRUE on success
 */
gboolean
smelt_shard_set_finish (SmeltShardSet  *self,
                        SmeltFormat    *format,
                        GCancellable   *cancellable,
                        GError        **error)
{
  g_return_val_if_fail (SMELT_IS_SHARD_SET (self), FALSE);

  if (!close_open (self, cancellable, error))
    return FALSE;
  for (guint i = 0; i < self->shards->len; i++)
    {
      Shard *s = g_ptr_array_index (self->shards, i);

      if (!s->created &&
          (!open_shard (self, format, i, cancellable, error) || !close_open (self, cancellable, error)))
        return FALSE;
    }
  if (self->shards->len > 1)
    {
      g_autoptr(GBytes) index = make_index (self);

      return smelt_format_write_file (format, "model.safetensors.index.json", index,
                                      cancellable, error);
    }
  return TRUE;
}
