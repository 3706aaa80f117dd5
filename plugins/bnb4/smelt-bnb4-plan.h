/* smelt-bnb4-plan.h: what the bnb4 format writes, tensor by tensor
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <smelt/smelt.h>

G_BEGIN_DECLS

typedef struct {
  SmeltBnb4Type        quant_type;
  guint                blocksize;
  gboolean             nested;
  SmeltDType           dtype;           /* BF16 or F16 */
  const char * const  *skip_modules;    /* nullable */
  guint64              max_shard_size;
  gboolean             report;          /* measure the quality report's sums */
  gboolean             cache;           /* keep the scan's codes in a temporary file */
  gboolean             seekable;        /* the destination can rewrite a shard's header */
} SmeltBnb4Options;

typedef enum {
  SMELT_BNB4_ENTRY_QUANT,    /* a Linear weight, quantized from float32 rows */
  SMELT_BNB4_ENTRY_COPY,     /* an untouched 4-bit weight of the base, copied */
  SMELT_BNB4_ENTRY_STORED,   /* any other tensor, stored bytes as they are */
  SMELT_BNB4_ENTRY_CONVERT,  /* any other float tensor, converted to the dtype */
} SmeltBnb4EntryKind;

typedef struct {
  SmeltBnb4EntryKind kind;
  guint              index;        /* in the plan */
  SmeltTensor       *tensor;       /* the source's (borrowed) */
  guint64            n;            /* elements */
  guint64            row_len;
  guint              shard;
  float              offset;       /* nested: the mean of the absmax values */
  gboolean           have_offset;
  GArray            *absmax;       /* float: the tensor's so far (quant) */
  guint64            elements_done;
  guint64            rows_done;
  SmeltTensor       *base;         /* the unmerged weight, for the report's delta */
  SmeltQualityStats  stats;        /* the report's sums, writing pass */
  gboolean           spilled;      /* its codes and absmax are in the plan's spill file */
  guint64            spill_packed_at;
  guint64            spill_tail_at;   /* the pieces after the codes */
  guint64            spill_tail_len;
} SmeltBnb4Entry;

typedef struct {
  SmeltBnb4Options  opt;
  char            **skip_modules;
  GPtrArray        *entries;      /* SmeltBnb4Entry, in the source's order */
  GHashTable       *by_name;      /* tensor name → SmeltBnb4Entry */
  SmeltShardSet    *shards;
  gboolean          final;        /* the shards are planned for good */
  gboolean          deferred;     /* final, but the quant states' lengths come as they are made */
  int               spill_fd;     /* the scan's codes (opt.cache), or -1 */
  char             *spill_dir;
  guint64           spill_size;
  guint             n_quant, n_copy;
} SmeltBnb4Plan;

SmeltBnb4Plan  *smelt_bnb4_plan_new        (SmeltSource            *source,
                                            const SmeltBnb4Options *opt,
                                            GError                **error);
void            smelt_bnb4_plan_free       (SmeltBnb4Plan  *plan);
SmeltBnb4Entry *smelt_bnb4_plan_lookup     (SmeltBnb4Plan  *plan,
                                            SmeltTensor    *tensor);
gboolean        smelt_bnb4_plan_finalize   (SmeltBnb4Plan  *plan,
                                            GError        **error);
GBytes         *smelt_bnb4_plan_make_config (SmeltBnb4Plan *plan,
                                             SmeltSource   *source,
                                             const char    *compute_dtype);
char           *smelt_bnb4_plan_summary    (SmeltBnb4Plan  *plan);
GBytes         *smelt_bnb4_plan_make_report (SmeltBnb4Plan *plan);
const char     *smelt_bnb4_torch_dtype_name (SmeltDType     dtype);

guint64         smelt_bnb4_entry_row_group (SmeltBnb4Entry *e,
                                            guint           blocksize);
gboolean        smelt_bnb4_encode_plain    (SmeltBnb4Plan  *plan,
                                            SmeltBnb4Entry *e,
                                            guint64         first_row,
                                            guint64         n_rows,
                                            const float    *rows,
                                            GByteArray     *out,
                                            GError        **error);
gboolean        smelt_bnb4_encode_quant    (SmeltBnb4Plan  *plan,
                                            SmeltBnb4Entry *e,
                                            guint64         first_row,
                                            guint64         n_rows,
                                            const float    *rows,
                                            gboolean        scanning,
                                            GByteArray     *out,
                                            GError        **error);
gboolean        smelt_bnb4_entry_scan      (SmeltBnb4Plan  *plan,
                                            SmeltBnb4Entry *e,
                                            GBytes         *data,
                                            GError        **error);
GPtrArray      *smelt_bnb4_entry_take_rows (SmeltBnb4Plan  *plan,
                                            SmeltBnb4Entry *e,
                                            GBytes         *data,
                                            GError        **error);
GPtrArray      *smelt_bnb4_entry_finish    (SmeltBnb4Plan  *plan,
                                            SmeltBnb4Entry *e,
                                            GError        **error);
GPtrArray      *smelt_bnb4_entry_copy_pieces (SmeltBnb4Entry *e);

gboolean        smelt_bnb4_plan_scans_fully (SmeltBnb4Plan *plan);
gboolean        smelt_bnb4_entry_read_spill (SmeltBnb4Plan  *plan,
                                             SmeltBnb4Entry *e,
                                             guint64         pos,
                                             guint8         *buf,
                                             gsize           len,
                                             GError        **error);


G_END_DECLS
