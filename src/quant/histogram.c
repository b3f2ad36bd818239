/* histogram.c - streaming histograms with exact power-of-two re-binning, and
 * the percentile / MSE / KL range choices (see histogram.h, docs/PTQ.md). */
#include "quant/histogram.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mopt/qmath.h"

mopt_status ptq_hist_init(ptq_hist *h, int nbins) {
    memset(h, 0, sizeof(*h));
    if (nbins < 16 || nbins > (1 << 20))
        return MOPT_ERR_ARG;
    h->bins = calloc((size_t)nbins, sizeof(uint64_t));
    if (!h->bins)
        return MOPT_ERR_NOMEM;
    h->nbins = nbins;
    return MOPT_OK;
}

void ptq_hist_free(ptq_hist *h) {
    if (!h)
        return;
    free(h->bins);
    memset(h, 0, sizeof(*h));
}

/* Grid index of x for bin width 2^e: floor(x / 2^e). Exact: scaling a float
 * by a power of two in double neither rounds nor overflows for the
 * exponents used here (|e| < 400). */
static int64_t grid_index(double x, int e) {
    double v = floor(ldexp(x, -e));
    /* Never reached with the exponents chosen below (indexes stay under
     * 2^46), but a cast of an out-of-range double would be undefined. */
    if (v > 4e18) v = 4e18;
    if (v < -4e18) v = -4e18;
    return (int64_t)v;
}

/* floor(a / 2^k) for integers, k >= 0. */
static int64_t floor_div_pow2(int64_t a, int k) {
    if (k <= 0)
        return a;
    if (k >= 62)
        return a < 0 ? -1 : 0;
    int64_t d = (int64_t)1 << k;
    int64_t q = a / d;
    if (a % d != 0 && a < 0)
        q--;
    return q;
}

static bool span_fits(double lo, double hi, int e, int nbins) {
    return grid_index(hi, e) - grid_index(lo, e) + 1 <= nbins;
}

/* Moves the histogram to bin width 2^e (e >= current exponent) and window
 * start `start`; every old bin maps into exactly one new bin. */
static void rebin(ptq_hist *h, int e, int64_t start, uint64_t *scratch) {
    int k = e - h->exp;
    memset(scratch, 0, (size_t)h->nbins * sizeof(uint64_t));
    for (int j = 0; j < h->nbins; j++) {
        if (!h->bins[j])
            continue;
        int64_t idx = floor_div_pow2(h->start + j, k) - start;
        if (idx < 0) idx = 0; /* cannot happen: the window covers all data */
        if (idx >= h->nbins) idx = h->nbins - 1;
        scratch[idx] += h->bins[j];
    }
    memcpy(h->bins, scratch, (size_t)h->nbins * sizeof(uint64_t));
    h->exp = e;
    h->start = start;
}

