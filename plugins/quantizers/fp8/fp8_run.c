/* fp8_run.c - groups, scales and threading of the fp8 quantizer, and its reference element loop.
 *
 * Each group's absmax is one pass of qq_absbits_max (which also flags NaN / infinity), followed at
 * once by the group's encoding while it is in the cache, so per-channel, per-row and per-block
 * scaling read the weights from memory once. One group (per tensor) needs the absmax of the whole
 * tensor first: two passes. Groups are independent and the per-tensor absmax is an exact max, so
 * results do not depend on the thread count.
 */
#include <string.h>

#include "fp8_impl.h"

enum { CHUNK = 1 << 14 }; /* work range of a single-group tensor */

fp8_layout fp8_make_layout(const fp8_cfg *cfg, const qh_tensor *w, qh_qtensor *q)
{
    int64_t n = qh_tensor_numel(w), cols = w->ndim > 0 ? w->shape[w->ndim - 1] : 1;
    fp8_layout L = {1, n, cols, 0, 0};
    q->gran = QH_QG_TENSOR;
    if (cfg->granularity == FP8_GRAN_CHANNEL && w->ndim > 0) {
        q->gran = QH_QG_CHANNEL;
        q->axis = 0;
        L.groups = w->shape[0];
    } else if (cfg->granularity == FP8_GRAN_ROW || cfg->granularity == FP8_GRAN_BLOCK) {
        q->gran = QH_QG_BLOCK;
        q->block = (int32_t)(cfg->granularity == FP8_GRAN_ROW || cfg->block > cols ? cols : cfg->block);
        L.block = q->block;
        L.nblk = cols > 0 ? (cols + L.block - 1) / L.block : 0;
        L.groups = cols > 0 ? (n / cols) * L.nblk : 0;
    }
    if (L.nblk == 0)
        L.len = L.groups > 0 ? n / L.groups : 0;
    return L;
}

static void group_range(const fp8_layout *L, int64_t g, int64_t *start, int64_t *len)
{
    if (L->nblk == 0) {
        *start = g * L->len;
        *len = L->len;
        return;
    }
    int64_t row = g / L->nblk, b = g % L->nblk;
    *start = row * L->cols + b * L->block;
    *len = L->cols - b * L->block < L->block ? L->cols - b * L->block : L->block;
}

int fp8_make_book(const fp8_cfg *cfg, float *book)
{
    const fp8_format *f = fp8_format_get((fp8_kind)cfg->format);
    if (cfg->mode == FP8_MODE_SEED001)
        return fp8_seed_book(f->ebits, book);
    for (int k = 0; k < 256; k++)
        book[k] = fp8_decode((uint8_t)k, f);
    return 256;
}

typedef struct job {
    const fp8_cfg *cfg;
    const fp8_format *fmt;
    const float *x;
    const fp8_out *o;
    int fast, nt;
} job;

/* Scale of a group with absmax a: ocp a / max (1 for an all-zero group), seed001 a itself (0 for an
 * all-zero group: its book has no zero, any code decodes to 0). */
static float group_scale(const job *j, float amax)
{
    if (j->cfg->mode == FP8_MODE_SEED001)
        return amax;
    float s = amax / j->fmt->max;
    return s > 0.0f ? s : 1.0f; /* all zeros (or an absmax that underflows) */
}

static uint8_t encode_one(const job *j, float v)
{
    if (j->cfg->mode == FP8_MODE_OCP)
        return fp8_encode(v, j->fmt);
    /* every seed value of |v| <= 1 is in the book by construction */
    return (uint8_t)fp8_book_find(j->o->book, j->o->nbook, fp8_seed_round(v, j->fmt->ebits));
}

/* The reference loop over [0, n) of a range starting at element `at`. */
static void encode_ref(const job *j, int64_t at, int64_t n, float s)
{
    const float *x = j->x + at;
    uint8_t *codes = j->o->codes + at;
    float *deq = j->o->deq ? j->o->deq + at : NULL;
    for (int64_t i = 0; i < n; i++) {
        /* seed001 with s == 0: an all-zero group, any code decodes to 0 */
        uint8_t k = encode_one(j, s > 0.0f ? x[i] / s : 0.0f);
        codes[i] = k;
        if (deq)
            deq[i] = j->o->book[k] * s;
    }
}

static void encode_range(const job *j, int64_t at, int64_t n, float s)
{
    int64_t done = 0;
    if (j->fast && j->cfg->mode == FP8_MODE_OCP)
        done = fp8_encode_ocp_fast(j->x + at, n, s, j->fmt, j->o->codes + at, j->o->deq ? j->o->deq + at : NULL, j->nt);
    encode_ref(j, at + done, n - done, s);
}

static uint32_t absbits(const job *j, int64_t at, int64_t n, uint32_t acc)
{
    return j->fast ? qq_absbits_max(j->x + at, n, acc) : qq_absbits_max_ref(j->x + at, n, acc);
}

static int run_single(const job *j, int64_t n)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK;
    uint32_t amax = 0;
#pragma omp parallel for schedule(static) reduction(max : amax)
    for (int64_t c = 0; c < nch; c++)
        amax = absbits(j, c * CHUNK, n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK, amax);
    if (amax >= QQ_INF_BITS)
        return 1;
    float s = group_scale(j, qq_float(amax));
    j->o->scale[0] = s;
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int64_t c = 0; c < nch; c++)
            encode_range(j, c * CHUNK, n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK, s);
        qq_sfence(); /* this thread's streamed values, before the region ends */
    }
    return 0;
}

static int run_groups(const job *j, const fp8_layout *L)
{
    int bad = 0;
#pragma omp parallel reduction(| : bad)
    {
#pragma omp for schedule(static) nowait
        for (int64_t g = 0; g < L->groups; g++) {
            int64_t s0, len;
            group_range(L, g, &s0, &len);
            uint32_t amax = absbits(j, s0, len, 0);
            if (amax >= QQ_INF_BITS) {
                bad = 1;
                continue;
            }
            float s = group_scale(j, qq_float(amax));
            j->o->scale[g] = s;
            encode_range(j, s0, len, s);
        }
        qq_sfence();
    }
    return bad;
}

int fp8_run(const fp8_cfg *cfg, const fp8_layout *L, const qh_tensor *w, const fp8_out *o, int fast)
{
    int64_t n = qh_tensor_numel(w);
    job j = {cfg, fp8_format_get((fp8_kind)cfg->format), qh_tensor_f32(w), o, fast, 0};
    j.nt = fast && o->deq && (int64_t)sizeof(float) * n >= QQ_NT_MIN;
    return L->groups == 1 ? run_single(&j, L->len) : run_groups(&j, L);
}
