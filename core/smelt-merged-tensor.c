/* smelt-merged-tensor.c: a tensor whose rows are W + Σ s·B·A
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <cblas.h>

#include "smelt-private.h"

/* SmeltMergedTensor computes merged rows on demand, one row block at a
 * time, so a merge never holds more than a block of any weight.
 *
 * Numerics follow PEFT's merge: delta = fl32(B·A) (float32 GEMM), then
 * multiplied by the float32 factor, then added to the float32 base, each
 * step rounded on its own (the library is built with -ffp-contract=off,
 * so no FMA fuses these). Adapters apply in the order they were given.
 * DoRA rescales W + delta by magnitude / ‖W + delta‖ per output feature. */

typedef struct {
  SmeltLoraTerm term;
  GMutex        lock;
  float        *a;        /* A as float32, [r, a_cols] */
  float        *b;        /* B as float32, [b_rows, r] */
  float        *mag;      /* magnitude as float32 */
  float        *col_norm; /* DoRA norms per column for TRANSPOSED layouts */
  guint64       a_cols;
  guint64       b_rows;
} Term;

typedef struct {
  SmeltTensor *vector;
  float        factor;
} BiasTerm;

struct _SmeltMergedTensor
{
  GObject      parent_instance;

  char        *name;
  SmeltTensor *base;
  SmeltDType   dtype;
  GPtrArray   *terms;      /* Term */
  GArray      *biases;     /* BiasTerm */
};

static void smelt_merged_tensor_iface_init (SmeltTensorInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SmeltMergedTensor, _smelt_merged_tensor, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SMELT_TYPE_TENSOR, smelt_merged_tensor_iface_init))

static void
term_free (gpointer data)
{
  Term *t = data;

  g_clear_object (&t->term.a);
  g_clear_object (&t->term.b);
  g_clear_object (&t->term.magnitude);
  g_free (t->a);
  g_free (t->b);
  g_free (t->mag);
  g_free (t->col_norm);
  g_mutex_clear (&t->lock);
  g_free (t);
}

static void
smelt_merged_tensor_finalize (GObject *object)
{
  SmeltMergedTensor *self = SMELT_MERGED_TENSOR (object);

  g_free (self->name);
  g_clear_object (&self->base);
  g_ptr_array_unref (self->terms);
  for (guint i = 0; i < self->biases->len; i++)
    g_object_unref (g_array_index (self->biases, BiasTerm, i).vector);
  g_array_unref (self->biases);

  G_OBJECT_CLASS (_smelt_merged_tensor_parent_class)->finalize (object);
}

static void
_smelt_merged_tensor_class_init (SmeltMergedTensorClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = smelt_merged_tensor_finalize;
}

static void
_smelt_merged_tensor_init (SmeltMergedTensor *self)
{
  self->terms = g_ptr_array_new_with_free_func (term_free);
  self->biases = g_array_new (FALSE, FALSE, sizeof (BiasTerm));
}

static float *
read_all_f32 (SmeltTensor  *tensor,
              GError      **error)
{
  guint64 n = smelt_tensor_get_n_elements (tensor);
  float *buf = g_try_new (float, MAX (n, 1));

  if (buf == NULL)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_INVALID,
                   "%s: out of memory reading %" G_GUINT64_FORMAT " elements",
                   smelt_tensor_get_name (tensor), n);
      return NULL;
    }
  if (!smelt_tensor_read_rows (tensor, 0, smelt_tensor_get_n_rows (tensor), SMELT_DTYPE_F32, buf, error))
    {
      g_free (buf);
      return NULL;
    }
  return buf;
}

/* A and B are small (rank × width), so they are converted to float32 once
 * and shared by every worker. */
static gboolean
term_ensure_factors (Term    *t,
                     GError **error)
{
  gboolean ok = TRUE;

  g_mutex_lock (&t->lock);
  if (t->a == NULL)
    {
      t->a = read_all_f32 (t->term.a, error);
      if (t->a != NULL)
        {
          t->b = read_all_f32 (t->term.b, error);
          if (t->b == NULL)
            g_clear_pointer (&t->a, g_free);
        }
      if (t->a != NULL && t->term.magnitude != NULL)
        {
          t->mag = read_all_f32 (t->term.magnitude, error);
          if (t->mag == NULL)
            {
              g_clear_pointer (&t->a, g_free);
              g_clear_pointer (&t->b, g_free);
            }
        }
      ok = t->a != NULL;
    }
  g_mutex_unlock (&t->lock);
  return ok;
}

