/* km_fast.c - Lloyd's iterations on the sorted weights, and the final assignment by table look-up.
 *
 * In one dimension the nearest-centroid assignment is monotone in the weight, so each cluster is a
 * contiguous range of the sorted weights, bounded by thresholds: t_j = the smallest float whose
 * nearest centroid (km_nearest itself, ties and float rounding included) is above j. After one
 * sort, an iteration needs no pass over the weights: the thresholds come from a binary search over
 * float keys, their positions from a lower_bound in the sorted keys, each cluster's count from the
 * positions and its exact sum from prefix sums (every B-th position stored, the rest added), then
 * km_update as the reference does. An assignment changes iff a position changes, so the stopping
 * rule is the reference's too. The final codes for every element come from a qq_stepfn table
 * built on the final centroids and its value table (AVX2, eight lanes per step).
 */
#include <stdlib.h>
#include <string.h>

#include "km_impl.h"
#include "../common/qq_sort.h"
#include "../common/qq_stepfn.h"

enum { B = 16 }; /* prefix sums stored every B sorted positions */

typedef struct sorted_sums {
    qq_sorted s;
    km_i128 *prefix; /* prefix[b] = sum of the first b * B sorted weights */
} sorted_sums;

static km_i128 block_sum(const km_problem *p, const uint32_t *key, int64_t a, int64_t b)
{
    km_i128 s = 0;
    for (int64_t i = a; i < b; i++)
        s += km_fixed_of(&p->fixed, qq_okey_float(key[i]));
    return s;
}

static int build_sums(const km_problem *p, const float *x, int64_t n, sorted_sums *ss)
{
    if (qq_sort_keys(x, n, p->zero_code, &ss->s) != 0)
        return -1;
    int64_t nb = ss->s.count / B;
    ss->prefix = malloc(sizeof(km_i128) * (size_t)(nb + 1));
    if (!ss->prefix)
        return -1;
    ss->prefix[0] = 0;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++)
        ss->prefix[b + 1] = block_sum(p, ss->s.key, b * B, (b + 1) * B);
    for (int64_t b = 0; b < nb; b++)
        ss->prefix[b + 1] += ss->prefix[b];
    return 0;
}

/* Exact sum of the first i sorted weights. */
static km_i128 sum_to(const km_problem *p, const sorted_sums *ss, int64_t i)
{
    return ss->prefix[i / B] + block_sum(p, ss->s.key, i / B * B, i);
}

typedef struct cent {
    const float *c;
    int k, j;
} cent;

/* Sorted position of threshold j for each j < k - 1 (the count of weights whose nearest centroid
 * is at most j); pos[k - 1] = count. */
static void positions(const km_problem *p, const sorted_sums *ss, const float *c, int64_t *pos)
{
    uint64_t lo = qq_okey(p->lo), hi = (uint64_t)qq_okey(p->hi) + 1; /* keys in [lo, hi) */
    for (int j = 0; j + 1 < p->k; j++) {
        uint64_t a = lo, b = hi; /* first key whose nearest centroid is above j */
        while (a < b) {
            uint64_t mid = a + (b - a) / 2;
            if (km_nearest(c, p->k, qq_okey_float((uint32_t)mid)) > j)
                b = mid;
            else
                a = mid + 1;
        }
        lo = a; /* thresholds do not decrease with j */
        pos[j] = a >= hi ? ss->s.count : qq_sorted_lower_bound(&ss->s, (uint32_t)a);
    }
    pos[p->k - 1] = ss->s.count;
}

static void update(const km_problem *p, const sorted_sums *ss, const int64_t *pos, float *c)
{
    km_i128 sum[256], prev = 0;
    int64_t cnt[256];
    for (int j = 0; j < p->k; j++) {
        int64_t a = j ? pos[j - 1] : 0;
        km_i128 to = sum_to(p, ss, pos[j]);
        cnt[j] = pos[j] - a;
        sum[j] = to - prev;
        prev = to;
    }
    km_update(p, c, sum, cnt);
}