mopt_status ptq_hist_add(ptq_hist *h, const float *x, size_t n) {
    if (n == 0)
        return MOPT_OK;
    float bmin = x[0], bmax = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < bmin) bmin = x[i];
        if (x[i] > bmax) bmax = x[i];
    }
    if (h->total == 0) {
        h->min = bmin;
        h->max = bmax;
    } else {
        if (bmin < h->min) h->min = bmin;
        if (bmax > h->max) h->max = bmax;
    }
    h->total += n;
    if (!h->has_grid) {
        if (h->min == 0.0f && h->max == 0.0f) {
            h->zeros_pending += n;
            h->zeros += n;
            return MOPT_OK;
        }
        /* First nonzero data: the smallest exponent whose grid holds the
         * range (start from an estimate, then step). */
        double span = (double)h->max - (double)h->min;
        int e;
        if (span > 0) {
            frexp(span / h->nbins, &e);
            while (span_fits(h->min, h->max, e - 1, h->nbins)) e--;
        } else {
            /* A single distinct value: start below any exponent later data
             * can need (two distinct floats near x differ by at least
             * 2^-24 |x|), so growth reaches the same exponent as if all the
             * data had come at once. */
            int ex, lb = 0;
            frexp(fabs((double)h->max), &ex);
            while ((1 << lb) < h->nbins) lb++;
            e = ex - 26 - lb;
        }
        while (!span_fits(h->min, h->max, e, h->nbins)) e++;
        h->has_grid = true;
        h->exp = e;
        h->start = grid_index(h->min, e);
        memset(h->bins, 0, (size_t)h->nbins * sizeof(uint64_t));
        if (h->zeros_pending) {
            h->bins[grid_index(0.0, e) - h->start] += h->zeros_pending;
            h->zeros_pending = 0;
        }
    } else if (grid_index(h->min, h->exp) < h->start ||
               grid_index(h->max, h->exp) >= h->start + h->nbins) {
        int e = h->exp;
        while (!span_fits(h->min, h->max, e, h->nbins)) e++;
        uint64_t *scratch = malloc((size_t)h->nbins * sizeof(uint64_t));
        if (!scratch)
            return MOPT_ERR_NOMEM;
        rebin(h, e, grid_index(h->min, e), scratch);
        free(scratch);
    }
    const double inv = ldexp(1.0, -h->exp);
    const int64_t start = h->start;
    const int64_t last = h->nbins - 1;
    uint64_t z = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t j = (int64_t)floor((double)x[i] * inv) - start;
        if (j < 0) j = 0;
        if (j > last) j = last;
        h->bins[j]++;
        z += x[i] == 0.0f;
    }
    h->zeros += z;
    return MOPT_OK;
}

mopt_status ptq_hist_merge(ptq_hist *d, const ptq_hist *s) {
    if (s->total == 0)
        return MOPT_OK;
    if (s->nbins != d->nbins)
        return MOPT_ERR_ARG;
    float mn = d->total ? (s->min < d->min ? s->min : d->min) : s->min;
    float mx = d->total ? (s->max > d->max ? s->max : d->max) : s->max;
    if (!d->has_grid && !s->has_grid) {
        d->zeros_pending += s->zeros_pending;
    } else {
        /* The smallest exponent both grids can be merged on that holds the
         * union: each side's exponent is minimal for its own data, and the
         * union needs at least the larger one. */
        int e = d->has_grid && s->has_grid ? (d->exp > s->exp ? d->exp : s->exp)
                                           : (d->has_grid ? d->exp : s->exp);
        while (!span_fits(mn, mx, e, d->nbins)) e++;
        int64_t start = grid_index(mn, e);
        uint64_t *tmp = calloc((size_t)d->nbins, sizeof(uint64_t));
        if (!tmp)
            return MOPT_ERR_NOMEM;
        uint64_t pend = 0;
        const ptq_hist *parts[2] = {d, s};
        for (int p = 0; p < 2; p++) {
            const ptq_hist *h = parts[p];
            if (!h->has_grid) {
                pend += h->zeros_pending;
                continue;
            }
            for (int j = 0; j < h->nbins; j++) {
                if (!h->bins[j]) continue;
                int64_t k = floor_div_pow2(h->start + j, e - h->exp) - start;
                if (k < 0) k = 0;
                if (k >= d->nbins) k = d->nbins - 1;
                tmp[k] += h->bins[j];
            }
        }
        if (pend) {
            int64_t k = grid_index(0.0, e) - start; /* 0 is in [mn, mx] here */
            if (k < 0) k = 0;
            if (k >= d->nbins) k = d->nbins - 1;
            tmp[k] += pend;
        }
        memcpy(d->bins, tmp, (size_t)d->nbins * sizeof(uint64_t));
        free(tmp);
        d->has_grid = true;
        d->exp = e;
        d->start = start;
        d->zeros_pending = 0;
    }
    d->total += s->total;
    d->zeros += s->zeros;
    d->min = mn;
    d->max = mx;
    return MOPT_OK;
}

double ptq_hist_bin_width(const ptq_hist *h) { return h->has_grid ? ldexp(1.0, h->exp) : 0.0; }

static double bin_lo(const ptq_hist *h, int j) { return ldexp((double)(h->start + j), h->exp); }

