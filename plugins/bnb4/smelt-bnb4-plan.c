/* smelt-bnb4-plan.c: what the bnb4 format writes, tensor by tensor
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "smelt-bnb4-plan.h"

/* Which weights become 4-bit is what transformers' replace_with_bnb_linear
 * does to a model loaded with load_in_4bit: every nn.Linear, but not the
 * output head (lm_head) nor the modules of llm_int8_skip_modules, whose
 * list is written into config.json so the two always agree. Embeddings,
 * norms and biases are not Linear weights and stay 16-bit. */

/* Names of 2-D weights that are not Linear layers. */
static const char * const not_linear[] = {
  "embed_tokens", "wte", "wpe", "word_embeddings", "embed_in", "embed_out",
  "embed_positions", "position_embeddings", "token_type_embeddings", "lm_head", NULL
};

const char *
smelt_bnb4_torch_dtype_name (SmeltDType dtype)
{
  switch (dtype)
    {
    case SMELT_DTYPE_F16:
      return "float16";
    case SMELT_DTYPE_F32:
      return "float32";
    case SMELT_DTYPE_BF16:
    default:
      return "bfloat16";
    }
}

/* transformers' matching of llm_int8_skip_modules, v4 and v5 alike: the
 * module path itself, a parent path, or a trailing part of the path. */
static gboolean
module_matches (const char *module,
                const char *key)
{
  gsize lm = strlen (module), lk = strlen (key);

  if (lk == 0)
    return FALSE;
  if (g_str_equal (module, key))
    return TRUE;
  if (lm > lk && strncmp (module, key, lk) == 0 && module[lk] == '.')
    return TRUE;
  return lm > lk && g_str_has_suffix (module, key) && module[lm - lk - 1] == '.';
}

static gboolean
is_linear_weight (SmeltBnb4Plan *plan,
                  SmeltTensor   *t)
{
  const char *name = smelt_tensor_get_name (t);
  g_autofree char *module = NULL;
  const char *leaf;
  guint n_dims;
  SmeltDType d = smelt_tensor_get_dtype (t);

  smelt_tensor_get_shape (t, &n_dims);
  if (n_dims != 2 || !g_str_has_suffix (name, ".weight") ||
      (d != SMELT_DTYPE_F32 && d != SMELT_DTYPE_F16 && d != SMELT_DTYPE_BF16))
    return FALSE;
  module = g_strndup (name, strlen (name) - strlen (".weight"));
  leaf = strrchr (module, '.') ? strrchr (module, '.') + 1 : module;
  if (g_strv_contains (not_linear, leaf))
    return FALSE;
  for (guint i = 0; plan->skip_modules && plan->skip_modules[i]; i++)
    if (module_matches (module, plan->skip_modules[i]))
      return FALSE;
  return TRUE;
}

/* An untouched 4-bit weight of the base already holds the bytes this
 * export would write: copy them rather than quantize the dequantized
 * values again (which would not give the same codes back). */
static gboolean
is_copyable (SmeltBnb4Plan *plan,
             SmeltTensor   *t)
{
  SmeltBnb4Tensor *b;

  if (!SMELT_IS_BNB4_TENSOR (t) || smelt_tensor_is_modified (t))
    return FALSE;
  b = SMELT_BNB4_TENSOR (t);
  return smelt_bnb4_tensor_get_quant_type (b) == plan->opt.quant_type &&
         smelt_bnb4_tensor_get_blocksize (b) == plan->opt.blocksize &&
         smelt_bnb4_tensor_is_nested (b) == plan->opt.nested &&
         smelt_tensor_get_dtype (t) == plan->opt.dtype;
}

static SmeltBnb4EntryKind
entry_kind (SmeltBnb4Plan *plan,
            SmeltTensor   *t)
{
  SmeltDType d = smelt_tensor_get_dtype (t);
  g_autoptr(GBytes) stored = NULL;

  if (is_copyable (plan, t))
    return SMELT_BNB4_ENTRY_COPY;
  if (is_linear_weight (plan, t))
    return SMELT_BNB4_ENTRY_QUANT;
  if (d != SMELT_DTYPE_F32 && d != SMELT_DTYPE_F16 && d != SMELT_DTYPE_BF16)
    return SMELT_BNB4_ENTRY_STORED;
  if (d == plan->opt.dtype && (stored = smelt_tensor_get_bytes (t)) != NULL)
    return SMELT_BNB4_ENTRY_STORED;
  return SMELT_BNB4_ENTRY_CONVERT;
}

static void
entry_free (gpointer data)
{
  SmeltBnb4Entry *e = data;

  g_clear_pointer (&e->absmax, g_array_unref);
  g_free (e);
}

void
smelt_bnb4_plan_free (SmeltBnb4Plan *plan)
{
  if (plan == NULL)
    return;
  if (plan->spill_fd >= 0)
    close (plan->spill_fd);
  g_free (plan->spill_dir);
  g_strfreev (plan->skip_modules);
  g_ptr_array_unref (plan->entries);
  g_hash_table_unref (plan->by_name);
  g_clear_object (&plan->shards);
  g_free (plan);
}

SmeltBnb4Entry *
smelt_bnb4_plan_lookup (SmeltBnb4Plan *plan,
                        SmeltTensor   *tensor)
{
  return g_hash_table_lookup (plan->by_name, smelt_tensor_get_name (tensor));
}

