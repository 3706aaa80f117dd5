/* smelt-destination.h: where exports put their files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <gio/gio.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

#define SMELT_TYPE_DESTINATION (smelt_destination_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (SmeltDestination, smelt_destination, SMELT, DESTINATION, GObject)

/**
 * SmeltDestinationClass:
 * @parent_class: the parent class
 * @prepare: checks the destination can take the export (called before any
 *   data is computed)
 * @create_file: opens a new file at a relative path, not visible under its
 *   final name until @commit
 * @commit: makes every created file visible at once
 * @abort: removes everything created; must be safe to call at any time
 * @describe: a human readable location, for plans and messages
 * @check_options: checks option values once the recipe has set them,
 *   before anything is opened (so `smelt validate` catches bad values)
 * @has_seekable_files: whether the streams of create_file() implement
 *   #GSeekable and can seek back (default: no); formats may then rewrite
 *   the start of a file instead of taking a second pass
 * @reports_commit_progress: whether @commit does long work of its own (an
 *   upload) and reports it with smelt_destination_report_progress()
 *   (default: no); an export job then gives that work a share of its
 *   #SmeltExportJob:fraction
 *
 * The virtual methods of a destination plugin. Each is described, with
 * what an implementation must do, on the function of the same name that
 * calls it (smelt_destination_prepare() and so on).
 */
struct _SmeltDestinationClass
{
  GObjectClass parent_class;

  gboolean       (*prepare)     (SmeltDestination *self,
                                 GCancellable     *cancellable,
                                 GError          **error);
  GOutputStream *(*create_file) (SmeltDestination *self,
                                 const char       *path,
                                 GCancellable     *cancellable,
                                 GError          **error);
  gboolean       (*commit)      (SmeltDestination *self,
                                 const char       *message,
                                 GCancellable     *cancellable,
                                 GError          **error);
  void           (*abort)       (SmeltDestination *self);
  char *         (*describe)    (SmeltDestination *self);
  gboolean       (*check_options) (SmeltDestination *self,
                                   GError          **error);
  gboolean       (*has_seekable_files) (SmeltDestination *self);
  gboolean       (*reports_commit_progress) (SmeltDestination *self);

  /*< private >*/
  gpointer padding[9];
};

SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_prepare     (SmeltDestination *self,
                                              GCancellable     *cancellable,
                                              GError          **error);
SMELT_AVAILABLE_IN_ALL
GOutputStream *smelt_destination_create_file (SmeltDestination *self,
                                              const char       *path,
                                              GCancellable     *cancellable,
                                              GError          **error);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_commit      (SmeltDestination *self,
                                              const char       *message,
                                              GCancellable     *cancellable,
                                              GError          **error);
SMELT_AVAILABLE_IN_ALL
void           smelt_destination_abort       (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
char          *smelt_destination_describe    (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_has_seekable_files (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_reports_commit_progress (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_check_options (SmeltDestination *self,
                                                GError          **error);
SMELT_AVAILABLE_IN_ALL
const char    *smelt_destination_get_name    (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
void           smelt_destination_replace_pattern (SmeltDestination *self,
                                                  const char       *glob);
SMELT_AVAILABLE_IN_ALL
gboolean       smelt_destination_is_stale    (SmeltDestination *self,
                                              const char       *path);
SMELT_AVAILABLE_IN_ALL
GPtrArray     *smelt_destination_list_formats (SmeltDestination *self);
SMELT_AVAILABLE_IN_ALL
void           smelt_destination_report_progress (SmeltDestination *self,
                                                  const char       *stage,
                                                  const char       *file,
                                                  guint64           done,
                                                  guint64           total);

G_END_DECLS
