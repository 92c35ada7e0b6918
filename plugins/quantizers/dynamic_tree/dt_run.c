/* dt_run.c - groups, threading and element loops of the dynamic_tree quantizer.
 *
 * A group's absmax (qq_absbits_max, which also flags NaN / infinity) is followed at once by its
 * encoding while the group is in the cache: one read of the weights from memory.
 * Reference loop: v = w / absmax, code = dt_nearest (binary search over the midpoints in double),
 * value = map[code] * absmax, exponent bucket counted per element.
 * Fast loop (bnb): the code comes from qq_stepfn, whose thresholds are dt_nearest's own decisions
 * (so halfway values still go toward zero), eight lanes per step, through its value table (one
 * 64-bit load gives most lanes both code and map value); the exponent counts come from the codes afterwards: the buckets are runs of consecutive
 * codes, so a bucket's count is #(code >= its first code) - #(code >= the next run's first code),
 * counted with byte compares. Counts are integers, groups are independent: any thread count gives
 * the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "dt_impl.h"

static int nearest_ref(const void *ctx, float v)
{
    const dt_coder *c = ctx;
    return dt_nearest(c->mid, c->n, v);
}

/* The runs of equal exponent bucket along the sorted map (bnb). */
static void find_runs(dt_coder *c)
{
    c->nruns = 0;
    for (int k = 0; k < c->n; k++) {
        int cat = c->expo[k] < 0 ? DT_MAX_E : c->expo[k];
        if (k == 0 || cat != c->run_cat[c->nruns - 1]) {
            c->run_start[c->nruns] = k;
            c->run_cat[c->nruns++] = cat;
        }
    }
}

dt_coder *dt_coder_new(const dt_cfg *cfg)
{
    dt_coder *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->bits = (int)cfg->bits;
    c->mode = cfg->mode;
    if (c->mode == DT_MODE_BNB) {
        c->n = dt_bnb_book(c->bits, c->book, c->expo);
        dt_midpoints(c->book, c->n, c->mid);
        find_runs(c);
        c->fast_ok = qq_stepfn_build(&c->nearest, c->n - 1, -1.0f, 1.0f, nearest_ref, c) == 0;
        if (c->fast_ok)
            qq_valtab_build(&c->table, &c->nearest, c->book, 12, QQ_VAL_CELLS);
    } else {
        c->n = dt_seed_book(c->bits, c->book);
    }
    return c;
}

dt_groups dt_make_groups(const dt_cfg *cfg, const qh_tensor *w, qh_qtensor *q)
{
    int64_t n = qh_tensor_numel(w), cols = w->ndim > 0 ? w->shape[w->ndim - 1] : 1;
    dt_groups G = {n, 1, n > 0 ? n : 1};
    q->gran = QH_QG_TENSOR;
    if (cfg->granularity == DT_GRAN_BLOCK) {
        q->gran = QH_QG_FLAT_BLOCK;
        q->block = (int32_t)cfg->block;
        G.len = cfg->block;
    } else if (cfg->granularity == DT_GRAN_ROW) {
        q->gran = QH_QG_BLOCK; /* one block = one whole row */
        q->block = (int32_t)(cols > 0 ? cols : 1);
        G.len = q->block;
    } else if (cfg->granularity == DT_GRAN_CHANNEL && w->ndim > 0 && w->shape[0] > 0) {
        q->gran = QH_QG_CHANNEL;
        q->axis = 0;
        G.len = n / w->shape[0] > 0 ? n / w->shape[0] : 1;
    }
    G.count = n > 0 ? (n + G.len - 1) / G.len : 0;
    if (q->gran == QH_QG_CHANNEL)
        G.count = w->shape[0];
    return G;
}

/* Code of v = w / absmax, |v| <= 1; *e = its exponent bucket (-1 for a zero code). */
static int encode_one(const dt_coder *c, float v, int *e)
{
    if (c->mode == DT_MODE_BNB) {
        int k = dt_nearest(c->mid, c->n, v);
        *e = c->expo[k];
        return k;
    }
    return dt_book_find(c->book, c->n, dt_seed_round(v, c->bits, e)); /* in the table by construction */
}

static void encode_ref(const dt_coder *c, const float *x, int64_t n, float s, void *codes, float *deq, int64_t *cnt)
{
    for (int64_t i = 0; i < n; i++) {
        int e;
        int k = encode_one(c, x[i] / s, &e);
        if (c->mode == DT_MODE_BNB)
            ((uint8_t *)codes)[i] = (uint8_t)k;
        else
            ((int16_t *)codes)[i] = (int16_t)k;
        if (deq)
            deq[i] = c->book[k] * s;
        cnt[e < 0 ? DT_MAX_E : e]++;
    }
}