static guint64
n_blocks (SmeltBnb4Plan  *plan,
          SmeltBnb4Entry *e)
{
  return (e->n + plan->opt.blocksize - 1) / plan->opt.blocksize;
}

/* ---- the quant-state JSON ---------------------------------------------- */

/* json.dumps of QuantState.as_dict(packed=True)'s non-tensor items: keys
 * in its order, Python's separators, the offset as Python's repr. */
static char *
quant_state_json (SmeltBnb4Plan  *plan,
                  SmeltBnb4Entry *e,
                  float           offset)
{
  GString *s = g_string_new (NULL);
  guint n_dims;
  const guint64 *shape = smelt_tensor_get_shape (e->tensor, &n_dims);

  g_string_append_printf (s, "{\"quant_type\": \"%s\", \"blocksize\": %u, \"dtype\": \"%s\", "
                          "\"shape\": [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "]",
                          smelt_bnb4_type_to_string (plan->opt.quant_type), plan->opt.blocksize,
                          smelt_bnb4_torch_dtype_name (plan->opt.dtype), shape[0], shape[1]);
  if (plan->opt.nested)
    {
      g_autofree char *repr = smelt_bnb4_format_python_float ((double) offset);

      g_string_append_printf (s, ", \"nested_blocksize\": %u, \"nested_dtype\": \"float32\", "
                              "\"nested_offset\": %s", SMELT_BNB4_NESTED_BLOCKSIZE, repr);
    }
  g_string_append_c (s, '}');
  return g_string_free (s, FALSE);
}

static char *
quant_state_name (SmeltBnb4Plan *plan,
                  const char    *weight)
{
  return g_strdup_printf ("%s.quant_state.bitsandbytes__%s", weight,
                          smelt_bnb4_type_to_string (plan->opt.quant_type));
}

/* ---- shards ------------------------------------------------------------ */

typedef struct {
  char          *name;
  SmeltDType     dtype;
  guint64        shape[2];
  guint          n_dims;
  SmeltTensor   *own;       /* a tensor written in its own shape, or NULL */
} Piece;

static void
piece_clear (gpointer data)
{
  g_free (((Piece *) data)->name);
}

static void
add_piece (GArray     *pieces,
           const char *name,
           const char *suffix,
           SmeltDType  dtype,
           guint64     d0,
           guint64     d1)
{
  Piece p = { g_strconcat (name, suffix, NULL), dtype, { d0, d1 }, d1 ? 2 : 1, NULL };

  g_array_append_val (pieces, p);
}

/* The safetensors entries of a 4-bit weight, in Linear4bit's state-dict
 * order; @json_len is the quant-state blob's length. */
static void
quant_pieces (SmeltBnb4Plan  *plan,
              SmeltBnb4Entry *e,
              gsize           json_len,
              GArray         *pieces)
{
  const char *w = smelt_tensor_get_name (e->tensor);
  guint64 nb = n_blocks (plan, e);
  g_autofree char *qs = quant_state_name (plan, w);

  add_piece (pieces, w, "", SMELT_DTYPE_U8, (e->n + 1) / 2, 1);
  add_piece (pieces, w, ".absmax", plan->opt.nested ? SMELT_DTYPE_U8 : SMELT_DTYPE_F32, nb, 0);
  add_piece (pieces, w, ".quant_map", SMELT_DTYPE_F32, 16, 0);
  if (plan->opt.nested)
    {
      add_piece (pieces, w, ".nested_absmax", SMELT_DTYPE_F32,
                 (nb + SMELT_BNB4_NESTED_BLOCKSIZE - 1) / SMELT_BNB4_NESTED_BLOCKSIZE, 0);
      add_piece (pieces, w, ".nested_quant_map", SMELT_DTYPE_F32, 256, 0);
    }
  add_piece (pieces, qs, "", SMELT_DTYPE_U8, json_len, 0);
}

/* The JSON's length: exact once the offset is known, else the longest a
 * float32 offset can print as (for a provisional plan). */
static gsize
json_length (SmeltBnb4Plan  *plan,
             SmeltBnb4Entry *e)
{
  g_autofree char *json = quant_state_json (plan, e, e->have_offset ? e->offset : 0.0f);

  if (plan->opt.nested && !e->have_offset)
    return strlen (json) - 3 + strlen ("-1.2345678901234567e-38");
  return strlen (json);
}

static void
entry_pieces (SmeltBnb4Plan  *plan,
              SmeltBnb4Entry *e,
              GArray         *pieces)
{
  Piece p = { 0, };

  switch (e->kind)
    {
    case SMELT_BNB4_ENTRY_QUANT:
      quant_pieces (plan, e, json_length (plan, e), pieces);
      break;
    case SMELT_BNB4_ENTRY_COPY:
      {
        g_autoptr(GBytes) json = smelt_bnb4_tensor_get_part (SMELT_BNB4_TENSOR (e->tensor),
                                                             SMELT_BNB4_PART_QUANT_STATE);
        quant_pieces (plan, e, g_bytes_get_size (json), pieces);
      }
      break;
    case SMELT_BNB4_ENTRY_STORED:
    case SMELT_BNB4_ENTRY_CONVERT:
    default:
      p.name = g_strdup (smelt_tensor_get_name (e->tensor));
      p.dtype = e->kind == SMELT_BNB4_ENTRY_CONVERT ? plan->opt.dtype : smelt_tensor_get_dtype (e->tensor);
      p.own = e->tensor;
      g_array_append_val (pieces, p);
      break;
    }
}

