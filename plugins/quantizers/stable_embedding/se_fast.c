/* se_fast.c - canonical stable embedding without a comparison sort and without scattered writes.
 *
 * The result must be the reference's: perm[i] = rank of element i in the stable order by |w| (ties
 * by flat index), group = rank / g, scale = the group's absmax, codes and values per element.
 * Keys: k = bits(w) & 0x7FFFFFFF orders |w| (finite floats); bucket = k >> 15 (65536 buckets),
 * low = k & 0x7FFF. Each thread owns one contiguous range of the flat tensor in every pass:
 *   1. histogram of the buckets per thread (and the finiteness check: a key >= +inf's);
 *   2. bucket start ranks, and each thread's offset inside each bucket (threads in index order);
 *      the low keys are scattered into bucket order: within a bucket they stay in flat index order;
 *   3. per bucket (OpenMP dynamic), in the cache: a stable sort of (low, position) gives the rank of
 *      each position; the bucket's group ends give the group scales (the key of a group's last
 *      rank is its absmax);
 *   4. each thread walks its range again in flat order, replays the offsets of pass 2 to find each
 *      element's position in bucket order, reads its rank there, and writes perm, code and value
 *      at the element's own index: all writes are sequential, the reads of pass 3's ranks advance
 *      through ~one cache line per active bucket.
 * Ranks are exact and each output is a function of the element only, so the bytes do not depend
 * on the number of threads; the tests compare them with the reference sort.
 */
#include <stdlib.h>
#include <string.h>

#include "../common/qq_mem.h"
#include "../common/qq_threads.h"
#include "../fp8/fp8_simd.h"
#include "se_impl.h"

enum { NB = 1 << 16, LOW_MASK = 0x7FFF, SMALL = 32, PACK_BITS = 17, PACK_MAX = 1 << PACK_BITS };

typedef struct shared {
    const se_coder *c;
    const float *x;
    int64_t n, g;
    const se_out *o;
    uint16_t *low;
    uint32_t *rank;
    uint32_t *hist, *off;    /* [threads][NB]: counts, then offsets */
    uint32_t *start, *count; /* [NB] */
    uint32_t div_m;          /* R / g = (div_m * R) >> div_s for every R < 2^31 (Granlund & Montgomery */
    int div_s;               /* 1994: div_m = ceil(2^(31 + l) / g), l = ceil(log2 g), div_s = 31 + l) */
    int bad;
} shared;

static inline uint32_t group_of(const shared *sh, uint32_t r)
{
    return (uint32_t)(((uint64_t)sh->div_m * r) >> sh->div_s);
}

static void set_divisor(shared *sh, int64_t g)
{
    int l = 0;
    while (((int64_t)1 << l) < g)
        l++;
    sh->div_s = 31 + l;
    sh->div_m = (uint32_t)((((uint64_t)1 << sh->div_s) + (uint64_t)g - 1) / (uint64_t)g);
}

/* ---------------------------------------------------------------- passes 1 and 2 */

static int hist_pass(const shared *sh, uint32_t *h, int64_t a, int64_t b)
{
    uint32_t kmax = 0;
    memset(h, 0, sizeof(uint32_t) * NB);
    for (int64_t i = a; i < b; i++) {
        uint32_t k = qq_bits(sh->x[i]) & 0x7FFFFFFFu;
        kmax = k > kmax ? k : kmax;
        h[k >> 15]++;
    }
    return kmax >= QQ_INF_BITS;
}

/* Bucket starts and per-thread offsets: threads in index order inside each bucket. */
static void combine(shared *sh, int nt)
{
    uint32_t pos = 0;
    for (int b = 0; b < NB; b++) {
        sh->start[b] = pos;
        for (int t = 0; t < nt; t++) {
            sh->off[(size_t)t * NB + b] = pos;
            pos += sh->hist[(size_t)t * NB + b];
        }
        sh->count[b] = pos - sh->start[b];
    }
}

