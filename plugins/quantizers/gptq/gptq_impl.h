/* gptq_impl.h - internals of the GPTQ quantizer shared by its files:
 *   gptq.c        parameters, checks, storage layout, the two quantize methods;
 *   gptq_grid.c   the quantization grid of one group (scale, zero point, code range);
 *   gptq_hinv.c   H -> U, the upper Cholesky factor of H^-1 (dead inputs, damping, act order);
 *   gptq_solve.c  the column loop with lazy block updates, over tiles of rows;
 *   gptq_gemm.c   C -= A B in double (reference and AVX2/FMA), the only floating-point kernel.
 */
#ifndef QH_GPTQ_IMPL_H
#define QH_GPTQ_IMPL_H

#include <stdint.h>

#include "qhost/qh_plugin.h"

enum { GQ_SYMMETRIC = 0, GQ_ASYMMETRIC };

typedef struct gptq_cfg {
    int64_t bits;
    int64_t group_size; /* <= 0: one group per row */
    double damp;        /* fraction of mean(diag(H)) added to the diagonal */
    int act_order;
    int mode;
    int64_t block_size; /* columns per lazy batch */
} gptq_cfg;

/* The grid of one group: value = scale * (code - zero), code in [qmin, qmax]. */
typedef struct gq_grid {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} gq_grid;

/* The grid of a group whose weights span [lo, hi] (min and max of the group). */
gq_grid gq_grid_make(double lo, double hi, int bits, int mode);
/* Min and max of w[0..n) (n >= 1), reading w[i] as 0 where keep (may be NULL) has keep[i] == 0. */
void gq_minmax(const double *w, const uint8_t *keep, int64_t n, double *lo, double *hi);

/* Round to nearest (half to even, as torch.round), clamped to the grid (NaN, which only a wildly
 * ill-conditioned H could produce, goes to qmin rather than through an undefined cast). */
static inline int32_t gq_code(double w, const gq_grid *g)
{
    double c = __builtin_rint(w / (double)g->scale) + g->zero;
    return !(c >= g->qmin) ? g->qmin : c > g->qmax ? g->qmax : (int32_t)c;
}

/* The real value of a code, exactly as qh_qtensor_dequantize decodes it. */
static inline float gq_value(int32_t code, const gq_grid *g) { return g->scale * (float)(code - g->zero); }

/* Stores code v at element i of an I8 (symmetric) or U8 (asymmetric) code tensor. */
static inline void gq_put_code(void *codes, qh_dtype dt, int64_t i, int32_t v)
{
    if (dt == QH_I8)
        ((int8_t *)codes)[i] = (int8_t)v;
    else
        ((uint8_t *)codes)[i] = (uint8_t)v;
}

/* How the weight (rows x cols) is cut into groups and stored. */
typedef struct gq_layout {
    int64_t rows, cols;
    int64_t gsize; /* columns per group (cols: one group per row) */
    int64_t ngr;   /* groups per row, ceil(cols / gsize) */
    qh_qgran gran;
    int32_t block;
} gq_layout;

/* One layer to solve. perm: processing order (perm[i] = the column processed i-th), identity when
 * act_order is off. u: cols x cols, upper triangle of U with H^-1 = U^T U, in processing order.
 * grids: rows x ngr; computed up front (static) or, when `dynamic`, by the solver from the updated
 * weights when it reaches a group's first column. */
typedef struct gq_problem {
    const gptq_cfg *cfg;
    const gq_layout *l;
    const float *w;         /* rows x cols */
    const uint8_t *dead;    /* cols: 1 = input never active (its weights are zeroed first) */
    const uint8_t *mask;    /* rows x cols, 0 = pruned (stays exactly 0), or NULL */
    const int64_t *perm;
    const double *u;
    gq_grid *grids;
    int dynamic;
    qh_dtype code_dt;       /* I8 (symmetric) or U8 */
    void *codes;            /* rows x cols */
    float *deq;             /* rows x cols */
} gq_problem;

/* Static grids of every group from w (dead columns and pruned weights read as 0; mask may be NULL). */
void gq_grids_static(const gq_layout *l, const float *w, const uint8_t *dead, const uint8_t *mask, int mode, int bits,
                     gq_grid *grids);
/* Round to nearest on the static grids (the data-free method). */
void gq_encode_rtn(const gq_layout *l, const float *w, const gq_grid *grids, qh_dtype dt, void *codes, float *deq);
/* GPTQ over all rows (OpenMP over tiles of rows). QH_E_NOMEM on allocation failure. */
qh_status gq_solve(const gq_problem *p, qh_error *err);

/* H -> U. h: cols x cols (read only). Fills dead (cols), perm (cols) and u (cols x cols); *lambda
 * gets the damping added. On a non-positive pivot: QH_E_INVAL naming the input column. */
typedef struct gq_hinv {
    int64_t n_dead;
    double lambda;
} gq_hinv;
qh_status gq_hinv_compute(const double *h, int64_t cols, double damp, int act_order, uint8_t *dead, int64_t *perm,
                          double *u, gq_hinv *info, qh_error *err);

/* C[m x n] -= A[m x k] B[k x n], with a(i, p) = a[i * sai + p * sap], b(p, j) = b[p * ldb + j],
 * c(i, j) = c[i * ldc + j]. Every element is updated as c = fma(-a(i, p), b(p, j), c) for
 * p = 0, 1, ..., k - 1 in that order, so both versions, any blocking and any split of rows or
 * columns over threads give the same bits. Single-threaded; callers split the work. */
void gq_gemm_sub_ref(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap, const double *b,
                     int64_t ldb, double *c, int64_t ldc);
void gq_gemm_sub(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap, const double *b,
                 int64_t ldb, double *c, int64_t ldc);

#endif /* QH_GPTQ_IMPL_H */
