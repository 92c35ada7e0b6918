/* gptq_hinv.c - U, the upper Cholesky factor of H^-1 (H^-1 = U^T U), which GPTQ reads row by row
 * (Frantar et al. 2022, section 3, "Step 3: Cholesky reformulation").
 *
 * Preparation as the reference implementation: an input whose H_ii is 0 never fired on the
 * calibration data, so its diagonal becomes 1 and its weights are zeroed (the caller does that);
 * lambda = damp * mean(diag H) is added to the diagonal; with act_order the columns are taken in
 * decreasing diag(H) (ties: lower index first, i.e. a stable sort).
 *
 * Instead of the reference's cholesky -> cholesky_inverse -> cholesky (about 4/3 n^3 flops) we
 * compute U = R^-1 with H = R R^T, R upper (2/3 n^3): R^-T R^-1 = H^-1 and R^-1 is upper with a
 * positive diagonal, so it is that unique factor. R comes from the ordinary upper Cholesky of the
 * reversed matrix: with J the reversal, J H J = V^T V gives R = J V^T J, so U = J V^-T J, that is
 * U[i][j] = V^-1[n-1-j][n-1-i]. J H J is H's row-major array read backwards; the last step is an
 * anti-transpose. Everything is double, in one n x n buffer plus an NB x n scratch.
 *
 * Threads split rows or columns of each update, never a sum, so U does not depend on their number.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gptq_impl.h"

enum {
    NB = 64,    /* rows per Cholesky panel / inverse block */
    TR = 48,    /* rows per task of the trailing update */
    TC = 256,   /* columns per task of the inverse */
    PAR_MIN = 1 << 15 /* below this many multiply-adds a parallel region costs more than it saves */
};

typedef struct diag_entry {
    double v;
    int64_t i;
} diag_entry;

static int by_decreasing_diag(const void *pa, const void *pb)
{
    const diag_entry *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static qh_status make_perm(const double *diag, int64_t n, int act_order, int64_t *perm, qh_error *err)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    if (!act_order)
        return QH_OK;
    diag_entry *e = malloc(sizeof *e * (size_t)n);
    if (!e)
        return qh_error_set(err, QH_E_NOMEM, "out of memory ordering %lld columns", (long long)n);
    for (int64_t i = 0; i < n; i++)
        e[i] = (diag_entry){diag[i], i};
    qsort(e, (size_t)n, sizeof *e, by_decreasing_diag);
    for (int64_t i = 0; i < n; i++)
        perm[i] = e[i].i;
    free(e);
    return QH_OK;
}

/* a = J P^T H P J + lambda I with the dead diagonal set to 1 (only the diagonal changes). */
static void prepare(const double *h, const double *diag, const int64_t *perm, int64_t n, double lambda, double *a)
{
#pragma omp parallel for schedule(static) if (n * n > PAR_MIN)
    for (int64_t r = 0; r < n; r++) {
        int64_t pr = perm[n - 1 - r];
        for (int64_t c = 0; c < n; c++)
            a[r * n + c] = h[pr * n + perm[n - 1 - c]];
        a[r * n + r] = diag[pr] + lambda;
    }
}

/* c[0..n) -= sum_p a[p * sap] * b[p * ldb + 0..n). Serial: these row updates are n^2 NB / 2 of the
 * n^3 / 3 multiply-adds, and a parallel region per row costs more than it saves on a busy machine. */
static void row_sub(int64_t n, int64_t k, const double *a, int64_t sap, const double *b, int64_t ldb, double *c)
{
    gq_gemm_sub(1, n, k, a, 0, sap, b, ldb, c, 0);
}

/* In place: the upper triangle of a becomes V with a = V^T V (the lower triangle is garbage
 * afterwards). Returns -1, or the row of the first pivot that is not positive and finite. */
static int64_t chol_upper(double *a, int64_t n)
{
    for (int64_t p0 = 0; p0 < n; p0 += NB) {
        int64_t p1 = p0 + NB < n ? p0 + NB : n;
        for (int64_t i = p0; i < p1; i++) { /* the panel, left-looking: row i less rows p0..i-1 */
            row_sub(n - i, i - p0, &a[p0 * n + i], n, &a[p0 * n + i], n, &a[i * n + i]);
            double piv = a[i * n + i];
            if (!(piv > 0.0) || !isfinite(piv))
                return i;
            double d = sqrt(piv);
            a[i * n + i] = d;
            for (int64_t j = i + 1; j < n; j++)
                a[i * n + j] /= d;
        }
        int64_t tasks = (n - p1 + TR - 1) / TR;
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1)
        for (int64_t t = 0; t < tasks; t++) { /* trailing rows t0..t1, columns t0..n */
            int64_t t0 = p1 + t * TR, t1 = t0 + TR < n ? t0 + TR : n;
            gq_gemm_sub(t1 - t0, n - t0, p1 - p0, &a[p0 * n + t0], 1, n, &a[p0 * n + t0], n, &a[t0 * n + t0], n);
        }
    }
    return -1;
}

