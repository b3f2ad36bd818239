/* histogram.h - streaming value histograms and the range choices built on
 * them (percentile, MSE-optimal, KL divergence). Internal to src/quant.
 *
 * Design (see docs/PTQ.md, "Calibration histograms"):
 *  - A histogram has a fixed number of bins B. Bin edges lie on the grid
 *    k * 2^e (k integer): bin width is a power of two and the grid is
 *    anchored at 0, so 0 is always a bin edge.
 *  - The window holds B consecutive grid bins starting at the bin of the
 *    smallest value seen. When new data does not fit, e grows until the whole
 *    range seen so far spans at most B bins; each step merges bin pairs
 *    (2k, 2k+1) into bin k exactly, with no interpolation.
 *  - Hence the final histogram holds the exact counts of every value in bins
 *    of width 2^e, e the smallest exponent for which the range of ALL data
 *    fits in B bins: it does not depend on the order of the samples, and
 *    memory is B counters per tensor whatever the number of samples.
 *  - At least B/2 bins are used by the data range (one step less would have
 *    fit otherwise), so the resolution is between range/B and 2 range/B.
 */
#ifndef MOPT_QUANT_HISTOGRAM_H
#define MOPT_QUANT_HISTOGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mopt/status.h"

typedef struct ptq_hist {
    int nbins;
    bool has_grid;  /* false until a nonzero value was seen */
    int exp;        /* bin width 2^exp */
    int64_t start;  /* grid index of bins[0] */
    uint64_t *bins;
    uint64_t zeros_pending; /* exact zeros seen before the grid existed */
    uint64_t total;
    uint64_t zeros;         /* values exactly 0 (in the bin [0, w)) */
    float min, max; /* exact extremes seen (valid when total > 0) */
} ptq_hist;

/* nbins in [16, 1 << 20]. Returns MOPT_ERR_NOMEM on allocation failure. */
mopt_status ptq_hist_init(ptq_hist *h, int nbins);
void ptq_hist_free(ptq_hist *h);
/* Adds n finite values (the caller rejects NaN / inf). */
mopt_status ptq_hist_add(ptq_hist *h, const float *x, size_t n);

/* Adds the values counted in src to dst (both built with the same number
 * of bins): the result is what dst would hold had it seen src's values
 * too, exactly (histograms do not depend on the order of the values). */
mopt_status ptq_hist_merge(ptq_hist *dst, const ptq_hist *src);

/* Width of one bin (0 without a grid) and the lower edge of bins[j]. */
double ptq_hist_bin_width(const ptq_hist *h);

/* Value below which a fraction q in [0, 1] of the data lies (linear inside
 * the bin), clamped to [min, max]. */
double ptq_hist_quantile(const ptq_hist *h, double q);

/* Range choices. `symmetric`: the target is symmetric int16 (range
 * [-T, T], 65535 levels); otherwise asymmetric int8 with the converter's
 * parameter rule (range widened to include 0, 255 levels). The results are
 * clipped to the observed [min, max]. */
void ptq_hist_range_percentile(const ptq_hist *h, double percentile, bool symmetric, float *lo,
                               float *hi);
void ptq_hist_range_mse(const ptq_hist *h, bool symmetric, float *lo, float *hi);
void ptq_hist_range_kl(const ptq_hist *h, bool symmetric, float *lo, float *hi);

/* Expected squared error per value when the histogram's data is quantized
 * with range [lo, hi] (asymmetric int8 or symmetric int16 as above):
 * clipping error from bin centres plus step^2/12 for values inside. Exposed
 * for the tests. */
double ptq_hist_quant_mse(const ptq_hist *h, bool symmetric, float lo, float hi);

/* KL divergence search of TensorRT's entropy calibrator on a histogram of
 * |x| (counts[0..n), bin j = [j w, (j+1) w)) with `levels` quantization
 * levels; returns the chosen threshold in bins (the clip point is
 * (i + 0.5) w... see the implementation). Exposed for the tests. */
int ptq_kl_threshold_bins(const double *counts, int n, int levels);

#endif