static void scatter_pass(const shared *sh, uint32_t *off, int64_t a, int64_t b)
{
    uint32_t key[32];
    for (int64_t i0 = a; i0 < b; i0 += 32) {
        int m = b - i0 < 32 ? (int)(b - i0) : 32;
        for (int j = 0; j < m; j++) /* vectorized by the compiler */
            key[j] = qq_bits(sh->x[i0 + j]) & 0x7FFFFFFFu;
        for (int j = 0; j < m; j++) {
            uint32_t pos = off[key[j] >> 15]++;
            sh->low[pos] = (uint16_t)(key[j] & LOW_MASK);
            __builtin_prefetch(sh->low + pos + 64, 1); /* this bucket's next lines: thousands of */
        }                                              /* streams defeat the hardware prefetcher */
    }
}

/* ---------------------------------------------------------------- pass 3: ranks inside a bucket */

/* Group ends (a group's last rank: (G + 1) g - 1, or n - 1 for the short last group) met while
 * walking a bucket's ranks in order; the key there is the group's absmax, hence its scale. */
static uint32_t first_end(const shared *sh, uint32_t s)
{
    uint64_t e = (uint64_t)group_of(sh, s) * (uint64_t)sh->g + (uint64_t)sh->g - 1;
    return (uint32_t)(e > (uint64_t)sh->n - 1 ? (uint64_t)sh->n - 1 : e);
}

static uint32_t set_scale(const shared *sh, uint32_t end, uint32_t bucket, uint32_t low)
{
    sh->o->scale[group_of(sh, end)] = se_coder_scale(sh->c, qq_float(bucket << 15 | low));
    if (end == (uint64_t)sh->n - 1)
        return UINT32_MAX; /* the last group: no end follows */
    uint64_t e = (uint64_t)end + (uint64_t)sh->g;
    return (uint32_t)(e > (uint64_t)sh->n - 1 ? (uint64_t)sh->n - 1 : e);
}

/* Packed (low << 17 | position) values of a bucket with c < 2^17 elements, sorted; stable because
 * positions are part of the value. */
static void sort_packed(uint32_t *v, uint32_t *tmp, uint32_t c)
{
    if (c <= SMALL) {
        for (uint32_t i = 1; i < c; i++) {
            uint32_t t = v[i], j = i;
            for (; j > 0 && v[j - 1] > t; j--)
                v[j] = v[j - 1];
            v[j] = t;
        }
        return;
    }
    uint32_t ca[257] = {0}, cb[129] = {0}; /* LSD: low's bits 0..7, then 8..14 */
    for (uint32_t i = 0; i < c; i++) {
        ca[((v[i] >> PACK_BITS) & 0xFF) + 1]++;
        cb[(v[i] >> (PACK_BITS + 8)) + 1]++;
    }
    for (int i = 0; i < 256; i++)
        ca[i + 1] += ca[i];
    for (int i = 0; i < 128; i++)
        cb[i + 1] += cb[i];
    for (uint32_t i = 0; i < c; i++)
        tmp[ca[(v[i] >> PACK_BITS) & 0xFF]++] = v[i];
    for (uint32_t i = 0; i < c; i++)
        v[cb[tmp[i] >> (PACK_BITS + 8)]++] = tmp[i];
}

/* Per-thread working memory of pass 3. */
typedef struct work {
    uint32_t v[PACK_MAX], tmp[PACK_MAX], bins[LOW_MASK + 1];
} work;

