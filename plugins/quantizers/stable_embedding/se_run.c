/* se_run.c - the code of normalized values, the reference sort and encoding, and the choice of path.
 *
 * Reference: order[p] = flat index of the element at sorted position p, from a stable sort by |w|
 * (LSD radix on (|w| bits << 32 | index), or insertion sort for short segments), then each group
 * of `group` consecutive positions is scaled by its absmax and encoded, element by element.
 * The fast path (se_fast.c) gives the same bytes for canonical mode on one segment, without a
 * comparison sort and without scattered writes; seed001's short slices and codes stay here.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "se_impl.h"

static int nearest_ref(const void *ctx, float v)
{
    const se_coder *c = ctx;
    return dt_nearest(c->mid, c->n, v);
}

se_coder *se_coder_new(const se_cfg *cfg)
{
    se_coder *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->kind = (cfg->mode == SE_MODE_SEED001 ? 2 : 0) + (cfg->code == SE_CODE_FP8);
    c->bits = (int)cfg->bits;
    c->fmt = fp8_format_get(FP8_E4M3);
    switch (c->kind) {
    case SE_K_BNB:
        c->n = dt_bnb_book(c->bits, c->book, NULL);
        dt_midpoints(c->book, c->n, c->mid);
        c->fast_ok = qq_stepfn_build(&c->nearest, c->n - 1, -1.0f, 1.0f, nearest_ref, c) == 0;
        if (c->fast_ok)
            qq_valtab_build(&c->table, &c->nearest, c->book, 12, QQ_VAL_CELLS);
        break;
    case SE_K_OCP:
        c->n = 256;
        for (int k = 0; k < 256; k++)
            c->book[k] = fp8_decode((uint8_t)k, c->fmt);
        c->fast_ok = 1;
        break;
    case SE_K_SEED_DT: c->n = dt_seed_book(c->bits, c->book); break;
    default: c->n = fp8_seed_book(4, c->book); break;
    }
    return c;
}

float se_coder_scale(const se_coder *c, float a)
{
    if (c->kind == SE_K_OCP)
        a /= c->fmt->max;
    if (a > 0.0f)
        return a;
    return c->kind == SE_K_SEED_FP8 ? 0.0f : 1.0f;
}

int se_coder_encode(const se_coder *c, float v)
{
    int e;
    switch (c->kind) {
    case SE_K_BNB: return dt_nearest(c->mid, c->n, v);
    case SE_K_OCP: return fp8_encode(v, c->fmt);
    case SE_K_SEED_DT: return dt_book_find(c->book, c->n, dt_seed_round(v, c->bits, &e));
    default: return fp8_book_find(c->book, c->n, fp8_seed_round(v, 4));
    }
}

se_plan se_make_plan(const se_cfg *cfg, const qh_tensor *w)
{
    int64_t n = qh_tensor_numel(w);
    se_plan P = {n, n, cfg->group};
    if (cfg->mode == SE_MODE_SEED001 && w->ndim == 4) {
        P.seg = w->shape[2] * w->shape[3];
        P.group = w->shape[3];
    } else if (cfg->mode == SE_MODE_SEED001 && w->ndim == 2) {
        P.group = w->shape[0];
    }
    if (P.seg < 1)
        P.seg = 1;
    if (P.group < 1)
        P.group = 1;
    return P;
}

void se_scratch_free(se_scratch *s)
{
    free(s->low);
    free(s->rank);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- reference: stable sort by |w| */

static uint32_t mag_key(float v) { return qq_bits(v) & 0x7FFFFFFFu; /* for finite floats, the order of |v| */ }

/* Insertion sort of idx[0..n) by key; stable. */
static void sort_small(const float *x, int32_t *idx, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        int32_t t = idx[i];
        uint32_t k = mag_key(x[t]);
        int64_t j = i;
        while (j > 0 && mag_key(x[idx[j - 1]]) > k) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = t;
    }
}

/* LSD radix sort of idx[0..n) by key: (key << 32 | index) pairs, 3 stable passes of 11 bits over
 * the key, starting from index order. buf holds 2n pairs. */
