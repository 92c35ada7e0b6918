/* km_ref.c - the plain Lloyd iterations: every iteration is one pass over the weights (assign each
 * to its nearest centroid by binary search, add it to its cluster's exact sum), then the update.
 * Sums are per chunk of CHUNK elements, added afterwards; being exact integers, the split does not
 * matter. This is the reference km_fast.c is tested against. */
#include <stdlib.h>
#include <string.h>

#include "km_impl.h"

enum { CHUNK = 1 << 15 };

typedef struct sums {
    km_i128 *sum; /* [chunks][k] */
    int64_t *cnt; /* [chunks][k] */
} sums;

static int skip(const km_problem *p, float x) { return p->zero_code && x == 0.0f; }

/* Assigns every clustered element; returns how many assignments changed. */
static int64_t assign(const km_problem *p, const float *x, int64_t n, const float *c, uint8_t *a, sums *s)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK, changed = 0;
    int k = p->k;
#pragma omp parallel for schedule(static) reduction(+ : changed)
    for (int64_t ch = 0; ch < nch; ch++) {
        km_i128 *sum = s->sum + ch * k;
        int64_t *cnt = s->cnt + ch * k;
        memset(sum, 0, sizeof(km_i128) * (size_t)k);
        memset(cnt, 0, sizeof(int64_t) * (size_t)k);
        int64_t end = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            if (skip(p, x[i]))
                continue;
            int j = km_nearest(c, k, x[i]);
            changed += a[i] != (uint8_t)j;
            a[i] = (uint8_t)j;
            sum[j] += km_fixed_of(&p->fixed, x[i]);
            cnt[j]++;
        }
    }
    return changed;
}

static void update(const km_problem *p, float *c, int64_t nch, const sums *s)
{
    km_i128 sum[256];
    int64_t cnt[256];
    for (int j = 0; j < p->k; j++) {
        sum[j] = 0;
        cnt[j] = 0;
        for (int64_t ch = 0; ch < nch; ch++) {
            sum[j] += s->sum[ch * p->k + j];
            cnt[j] += s->cnt[ch * p->k + j];
        }
    }
    km_update(p, c, sum, cnt);
}

int64_t km_lloyd_ref(const km_problem *p, const float *x, int64_t n, float *c, int64_t max_iter, int *converged)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK;
    sums s = {malloc(sizeof(km_i128) * (size_t)(nch * p->k + 1)), malloc(sizeof(int64_t) * (size_t)(nch * p->k + 1))};
    uint8_t *a = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!s.sum || !s.cnt || !a) {
        free(s.sum);
        free(s.cnt);
        free(a);
        return -1;
    }
    assign(p, x, n, c, a, &s);
    int64_t it = 0, changed = 1;
    while (changed && it < max_iter) {
        update(p, c, nch, &s);
        changed = assign(p, x, n, c, a, &s);
        it++;
    }
    *converged = changed == 0;
    free(s.sum);
    free(s.cnt);
    free(a);
    return it;
}

int km_assign_ref(const km_problem *p, const float *x, int64_t n, const float *c, const km_out *o)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int code = skip(p, x[i]) ? 0 : km_nearest(c, p->k, x[i]) + p->zero_code;
        o->codes[i] = (uint8_t)code;
        if (o->deq)
            o->deq[i] = o->book[code];
    }
    return KM_OK;
}
