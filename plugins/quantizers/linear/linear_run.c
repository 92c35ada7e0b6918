/* linear_run.c - the groups of a tensor and their threading: range -> grid -> element loop.
 *
 * Groups (each a contiguous range of the row-major weight): the whole tensor, one per output
 * channel, or runs of block_size consecutive elements of each row (a shorter last block of a row
 * is its own group). Many groups: OpenMP static over groups, each group's min/max scan followed at
 * once by its encoding while the group is still in the L1/L2 cache, so a per-channel or per-block
 * quantization reads the weights from memory once. One group (per tensor): the min/max needs a
 * full pass before any code can be made, so the weights are read twice; both passes are split
 * into CHUNK ranges.
 * Rounding = stochastic forks the generator per contiguous work range (one per group; per CHUNK
 * in a single-group tensor), so codes do not depend on the thread count.
 */
#include <stdlib.h>

#include "linear_impl.h"

enum { CHUNK = 1 << 16 }; /* work range of a single-group tensor */

qh_dtype lin_code_dtype(const linear_cfg *cfg)
{
    int sign = cfg->mode != LIN_MODE_ASYMMETRIC;
    if (cfg->bits <= 8)
        return sign ? QH_I8 : QH_U8;
    return sign ? QH_I16 : QH_U16;
}

lin_layout lin_make_layout(const linear_cfg *cfg, const qh_tensor *w)
{
    int64_t n = qh_tensor_numel(w);
    lin_layout l = {1, n, 1, 1, 1, cfg->granularity};
    if (l.gran == LIN_GRAN_CHANNEL) {
        l.groups = w->shape[0];
        l.len = l.groups > 0 ? n / l.groups : 0;
    } else if (l.gran == LIN_GRAN_BLOCK) {
        l.cols = w->ndim > 0 ? w->shape[w->ndim - 1] : 1;
        l.block = cfg->block_size;
        l.nblk = l.cols > 0 ? (l.cols + l.block - 1) / l.block : 0;
        l.groups = l.cols > 0 ? n / l.cols * l.nblk : 0;
    }
    return l;
}

/* Everything one work range needs. */
typedef struct job {
    const linear_cfg *cfg;
    const float *x;
    const lin_out *o;
    float *scratch;
    qh_rng rng; /* the stream every range forks from */
    int fast, nt;
} job;

/* Encodes [start, start + len) on grid g; returns the seed001 wrap count. */
static int64_t encode_range(const job *j, int64_t start, int64_t len, const lin_grid *g, float factor)
{
    void *codes = (char *)j->o->codes + start * (int64_t)qh_dtype_size(j->o->dt);
    const float *x = j->x + start;
    float *y = j->o->deq ? j->o->deq + start : NULL;
    if (j->cfg->mode == LIN_MODE_SEED001)
        return lin_encode_seed001(x, len, factor, g->scale, (int)j->cfg->bits, j->o->dt, codes, y);
    if (j->cfg->rounding == LIN_ROUND_STOCHASTIC) {
        qh_rng r = qh_rng_fork(&j->rng, (uint64_t)start);
        lin_encode_stochastic(x, len, g, &r, j->o->dt, codes, y);
    } else if (j->fast) {
        lin_encode_nearest_fast(x, len, g, j->o->dt, codes, y, j->nt);
    } else {
        lin_encode_nearest(x, len, g, j->o->dt, codes, y);
    }
    return 0;
}

/* The grid of one group from its min/max (and, for seed001, the factor S). */
static lin_grid make_grid(const job *j, int64_t start, int64_t len, float lo, float hi, int parallel, float *factor)
{
    if (j->cfg->mode == LIN_MODE_SEED001) {
        *factor = lin_seed001_factor(lo, hi, (int)j->cfg->bits);
        lin_grid g = {1.0f / *factor, 0, 0, 0};
        return g;
    }
    *factor = 0.0f;
    float *scratch = j->scratch ? j->scratch + start : NULL;
    return lin_group_grid(j->cfg, j->x + start, len, lo, hi, scratch, parallel);
}