/* delta[n_rows, row_len] for rows [first, first + n_rows) of the base. */
static void
term_delta (Term    *t,
            guint64  first,
            guint64  n_rows,
            guint64  row_len,
            float   *delta)
{
  guint r = t->term.rank;

  if (t->term.layout == SMELT_LORA_LINEAR)
    /* B[first:first+n] (n×r) · A (r×row_len) */
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans,
                 (blasint) n_rows, (blasint) row_len, (blasint) r,
                 1.0f, t->b + first * r, (blasint) r,
                 t->a, (blasint) t->a_cols,
                 0.0f, delta, (blasint) row_len);
  else
    /* (B·A)ᵀ rows = A[:, first:first+n]ᵀ (n×r) · Bᵀ (r×row_len) */
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasTrans,
                 (blasint) n_rows, (blasint) row_len, (blasint) r,
                 1.0f, t->a + first, (blasint) t->a_cols,
                 t->b, (blasint) r,
                 0.0f, delta, (blasint) row_len);
}

/* dest += delta × factor, two roundings per element as in PEFT (the
 * multiply and the add are separate instructions: no FMA). It is the
 * hottest loop of a merge, so it is written with GCC vector extensions
 * and cloned per ISA; every clone does the same IEEE operations. */
typedef float SmeltV16 __attribute__ ((vector_size (64), aligned (4)));

typedef gint32 SmeltI16 __attribute__ ((vector_size (64)));

/* Returns whether every sum is finite, found on the way: w − w is NaN
 * exactly when w is infinite or NaN, so the merge needs no other pass to
 * refuse a broken adapter. */
__attribute__ ((target_clones ("avx512f", "avx2", "default")))
static gboolean
add_scaled (float       *restrict dest,
            const float *restrict delta,
            float                 factor,
            gsize                 n)
{
  SmeltI16 bad = { 0 };
  gboolean finite = TRUE;
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      SmeltV16 d, w, z;

      memcpy (&d, delta + i, sizeof d);
      memcpy (&w, dest + i, sizeof w);
      d = d * factor;
      w = w + d;
      z = w - w;
      bad |= z != z;
      memcpy (dest + i, &w, sizeof w);
    }
  for (guint k = 0; k < 16; k++)
    finite = finite && bad[k] == 0;
  for (; i < n; i++)
    {
      float d = delta[i] * factor;
      dest[i] = dest[i] + d;
      finite = finite && isfinite (dest[i]);
    }
  return finite;
}

typedef guint16 SmeltU16x16 __attribute__ ((vector_size (32), aligned (2)));
typedef guint32 SmeltU32x16 __attribute__ ((vector_size (64)));

/* dest = W + delta × factor with W read straight from its bf16 bytes:
 * the same IEEE operations as reading W into dest (bf16 → float32 is
 * exact) and add_scaled(), one pass over the rows instead of two. */
__attribute__ ((target_clones ("avx512f", "avx2", "default")))
static gboolean
add_scaled_bf16 (float         *restrict dest,
                 const guint16 *restrict w,
                 const float   *restrict delta,
                 float                   factor,
                 gsize                   n)
{
  SmeltI16 bad = { 0 };
  gboolean finite = TRUE;
  gsize i = 0;

  for (; i + 16 <= n; i += 16)
    {
      SmeltU16x16 h;
      SmeltU32x16 bits;
      SmeltV16 d, x, z;

      memcpy (&h, w + i, sizeof h);
      memcpy (&d, delta + i, sizeof d);
      bits = __builtin_convertvector (h, SmeltU32x16) << 16;
      memcpy (&x, &bits, sizeof x);
      d = d * factor;
      x = x + d;
      z = x - x;
      bad |= z != z;
      memcpy (dest + i, &x, sizeof x);
    }
  for (guint k = 0; k < 16; k++)
    finite = finite && bad[k] == 0;
  for (; i < n; i++)
    {
      guint32 b = (guint32) w[i] << 16;
      float x, d = delta[i] * factor;

      memcpy (&x, &b, sizeof x);
      dest[i] = x + d;
      finite = finite && isfinite (dest[i]);
    }
  return finite;
}

