/* smelt-hf-token.h: where the Hugging Face token comes from
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean smelt_hf_env_is_true      (const char  *name);
gboolean smelt_hf_offline          (const char **which);
char    *smelt_hf_token_file_path  (void);
gboolean smelt_hf_find_token       (char       **token,
                                    char       **source,
                                    GError     **error);

G_END_DECLS