#ifdef QQ_X86
/* #(codes >= b) for each run start b > 0, then the counts per bucket. */
QQ_AVX2 static void count_runs_avx2(const dt_coder *c, const uint8_t *codes, int64_t n, int64_t *cnt)
{
    int64_t ge[2 * DT_MAX_E + 3];
    ge[0] = n;
    for (int r = 1; r < c->nruns; r++) {
        const __m256i b = _mm256_set1_epi8((char)c->run_start[r]);
        int64_t total = 0, i = 0;
        while (i + 32 <= n) {
            __m256i acc = _mm256_setzero_si256();
            for (int it = 0; it < 255 && i + 32 <= n; it++, i += 32) {
                __m256i k = _mm256_loadu_si256((const __m256i *)(codes + i));
                acc = _mm256_sub_epi8(acc, _mm256_cmpeq_epi8(_mm256_max_epu8(k, b), k)); /* +1 where k >= b */
            }
            __m256i s = _mm256_sad_epu8(acc, _mm256_setzero_si256());
            total += _mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1) + _mm256_extract_epi64(s, 2) +
                     _mm256_extract_epi64(s, 3);
        }
        for (; i < n; i++)
            total += codes[i] >= c->run_start[r];
        ge[r] = total;
    }
    ge[c->nruns] = 0;
    for (int r = 0; r < c->nruns; r++)
        cnt[c->run_cat[r]] += ge[r] - ge[r + 1];
}

QQ_AVX2 static void encode_avx2(const dt_coder *c, const float *x, int64_t n, float s, uint8_t *codes, float *deq,
                                int nt, int64_t *cnt)
{
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i k[4];
        for (int j = 0; j < 4; j++) {
            __m256 val;
            k[j] = qq_valtab_avx2(&c->table, &c->nearest, c->book, _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * j), vs), &val);
            if (deq)
                qq_store8(deq + i + 8 * j, _mm256_mul_ps(val, vs), nt);
        }
        _mm256_storeu_si256((__m256i *)(codes + i), qq_pack_u8x32(k[0], k[1], k[2], k[3]));
    }
    for (; i < n; i++) {
        int k = qq_stepfn_eval(&c->nearest, x[i] / s);
        codes[i] = (uint8_t)k;
        if (deq)
            deq[i] = c->book[k] * s;
    }
    count_runs_avx2(c, codes, n, cnt);
}
#endif

/* One group: absmax, scale, codes. Returns 1 if an element is not finite. */
static int quantize_group(const dt_coder *c, const float *x, int64_t n, void *codes, float *deq, float *scale,
                          int64_t *cnt, int fast, int nt)
{
    uint32_t amax = fast ? qq_absbits_max(x, n, 0) : qq_absbits_max_ref(x, n, 0);
    if (amax >= QQ_INF_BITS)
        return 1;
    float s = amax > 0 ? qq_float(amax) : 1.0f;
    *scale = s;
#ifdef QQ_X86
    if (fast && c->fast_ok && qq_have_avx2()) {
        encode_avx2(c, x, n, s, codes, deq, nt, cnt);
        return 0;
    }
#endif
    (void)nt;
    encode_ref(c, x, n, s, codes, deq, cnt);
    return 0;
}

int dt_run(const dt_coder *c, const dt_groups *G, const qh_tensor *w, const dt_out *o, int fast)
{
    const float *x = qh_tensor_f32(w);
    size_t csize = c->mode == DT_MODE_BNB ? 1 : 2;
    int nt = fast && o->deq && (int64_t)sizeof(float) * G->n >= QQ_NT_MIN, bad = 0;
    int64_t cnt[DT_MAX_E + 1] = {0};
    /* Groups are independent and the counts are integer sums: identical for any thread count. */
#pragma omp parallel reduction(+ : cnt[:DT_MAX_E + 1]) reduction(| : bad)
    {
#pragma omp for schedule(static) nowait
        for (int64_t g = 0; g < G->count; g++) {
            int64_t s0 = g * G->len, len = G->n - s0 < G->len ? G->n - s0 : G->len;
            bad |= quantize_group(c, x + s0, len, (char *)o->codes + (size_t)s0 * csize, o->deq ? o->deq + s0 : NULL,
                                  o->scale + g, cnt, fast, nt);
        }
        qq_sfence(); /* this thread's streamed values, before the region ends */
    }
    memcpy(o->cnt, cnt, sizeof cnt);
    return bad;
}
