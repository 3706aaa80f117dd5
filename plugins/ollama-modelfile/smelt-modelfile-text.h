/* smelt-modelfile-text.h: the text of an Ollama Modelfile
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

gboolean smelt_modelfile_append (GString     *out,
                                 const char  *instruction,
                                 const char  *value,
                                 gboolean     block,
                                 GError     **error);

G_END_DECLS
