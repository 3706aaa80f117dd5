/* smelt-utils.h: small helpers shared by the core and plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <glib.h>
#include <json-glib/json-glib.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

SMELT_AVAILABLE_IN_ALL
gboolean smelt_parse_size      (const char  *text,
                                guint64     *out_bytes,
                                GError     **error);
SMELT_AVAILABLE_IN_ALL
char    *smelt_format_size     (guint64      bytes);
SMELT_AVAILABLE_IN_ALL
JsonNode *smelt_json_load_file (const char  *path,
                                GError     **error);
SMELT_AVAILABLE_IN_ALL
char    *smelt_json_to_string  (JsonNode    *node,
                                gboolean     pretty,
                                gboolean     sort_keys);
SMELT_AVAILABLE_IN_ALL
guint    smelt_levenshtein     (const char  *a,
                                const char  *b);

G_END_DECLS