int64_t km_lloyd_fast(const km_problem *p, const float *x, int64_t n, float *c, int64_t max_iter, int *converged)
{
    sorted_sums ss = {{0}, NULL};
    if (build_sums(p, x, n, &ss) != 0) {
        qq_sorted_free(&ss.s);
        free(ss.prefix);
        return -1;
    }
    int64_t pos[256], next[256], it = 0;
    int changed = 1;
    positions(p, &ss, c, pos);
    while (changed && it < max_iter) {
        update(p, &ss, pos, c);
        positions(p, &ss, c, next);
        changed = memcmp(pos, next, sizeof(int64_t) * (size_t)p->k) != 0;
        memcpy(pos, next, sizeof(int64_t) * (size_t)p->k);
        it++;
    }
    *converged = !changed;
    qq_sorted_free(&ss.s);
    free(ss.prefix);
    return it;
}

/* ---------------------------------------------------------------- the final assignment */

static int nearest_fn(const void *ctx, float x)
{
    const cent *t = ctx;
    return km_nearest(t->c, t->k, x);
}

/* The step table and its value table (centroid values) of the final code book. */
typedef struct tables {
    qq_stepfn step;
    qq_valtab val;
} tables;

#ifdef QQ_X86
QQ_AVX2 static int64_t assign_avx2(const km_problem *p, const tables *tb, const float *c, const float *x, int64_t n,
                                   const km_out *o, int nt)
{
    const __m256i off = _mm256_set1_epi32(p->zero_code);
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i k[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * j), val;
            k[j] = _mm256_add_epi32(qq_valtab_avx2(&tb->val, &tb->step, c, v, &val), off);
            if (p->zero_code) { /* exact zeros (either sign) get code 0, value 0 */
                __m256 z = _mm256_cmp_ps(v, zero, _CMP_EQ_OQ);
                k[j] = _mm256_andnot_si256(_mm256_castps_si256(z), k[j]);
                val = _mm256_andnot_ps(z, val);
            }
            if (o->deq)
                qq_store8(o->deq + i + 8 * j, val, nt);
        }
        _mm256_storeu_si256((__m256i *)(o->codes + i), qq_pack_u8x32(k[0], k[1], k[2], k[3]));
    }
    return i;
}
#endif

enum { CHUNK = 1 << 14 };

int km_assign_fast(const km_problem *p, const float *x, int64_t n, const float *c, const km_out *o)
{
    tables *tb = malloc(sizeof *tb);
    cent t = {c, p->k, 0};
    if (!tb || !qq_have_avx2() || qq_stepfn_build(&tb->step, p->k - 1, p->lo, p->hi, nearest_fn, &t) != 0) {
        free(tb); /* crowded thresholds (many empty clusters) or no AVX2: the reference loop */
        return km_assign_ref(p, x, n, c, o);
    }
    qq_valtab_build(&tb->val, &tb->step, c, 16, 8192); /* the sort buffers want the cache */
    int nt = o->deq && (int64_t)sizeof(float) * n >= QQ_NT_MIN;
    int64_t nch = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t a = ch * CHUNK, len = n - a < CHUNK ? n - a : CHUNK, done = 0;
#ifdef QQ_X86
            done = assign_avx2(p, tb, c, x + a, len, &(km_out){o->codes + a, o->book, o->deq ? o->deq + a : NULL}, nt);
#endif
            for (int64_t i = a + done; i < a + len; i++) {
                int code = p->zero_code && x[i] == 0.0f ? 0 : qq_stepfn_eval(&tb->step, x[i]) + p->zero_code;
                o->codes[i] = (uint8_t)code;
                if (o->deq)
                    o->deq[i] = o->book[code];
            }
        }
        qq_sfence(); /* this thread's streamed values, before the region ends */
    }
    free(tb);
    return KM_OK;
}
