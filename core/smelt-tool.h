/* smelt-tool.h: shared pieces of the smelt command-line tool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

/* Exit codes: the contract scripts rely on. */
#define SMELT_EXIT_OK      0
#define SMELT_EXIT_FAILED  1   /* the export ran and failed */
#define SMELT_EXIT_USAGE   2   /* bad command line or invalid recipe */

typedef enum {
  SMELT_PROGRESS_AUTO,
  SMELT_PROGRESS_BAR,
  SMELT_PROGRESS_PLAIN,
  SMELT_PROGRESS_JSON,
  SMELT_PROGRESS_NONE,
} SmeltProgressMode;

typedef struct _SmeltProgressView SmeltProgressView;

gboolean           smelt_tool_parse_progress_mode (const char         *text,
                                                   SmeltProgressMode  *mode);
SmeltProgressView *smelt_progress_view_new        (SmeltExportJob     *job,
                                                   SmeltProgressMode   mode);
void               smelt_progress_view_finish     (SmeltProgressView  *view,
                                                   gboolean            success);
void               smelt_progress_view_free       (SmeltProgressView  *view);

int                smelt_tool_inspect             (const char         *path,
                                                   gboolean            json);

G_END_DECLS