/* The common merge, one plain LoRA over stored bf16 rows, in one pass:
 * returns FALSE (doing nothing) when the rows are anything else. */
static gboolean
compute_rows_bf16 (SmeltMergedTensor *self,
                   guint              upto,
                   guint64            first,
                   guint64            n_rows,
                   float             *dest,
                   gboolean          *finite,
                   GError           **error,
                   gboolean          *ok)
{
  guint64 row_len = smelt_tensor_get_row_length (SMELT_TENSOR (self));
  g_autoptr(GBytes) bytes = NULL;
  Term *t;
  float *delta;

  if (upto != 1 || smelt_tensor_get_dtype (self->base) != SMELT_DTYPE_BF16)
    return FALSE;
  t = g_ptr_array_index (self->terms, 0);
  if (t->term.magnitude)
    return FALSE;
  bytes = smelt_tensor_get_bytes (self->base);
  if (bytes == NULL)
    return FALSE;
  *ok = term_ensure_factors (t, error);
  if (!*ok)
    return TRUE;
  delta = _smelt_scratch_get (SMELT_SCRATCH_DELTA, n_rows * row_len * sizeof (float));
  term_delta (t, first, n_rows, row_len, delta);
  *ok = TRUE;
  *finite = add_scaled_bf16 (dest, (const guint16 *) g_bytes_get_data (bytes, NULL) + first * row_len,
                             delta, t->term.factor, n_rows * row_len);
  return TRUE;
}

/* Rows of W + deltas of terms [0, upto), into dest. */
static gboolean
compute_rows (SmeltMergedTensor *self,
              guint              upto,
              guint64            first,
              guint64            n_rows,
              float             *dest,
              gboolean          *finite,
              GError           **error);

/* For TRANSPOSED DoRA the norm runs down columns of the stored layout, so
 * it needs one pass over the whole tensor before any row can be finished. */
static gboolean
term_ensure_col_norms (SmeltMergedTensor *self,
                       guint              index,
                       GError           **error)
{
  Term *t = g_ptr_array_index (self->terms, index);
  guint64 n_rows = smelt_tensor_get_n_rows (SMELT_TENSOR (self));
  guint64 row_len = smelt_tensor_get_row_length (SMELT_TENSOR (self));
  guint64 block = _smelt_rows_per_block (SMELT_TENSOR (self), 4 << 20);
  gboolean ok = TRUE;

  g_mutex_lock (&t->lock);
  if (t->col_norm == NULL)
    {
      g_autofree double *sum = g_new0 (double, row_len);
      g_autofree float *rows = g_new (float, block * row_len);
      g_autofree float *delta = g_new (float, block * row_len);

      for (guint64 first = 0; ok && first < n_rows; first += block)
        {
          guint64 n = MIN (block, n_rows - first);

          ok = compute_rows (self, index, first, n, rows, NULL, error);
          if (!ok)
            break;
          term_delta (t, first, n, row_len, delta);
          add_scaled (rows, delta, t->term.factor, n * row_len);
          for (guint64 i = 0; i < n; i++)
            for (guint64 j = 0; j < row_len; j++)
              sum[j] += (double) rows[i * row_len + j] * rows[i * row_len + j];
        }
      if (ok)
        {
          t->col_norm = g_new (float, row_len);
          for (guint64 j = 0; j < row_len; j++)
            t->col_norm[j] = (float) sqrt (sum[j]);
        }
    }
  g_mutex_unlock (&t->lock);
  return ok;
}

static void
apply_dora_rows (Term    *t,
                 guint64  first,
                 guint64  n_rows,
                 guint64  row_len,
                 float   *rows)
{
  for (guint64 i = 0; i < n_rows; i++)
    {
      float *row = rows + i * row_len;
      double sum = 0;
      float norm, scale;

      for (guint64 j = 0; j < row_len; j++)
        sum += (double) row[j] * row[j];
      norm = (float) sqrt (sum);
      scale = t->mag[first + i] / norm;
      for (guint64 j = 0; j < row_len; j++)
        row[j] = scale * row[j];
    }
}

