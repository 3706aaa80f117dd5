/* smelt-format.h: base class of format plugins
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <gio/gio.h>
#include <smelt/smelt-source.h>
#include <smelt/smelt-destination.h>

G_BEGIN_DECLS

/**
 * SmeltRows:
 * @SMELT_ROWS_NONE: the format does not want this tensor's rows
 * @SMELT_ROWS_F32: rows converted (and merged) to float32, passed to
 *   encode_rows() on a worker thread
 * @SMELT_ROWS_STORED: the tensor's stored bytes, passed straight to
 *   write_rows(); only valid for tensors whose get_bytes() is not %NULL
 *
 * What a format wants of a tensor.
 */
typedef enum {
  SMELT_ROWS_NONE,
  SMELT_ROWS_F32,
  SMELT_ROWS_STORED,
} SmeltRows;

/**
 * SMELT_PARAM_PATH:
 *
 * A #GParamFlags bit for string properties that hold a local path: recipes
 * resolve a relative value against the recipe's folder before setting it.
 */
#define SMELT_PARAM_PATH (1 << G_PARAM_USER_SHIFT)

#define SMELT_TYPE_PLANNED_FILE (smelt_planned_file_get_type ())

/**
 * SmeltPlannedFile:
 * @path: path relative to the destination
 * @size: size in bytes, or -1 when it is only known once written
 *
 * A file an export will write.
 */
typedef struct {
  char   *path;
  gint64  size;
} SmeltPlannedFile;

SMELT_AVAILABLE_IN_ALL
GType smelt_planned_file_get_type (void) G_GNUC_CONST;
SMELT_AVAILABLE_IN_ALL
SmeltPlannedFile *smelt_planned_file_copy (const SmeltPlannedFile *file);
SMELT_AVAILABLE_IN_ALL
void              smelt_planned_file_free (SmeltPlannedFile *file);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SmeltPlannedFile, smelt_planned_file_free)

#define SMELT_TYPE_FORMAT (smelt_format_get_type ())
SMELT_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (SmeltFormat, smelt_format, SMELT, FORMAT, GObject)

/**
 * SmeltFormatClass:
 * @parent_class: the parent class
 * @plan: computes every file and its size from shapes and types, before
 *   any data; records them with smelt_format_add_planned_file()
 * @wants_rows: what the format needs of @tensor
 * @encode_rows: converts a block of float32 rows to the bytes the file
 *   holds; called from worker threads, concurrently, so it must only read
 *   the format's state
 * @write_rows: writes a block, in tensor and row order, on the job's thread
 * @finish: writes whatever remains (configs, indexes, copies)
 * @check_options: checks option values once the recipe has set them,
 *   before any model is opened (so `smelt validate` catches bad values)
 * @row_group: how many consecutive rows must reach encode_rows() together
 *   (see smelt_format_get_row_group())
 * @get_summary: a few lines for people about what the finished export
 *   wrote (see smelt_format_get_summary()); optional
 * @get_n_passes: how many passes over the tensors the format needs
 *   (default 1). Every pass but the last only reads: rows arrive through
 *   wants_rows(), encode_rows() and write_rows() as usual, with
 *   smelt_format_get_pass() telling which pass it is, and no file may be
 *   created; end_pass() follows each of them. The formats' last passes
 *   run together, so a two-pass format's first pass comes before anything
 *   is written. For formats whose layout depends on the data itself
 *   (bitsandbytes' double quantization stores a mean in each header)
 * @end_pass: called on the job's thread after each pass but the last,
 *   with the pass's number; the format completes its plan here
 * @link: called once every export of the job is planned, before
 *   anything is written: a format that refers to another export's files
 *   (smelt_format_lookup_export(), e.g. a Modelfile naming a GGUF) finds
 *   them here and refuses a reference that leads nowhere
 * @accepts_source: whether the format can write from @source at all,
 *   checked before plan(); the default refuses a source whose model is a
 *   GGUF file (smelt_model_get_gguf()), which only formats that read
 *   GGUF metadata can use
 *
 * The virtual methods of a format plugin. Tensors arrive in the order of
 * smelt_source_get_tensor(), rows in increasing order. Each virtual
 * method is described, with what an implementation must do, on the
 * function of the same name that calls it (smelt_format_plan() and so
 * on); #SmeltFormatClass.row_group and #SmeltFormatClass.accepts_source,
 * which have no such function, on pages of their own.
 */
struct _SmeltFormatClass
{
  GObjectClass parent_class;

