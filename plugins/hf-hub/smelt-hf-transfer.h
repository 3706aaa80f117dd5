/* smelt-hf-transfer.h: sending the LFS objects, several at a time
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "smelt-hf-api.h"

G_BEGIN_DECLS

/* Called on the calling thread, about ten times a second */
typedef void (*SmeltHfProgressFunc) (const char *file,
                                     guint64     done,
                                     guint64     total,
                                     gpointer    user_data);

gboolean smelt_hf_transfer (SmeltHfRepo          *repo,
                            SoupSession          *session,
                            GPtrArray            *files,
                            guint                 n_connections,
                            gboolean              verify,
                            guint64               extra_total,
                            SmeltHfProgressFunc   progress,
                            gpointer              user_data,
                            GCancellable         *cancellable,
                            GError              **error);

G_END_DECLS