static void
apply_dora_cols (Term    *t,
                 guint64  n_rows,
                 guint64  row_len,
                 float   *rows)
{
  for (guint64 i = 0; i < n_rows; i++)
    for (guint64 j = 0; j < row_len; j++)
      {
        float scale = t->mag[j] / t->col_norm[j];
        rows[i * row_len + j] = scale * rows[i * row_len + j];
      }
}

/* @finite (optional) is set when the rows are known to be finite: the
 * last step was a sum that checked them. */
static gboolean
compute_rows (SmeltMergedTensor *self,
              guint              upto,
              guint64            first,
              guint64            n_rows,
              float             *dest,
              gboolean          *finite,
              GError           **error)
{
  guint64 row_len = smelt_tensor_get_row_length (SMELT_TENSOR (self));
  float *delta = NULL;
  gboolean checked = FALSE, ok = FALSE;

  if (finite && compute_rows_bf16 (self, upto, first, n_rows, dest, finite, error, &ok))
    return ok;
  if (!smelt_tensor_read_rows (self->base, first, n_rows, SMELT_DTYPE_F32, dest, error))
    return FALSE;

  for (guint k = 0; k < upto; k++)
    {
      Term *t = g_ptr_array_index (self->terms, k);

      if (!term_ensure_factors (t, error))
        return FALSE;
      if (t->term.magnitude && t->term.layout == SMELT_LORA_TRANSPOSED &&
          !term_ensure_col_norms (self, k, error))
        return FALSE;
      if (delta == NULL)
        delta = _smelt_scratch_get (SMELT_SCRATCH_DELTA, n_rows * row_len * sizeof (float));
      term_delta (t, first, n_rows, row_len, delta);
      checked = add_scaled (dest, delta, t->term.factor, n_rows * row_len);
      if (t->term.magnitude && t->term.layout == SMELT_LORA_LINEAR)
        apply_dora_rows (t, first, n_rows, row_len, dest);
      else if (t->term.magnitude)
        apply_dora_cols (t, n_rows, row_len, dest);
      checked = checked && !t->term.magnitude;
    }
  if (finite)
    *finite = checked;
  return TRUE;
}

static gboolean
add_biases (SmeltMergedTensor *self,
            float             *dest,
            guint64            n,
            GError           **error)
{
  g_autofree float *vec = NULL;

  for (guint k = 0; k < self->biases->len; k++)
    {
      BiasTerm *bt = &g_array_index (self->biases, BiasTerm, k);

      if (vec == NULL)
        vec = g_new (float, n);
      if (!smelt_tensor_read_rows (bt->vector, 0, 1, SMELT_DTYPE_F32, vec, error))
        return FALSE;
      add_scaled (dest, vec, bt->factor, n);
    }
  return TRUE;
}

static gboolean
smelt_merged_tensor_read_rows (SmeltTensor *tensor,
                               guint64      first_row,
                               guint64      n_rows,
                               SmeltDType   want,
                               gpointer     dest,
                               GError     **error)
{
  SmeltMergedTensor *self = SMELT_MERGED_TENSOR (tensor);
  guint64 row_len = smelt_tensor_get_row_length (tensor);
  gsize n = n_rows * row_len;
  float *out = dest;
  gboolean finite = FALSE;
  gssize bad = -1;

  if (want != SMELT_DTYPE_F32)
    out = _smelt_scratch_get (SMELT_SCRATCH_CONVERT, MAX (n, 1) * sizeof (float));

  if (!compute_rows (self, self->terms->len, first_row, n_rows, out, &finite, error) ||
      !add_biases (self, out, n, error))
    return FALSE;

  if (!finite || self->biases->len > 0)
    bad = smelt_find_non_finite (out, n);
  if (bad >= 0)
    {
      g_set_error (error, SMELT_MODEL_ERROR, SMELT_MODEL_ERROR_NUMERIC,
                   "%s: the merge produced a non-finite value (%g) at row %" G_GUINT64_FORMAT
                   ", column %" G_GUINT64_FORMAT "; the adapter or its scale is broken",
                   self->name, out[bad], first_row + bad / MAX (row_len, 1),
                   (guint64) bad % MAX (row_len, 1));
      return FALSE;
    }
  if (want != SMELT_DTYPE_F32)
    smelt_convert (SMELT_DTYPE_F32, out, want, dest, n, NULL);
  return TRUE;
}