static guint64
pieces_size (GArray *pieces)
{
  guint64 size = 0;

  for (guint i = 0; i < pieces->len; i++)
    {
      Piece *p = &g_array_index (pieces, Piece, i);
      guint64 n = p->own ? smelt_tensor_get_n_elements (p->own)
                         : p->shape[0] * (p->n_dims == 2 ? p->shape[1] : 1);

      size += n * smelt_dtype_get_bits (p->dtype) / 8;
    }
  return size;
}

static gboolean
add_piece_to (SmeltShardSet  *set,
              Piece          *p,
              GError        **error)
{
  if (p->own != NULL)
    {
      guint n_dims;
      const guint64 *shape = smelt_tensor_get_shape (p->own, &n_dims);

      return smelt_shard_set_add_tensor (set, p->name, p->dtype, shape, n_dims, error);
    }
  return smelt_shard_set_add_tensor (set, p->name, p->dtype, p->shape, p->n_dims, error);
}

/* huggingface_hub's split rule, with a 4-bit weight's pieces kept in one
 * shard: transformers rebuilds each weight from the pieces of the shard
 * it is reading. */
static gboolean
plan_shards (SmeltBnb4Plan  *plan,
             GError        **error)
{
  g_clear_object (&plan->shards);
  plan->shards = smelt_shard_set_new (plan->opt.max_shard_size);
  for (guint i = 0; i < plan->entries->len; i++)
    {
      SmeltBnb4Entry *e = g_ptr_array_index (plan->entries, i);
      g_autoptr(GArray) pieces = g_array_new (FALSE, TRUE, sizeof (Piece));

      g_array_set_clear_func (pieces, piece_clear);
      entry_pieces (plan, e, pieces);
      e->shard = smelt_shard_set_begin_group (plan->shards, pieces_size (pieces));
      for (guint k = 0; k < pieces->len; k++)
        if (!add_piece_to (plan->shards, &g_array_index (pieces, Piece, k), error))
          return FALSE;
    }
  smelt_shard_set_close_plan (plan->shards);
  return TRUE;
}

/* GPT-2's Conv1D stores [in, out]: transformers transposes it before
 * quantizing, which a row stream cannot do. */
static gboolean
check_architecture (SmeltSource  *source,
                    GError      **error)
{
  JsonObject *config = smelt_source_get_config (source);
  const char *type = config && json_object_has_member (config, "model_type")
    ? json_object_get_string_member_with_default (config, "model_type", NULL) : NULL;

  if (g_strcmp0 (type, "gpt2") == 0 || g_strcmp0 (type, "gpt_bigcode") == 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_UNSUPPORTED,
                   "%s/config.json: model_type “%s” keeps its Linear weights transposed "
                   "(Conv1D), which bnb4 does not write yet",
                   smelt_model_get_path (smelt_source_get_model (source)), type);
      return FALSE;
    }
  return TRUE;
}

/* The scan pass quantizes everything and keeps the codes in a temporary
 * file, so that the writing pass copies them instead of reading and
 * merging the weights a second time. The file is unlinked at once: it
 * goes away with the process, whatever happens. */
static gboolean
open_spill (SmeltBnb4Plan  *plan,
            GError        **error)
{
  g_autofree char *path = NULL;

  plan->spill_fd = g_file_open_tmp ("smelt-bnb4-scan-XXXXXX", &path, error);
  if (plan->spill_fd < 0)
    {
      g_prefix_error (error, "ScanCache: ");
      return FALSE;
    }
  plan->spill_dir = g_path_get_dirname (path);
  g_unlink (path);
  return TRUE;
}

static gboolean
spill_write (SmeltBnb4Plan  *plan,
             const void     *data,
             gsize           len,
             GError        **error)
{
  const guint8 *p = data;

  while (len > 0)
    {
      gssize n = pwrite (plan->spill_fd, p, len, (off_t) plan->spill_size);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = n < 0 ? errno : ENOSPC;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "the scan's temporary file in %s: %s; set ScanCache=false to read "
                       "and merge the weights twice instead", plan->spill_dir, g_strerror (saved));
          return FALSE;
        }
      p += n;
      len -= n;
      plan->spill_size += n;
    }
  return TRUE;
}

gboolean
smelt_bnb4_entry_read_spill (SmeltBnb4Plan  *plan,
                             SmeltBnb4Entry *e,
                             guint64         pos,
                             guint8         *buf,
                             gsize           len,
                             GError        **error)
{
  while (len > 0)
    {
      gssize n = pread (plan->spill_fd, buf, len, (off_t) pos);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          int saved = n < 0 ? errno : EIO;

          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "the scan's temporary file in %s: %s", plan->spill_dir, g_strerror (saved));
          return FALSE;
        }
      buf += n;
      pos += n;
      len -= n;
    }
  return TRUE;
}

/* Whether the scan pass quantizes for good (ScanCache). */
gboolean
smelt_bnb4_plan_scans_fully (SmeltBnb4Plan *plan)
{
  return plan->spill_fd >= 0;
}