static void rank_bucket(const shared *sh, uint32_t b, work *w)
{
    uint32_t s = sh->start[b], c = sh->count[b];
    const uint16_t *lo = sh->low + s;
    uint32_t *rk = sh->rank + s;
    uint32_t end = first_end(sh, s);
    for (uint32_t q = 0; q < c; q += 16) /* the ranks are written in random order: fetch their lines */
        __builtin_prefetch(rk + q, 1);   /* now, while the bucket is sorted */
    if (c < PACK_MAX) {
        for (uint32_t q = 0; q < c; q++)
            w->v[q] = (uint32_t)lo[q] << PACK_BITS | q;
        sort_packed(w->v, w->tmp, c);
        for (uint32_t r = 0; r < c; r++) {
            rk[w->v[r] & (PACK_MAX - 1)] = s + r;
            if (s + r == end)
                end = set_scale(sh, end, b, w->v[r] >> PACK_BITS);
        }
        return;
    }
    /* a large bucket (many equal or near-equal magnitudes, e.g. pruned zeros): counting sort */
    memset(w->bins, 0, sizeof w->bins);
    for (uint32_t q = 0; q < c; q++)
        w->bins[lo[q]]++;
    uint32_t at = 0;
    for (uint32_t l = 0; l <= LOW_MASK; l++) {
        uint32_t m = w->bins[l];
        w->bins[l] = at;
        for (at += m; end < s + at;) /* group ends inside this bin */
            end = set_scale(sh, end, b, l);
    }
    for (uint32_t q = 0; q < c; q++)
        rk[q] = s + w->bins[lo[q]]++;
}

/* ---------------------------------------------------------------- pass 4: outputs in flat order */

#ifdef QQ_X86
/* The group (rank / g) of 8 ranks < 2^31, as group_of. */
QQ_AVX2 static inline __m256i group8(const shared *sh, __m256i r)
{
    const __m256i m = _mm256_set1_epi32((int)sh->div_m);
    const __m128i s = _mm_cvtsi32_si128(sh->div_s);
    __m256i even = _mm256_srl_epi64(_mm256_mul_epu32(r, m), s);
    __m256i odd = _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(r, 32), m), s);
    return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

/* 32 elements from x with ranks r: perm, codes, values (the scale of each element's group). */
QQ_AVX2 static void encode32_avx2(const shared *sh, const float *x, const uint32_t *r, int32_t *perm, uint8_t *codes,
                                  float *deq, int nt)
{
    const se_coder *c = sh->c;
    __m256i k[4];
    fp8_vfmt f;
    fp8_vfmt_init(&f, c->fmt); /* E4M3; unused by the dynamic tree */
    for (int j = 0; j < 4; j++) {
        __m256i rv = _mm256_loadu_si256((const __m256i *)(r + 8 * j));
        qq_store8((float *)(perm + 8 * j), _mm256_castsi256_ps(rv), nt);
        __m256 sv = _mm256_i32gather_ps(sh->o->scale, group8(sh, rv), 4);
        __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + 8 * j), sv), val;
        if (c->kind == SE_K_OCP)
            k[j] = fp8_encode8(&f, v, &val);
        else
            k[j] = qq_valtab_avx2(&c->table, &c->nearest, c->book, v, &val);
        if (deq)
            qq_store8(deq + 8 * j, _mm256_mul_ps(val, sv), nt);
    }
    _mm256_storeu_si256((__m256i *)codes, qq_pack_u8x32(k[0], k[1], k[2], k[3]));
}
#endif

/* The element loop of a short tail (or without AVX2): the reference encoder. */
static void encode_scalar(const shared *sh, int64_t i0, int m, const uint32_t *r)
{
    const se_coder *c = sh->c;
    const se_out *o = sh->o;
    for (int j = 0; j < m; j++) {
        int64_t i = i0 + j;
        float s = o->scale[group_of(sh, r[j])];
        int k = se_coder_encode(c, sh->x[i] / s);
        o->perm[i] = (int32_t)r[j];
        ((uint8_t *)o->codes)[i] = (uint8_t)k;
        if (o->deq)
            o->deq[i] = c->book[k] * s;
    }
}