static void zero_lower(double *a, int64_t n)
{
#pragma omp parallel for schedule(static) if (n * n > PAR_MIN)
    for (int64_t i = 1; i < n; i++)
        memset(&a[i * n], 0, sizeof(double) * (size_t)i);
}

/* In place, upper a = V (zero below the diagonal) becomes X = V^-1, from the bottom block up:
 * X[i][j] = -(1 / V_ii) sum_{k > i} V[i][k] X[k][j]. The rows below the block are final, so their
 * share is one product per block (t); the block's own rows follow one by one. t: NB x n scratch. */
static void inv_upper(double *a, int64_t n, double *t)
{
    for (int64_t i0 = (n - 1) / NB * NB; i0 >= 0; i0 -= NB) {
        int64_t i1 = i0 + NB < n ? i0 + NB : n, nb = i1 - i0;
        memset(t, 0, sizeof(double) * (size_t)(nb * n));
        int64_t tasks = (n - i1 + TC - 1) / TC;
#pragma omp parallel for schedule(dynamic, 1) if (tasks > 1)
        for (int64_t c = 0; c < tasks; c++) { /* X[k][j] = 0 for k > j: rows up to the chunk's end */
            int64_t j0 = i1 + c * TC, nj = n - j0 < TC ? n - j0 : TC;
            gq_gemm_sub(nb, nj, j0 + nj - i1, &a[i0 * n + i1], n, 1, &a[i1 * n + j0], n, &t[j0], n);
        }
        for (int64_t i = i1 - 1; i >= i0; i--) {
            double *tr = t + (i - i0) * n;
            row_sub(n - i - 1, i1 - i - 1, &a[i * n + i + 1], 1, &a[(i + 1) * n + i + 1], n, &tr[i + 1]);
            double inv = 1.0 / a[i * n + i];
            for (int64_t j = i + 1; j < n; j++)
                a[i * n + j] = tr[j] * inv;
            a[i * n + i] = inv;
        }
    }
}

/* a[i][j] <-> a[n-1-j][n-1-i] over the upper triangle. */
static void anti_transpose(double *a, int64_t n)
{
#pragma omp parallel for schedule(static) if (n * n > PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; i + j < n - 1; j++) {
            double *x = &a[i * n + j], *y = &a[(n - 1 - j) * n + (n - 1 - i)], v = *x;
            *x = *y;
            *y = v;
        }
}

static qh_status check_finite(const double *h, int64_t n, qh_error *err)
{
    int64_t bad = -1;
#pragma omp parallel for schedule(static) reduction(max : bad) if (n * n > PAR_MIN)
    for (int64_t i = 0; i < n * n; i++)
        if (!isfinite(h[i]) && i > bad)
            bad = i;
    if (bad < 0)
        return QH_OK;
    return qh_error_set(err, QH_E_INVAL, "H[%lld][%lld] = %g is not finite", (long long)(bad / n),
                        (long long)(bad % n), h[bad]);
}

qh_status gq_hinv_compute(const double *h, int64_t n, double damp, int act_order, uint8_t *dead, int64_t *perm,
                          double *u, gq_hinv *info, qh_error *err)
{
    qh_status st = check_finite(h, n, err);
    if (st != QH_OK)
        return st;
    double *diag = malloc(sizeof(double) * (size_t)n), *t = malloc(sizeof(double) * (size_t)(NB * n)), sum = 0.0;
    if (!diag || !t) {
        free(diag);
        free(t);
        return qh_error_set(err, QH_E_NOMEM, "out of memory for H^-1 of %lld columns", (long long)n);
    }
    info->n_dead = 0;
    for (int64_t i = 0; i < n; i++) {
        dead[i] = h[i * n + i] == 0.0;
        diag[i] = dead[i] ? 1.0 : h[i * n + i];
        info->n_dead += dead[i];
        sum += diag[i];
    }
    info->lambda = damp * sum / (double)n;
    st = make_perm(diag, n, act_order, perm, err);
    if (st == QH_OK) {
        prepare(h, diag, perm, n, info->lambda, u);
        int64_t bad = chol_upper(u, n);
        if (bad >= 0) {
            int64_t col = perm[n - 1 - bad];
            st = qh_error_set(err, QH_E_INVAL,
                              "H is not positive definite even after damping (lambda = %g = damp %g x mean diag): "
                              "pivot of input column %lld is %g; raise damp",
                              info->lambda, damp, (long long)col, u[bad * n + bad]);
        } else {
            zero_lower(u, n);
            inv_upper(u, n, t);
            anti_transpose(u, n);
        }
    }
    free(diag);
    free(t);
    return st;
}