SmeltBnb4Plan *
smelt_bnb4_plan_new (SmeltSource            *source,
                     const SmeltBnb4Options *opt,
                     GError                **error)
{
  SmeltBnb4Plan *plan;

  if (!check_architecture (source, error))
    return NULL;
  plan = g_new0 (SmeltBnb4Plan, 1);
  plan->opt = *opt;
  plan->skip_modules = g_strdupv ((char **) opt->skip_modules);
  plan->opt.skip_modules = NULL;
  plan->entries = g_ptr_array_new_with_free_func (entry_free);
  plan->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  for (guint i = 0; i < smelt_source_get_n_tensors (source); i++)
    {
      SmeltTensor *t = smelt_source_get_tensor (source, i);
      SmeltBnb4Entry *e = g_new0 (SmeltBnb4Entry, 1);

      e->tensor = t;
      e->index = plan->entries->len;
      e->kind = entry_kind (plan, t);
      e->n = smelt_tensor_get_n_elements (t);
      e->row_len = MAX (smelt_tensor_get_row_length (t), 1);
      if (opt->report && e->kind == SMELT_BNB4_ENTRY_QUANT && smelt_tensor_is_modified (t))
        e->base = smelt_source_get_base_tensor (source, t);
      plan->n_quant += e->kind == SMELT_BNB4_ENTRY_QUANT;
      plan->n_copy += e->kind == SMELT_BNB4_ENTRY_COPY;
      g_ptr_array_add (plan->entries, e);
      g_hash_table_insert (plan->by_name, (gpointer) smelt_tensor_get_name (t), e);
    }
  /* without double quantization (or nothing to quantize) every length
   * is known now; with it, the shards are planned again after the scan */
  plan->final = !opt->nested || plan->n_quant == 0 || opt->seekable;
  plan->deferred = plan->final && opt->nested && plan->n_quant > 0;
  plan->spill_fd = -1;
  if (!plan->final && opt->cache && !open_spill (plan, error))
    {
      smelt_bnb4_plan_free (plan);
      return NULL;
    }
  if (!plan_shards (plan, error))
    {
      smelt_bnb4_plan_free (plan);
      return NULL;
    }
  return plan;
}

gboolean
smelt_bnb4_plan_finalize (SmeltBnb4Plan  *plan,
                          GError        **error)
{
  for (guint i = 0; i < plan->entries->len; i++)
    {
      SmeltBnb4Entry *e = g_ptr_array_index (plan->entries, i);

      if (e->kind == SMELT_BNB4_ENTRY_QUANT && !e->have_offset)
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s: the scan pass did not see the whole tensor",
                       smelt_tensor_get_name (e->tensor));
          return FALSE;
        }
    }
  plan->final = TRUE;
  return plan_shards (plan, error);
}

/* ---- encoding ------------------------------------------------------------ */

guint64
smelt_bnb4_entry_row_group (SmeltBnb4Entry *e,
                            guint           blocksize)
{
  /* slices must start on a block boundary: rows × row_len ≡ 0 mod blocksize */
  guint64 a = e->row_len, b = blocksize;

  while (b != 0)
    {
      guint64 t = a % b;
      a = b;
      b = t;
    }
  return blocksize / a;
}

static gboolean
check_overflow (SmeltBnb4Plan  *plan,
                SmeltBnb4Entry *e,
                guint64         first_row,
                const float    *rows,
                gsize           n,
                GError        **error)
{
  gssize i = smelt_find_non_finite (rows, n);

  if (i >= 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
                   "%s: value %g at row %" G_GUINT64_FORMAT ", column %" G_GUINT64_FORMAT
                   " is not a finite number", smelt_tensor_get_name (e->tensor), rows[i],
                   first_row + i / e->row_len, (guint64) (i % e->row_len));
      return FALSE;
    }
  return smelt_check_rows_fit (smelt_tensor_get_name (e->tensor), rows, n, e->row_len, first_row,
                               plan->opt.dtype, error);
}

gboolean
smelt_bnb4_encode_plain (SmeltBnb4Plan  *plan,
                         SmeltBnb4Entry *e,
                         guint64         first_row,
                         guint64         n_rows,
                         const float    *rows,
                         GByteArray     *out,
                         GError        **error)
{
  gsize n = n_rows * e->row_len;
  guint old = out->len;

  if (!check_overflow (plan, e, first_row, rows, n, error))
    return FALSE;
  g_byte_array_set_size (out, old + n * smelt_dtype_get_bits (plan->opt.dtype) / 8);
  smelt_convert (SMELT_DTYPE_F32, rows, plan->opt.dtype, out->data + old, n, NULL);
  return TRUE;
}

/* bitsandbytes quantizes the weight in its 16-bit type: round the merged
 * float32 values to it first. */
static float *
round_to_dtype (SmeltBnb4Plan *plan,
                const float   *rows,
                gsize          n)
{
  float *values = g_new (float, n);
  g_autofree guint16 *half = g_new (guint16, n);

  smelt_convert (SMELT_DTYPE_F32, rows, plan->opt.dtype, half, n, NULL);
  smelt_convert (plan->opt.dtype, half, SMELT_DTYPE_F32, values, n, NULL);
  return values;
}

/* The report samples every REPORT_STRIDE-th row group (whole blocks),
 * and no more than about REPORT_GROUPS groups of a weight: measuring
 * every weight would cost several times the export itself, since 4-bit
 * quantization is cheap and the sums are not, and a few dozen rows of
 * thousands of blocks estimate a weight's error well. */