static int minmax(const job *j, const float *x, int64_t n, float *lo, float *hi)
{
    return j->fast ? lin_minmax_fast(x, n, lo, hi) : lin_minmax(x, n, lo, hi);
}

/* Group g = [start, start + len): returns nonzero if an element is not finite. */
static int run_group(const job *j, int64_t g, int64_t start, int64_t len, int64_t *wraps)
{
    float lo, hi, factor;
    if (minmax(j, j->x + start, len, &lo, &hi))
        return 1;
    lin_grid grid = make_grid(j, start, len, lo, hi, 0, &factor);
    *wraps += encode_range(j, start, len, &grid, factor);
    j->o->scale[g] = grid.scale;
    if (j->o->zero)
        j->o->zero[g] = grid.zero;
    return 0;
}

/* Many groups: each group on one thread, serial inside; blocks are walked row by row (no division
 * per block). Returns -1 if an element is not finite. */
static int64_t run_groups(const job *j, const lin_layout *l)
{
    int64_t wraps = 0, units = l->gran == LIN_GRAN_BLOCK ? (l->nblk > 0 ? l->groups / l->nblk : 0) : l->groups;
    int bad = 0;
#pragma omp parallel reduction(+ : wraps) reduction(| : bad)
    {
#pragma omp for schedule(static) nowait
        for (int64_t u = 0; u < units; u++) {
            if (l->gran != LIN_GRAN_BLOCK) { /* a channel or the whole tensor */
                bad |= run_group(j, u, u * l->len, l->len, &wraps);
                continue;
            }
            for (int64_t b = 0, start = u * l->cols; b < l->nblk; b++, start += l->block) /* a row's blocks */
                bad |= run_group(j, u * l->nblk + b, start, l->cols - b * l->block < l->block ? l->cols - b * l->block
                                                                                           : l->block, &wraps);
        }
        qq_sfence(); /* this thread's streamed values, before the region ends */
    }
    return bad ? -1 : wraps;
}

/* One group over the whole tensor: the min/max and the encoding are split into CHUNK ranges.
 * Returns -1 if an element is not finite. */
static int64_t run_single(const job *j, int64_t n)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK, wraps = 0;
    float lo = n > 0 ? j->x[0] : 0.0f, hi = lo;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi) reduction(| : bad)
    for (int64_t c = 0; c < nch; c++) {
        float a, b;
        int64_t len = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
        bad |= minmax(j, j->x + c * CHUNK, len, &a, &b);
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    if (bad)
        return -1;
    float factor;
    lin_grid grid = make_grid(j, 0, n, lo, hi, 1, &factor);
#pragma omp parallel reduction(+ : wraps)
    {
#pragma omp for schedule(static) nowait
        for (int64_t c = 0; c < nch; c++) {
            int64_t len = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
            wraps += encode_range(j, c * CHUNK, len, &grid, factor);
        }
        qq_sfence();
    }
    j->o->scale[0] = grid.scale;
    if (j->o->zero)
        j->o->zero[0] = grid.zero;
    return wraps;
}

int64_t lin_run(const linear_cfg *cfg, const qh_tensor *w, const lin_out *o, int fast)
{
    int64_t n = qh_tensor_numel(w);
    lin_layout l = lin_make_layout(cfg, w);
    job j = {cfg, qh_tensor_f32(w), o, NULL, {{0}}, fast, 0};
    j.nt = fast && o->deq && (int64_t)sizeof(float) * n >= QQ_NT_MIN;
    qh_rng_seed(&j.rng, (uint64_t)cfg->seed);
    if (cfg->range == LIN_RANGE_PERCENTILE && n > 0 && !(j.scratch = malloc(sizeof(float) * (size_t)n)))
        return LIN_NOMEM;
    int64_t r = l.groups == 1 ? run_single(&j, n) : run_groups(&j, &l);
    free(j.scratch);
    return r < 0 ? LIN_NOT_FINITE : r;
}