double ptq_hist_quantile(const ptq_hist *h, double q) {
    if (h->total == 0)
        return 0.0;
    if (!h->has_grid)
        return 0.0;
    if (q <= 0) return h->min;
    if (q >= 1) return h->max;
    double target = q * (double)h->total, cum = 0;
    double w = ptq_hist_bin_width(h);
    for (int j = 0; j < h->nbins; j++) {
        double c = (double)h->bins[j];
        if (c > 0 && cum + c >= target) {
            double v = bin_lo(h, j) + w * ((target - cum) / c);
            if (v < h->min) v = h->min;
            if (v > h->max) v = h->max;
            return v;
        }
        cum += c;
    }
    return h->max;
}

/* ---- |x| view: folds the two-sided grid onto [0, max|x|] ----
 * Grid bin k (k < 0) covers [k w, (k+1) w), i.e. |x| in ((-k-1) w, -k w]:
 * folded bin -k-1. Exact because the grid is anchored at 0. */
static double *fold_abs(const ptq_hist *h, int *n_out) {
    int64_t lo = h->start, hi = h->start + h->nbins - 1;
    int64_t top = hi >= 0 ? hi : 0;
    if (-lo - 1 > top) top = -lo - 1;
    int n = (int)(top + 1);
    double *a = calloc((size_t)n, sizeof(double));
    if (!a)
        return NULL;
    for (int j = 0; j < h->nbins; j++) {
        int64_t k = h->start + j;
        int64_t f = k >= 0 ? k : -k - 1;
        a[f] += (double)h->bins[j];
    }
    /* Trim empty tail bins. */
    while (n > 1 && a[n - 1] == 0) n--;
    *n_out = n;
    return a;
}

static float absmax(const ptq_hist *h) {
    return fabsf(h->min) > fabsf(h->max) ? fabsf(h->min) : fabsf(h->max);
}

static void clip_to_data(const ptq_hist *h, double lo, double hi, float *olo, float *ohi) {
    if (lo < h->min) lo = h->min;
    if (hi > h->max) hi = h->max;
    if (lo > hi) lo = hi;
    *olo = (float)lo;
    *ohi = (float)hi;
}

void ptq_hist_range_percentile(const ptq_hist *h, double percentile, bool symmetric, float *lo,
                               float *hi) {
    *lo = h->min;
    *hi = h->max;
    if (!h->has_grid || percentile >= 100.0)
        return;
    double tail = (100.0 - percentile) / 100.0;
    if (symmetric) {
        int n;
        double *a = fold_abs(h, &n);
        if (!a)
            return;
        double target = (1.0 - tail) * (double)h->total, cum = 0, w = ptq_hist_bin_width(h);
        double t = absmax(h);
        for (int j = 0; j < n; j++) {
            if (a[j] > 0 && cum + a[j] >= target) {
                t = w * (j + (target - cum) / a[j]);
                break;
            }
            cum += a[j];
        }
        free(a);
        clip_to_data(h, -t, t, lo, hi);
        return;
    }
    clip_to_data(h, ptq_hist_quantile(h, tail), ptq_hist_quantile(h, 1.0 - tail), lo, hi);
}

/* ---- MSE ---- */

typedef struct prefix {
    int n;
    double w, base; /* centre of bin j: base + (j + 0.5) w */
    double *s0, *s1, *s2; /* prefix sums over bins [0, j) of n, n c, n c^2 */
} prefix;

static bool prefix_init(prefix *p, const double *counts, int n, double base, double w) {
    p->n = n;
    p->w = w;
    p->base = base;
    p->s0 = calloc((size_t)n + 1, sizeof(double));
    p->s1 = calloc((size_t)n + 1, sizeof(double));
    p->s2 = calloc((size_t)n + 1, sizeof(double));
    if (!p->s0 || !p->s1 || !p->s2)
        return false;
    for (int j = 0; j < n; j++) {
        double c = base + (j + 0.5) * w, k = counts[j];
        p->s0[j + 1] = p->s0[j] + k;
        p->s1[j + 1] = p->s1[j] + k * c;
        p->s2[j + 1] = p->s2[j] + k * c * c;
    }
    return true;
}

static void prefix_free(prefix *p) {
    free(p->s0);
    free(p->s1);
    free(p->s2);
}