#define REPORT_STRIDE 8
#define REPORT_GROUPS 32

static guint64
report_stride (SmeltBnb4Entry *e,
               guint64         group)
{
  guint64 n_groups = (smelt_tensor_get_n_rows (e->tensor) + group - 1) / group;

  return MAX (REPORT_STRIDE, n_groups / REPORT_GROUPS);
}

/* The report's sums for one row group: the round trip of the merged
 * values against themselves and, for an adapted weight, the base's own
 * round trip against the adapters' change. The absmax values are the
 * float32 ones, before double quantization (whose error this leaves out). */
static gboolean
measure_group (SmeltBnb4Plan      *plan,
               SmeltBnb4Entry     *e,
               guint64             row,
               guint64             n_rows,
               const float        *x,
               const guint8       *packed,
               const float        *absmax,
               gsize               first,
               SmeltQualityStats  *st,
               GError            **error)
{
  gsize n = n_rows * e->row_len;
  guint bs = plan->opt.blocksize;
  g_autofree float *xq = g_new (float, n);
  g_autofree float *w = NULL;
  g_autofree float *wq = NULL;
  g_autofree guint8 *wpacked = NULL;
  g_autofree float *wabsmax = NULL;

  smelt_bnb4_dequantize (plan->opt.quant_type, packed, absmax, first, n, bs, xq);
  smelt_quality_measure (st, x, xq, n);
  if (e->base == NULL)
    return TRUE;
  w = g_new (float, n);
  if (!smelt_tensor_read_rows (e->base, row, n_rows, SMELT_DTYPE_F32, w, error))
    {
      g_prefix_error (error, "report: base of %s: ", smelt_tensor_get_name (e->tensor));
      return FALSE;
    }
  wpacked = g_malloc ((n + 1) / 2 + 1);
  wabsmax = g_new (float, (n + bs - 1) / bs);
  if (smelt_bnb4_quantize_as (plan->opt.quant_type, plan->opt.dtype, w, n, bs, wpacked,
                              wabsmax) >= 0)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
                   "report: base of %s: a value is not finite once rounded to %s",
                   smelt_tensor_get_name (e->tensor), smelt_dtype_to_string (plan->opt.dtype));
      return FALSE;
    }
  wq = g_new (float, n);
  smelt_bnb4_dequantize (plan->opt.quant_type, wpacked, wabsmax, 0, n, bs, wq);
  smelt_quality_measure_delta (st, x, xq, w, wq, n);
  return TRUE;
}

static gboolean
measure (SmeltBnb4Plan      *plan,
         SmeltBnb4Entry     *e,
         guint64             first_row,
         guint64             n_rows,
         const float        *rows,
         const guint8       *packed,
         const float        *absmax,
         SmeltQualityStats  *st,
         GError            **error)
{
  guint64 g = smelt_bnb4_entry_row_group (e, plan->opt.blocksize);
  guint64 stride = report_stride (e, g);

  memset (st, 0, sizeof *st);
  /* slices start on a group boundary (the row group the job honours) */
  for (guint64 r = 0; r < n_rows; r += g)
    {
      guint64 m = MIN (g, n_rows - r);

      if (((first_row + r) / g) % stride != 0)
        continue;
      if (!measure_group (plan, e, first_row + r, m, rows + r * e->row_len, packed, absmax,
                          r * e->row_len, st, error))
        return FALSE;
    }
  return TRUE;
}

/* Per slice: u64 element count, then (unless scanning) the packed codes,
 * then the blocks' float32 absmax values, then (when writing, with the
 * report) the slice's SmeltQualityStats. */
gboolean
smelt_bnb4_encode_quant (SmeltBnb4Plan  *plan,
                         SmeltBnb4Entry *e,
                         guint64         first_row,
                         guint64         n_rows,
                         const float    *rows,
                         gboolean        scanning,
                         GByteArray     *out,
                         GError        **error)
{
  guint64 n = n_rows * e->row_len;
  guint64 nb = (n + plan->opt.blocksize - 1) / plan->opt.blocksize;
  gsize packed_len = scanning ? 0 : (n + 1) / 2;
  gsize stats_len = !scanning && plan->opt.report ? sizeof (SmeltQualityStats) : 0;
  g_autofree guint8 *packed = NULL;
  g_autofree float *absmax = NULL;
  guint old = out->len;

  if (scanning)
    {
      /* the scan needs only the absmax values, and rounding to the 16-bit
       * type commutes with them (it is odd and monotonic): the largest
       * rounded magnitude is the rounded largest magnitude */
      g_autofree float *raw = g_new (float, nb);

      if (!check_overflow (plan, e, first_row, rows, n, error))
        return FALSE;
      smelt_bnb4_absmax (rows, n, plan->opt.blocksize, raw);
      absmax = round_to_dtype (plan, raw, nb);
    }
  else
    {
      absmax = g_new (float, nb);
      packed = g_malloc ((n + 1) / 2 + 1);
      /* rounds to the 16-bit type as it goes; a value that is not finite
       * then stops it, and the check names the first culprit */
      if (smelt_bnb4_quantize_as (plan->opt.quant_type, plan->opt.dtype, rows, n,
                                  plan->opt.blocksize, packed, absmax) >= 0)
        {
          if (check_overflow (plan, e, first_row, rows, n, error))
            g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_OVERFLOW,
                         "%s: a value is not finite once rounded to %s",
                         smelt_tensor_get_name (e->tensor), smelt_dtype_to_string (plan->opt.dtype));
          return FALSE;
        }
    }
  g_byte_array_set_size (out, old + 8 + packed_len + nb * 4 + stats_len);
  memcpy (out->data + old, &n, 8);
  if (packed_len > 0)
    memcpy (out->data + old + 8, packed, packed_len);
  memcpy (out->data + old + 8 + packed_len, absmax, nb * 4);
  if (stats_len > 0)
    {
      SmeltQualityStats st;

      if (!measure (plan, e, first_row, n_rows, rows, packed, absmax, &st, error))
        return FALSE;
      memcpy (out->data + old + 8 + packed_len + nb * 4, &st, sizeof st);
    }
  return TRUE;
}

