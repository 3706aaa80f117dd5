/* smelt-export-job.h: runs a recipe
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <gio/gio.h>
#include <smelt/smelt-recipe.h>
#include <smelt/smelt-source.h>

G_BEGIN_DECLS

#define SMELT_TYPE_EXPORT_JOB (smelt_export_job_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SmeltExportJob, smelt_export_job, SMELT, EXPORT_JOB, GObject)

/**
 * SmeltExportJobClass:
 * @parent_class: the parent class
 *
 * The class structure of #SmeltExportJob, a final type: it adds nothing to
 * #GObjectClass, and the type cannot be subclassed.
 */

SMELT_AVAILABLE_IN_ALL
SmeltExportJob *smelt_export_job_new           (SmeltRecipe    *recipe,
                                                SmeltRegistry  *registry);
SMELT_AVAILABLE_IN_ALL
SmeltRecipe    *smelt_export_job_get_recipe    (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
void            smelt_export_job_set_n_threads (SmeltExportJob *self,
                                                guint           n_threads);
SMELT_AVAILABLE_IN_ALL
guint           smelt_export_job_get_n_threads (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
void            smelt_export_job_set_progress_interval (SmeltExportJob *self,
                                                        guint           msec);
SMELT_AVAILABLE_IN_ALL
guint           smelt_export_job_get_progress_interval (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
gboolean        smelt_export_job_prepare       (SmeltExportJob *self,
                                                GCancellable   *cancellable,
                                                GError        **error);
SMELT_AVAILABLE_IN_ALL
SmeltSource    *smelt_export_job_get_source    (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
char          **smelt_export_job_list_exports  (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
GPtrArray      *smelt_export_job_get_planned_files (SmeltExportJob *self,
                                                const char     *export_name);
SMELT_AVAILABLE_IN_ALL
char           *smelt_export_job_get_summary (SmeltExportJob *self,
                                             const char     *export_name);
SMELT_AVAILABLE_IN_ALL
char           *smelt_export_job_describe_destination (SmeltExportJob *self,
                                                const char     *export_name);
SMELT_AVAILABLE_IN_ALL
gboolean        smelt_export_job_run           (SmeltExportJob *self,
                                                GCancellable   *cancellable,
                                                GError        **error);
SMELT_AVAILABLE_IN_ALL
void            smelt_export_job_run_async     (SmeltExportJob      *self,
                                                GCancellable        *cancellable,
                                                GAsyncReadyCallback  callback,
                                                gpointer             user_data);
SMELT_AVAILABLE_IN_ALL
gboolean        smelt_export_job_run_finish    (SmeltExportJob *self,
                                                GAsyncResult   *result,
                                                GError        **error);
SMELT_AVAILABLE_IN_ALL
const char     *smelt_export_job_get_stage     (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
double          smelt_export_job_get_fraction  (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
const char     *smelt_export_job_get_current_tensor (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
guint64         smelt_export_job_get_bytes_done  (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
guint64         smelt_export_job_get_bytes_total (SmeltExportJob *self);
SMELT_AVAILABLE_IN_ALL
double          smelt_export_job_get_rate        (SmeltExportJob *self);

G_END_DECLS