/* Number of bins whose centre is < v (0..n). */
static int bins_below(const prefix *p, double v) {
    double t = (v - p->base) / p->w - 0.5; /* centre j < v  <=>  j < t */
    if (t <= 0) return 0;
    double c = ceil(t);
    if (c > p->n) return p->n;
    return (int)c;
}

/* Sum over bins [a, b) of n (c - v)^2. */
static double sq_dev(const prefix *p, int a, int b, double v) {
    if (b <= a)
        return 0;
    double s0 = p->s0[b] - p->s0[a], s1 = p->s1[b] - p->s1[a], s2 = p->s2[b] - p->s2[a];
    double r = s2 - 2 * v * s1 + v * v * s0;
    return r > 0 ? r : 0;
}

/* Total squared error for representable interval [qlo, qhi] and step s. */
static double grid_error(const prefix *p, double qlo, double qhi, double s) {
    int a = bins_below(p, qlo); /* centres < qlo: clipped up */
    double t = (qhi - p->base) / p->w - 0.5;
    int b = t < 0 ? 0 : (floor(t) + 1 > p->n ? p->n : (int)floor(t) + 1); /* centres <= qhi */
    if (b < a) b = a;
    double inside = p->s0[b] - p->s0[a];
    return sq_dev(p, 0, a, qlo) + sq_dev(p, b, p->n, qhi) + inside * s * s / 12.0;
}

/* Representable interval and step of the converter's parameters for a
 * candidate range. */
static bool grid_of(bool symmetric, double lo, double hi, double *qlo, double *qhi, double *s) {
    mopt_qparams qp;
    if (symmetric) {
        if (mopt_qparams_symmetric_int16((float)lo, (float)hi, &qp, NULL) != MOPT_OK)
            return false;
        *s = qp.scale;
        *qlo = -32768.0 * qp.scale;
        *qhi = 32767.0 * qp.scale;
    } else {
        if (mopt_qparams_asymmetric((float)lo, (float)hi, -128, 127, &qp, NULL) != MOPT_OK)
            return false;
        *s = qp.scale;
        *qlo = (-128.0 - qp.zero_point) * qp.scale;
        *qhi = (127.0 - qp.zero_point) * qp.scale;
    }
    return true;
}

double ptq_hist_quant_mse(const ptq_hist *h, bool symmetric, float lo, float hi) {
    if (h->total == 0 || !h->has_grid)
        return 0;
    double *counts = malloc((size_t)h->nbins * sizeof(double));
    if (!counts)
        return NAN;
    for (int j = 0; j < h->nbins; j++) counts[j] = (double)h->bins[j];
    prefix p;
    double r = NAN, qlo, qhi, s;
    if (prefix_init(&p, counts, h->nbins, bin_lo(h, 0), ptq_hist_bin_width(h)) &&
        grid_of(symmetric, lo, hi, &qlo, &qhi, &s))
        r = grid_error(&p, qlo, qhi, s) / (double)h->total;
    prefix_free(&p);
    free(counts);
    return r;
}

