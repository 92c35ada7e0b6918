/* gptq_solve.c - GPTQ's column loop (Frantar et al. 2022, Algorithm 1) over tiles of rows.
 *
 * Rows are independent given U, so each OpenMP task takes a tile of rows through all columns. For
 * column i (in processing order) and each row: q = quant(w_i), err = (w_i - q) / U_ii, and the
 * block's later columns take w_j -= err * U_ij; after a block of B columns the rest of the row
 * takes all the block's errors in one product with U[block, rest] (the lazy batch update, which
 * keeps the tile's rows in cache instead of sweeping them once per column). Every weight receives
 * fma(-err_k, U_kj, w) for k = 0, 1, ... in order whatever the block size, the tile or the thread
 * count, so the result depends on none of them, bit for bit.
 *
 * Pruned weights (the host's mask) are "quantized" to exactly 0 and their error propagates like any
 * other (SparseGPT's update for a fixed mask), so the layer's error lands on the kept weights.
 *
 * Groups (group_size < cols): without act_order a group's grid comes from the updated weights when
 * the loop reaches the group's first column, as in the paper; the block is then a whole number of
 * groups so those columns are all up to date. With act_order the caller supplies static grids
 * computed before any update (AutoGPTQ's static_groups), since a stored group must be a run of
 * consecutive columns.
 */
#include <stdlib.h>

#include "gptq_impl.h"

enum { MR = 6, TILE_MAX = 48 };

/* The grid column i (processing order) of row r is quantized with. */
static const gq_grid *grid_for(const gq_problem *p, int64_t r, int64_t i, const double *wrow)
{
    const gq_layout *l = p->l;
    if (!p->dynamic)
        return &p->grids[r * l->ngr + p->perm[i] / l->gsize];
    gq_grid *g = &p->grids[r * l->ngr + i / l->gsize];
    if (i % l->gsize == 0) {
        double lo, hi;
        int64_t len = l->cols - i < l->gsize ? l->cols - i : l->gsize;
        gq_minmax(wrow + i, p->mask ? p->mask + r * l->cols + i : NULL, len, &lo, &hi);
        *g = gq_grid_make(lo, hi, (int)p->cfg->bits, p->cfg->mode);
    }
    return g;
}

/* Quantizes column i of the tile's nr rows; their scaled errors go to e (stride bsz). */
static void quantize_column(const gq_problem *p, int64_t r0, int64_t nr, int64_t i, double *wt, double *e,
                            int64_t bsz)
{
    int64_t n = p->l->cols, col = p->perm[i];
    double uii = p->u[i * n + i];
    for (int64_t t = 0; t < nr; t++) {
        int64_t r = r0 + t;
        const gq_grid *g = grid_for(p, r, i, wt + t * n);
        double w = wt[t * n + i];
        int32_t q = !p->mask || p->mask[r * n + col] ? gq_code(w, g) : g->zero; /* pruned: exactly 0 */
        float v = gq_value(q, g);
        double err = (w - (double)v) / uii;
        e[t * bsz] = err;
        gq_put_code(p->codes, p->code_dt, r * n + col, q);
        p->deq[r * n + col] = v;
    }
}

static void solve_tile(const gq_problem *p, int64_t r0, int64_t nr, int64_t bsz, double *wt, double *et)
{
    int64_t n = p->l->cols;
    for (int64_t t = 0; t < nr; t++)
        for (int64_t i = 0; i < n; i++) {
            int64_t c = p->perm[i], e = (r0 + t) * n + c;
            wt[t * n + i] = p->dead[c] || (p->mask && !p->mask[e]) ? 0.0 : (double)p->w[e];
        }
    for (int64_t i1 = 0; i1 < n; i1 += bsz) {
        int64_t i2 = i1 + bsz < n ? i1 + bsz : n;
        for (int64_t i = i1; i < i2; i++) {
            quantize_column(p, r0, nr, i, wt, et + (i - i1), bsz);
            gq_gemm_sub(nr, i2 - i - 1, 1, et + (i - i1), bsz, 1, &p->u[i * n + i + 1], n, wt + i + 1, n);
        }
        gq_gemm_sub(nr, n - i2, i2 - i1, et, bsz, 1, &p->u[i1 * n + i2], n, wt + i2, n);
    }
}

/* Columns per lazy batch: with dynamic groups a whole number of groups (at least one). */
static int64_t batch_columns(const gq_problem *p)
{
    int64_t b = p->cfg->block_size, g = p->l->gsize;
    if (p->dynamic)
        b = b < g ? g : b / g * g;
    return b < p->l->cols ? b : p->l->cols;
}

qh_status gq_solve(const gq_problem *p, qh_error *err)
{
    const gq_layout *l = p->l;
    int64_t bsz = batch_columns(p), threads = qh_threads();
    /* Tiles: enough for every thread, at most TILE_MAX rows (they stay in cache). Only the grouping of
     * rows depends on the thread count, and no row's arithmetic depends on its tile. */
    int64_t tile = (l->rows + threads - 1) / threads;
    tile = (tile + MR - 1) / MR * MR;
    tile = tile > TILE_MAX ? TILE_MAX : tile;
    int64_t tiles = (l->rows + tile - 1) / tile;
    int failed = 0;
#pragma omp parallel reduction(| : failed) if (tiles > 1)
    {
        double *wt = malloc(sizeof(double) * (size_t)(tile * l->cols));
        double *et = malloc(sizeof(double) * (size_t)(tile * bsz));
        failed = !wt || !et;
#pragma omp for schedule(dynamic, 1)
        for (int64_t k = 0; k < tiles; k++) {
            int64_t r0 = k * tile, nr = l->rows - r0 < tile ? l->rows - r0 : tile;
            if (wt && et)
                solve_tile(p, r0, nr, bsz, wt, et);
        }
        free(wt);
        free(et);
    }
    if (failed)
        return qh_error_set(err, QH_E_NOMEM, "out of memory for GPTQ row tiles of %lld x %lld", (long long)tile,
                            (long long)l->cols);
    return QH_OK;
}
