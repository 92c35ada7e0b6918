/* km_core.c - the definition of the kmeans quantizer shared by the reference and fast paths, and
 * the driver.
 *
 * Deep Compression's weight sharing (Han, Mao & Dally, ICLR 2016) per tensor: k centroids start
 * evenly spaced over [min, max]; Lloyd's iterations alternate assignment (each weight to its
 * nearest centroid, the lower on an exact tie) and update (each centroid to the mean of its
 * weights) until no assignment changes, at most max_iter updates. An empty cluster keeps its
 * centroid. Pruned weights: when the tensor has exact zeros, code 0 is reserved for the value 0.0
 * and given to exactly the zeros; the other 2^bits - 1 centroids are fitted to the nonzero weights
 * (so pruned weights stay exactly 0 and no other weight becomes 0). Without zeros all 2^bits
 * centroids are fitted to all weights.
 * Cluster means come from exact integer sums (km_fixed), so they do not depend on the order in
 * which weights are added: that is what lets the fast path sum sorted ranges by prefix sums and
 * still give the reference's bytes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "km_impl.h"

enum { CHUNK = 1 << 15 };

static int exponent_of(uint32_t absbits) /* x = m 2^e with the 24-bit significand m */
{
    int field = (int)(absbits >> 23);
    return (field > 0 ? field : 1) - 150;
}

km_i128 km_fixed_of(const km_fixed *f, float x)
{
    uint32_t u = qq_bits(x), a = u & 0x7FFFFFFFu;
    if (a == 0)
        return 0;
    uint32_t m = (a & 0x7FFFFFu) | (a >= 0x800000u ? 0x800000u : 0u);
    int sh = exponent_of(a) - f->lsb;
    km_i128 v = sh >= 0 ? (km_i128)m << sh : (km_i128)(sh > -32 ? m >> -sh : 0u);
    return u >> 31 ? -v : v;
}

float km_mean(const km_fixed *f, km_i128 sum, int64_t count)
{
    return (float)(ldexp((double)sum, f->lsb) / (double)count);
}

int km_nearest(const float *c, int k, float x)
{
    int pos = 0, len = k; /* first index with c[pos] >= x (k if none) */
    while (len > 0) {
        int half = len / 2;
        if (c[pos + half] < x) {
            pos += half + 1;
            len -= half + 1;
        } else {
            len = half;
        }
    }
    if (pos == k)
        return k - 1;
    if (pos == 0)
        return 0;
    return x - c[pos - 1] <= c[pos] - x ? pos - 1 : pos;
}

void km_init(const km_problem *p, float *c)
{
    for (int j = 0; j < p->k; j++)
        c[j] = p->k > 1 ? p->lo + (p->hi - p->lo) * ((float)j / (float)(p->k - 1)) : p->lo;
    if (p->k > 1)
        c[p->k - 1] = p->hi; /* exact, whatever the rounding of the expression above */
}

void km_update(const km_problem *p, float *c, const km_i128 *sum, const int64_t *count)
{
    for (int j = 0; j < p->k; j++) {
        if (count[j] > 0)
            c[j] = km_mean(&p->fixed, sum[j], count[j]);
        if (j > 0 && c[j] < c[j - 1])
            c[j] = c[j - 1];
    }
}

/* One pass: zeros, the range and exponents of the nonzero weights, finiteness. */
typedef struct scan {
    int64_t zeros;
    float lo, hi;
    uint32_t amin, amax; /* |x| bits of the nonzero weights */
    int bad;
} scan;

static scan scan_weights(const float *x, int64_t n)
{
    int64_t zeros = 0;
    float lo = INFINITY, hi = -INFINITY;
    uint32_t amin = UINT32_MAX, amax = 0;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : zeros) reduction(min : lo, amin) \
    reduction(max : hi, amax) reduction(| : bad)
    for (int64_t i = 0; i < n; i++) {
        uint32_t a = qq_bits(x[i]) & 0x7FFFFFFFu;
        bad |= a >= QQ_INF_BITS;
        if (a == 0) {
            zeros++;
            continue;
        }
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        amin = a < amin ? a : amin;
        amax = a > amax ? a : amax;
    }
    scan s = {zeros, lo, hi, amin, amax, bad};
    return s;
}

static km_problem make_problem(const scan *s, int64_t n, int bits)
{
    km_problem p = {1 << bits, s->zeros > 0, n - s->zeros, s->lo, s->hi, {0}};
    p.k -= p.zero_code;
    if (p.count == 0) {
        p.lo = p.hi = 0.0f;
        return p;
    }
    int emin = exponent_of(s->amin), emax = exponent_of(s->amax);
    p.fixed.lsb = emin > emax - 71 ? emin : emax - 71;
    return p;
}

int km_run(const kmeans_cfg *cfg, const qh_tensor *w, const km_out *o, int fast, km_info *info)
{
    const float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w);
    scan s = scan_weights(x, n);
    if (s.bad)
        return KM_NOT_FINITE;
    km_problem p = make_problem(&s, n, (int)cfg->bits);
    float c[256];
    km_init(&p, c);
    int converged = 1;
    int64_t it = 0;
    if (p.count > 0)
        it = fast ? km_lloyd_fast(&p, x, n, c, cfg->max_iter, &converged)
                  : km_lloyd_ref(&p, x, n, c, cfg->max_iter, &converged);
    if (it < 0)
        return KM_NOMEM;
    if (p.zero_code)
        o->book[0] = 0.0f;
    memcpy(o->book + p.zero_code, c, sizeof(float) * (size_t)p.k);
    int st = fast ? km_assign_fast(&p, x, n, c, o) : km_assign_ref(&p, x, n, c, o);
    if (info) {
        info->updates = it;
        info->converged = converged;
    }
    return st;
}