  gboolean  (*plan)        (SmeltFormat   *self,
                            SmeltSource   *source,
                            GError       **error);
  SmeltRows (*wants_rows)  (SmeltFormat   *self,
                            SmeltTensor   *tensor);
  gboolean  (*encode_rows) (SmeltFormat   *self,
                            SmeltTensor   *tensor,
                            guint64        first_row,
                            guint64        n_rows,
                            const float   *rows,
                            GByteArray    *out,
                            GError       **error);
  gboolean  (*write_rows)  (SmeltFormat   *self,
                            SmeltTensor   *tensor,
                            guint64        first_row,
                            guint64        n_rows,
                            GBytes        *data,
                            GCancellable  *cancellable,
                            GError       **error);
  gboolean  (*finish)      (SmeltFormat   *self,
                            GCancellable  *cancellable,
                            GError       **error);
  gboolean  (*check_options) (SmeltFormat *self,
                              GError     **error);
  guint64   (*row_group)   (SmeltFormat   *self,
                            SmeltTensor   *tensor);
  char *    (*get_summary) (SmeltFormat   *self);
  gboolean  (*accepts_source) (SmeltFormat *self,
                               SmeltSource *source,
                               GError     **error);
  guint     (*get_n_passes) (SmeltFormat  *self);
  gboolean  (*end_pass)     (SmeltFormat  *self,
                             guint         pass,
                             GError      **error);
  gboolean  (*link)         (SmeltFormat  *self,
                             GError      **error);

  /*< private >*/
  gpointer padding[5];
};

SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_plan         (SmeltFormat   *self,
                                      SmeltSource   *source,
                                      GError       **error);
SMELT_AVAILABLE_IN_ALL
SmeltRows  smelt_format_wants_rows   (SmeltFormat   *self,
                                      SmeltTensor   *tensor);
SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_encode_rows  (SmeltFormat   *self,
                                      SmeltTensor   *tensor,
                                      guint64        first_row,
                                      guint64        n_rows,
                                      const float   *rows,
                                      GByteArray    *out,
                                      GError       **error);
SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_write_rows   (SmeltFormat   *self,
                                      SmeltTensor   *tensor,
                                      guint64        first_row,
                                      guint64        n_rows,
                                      GBytes        *data,
                                      GCancellable  *cancellable,
                                      GError       **error);
SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_finish       (SmeltFormat   *self,
                                      GCancellable  *cancellable,
                                      GError       **error);

SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_check_options (SmeltFormat  *self,
                                       GError      **error);
SMELT_AVAILABLE_IN_ALL
guint64    smelt_format_get_row_group (SmeltFormat  *self,
                                       SmeltTensor  *tensor);
SMELT_AVAILABLE_IN_ALL
char      *smelt_format_get_summary   (SmeltFormat  *self);
SMELT_AVAILABLE_IN_ALL
guint      smelt_format_get_n_passes  (SmeltFormat  *self);
SMELT_AVAILABLE_IN_ALL
guint      smelt_format_get_pass      (SmeltFormat  *self);
SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_link          (SmeltFormat  *self,
                                       GError      **error);
SMELT_AVAILABLE_IN_ALL
SmeltFormat *smelt_format_lookup_export (SmeltFormat *self,
                                         const char  *name);
SMELT_AVAILABLE_IN_ALL
gboolean   smelt_format_end_pass      (SmeltFormat  *self,
                                       guint         pass,
                                       GError      **error);

SMELT_AVAILABLE_IN_ALL
const char       *smelt_format_get_name        (SmeltFormat      *self);
SMELT_AVAILABLE_IN_ALL
SmeltSource      *smelt_format_get_source      (SmeltFormat      *self);
SMELT_AVAILABLE_IN_ALL
SmeltDestination *smelt_format_get_destination (SmeltFormat      *self);
SMELT_AVAILABLE_IN_ALL
void              smelt_format_set_destination (SmeltFormat      *self,
                                                SmeltDestination *destination);
SMELT_AVAILABLE_IN_ALL
void              smelt_format_add_planned_file (SmeltFormat     *self,
                                                 const char      *path,
                                                 gint64           size);
SMELT_AVAILABLE_IN_ALL
GPtrArray        *smelt_format_get_planned_files (SmeltFormat    *self);
SMELT_AVAILABLE_IN_ALL
GOutputStream    *smelt_format_create_file     (SmeltFormat      *self,
                                                const char       *path,
                                                GCancellable     *cancellable,
                                                GError          **error);
SMELT_AVAILABLE_IN_ALL
gboolean          smelt_format_write_file      (SmeltFormat      *self,
                                                const char       *path,
                                                GBytes           *contents,
                                                GCancellable     *cancellable,
                                                GError          **error);
SMELT_AVAILABLE_IN_ALL
void              smelt_format_plan_copy       (SmeltFormat      *self,
                                                const char       *source_path,
                                                const char       *path);
SMELT_AVAILABLE_IN_ALL
void              smelt_format_plan_tokenizer_files (SmeltFormat *self,
                                                SmeltSource      *source);
SMELT_AVAILABLE_IN_ALL
gboolean          smelt_format_copy_tokenizer_files (SmeltFormat *self,
                                                GCancellable     *cancellable,
                                                GError          **error);
SMELT_AVAILABLE_IN_ALL
gboolean          smelt_format_copy_file       (SmeltFormat      *self,
                                                const char       *source_path,
                                                const char       *path,
                                                GCancellable     *cancellable,
                                                GError          **error);

G_END_DECLS