static const char *
smelt_merged_tensor_get_name (SmeltTensor *tensor)
{
  return SMELT_MERGED_TENSOR (tensor)->name;
}

static SmeltDType
smelt_merged_tensor_get_dtype (SmeltTensor *tensor)
{
  return SMELT_MERGED_TENSOR (tensor)->dtype;
}

static const guint64 *
smelt_merged_tensor_get_shape (SmeltTensor *tensor,
                               guint       *n_dims)
{
  return smelt_tensor_get_shape (SMELT_MERGED_TENSOR (tensor)->base, n_dims);
}

static GBytes *
smelt_merged_tensor_get_bytes (SmeltTensor *tensor)
{
  SmeltMergedTensor *self = SMELT_MERGED_TENSOR (tensor);

  /* A replacement with no delta on top is stored as it is. */
  if (self->terms->len == 0 && self->biases->len == 0 &&
      smelt_tensor_get_dtype (self->base) == self->dtype)
    return smelt_tensor_get_bytes (self->base);
  return NULL;
}

static gboolean
smelt_merged_tensor_is_modified (SmeltTensor *tensor)
{
  return TRUE;
}

static void
smelt_merged_tensor_release (SmeltTensor *tensor)
{
  SmeltMergedTensor *self = SMELT_MERGED_TENSOR (tensor);

  smelt_tensor_release (self->base);
  for (guint k = 0; k < self->terms->len; k++)
    {
      Term *t = g_ptr_array_index (self->terms, k);

      g_mutex_lock (&t->lock);
      g_clear_pointer (&t->a, g_free);
      g_clear_pointer (&t->b, g_free);
      g_clear_pointer (&t->mag, g_free);
      g_clear_pointer (&t->col_norm, g_free);
      g_mutex_unlock (&t->lock);
    }
}

/* Base rows map one to one onto merged rows (a transposed delta reads A
 * and B, never other base rows). */
static void
smelt_merged_tensor_release_rows (SmeltTensor *tensor,
                                  guint64      first_row,
                                  guint64      n_rows)
{
  smelt_tensor_release_rows (SMELT_MERGED_TENSOR (tensor)->base, first_row, n_rows);
}

static void
smelt_merged_tensor_iface_init (SmeltTensorInterface *iface)
{
  iface->get_name = smelt_merged_tensor_get_name;
  iface->get_dtype = smelt_merged_tensor_get_dtype;
  iface->get_shape = smelt_merged_tensor_get_shape;
  iface->get_bytes = smelt_merged_tensor_get_bytes;
  iface->read_rows = smelt_merged_tensor_read_rows;
  iface->is_modified = smelt_merged_tensor_is_modified;
  iface->release = smelt_merged_tensor_release;
  iface->release_rows = smelt_merged_tensor_release_rows;
}

SmeltTensor *
_smelt_merged_tensor_new (const char  *name,
                          SmeltTensor *base,
                          SmeltDType   dtype)
{
  SmeltMergedTensor *self = g_object_new (SMELT_TYPE_MERGED_TENSOR, NULL);

  self->name = g_strdup (name);
  self->base = g_object_ref (base);
  self->dtype = dtype;
  return SMELT_TENSOR (self);
}

void
_smelt_merged_tensor_add_term (SmeltMergedTensor   *self,
                               const SmeltLoraTerm *term)
{
  Term *t = g_new0 (Term, 1);
  guint n_dims;
  const guint64 *shape;

  t->term = *term;
  g_mutex_init (&t->lock);
  shape = smelt_tensor_get_shape (term->a, &n_dims);
  t->a_cols = n_dims >= 2 ? shape[1] : shape[0];
  shape = smelt_tensor_get_shape (term->b, &n_dims);
  t->b_rows = shape[0];
  g_ptr_array_add (self->terms, t);
}

void
_smelt_merged_tensor_add_bias (SmeltMergedTensor *self,
                               SmeltTensor       *vector,
                               float              factor)
{
  BiasTerm bt = { g_object_ref (vector), factor };

  g_array_append_val (self->biases, bt);
}

guint64
_smelt_rows_per_block (SmeltTensor *tensor,
                       gsize        target_bytes)
{
  guint64 row_bytes = MAX (smelt_tensor_get_row_length (tensor), 1) * sizeof (float);

  return MAX (target_bytes / row_bytes, 1);
}
