/* km_impl.h - internals of the kmeans quantizer shared by its files: kmeans.c (parameters,
 * checks, outputs), km_core.c (the definition: initialization, nearest centroid, exact cluster
 * sums, the driver), km_ref.c (the plain Lloyd iterations: one pass over the weights each),
 * km_fast.c (the same iterations on the sorted weights: O(k) per iteration after one sort). */
#ifndef QH_KM_IMPL_H
#define QH_KM_IMPL_H

#include <stdint.h>

#include "qhost/qh_plugin.h"
#include "../common/qq_simd.h"

typedef struct kmeans_cfg {
    int64_t bits;
    int64_t max_iter;
} kmeans_cfg;

__extension__ typedef __int128 km_i128;

/* Exact sums: a weight x = +-m 2^e (m the 24-bit significand) counts as +-m 2^(e - L) in a 128-bit
 * integer, L = max(smallest e, largest e - 71) so that 2^31 terms cannot overflow; every weight
 * within 2^71 of the largest magnitude is exact, smaller ones are truncated toward zero. Sums of
 * these integers do not depend on the order of addition, so any split of the work agrees. */
typedef struct km_fixed {
    int lsb; /* L */
} km_fixed;

km_fixed km_fixed_for(const float *x, int64_t n);
km_i128 km_fixed_of(const km_fixed *f, float x);
/* Centroid of a cluster: (float)((double)sum 2^L / count). */
float km_mean(const km_fixed *f, km_i128 sum, int64_t count);

/* The centroids being fitted: k of them, ascending, over the nonzero weights when the tensor has
 * exact zeros (code 0 is then reserved for 0.0 and centroid j has code j + 1), else over all. */
typedef struct km_problem {
    int k;          /* centroids fitted */
    int zero_code;  /* 1: code 0 = 0.0, the others shifted by one */
    int64_t count;  /* weights clustered */
    float lo, hi;   /* their range */
    km_fixed fixed;
} km_problem;

/* Index of the centroid nearest to x in the sorted c[0..k): the first centroid >= x and the one
 * before are the candidates, the lower wins a tie (distances compared in float). */
int km_nearest(const float *c, int k, float x);
/* c_j = lo + (hi - lo) j / (k - 1), c_{k-1} = hi (Deep Compression's linear initialization). */
void km_init(const km_problem *p, float *c);
/* The update step shared by both paths: c_j = the mean of cluster j (sum[j] / count[j]) if it is
 * not empty, else unchanged; then c_j = max(c_j, c_{j-1}) in order, which keeps the book sorted
 * (a no-op unless rounding of a mean would put two centroids an ulp out of order). */
void km_update(const km_problem *p, float *c, const km_i128 *sum, const int64_t *count);

/* Where one tensor's results go: codes (one per element), book (2^bits entries), deq (NULL:
 * codes only). */
typedef struct km_out {
    uint8_t *codes;
    float *book;
    float *deq;
} km_out;

typedef struct km_info {
    int64_t updates;
    int converged;
} km_info;

enum { KM_OK = 0, KM_NOT_FINITE, KM_NOMEM };
/* Quantizes w (F32) into o with the reference iterations (fast = 0) or the sorted ones (same
 * bytes). info may be NULL. */
int km_run(const kmeans_cfg *cfg, const qh_tensor *w, const km_out *o, int fast, km_info *info);

/* Lloyd's iterations from c (k ascending centroids) until no assignment changes or max_iter
 * updates; c holds the result. Return the updates done (negative: out of memory); *converged. */
int64_t km_lloyd_ref(const km_problem *p, const float *x, int64_t n, float *c, int64_t max_iter, int *converged);
int64_t km_lloyd_fast(const km_problem *p, const float *x, int64_t n, float *c, int64_t max_iter, int *converged);
/* codes / deq of every element for the final code book (book = 2^bits entries, codes of fitted
 * centroids offset by zero_code): the reference per-element search or the step table. */
int km_assign_ref(const km_problem *p, const float *x, int64_t n, const float *c, const km_out *o);
int km_assign_fast(const km_problem *p, const float *x, int64_t n, const float *c, const km_out *o);

#endif /* QH_KM_IMPL_H */
