/* smelt-localfs-stream.h: the output stream of a localfs file
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define SMELT_TYPE_LOCALFS_STREAM (smelt_localfs_stream_get_type ())
G_DECLARE_FINAL_TYPE (SmeltLocalfsStream, smelt_localfs_stream, SMELT, LOCALFS_STREAM, GOutputStream)

/* Takes ownership of @fd; @path is used in error messages. */
GOutputStream *smelt_localfs_stream_new (int         fd,
                                         const char *path);

G_END_DECLS