static void sort_radix(const float *x, int32_t *idx, uint64_t *buf, int64_t n)
{
    uint64_t *src = buf, *dst = buf + n;
    for (int64_t i = 0; i < n; i++)
        src[i] = (uint64_t)mag_key(x[idx[i]]) << 32 | (uint32_t)idx[i];
    for (int shift = 32; shift < 65; shift += 11) {
        int64_t count[2049] = {0};
        for (int64_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 2047) + 1]++;
        for (int b = 0; b < 2048; b++)
            count[b + 1] += count[b];
        for (int64_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 2047]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = (int32_t)(uint32_t)src[i];
}

/* order[p] = flat index of the element at sorted position p. */
static int sort_all(const se_plan *P, const float *x, int32_t *order)
{
    int64_t nseg = (P->n + P->seg - 1) / P->seg;
    for (int64_t i = 0; i < P->n; i++)
        order[i] = (int32_t)i;
    if (P->seg <= 64) {
#pragma omp parallel for schedule(static)
        for (int64_t s = 0; s < nseg; s++) {
            int64_t len = P->n - s * P->seg < P->seg ? P->n - s * P->seg : P->seg;
            sort_small(x, order + s * P->seg, len);
        }
        return SE_OK;
    }
    uint64_t *tmp = malloc((size_t)P->seg * 2 * sizeof *tmp);
    if (!tmp)
        return SE_NOMEM;
    for (int64_t s = 0; s < nseg; s++) {
        int64_t len = P->n - s * P->seg < P->seg ? P->n - s * P->seg : P->seg;
        sort_radix(x, order + s * P->seg, tmp, len);
    }
    free(tmp);
    return SE_OK;
}

static void encode_group(const se_coder *c, const float *x, const int32_t *order, int64_t p0, int64_t len,
                         const se_out *o, float *scale)
{
    float amax = 0.0f;
    for (int64_t p = p0; p < p0 + len; p++)
        amax = fmaxf(amax, fabsf(x[order[p]]));
    float s = se_coder_scale(c, amax);
    for (int64_t p = p0; p < p0 + len; p++) {
        int32_t i = order[p];
        int k = se_coder_encode(c, s > 0.0f ? x[i] / s : 0.0f);
        if (c->kind == SE_K_SEED_DT)
            ((int16_t *)o->codes)[i] = (int16_t)k;
        else
            ((uint8_t *)o->codes)[i] = (uint8_t)k;
        if (o->deq)
            o->deq[i] = c->book[k] * s;
        o->perm[i] = (int32_t)p;
    }
    *scale = s;
}

static int run_ref(const se_coder *c, const se_plan *P, const float *x, const se_out *o)
{
    if (qq_first_nonfinite(x, P->n) < P->n)
        return SE_NOT_FINITE;
    int32_t *order = malloc((size_t)(P->n > 0 ? P->n : 1) * sizeof *order);
    if (!order)
        return SE_NOMEM;
    int st = sort_all(P, x, order);
    if (st == SE_OK) {
        int64_t groups = (P->n + P->group - 1) / P->group;
        /* Groups touch disjoint elements: identical for any thread count. */
#pragma omp parallel for schedule(static)
        for (int64_t g = 0; g < groups; g++) {
            int64_t p0 = g * P->group, len = P->n - p0 < P->group ? P->n - p0 : P->group;
            encode_group(c, x, order, p0, len, o, o->scale + g);
        }
    }
    free(order);
    return st;
}

int se_run(const se_cfg *cfg, const qh_tensor *w, const se_out *o, int fast, se_scratch *scratch)
{
    se_coder *c = se_coder_new(cfg);
    if (!c)
        return SE_NOMEM;
    se_plan P = se_make_plan(cfg, w);
    const float *x = qh_tensor_f32(w);
    int st;
    if (fast && c->fast_ok && P.seg == P.n && P.n > 0) {
        se_scratch local = {0};
        st = se_fast(c, x, P.n, P.group, o, scratch ? scratch : &local);
        se_scratch_free(&local);
    } else {
        st = run_ref(c, &P, x, o);
    }
    free(c);
    return st;
}
