/* smelt-hf-stage.h: staged files, hashed while they are written
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* The Hub's preupload call wants the first 512 bytes of each file */
#define SMELT_HF_SAMPLE_SIZE 512

/* One file of the export, as the hf-hub destination tracks it. The
 * stream fills size, sha256, and sample while the format writes, so
 * nothing ever reads a multi-GB file back just to hash it. */
typedef struct {
  char    *path;            /* in the repo, e.g. model-00001-of-00002.safetensors */
  char    *local;           /* the staged copy */
  guint64  size;
  char     sha256[65];      /* lower-case hex, once closed */
  guint8   sample[SMELT_HF_SAMPLE_SIZE];
  guint    sample_len;
  gboolean closed;          /* written completely and closed */
  gboolean failed;          /* a write failed: the file is incomplete */
} SmeltHfStaged;

SmeltHfStaged *smelt_hf_staged_new   (const char    *path,
                                      const char    *local);
SmeltHfStaged *smelt_hf_staged_ref   (SmeltHfStaged *staged);
void           smelt_hf_staged_unref (SmeltHfStaged *staged);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltHfStaged, smelt_hf_staged_unref)

/* Takes ownership of @fd; the stream keeps a ref on @staged. */
GOutputStream *smelt_hf_stage_stream_new (int            fd,
                                          SmeltHfStaged *staged);

/* SHA-256 of a buffer in hex, with the same implementation the stream
 * uses (for small files built in memory, such as a model card) */
void           smelt_hf_sha256_hex       (const void    *data,
                                          gsize          len,
                                          char           hex[65]);

/* A read-only stream over [offset, offset + length) of a file, read with
 * pread() so parts of one file can be sent by several threads at once.
 * @counter, if not NULL, is increased atomically by every byte read (the
 * upload's progress). */
GInputStream  *smelt_hf_slice_stream_new (const char    *local,
                                          guint64        offset,
                                          guint64        length,
                                          gint64        *counter,
                                          GError       **error);

G_END_DECLS
