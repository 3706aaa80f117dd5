/* smelt-quality.h: how much a quantized export lost, and how much of the
 * fine-tune survived
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(SMELT_INSIDE) && !defined(SMELT_COMPILATION)
# error "Only <smelt/smelt.h> can be included directly."
#endif

#include <json-glib/json-glib.h>
#include <smelt/smelt-version.h>

G_BEGIN_DECLS

/**
 * SmeltQualityStats:
 * @err2: Σ (x − dq(q(x)))², x the merged weights
 * @x2: Σ x²
 * @delta2: Σ Δ², Δ = x − W (the adapters' change)
 * @diff2: Σ D², D = dq(q(x)) − dq(q(W)) (the change that reached the file)
 * @cross: Σ D·Δ
 * @resid2: Σ (D − Δ)²
 * @delta_n: elements in the Δ sums
 *
 * Sums over a tensor (or a slice of one) from which the report's figures
 * come. Formats compute them per slice on worker threads and add them up
 * in row order, so totals do not depend on the number of threads.
 */
typedef struct {
  double err2;
  double x2;
  double delta2;
  double diff2;
  double cross;
  double resid2;
  double delta_n;
} SmeltQualityStats;

/**
 * SmeltQualityFigures:
 * @rel_rms_error: ‖x − dq(q(x))‖ / ‖x‖
 * @delta_rms: ‖Δ‖ / √n
 * @delta_ratio: ‖D‖ / ‖Δ‖
 * @delta_cosine: D·Δ / (‖D‖ ‖Δ‖)
 * @delta_error: ‖D − Δ‖ / ‖Δ‖
 * @delta_surviving: max (0, 1 − ‖D − Δ‖² / ‖Δ‖²): the fraction of the
 *   fine-tune's change that survived quantization
 *
 * What the quality report says of a #SmeltQualityStats.
 */
typedef struct {
  double rel_rms_error;
  double delta_rms;
  double delta_ratio;
  double delta_cosine;
  double delta_error;
  double delta_surviving;
} SmeltQualityFigures;

SMELT_AVAILABLE_IN_ALL
void  smelt_quality_stats_add      (SmeltQualityStats       *acc,
                                    const SmeltQualityStats *stats);
SMELT_AVAILABLE_IN_ALL
void  smelt_quality_measure        (SmeltQualityStats       *stats,
                                    const float             *x,
                                    const float             *xq,
                                    gsize                    n);
SMELT_AVAILABLE_IN_ALL
void  smelt_quality_measure_delta  (SmeltQualityStats       *stats,
                                    const float             *x,
                                    const float             *xq,
                                    const float             *w,
                                    const float             *wq,
                                    gsize                    n);
SMELT_AVAILABLE_IN_ALL
void  smelt_quality_get_figures    (const SmeltQualityStats *stats,
                                    SmeltQualityFigures     *figures);
SMELT_AVAILABLE_IN_ALL
void  smelt_quality_add_json       (JsonBuilder             *builder,
                                    const SmeltQualityStats *stats,
                                    gboolean                 with_error,
                                    gboolean                 with_delta);

G_END_DECLS