void ptq_hist_range_mse(const ptq_hist *h, bool symmetric, float *lo, float *hi) {
    *lo = h->min;
    *hi = h->max;
    if (!h->has_grid)
        return;
    double w = ptq_hist_bin_width(h);
    double *counts = malloc((size_t)h->nbins * sizeof(double));
    if (!counts)
        return;
    for (int j = 0; j < h->nbins; j++) counts[j] = (double)h->bins[j];
    prefix p;
    if (!prefix_init(&p, counts, h->nbins, bin_lo(h, 0), w)) {
        prefix_free(&p);
        free(counts);
        return;
    }
    /* Candidate clip points are bin edges between the data extremes and 0
     * (the converter's range always includes 0). Coarse pass with a stride,
     * then a fine pass around the best coarse point. */
    double mn = h->min < 0 ? h->min : 0, mx = h->max > 0 ? h->max : 0;
    int na = mn < 0 ? (int)ceil(-mn / w) : 0; /* steps of w from 0 down to min */
    int nb = mx > 0 ? (int)ceil(mx / w) : 0;
    double best = INFINITY, blo = mn, bhi = mx;
    if (symmetric) {
        double top = fabs(mn) > mx ? fabs(mn) : mx;
        int nt = (int)ceil(top / w);
        int stride = nt > 256 ? nt / 256 : 1;
        int bt = nt;
        for (int pass = 0; pass < 2; pass++) {
            int from = pass == 0 ? 1 : bt - stride, to = pass == 0 ? nt : bt + stride;
            int step = pass == 0 ? stride : 1;
            if (from < 1) from = 1;
            if (to > nt) to = nt;
            for (int t = from; t <= to; t += step) {
                double T = t == nt ? top : t * w, qlo, qhi, s;
                if (!grid_of(true, -T, T, &qlo, &qhi, &s)) continue;
                double e = grid_error(&p, qlo, qhi, s);
                if (e < best) {
                    best = e;
                    bt = t;
                    blo = -T;
                    bhi = T;
                }
            }
        }
    } else {
        int sa = na > 128 ? na / 128 : 1, sb = nb > 128 ? nb / 128 : 1;
        int ba = na, bb = nb;
        for (int pass = 0; pass < 2; pass++) {
            int a0 = pass == 0 ? 0 : ba - sa, a1 = pass == 0 ? na : ba + sa;
            int b0 = pass == 0 ? 0 : bb - sb, b1 = pass == 0 ? nb : bb + sb;
            int da = pass == 0 ? sa : 1, db = pass == 0 ? sb : 1;
            if (a0 < 0) a0 = 0;
            if (a1 > na) a1 = na;
            if (b0 < 0) b0 = 0;
            if (b1 > nb) b1 = nb;
            /* Always include the exact extremes. */
            for (int a = a0;; a += da) {
                if (a > a1) {
                    if (a - da == a1) break;
                    a = a1;
                }
                double L = a == na ? mn : -a * w;
                for (int b = b0;; b += db) {
                    if (b > b1) {
                        if (b - db == b1) break;
                        b = b1;
                    }
                    double H = b == nb ? mx : b * w;
                    if (L == 0 && H == 0) continue;
                    double qlo, qhi, s;
                    if (!grid_of(false, L, H, &qlo, &qhi, &s)) continue;
                    double e = grid_error(&p, qlo, qhi, s);
                    if (e < best) {
                        best = e;
                        ba = a;
                        bb = b;
                        blo = L;
                        bhi = H;
                    }
                }
            }
        }
    }
    prefix_free(&p);
    free(counts);
    clip_to_data(h, blo, bhi, lo, hi);
}

/* ---- KL divergence (TensorRT entropy calibration) ---- */

int ptq_kl_threshold_bins(const double *counts, int n, int levels) {
    if (n <= levels)
        return n;
    double *pd = malloc((size_t)n * sizeof(double)), *qd = malloc((size_t)n * sizeof(double));
    if (!pd || !qd) {
        free(pd);
        free(qd);
        return n;
    }
    double *cum = malloc(((size_t)n + 1) * sizeof(double));
    if (!cum) {
        free(pd);
        free(qd);
        return n;
    }
    cum[0] = 0;
    for (int j = 0; j < n; j++) cum[j + 1] = cum[j] + counts[j];
    int best_i = n;
    double best_kl = INFINITY;
    /* Candidate i keeps bins [0, i); everything above is folded into bin
     * i-1 (the clipped values land on the top level). Large histograms are
     * searched with a stride; i = n is always a candidate. */
    int stride = n > 4096 ? n / 4096 : 1;
    for (int i = levels;; i += stride) {
        if (i > n) {
            if (i - stride >= n) break;
            i = n;
        }
        double outliers = cum[n] - cum[i];
        memcpy(pd, counts, (size_t)i * sizeof(double));
        pd[i - 1] += outliers;
        double psum = cum[n];
        /* Q: merge bins [0, i) into `levels` groups (the last takes the
         * remainder), spread each group's mass over its nonzero bins. */
        int per = i / levels;
        double qsum = 0;
        for (int g = 0; g < levels; g++) {
            int a = g * per, b = g == levels - 1 ? i : a + per;
            double mass = cum[b] - cum[a];
            int nz = 0;
            for (int j = a; j < b; j++) nz += counts[j] != 0;
            for (int j = a; j < b; j++) qd[j] = counts[j] != 0 ? mass / nz : 0;
            qsum += mass;
        }
        if (psum <= 0 || qsum <= 0)
            continue;
        /* KL(P || Q); a bin where P has mass and Q none (possible at i-1
         * after adding the outliers) gets a small epsilon, as the reference
         * implementations smooth it. */
        double kl = 0;
        const double eps = 1e-4;
        for (int j = 0; j < i; j++) {
            if (pd[j] <= 0) continue;
            double pp = pd[j] / psum, qq = qd[j] / qsum;
            if (qq <= 0) qq = eps / (double)i;
            kl += pp * log(pp / qq);
        }
        if (kl < best_kl) {
            best_kl = kl;
            best_i = i;
        }
    }
    free(cum);
    free(pd);
    free(qd);
    return best_i;
}