static void encode_pass(const shared *sh, uint32_t *off, const uint32_t *h, int64_t a, int64_t b, int nt)
{
    for (int bk = 0; bk < NB; bk++) /* undo pass 2's increments */
        off[bk] -= h[bk];
    const se_out *o = sh->o;
    int avx2 = qq_have_avx2();
    uint32_t bucket[32], rb[32];
    for (int64_t i0 = a; i0 < b; i0 += 32) {
        int m = b - i0 < 32 ? (int)(b - i0) : 32;
        for (int j = 0; j < m; j++) /* vectorized by the compiler */
            bucket[j] = (qq_bits(sh->x[i0 + j]) & 0x7FFFFFFFu) >> 15;
        for (int j = 0; j < m; j++) { /* replay pass 2: the element's position in bucket order */
            uint32_t pos = off[bucket[j]]++;
            rb[j] = sh->rank[pos];
            __builtin_prefetch(sh->rank + pos + 32); /* as in pass 2 */
        }
#ifdef QQ_X86
        if (m == 32 && avx2) {
            encode32_avx2(sh, sh->x + i0, rb, o->perm + i0, (uint8_t *)o->codes + i0, o->deq ? o->deq + i0 : NULL, nt);
            continue;
        }
#endif
        (void)avx2, (void)nt;
        encode_scalar(sh, i0, m, rb);
    }
    qq_sfence();
}

/* ---------------------------------------------------------------- driver */

static int reserve(se_scratch *s, int64_t n)
{
    if (s->cap >= n)
        return 1;
    se_scratch_free(s);
    s->low = qq_alloc_huge(sizeof(uint16_t) * (size_t)n);
    s->rank = qq_alloc_huge(sizeof(uint32_t) * (size_t)n);
    s->cap = s->low && s->rank ? n : 0;
    return s->cap >= n;
}

int se_fast(const se_coder *c, const float *x, int64_t n, int64_t g, const se_out *o, se_scratch *scratch)
{
    int T = qh_threads();
    shared sh = {c, x, n, g, o, NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
    set_divisor(&sh, g);
    if (!reserve(scratch, n))
        return SE_NOMEM;
    sh.low = scratch->low;
    sh.rank = scratch->rank;
    sh.hist = malloc(sizeof(uint32_t) * NB * (size_t)T);
    sh.off = malloc(sizeof(uint32_t) * NB * (size_t)T);
    sh.start = malloc(sizeof(uint32_t) * NB);
    sh.count = malloc(sizeof(uint32_t) * NB);
    work *wk = malloc(sizeof(work) * (size_t)T);
    int st = sh.hist && sh.off && sh.start && sh.count && wk ? SE_OK : SE_NOMEM;
    int nt_store = o->deq && (int64_t)sizeof(float) * n >= QQ_NT_MIN;
#pragma omp parallel num_threads(T) if (st == SE_OK && T > 1)
    if (st == SE_OK) {
        int t = qq_thread_id(), nt = qq_thread_count();
        int64_t a = n * t / nt, b = n * (t + 1) / nt;
        uint32_t *h = sh.hist + (size_t)t * NB, *off = sh.off + (size_t)t * NB;
        if (hist_pass(&sh, h, a, b)) {
#pragma omp atomic write
            sh.bad = 1;
        }
#pragma omp barrier
#pragma omp single
        combine(&sh, nt);
        if (!sh.bad) { /* every thread reads the same flag after the barrier */
            scatter_pass(&sh, off, a, b);
#pragma omp barrier
#pragma omp for schedule(dynamic, 64)
            for (int bk = 0; bk < NB; bk++)
                if (sh.count[bk] > 0)
                    rank_bucket(&sh, (uint32_t)bk, &wk[t]);
            encode_pass(&sh, off, h, a, b, nt_store);
        }
    }
    if (st == SE_OK && sh.bad)
        st = SE_NOT_FINITE;
    free(sh.hist);
    free(sh.off);
    free(sh.start);
    free(sh.count);
    free(wk);
    return st;
}