/* ---- writing --------------------------------------------------------------- */

/* Walks the slices of a block: calls @each with the element count, the
 * packed codes (or NULL when scanning) and the absmax values. */
static gboolean
walk_slices (SmeltBnb4Plan  *plan,
             SmeltBnb4Entry *e,
             GBytes         *bytes,
             gboolean        scanning,
             GPtrArray      *pieces,
             GError        **error)
{
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  gsize pos = 0;

  while (pos < len)
    {
      guint64 n, nb;
      gsize packed_len;
      gsize stats_len = !scanning && plan->opt.report ? sizeof (SmeltQualityStats) : 0;

      if (len - pos < 8)
        break;
      memcpy (&n, data + pos, 8);
      nb = (n + plan->opt.blocksize - 1) / plan->opt.blocksize;
      packed_len = scanning ? 0 : (n + 1) / 2;
      if (len - pos - 8 < packed_len + nb * 4 + stats_len)
        break;
      /* views of the job's buffer, not copies */
      if (pieces != NULL)
        g_ptr_array_add (pieces, g_bytes_new_from_bytes (bytes, pos + 8, packed_len));
      g_array_append_vals (e->absmax, data + pos + 8 + packed_len, nb);
      if (stats_len > 0)
        {
          SmeltQualityStats st;

          memcpy (&st, data + pos + 8 + packed_len + nb * 4, sizeof st);
          smelt_quality_stats_add (&e->stats, &st);
        }
      e->elements_done += n;
      pos += 8 + packed_len + nb * 4 + stats_len;
    }
  if (pos != len)
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: a block of encoded rows is malformed", smelt_tensor_get_name (e->tensor));
      return FALSE;
    }
  e->rows_done = e->elements_done / e->row_len;
  return TRUE;
}

static void
start_entry (SmeltBnb4Entry *e)
{
  if (e->absmax == NULL)
    {
      e->absmax = g_array_new (FALSE, FALSE, sizeof (float));
      e->elements_done = 0;
      e->rows_done = 0;
    }
}

static gboolean
spill_pieces (SmeltBnb4Plan  *plan,
              GPtrArray      *pieces,
              GError        **error)
{
  for (guint i = 0; i < pieces->len; i++)
    {
      GBytes *b = g_ptr_array_index (pieces, i);

      if (!spill_write (plan, g_bytes_get_data (b, NULL), g_bytes_get_size (b), error))
        return FALSE;
    }
  return TRUE;
}

gboolean
smelt_bnb4_entry_scan (SmeltBnb4Plan  *plan,
                       SmeltBnb4Entry *e,
                       GBytes         *data,
                       GError        **error)
{
  gboolean full = smelt_bnb4_plan_scans_fully (plan);
  g_autoptr(GPtrArray) pieces = full ? g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref)
                                     : NULL;

  start_entry (e);
  if (full && e->elements_done == 0)
    e->spill_packed_at = plan->spill_size;
  if (!walk_slices (plan, e, data, !full, pieces, error))
    return FALSE;
  if (pieces != NULL && !spill_pieces (plan, pieces, error))
    return FALSE;
  if (e->elements_done >= e->n)
    {
      e->offset = smelt_bnb4_nested_offset ((const float *) e->absmax->data, e->absmax->len);
      e->have_offset = TRUE;
      if (full)
        {
          /* the rest of the weight now, while the workers go on with the
           * next tensors: the writing pass then only copies */
          g_autoptr(GPtrArray) tail = smelt_bnb4_entry_finish (plan, e, error);

          if (tail == NULL)
            return FALSE;
          e->spill_tail_at = plan->spill_size;
          if (!spill_pieces (plan, tail, error))
            return FALSE;
          e->spill_tail_len = plan->spill_size - e->spill_tail_at;
          e->spilled = TRUE;
        }
      g_clear_pointer (&e->absmax, g_array_unref);
    }
  return TRUE;
}

GPtrArray *
smelt_bnb4_entry_take_rows (SmeltBnb4Plan  *plan,
                            SmeltBnb4Entry *e,
                            GBytes         *data,
                            GError        **error)
{
  g_autoptr(GPtrArray) pieces = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  start_entry (e);
  if (!walk_slices (plan, e, data, FALSE, pieces, error))
    return NULL;
  return g_steal_pointer (&pieces);
}

static GBytes *
floats_bytes (const float *values,
              gsize        n)
{
  return g_bytes_new (values, n * sizeof (float));
}