/* One side of the grid as a histogram of |x|: side > 0 takes the bins
 * k >= 0, side < 0 the bins k < 0 folded (bin k -> -k-1). */
static double *one_side(const ptq_hist *h, int side, int *n_out) {
    int64_t top = 0;
    for (int j = 0; j < h->nbins; j++) {
        int64_t k = h->start + j;
        int64_t f = side > 0 ? k : -k - 1;
        if (f >= 0 && h->bins[j] && f > top) top = f;
    }
    int n = (int)(top + 1);
    double *a = calloc((size_t)n, sizeof(double));
    if (!a)
        return NULL;
    for (int j = 0; j < h->nbins; j++) {
        int64_t k = h->start + j;
        int64_t f = side > 0 ? k : -k - 1;
        if (f >= 0 && f < n) a[f] += (double)h->bins[j];
    }
    *n_out = n;
    return a;
}

/* Exact zeros (half of a ReLU output, typically) are left out of the KL
 * search: 0 is always exactly representable, so they carry no quantization
 * error, but as a spike in the first bin they would dominate the
 * divergence of every merged candidate and drive the threshold down to the
 * smallest one. */
void ptq_hist_range_kl(const ptq_hist *h, bool symmetric, float *lo, float *hi) {
    *lo = h->min;
    *hi = h->max;
    if (!h->has_grid)
        return;
    double w = ptq_hist_bin_width(h);
    if (symmetric || h->min >= 0 || h->max <= 0) {
        /* One side, or symmetric int16: the histogram of |x|. Levels on the
         * clipped side: 32768 for int16 (which then never clips), 255 for
         * one-sided int8 (the converter's range starts at 0). */
        int n;
        double *a = fold_abs(h, &n);
        if (!a)
            return;
        a[0] -= (double)h->zeros; /* see below */
        if (a[0] < 0) a[0] = 0;
        int i = ptq_kl_threshold_bins(a, n, symmetric ? 32768 : 255);
        free(a);
        double t = i >= n ? (double)absmax(h) : (double)i * w;
        clip_to_data(h, -t, t, lo, hi);
        return;
    }
    /* Two-sided int8 data: each side on its own, with the share of the 255
     * steps its extent gets in the full range. */
    double span = (double)h->max - (double)h->min;
    int lp = (int)floor(255.0 * h->max / span + 0.5);
    if (lp < 8) lp = 8;
    if (lp > 247) lp = 247;
    int ln = 255 - lp;
    double tpos = h->max, tneg = -(double)h->min;
    int n;
    double *a = one_side(h, 1, &n);
    if (a) {
        a[0] -= (double)h->zeros;
        if (a[0] < 0) a[0] = 0;
        int i = ptq_kl_threshold_bins(a, n, lp);
        if (i < n) tpos = (double)i * w;
        free(a);
    }
    a = one_side(h, -1, &n);
    if (a) {
        int i = ptq_kl_threshold_bins(a, n, ln);
        if (i < n) tneg = (double)i * w;
        free(a);
    }
    clip_to_data(h, -tneg, tpos, lo, hi);
}
