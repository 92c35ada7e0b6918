/* resample_check.h - the checks the plane-resampling kernels share (adaptive average pooling,
 * bilinear resize: N x C x H x W -> N x C x HO x WO): optimized against reference bit for bit on 1
 * and 2 threads, and the backward pass against finite differences of <w, forward(x)>. */
#ifndef RESAMPLE_CHECK_H
#define RESAMPLE_CHECK_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "qhost/qh_parallel.h"

typedef struct rsm_shape {
    int64_t n, c, h, w, ho, wo;
} rsm_shape;

typedef void (*rsm_fn)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *in,
                       float *out);

/* A kernel's four entry points: forward and backward, reference and optimized. */
typedef struct rsm_kernel {
    rsm_fn fwd_ref, bwd_ref, fwd, bwd;
} rsm_kernel;

static inline int64_t rsm_in(rsm_shape s) { return s.n * s.c * s.h * s.w; }
static inline int64_t rsm_out(rsm_shape s) { return s.n * s.c * s.ho * s.wo; }

/* 1 and 2 threads give the reference's bytes, forward and backward; with `adjoint` the backward is
 * the forward's transpose: <fwd(x), dy> == <x, bwd(dy)> up to float rounding. */
static inline void rsm_check_opt(const rsm_kernel *k, rsm_shape s, uint64_t seed, bool adjoint)
{
    int64_t ni = rsm_in(s), no = rsm_out(s);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = falloc(ni), *dy = falloc(no), *y[3], *dx[3];
    fill_uniform(&r, x, ni, -2.0f, 2.0f);
    fill_uniform(&r, dy, no, -1.0f, 1.0f);
    for (int v = 0; v < 3; v++)
        y[v] = falloc(no), dx[v] = falloc(ni);
    k->fwd_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[0]);
    k->bwd_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[0]);
    for (int v = 1; v < 3; v++) {
        qh_set_threads(v);
        k->fwd(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[v]);
        k->bwd(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[v]);
        assert_true(bytes_equal(y[v], y[0], (size_t)no * sizeof(float)));
        assert_true(bytes_equal(dx[v], dx[0], (size_t)ni * sizeof(float)));
    }
    if (adjoint) {
        double lhs = dot_f64(y[0], dy, no), rhs = dot_f64(x, dx[0], ni);
        assert_float_equal(lhs, rhs, 1e-5 * (1.0 + fabs(lhs)));
    }
    for (int v = 0; v < 3; v++)
        free(y[v]), free(dx[v]);
    free(x), free(dy);
}

typedef struct rsm_fd_ctx {
    const rsm_kernel *k;
    rsm_shape s;
    const float *w;
    float *y;
} rsm_fd_ctx;

static inline double rsm_objective(const float *x, void *ctx)
{
    rsm_fd_ctx *c = ctx;
    c->k->fwd(c->s.n, c->s.c, c->s.h, c->s.w, c->s.ho, c->s.wo, x, c->y);
    return dot_f64(c->w, c->y, rsm_out(c->s));
}

/* The optimized backward of w against central differences of <w, fwd(x)>: relative error <= 1e-3. */
static inline void rsm_check_fd(const rsm_kernel *k, rsm_shape s, uint64_t seed)
{
    int64_t ni = rsm_in(s), no = rsm_out(s);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = falloc(ni), *w = falloc(no), *y = falloc(no), *dx = falloc(ni), *g = falloc(ni);
    fill_uniform(&r, x, ni, -2.0f, 2.0f);
    fill_uniform(&r, w, no, -1.0f, 1.0f);
    rsm_fd_ctx c = {k, s, w, y};
    k->bwd(s.n, s.c, s.h, s.w, s.ho, s.wo, w, dx);
    finite_diff(rsm_objective, &c, x, ni, 1e-2f, g);
    double e = rel_err(dx, g, ni);
    if (!(e <= 1e-3))
        fail_msg("%lldx%lldx%lldx%lld -> %lldx%lld: relative error %.3g", (long long)s.n, (long long)s.c,
                 (long long)s.h, (long long)s.w, (long long)s.ho, (long long)s.wo, e);
    free(x), free(w), free(y), free(dx), free(g);
}

#endif /* RESAMPLE_CHECK_H */