/* The quant state's length, once its offset is known: its shard was
 * planned with the longest it could be, and its header is rewritten. */
static gboolean
set_json_length (SmeltBnb4Plan  *plan,
                 SmeltBnb4Entry *e,
                 gsize           len,
                 GError        **error)
{
  g_autofree char *name = quant_state_name (plan, smelt_tensor_get_name (e->tensor));
  guint64 shape[1] = { len };

  return smelt_shard_set_set_tensor_shape (plan->shards, name, shape, 1, error);
}

/* The pieces after the codes, once the whole weight has been seen. */
GPtrArray *
smelt_bnb4_entry_finish (SmeltBnb4Plan  *plan,
                         SmeltBnb4Entry *e,
                         GError        **error)
{
  g_autoptr(GPtrArray) pieces = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GArray) absmax = g_steal_pointer (&e->absmax);
  const float *am = (const float *) absmax->data;
  gsize nb = absmax->len;
  float offset = 0.0f;
  g_autofree char *json = NULL;

  if (nb != n_blocks (plan, e))
    {
      g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                   "%s: %zu absmax blocks, expected %" G_GUINT64_FORMAT,
                   smelt_tensor_get_name (e->tensor), nb, n_blocks (plan, e));
      return NULL;
    }
  if (plan->opt.nested)
    {
      gsize n_nested = (nb + SMELT_BNB4_NESTED_BLOCKSIZE - 1) / SMELT_BNB4_NESTED_BLOCKSIZE;
      g_autofree guint8 *codes = g_malloc (nb);
      g_autofree float *nested = g_new (float, n_nested);

      offset = smelt_bnb4_nested_offset (am, nb);
      if (plan->deferred)
        {
          e->offset = offset;
          e->have_offset = TRUE;
        }
      /* the header was planned with the scan's mean: both passes must agree */
      if (!e->have_offset || memcmp (&offset, &e->offset, sizeof offset) != 0)
        {
          g_set_error (error, SMELT_FORMAT_ERROR, SMELT_FORMAT_ERROR_FAILED,
                       "%s: the weights changed between the two passes (absmax mean %.9g, "
                       "then %.9g)", smelt_tensor_get_name (e->tensor), e->offset, offset);
          return NULL;
        }
      smelt_bnb4_quantize_nested (am, nb, offset, codes, nested);
      g_ptr_array_add (pieces, g_bytes_new (codes, nb));
      g_ptr_array_add (pieces, floats_bytes (smelt_bnb4_get_quant_map (plan->opt.quant_type), 16));
      g_ptr_array_add (pieces, floats_bytes (nested, n_nested));
      g_ptr_array_add (pieces, floats_bytes (smelt_bnb4_get_nested_map (), 256));
    }
  else
    {
      g_ptr_array_add (pieces, floats_bytes (am, nb));
      g_ptr_array_add (pieces, floats_bytes (smelt_bnb4_get_quant_map (plan->opt.quant_type), 16));
    }
  json = quant_state_json (plan, e, offset);
  if (plan->deferred && !set_json_length (plan, e, strlen (json), error))
    return NULL;
  g_ptr_array_add (pieces, g_bytes_new (json, strlen (json)));
  return g_steal_pointer (&pieces);
}

GPtrArray *
smelt_bnb4_entry_copy_pieces (SmeltBnb4Entry *e)
{
  static const SmeltBnb4Part parts[] = {
    SMELT_BNB4_PART_WEIGHT, SMELT_BNB4_PART_ABSMAX, SMELT_BNB4_PART_QUANT_MAP,
    SMELT_BNB4_PART_NESTED_ABSMAX, SMELT_BNB4_PART_NESTED_QUANT_MAP, SMELT_BNB4_PART_QUANT_STATE,
  };
  GPtrArray *pieces = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);

  for (gsize i = 0; i < G_N_ELEMENTS (parts); i++)
    {
      GBytes *b = smelt_bnb4_tensor_get_part (SMELT_BNB4_TENSOR (e->tensor), parts[i]);

      if (b != NULL)
        g_ptr_array_add (pieces, b);
    }
  return pieces;
}

/* ---- config.json, the index, the summary ---------------------------------- */

static JsonNode *
quantization_config (SmeltBnb4Plan *plan,
                     const char    *compute_dtype)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "_load_in_4bit");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "_load_in_8bit");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "bnb_4bit_compute_dtype");
  json_builder_add_string_value (b, compute_dtype);
  json_builder_set_member_name (b, "bnb_4bit_quant_storage");
  json_builder_add_string_value (b, "uint8");
  json_builder_set_member_name (b, "bnb_4bit_quant_type");
  json_builder_add_string_value (b, smelt_bnb4_type_to_string (plan->opt.quant_type));
  json_builder_set_member_name (b, "bnb_4bit_use_double_quant");
  json_builder_add_boolean_value (b, plan->opt.nested);
  json_builder_set_member_name (b, "llm_int8_enable_fp32_cpu_offload");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "llm_int8_has_fp16_weight");
  json_builder_add_boolean_value (b, FALSE);
  /* replaces transformers' default list, so it names lm_head itself */
  json_builder_set_member_name (b, "llm_int8_skip_modules");
  json_builder_begin_array (b);
  json_builder_add_string_value (b, "lm_head");
  for (guint i = 0; plan->skip_modules && plan->skip_modules[i]; i++)
    if (!g_str_equal (plan->skip_modules[i], "lm_head"))
      json_builder_add_string_value (b, plan->skip_modules[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "llm_int8_threshold");
  json_builder_add_double_value (b, 6.0);
  json_builder_set_member_name (b, "load_in_4bit");
  json_builder_add_boolean_value (b, TRUE);
  json_builder_set_member_name (b, "load_in_8bit");
  json_builder_add_boolean_value (b, FALSE);
  json_builder_set_member_name (b, "quant_method");
  json_builder_add_string_value (b, "bitsandbytes");
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

GBytes *
smelt_bnb4_plan_make_config (SmeltBnb4Plan *plan,
                             SmeltSource   *source,
                             const char    *compute_dtype)
{
  g_autoptr(JsonNode) q = quantization_config (plan, compute_dtype);

  return smelt_source_make_config_json (source, smelt_bnb4_torch_dtype_name (plan->opt.dtype), q);
}

static void
add_totals (SmeltBnb4Plan     *plan,
            SmeltQualityStats *all,
            SmeltQualityStats *changed,
            guint             *n_changed)
{
  memset (all, 0, sizeof *all);
  memset (changed, 0, sizeof *changed);
  *n_changed = 0;
  for (guint i = 0; i < plan->entries->len; i++)
    {
      SmeltBnb4Entry *e = g_ptr_array_index (plan->entries, i);

      if (e->kind != SMELT_BNB4_ENTRY_QUANT)
        continue;
      smelt_quality_stats_add (all, &e->stats);
      if (e->base != NULL)
        {
          smelt_quality_stats_add (changed, &e->stats);
          (*n_changed)++;
        }
    }
}

/* bnb4.report.json: per quantized weight its error against the merged
 * weights and, for adapted ones, how much of the change survived; the
 * same figures as gguf-quant's report. */
GBytes *
smelt_bnb4_plan_make_report (SmeltBnb4Plan *plan)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  SmeltQualityStats all, changed;
  guint n_changed;
  g_autofree char *text = NULL;

  add_totals (plan, &all, &changed, &n_changed);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "format");
  json_builder_add_string_value (b, "bnb4");
  json_builder_set_member_name (b, "report_version");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "quant_type");
  json_builder_add_string_value (b, smelt_bnb4_type_to_string (plan->opt.quant_type));
  json_builder_set_member_name (b, "blocksize");
  json_builder_add_int_value (b, plan->opt.blocksize);
  json_builder_set_member_name (b, "double_quant");
  json_builder_add_boolean_value (b, plan->opt.nested);
  json_builder_set_member_name (b, "tensors");
  json_builder_begin_array (b);
  for (guint i = 0; i < plan->entries->len; i++)
    {
      SmeltBnb4Entry *e = g_ptr_array_index (plan->entries, i);

      if (e->kind != SMELT_BNB4_ENTRY_QUANT)
        continue;
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, smelt_tensor_get_name (e->tensor));
      json_builder_set_member_name (b, "elements");
      json_builder_add_int_value (b, (gint64) e->n);
      smelt_quality_add_json (b, &e->stats, TRUE, e->base != NULL);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "totals");
  json_builder_begin_object (b);
  smelt_quality_add_json (b, &all, TRUE, FALSE);
  json_builder_set_member_name (b, "modified_tensors");
  json_builder_add_int_value (b, n_changed);
  smelt_quality_add_json (b, &changed, FALSE, n_changed > 0);
  json_builder_end_object (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  text = smelt_json_to_string (root, TRUE, FALSE);
  return g_bytes_new_take (g_strconcat (text, "\n", NULL), strlen (text) + 1);
}

char *
smelt_bnb4_plan_summary (SmeltBnb4Plan *plan)
{
  GString *s = g_string_new (NULL);

  g_string_append_printf (s, "%u Linear weights in 4 bits (%s, blocks of %u%s)",
                          plan->n_quant + plan->n_copy, smelt_bnb4_type_to_string (plan->opt.quant_type),
                          plan->opt.blocksize, plan->opt.nested ? ", double quantization" : "");
  if (plan->n_copy > 0)
    g_string_append_printf (s, ", %u of them copied from the 4-bit base", plan->n_copy);
  g_string_append_printf (s, "; the rest in %s; %u shard%s",
                          smelt_bnb4_torch_dtype_name (plan->opt.dtype),
                          smelt_shard_set_get_n_shards (plan->shards),
                          smelt_shard_set_get_n_shards (plan->shards) == 1 ? "" : "s");
  if (plan->opt.report && plan->n_quant > 0)
    {
      SmeltQualityStats all, changed;
      SmeltQualityFigures f;
      guint n_changed;

      add_totals (plan, &all, &changed, &n_changed);
      smelt_quality_get_figures (&all, &f);
      g_string_append_printf (s, "\n  rel. RMS error %.3f%%", 100 * f.rel_rms_error);
      if (changed.delta2 > 0)
        {
          smelt_quality_get_figures (&changed, &f);
          g_string_append_printf (s, ", fine-tune surviving %.1f%% (cosine %.3f)",
                                  100 * f.delta_surviving, f.delta_cosine);
        }
    }
  g_string_append_c (s, '\n');
  return g_string_free (s, FALSE);
}
