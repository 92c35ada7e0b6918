/* bench_kernels.c - times the GEMM, conv2d and linear kernels on the LeNet-5 layer shapes at batch 256
 * (forward, backward) with 1 and 2 threads, and square GEMMs against the reference.
 * Usage: bench-kernels [batch]   (prints ms per call, best of the runs, and GFLOP/s) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"
#include "base/qh_timing.h"

static float *rand_buf(qh_rng *r, size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench-kernels: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(qh_rng_uniform(r) - 0.5);
    return p;
}

typedef struct layer {
    const char *name;
    bool conv, need_dx;
    qh_conv2d_shape cs;        /* conv */
    int64_t n, in, out;        /* linear */
    float *x, *w, *b, *y, *dy, *dx, *dw, *db;
    void *ws;
} layer;

static double fwd_flops(const layer *l)
{
    if (l->conv) {
        const qh_conv2d_shape *s = &l->cs;
        return 2.0 * s->n * s->c_out * s->h_out * s->w_out * (s->c_in / s->groups) * s->kh * s->kw;
    }
    return 2.0 * l->n * l->in * l->out;
}

static void layer_alloc(layer *l, qh_rng *r)
{
    size_t nx, nw, ny, nb;
    if (l->conv) {
        qh_conv2d_shape *s = &l->cs;
        qh_conv2d_shape_finish(s);
        nx = (size_t)(s->n * s->c_in * s->h_in * s->w_in);
        nw = (size_t)(s->c_out * s->c_in / s->groups * s->kh * s->kw);
        ny = (size_t)(s->n * s->c_out * s->h_out * s->w_out);
        nb = (size_t)s->c_out;
        l->ws = malloc(qh_k_conv2d_ws_size(s) + 1);
    } else {
        nx = (size_t)(l->n * l->in), nw = (size_t)(l->in * l->out), ny = (size_t)(l->n * l->out);
        nb = (size_t)l->out;
        l->ws = NULL;
    }
    l->x = rand_buf(r, nx), l->w = rand_buf(r, nw), l->b = rand_buf(r, nb), l->y = rand_buf(r, ny);
    l->dy = rand_buf(r, ny), l->dx = rand_buf(r, nx), l->dw = rand_buf(r, nw), l->db = rand_buf(r, nb);
}

static void layer_free(layer *l)
{
    free(l->x), free(l->w), free(l->b), free(l->y), free(l->dy), free(l->dx), free(l->dw), free(l->db);
    free(l->ws);
}

static void run_fwd(layer *l)
{
    if (l->conv)
        qh_k_conv2d_fwd_f32(&l->cs, l->x, l->w, l->b, l->y, l->ws);
    else
        qh_k_linear_fwd_f32(l->n, l->in, l->out, l->x, l->w, l->b, l->y);
}

static void run_bwd(layer *l)
{
    float *dx = l->need_dx ? l->dx : NULL;
    if (l->conv)
        qh_k_conv2d_bwd_f32(&l->cs, l->x, l->w, l->dy, dx, l->dw, l->db, l->ws);
    else
        qh_k_linear_bwd_f32(l->n, l->in, l->out, l->x, l->w, l->dy, dx, l->dw, l->db);
}

/* Best time of repeated calls within about 0.25 s (at least 3 calls after one warm-up). */
static double best_time(void (*fn)(layer *), layer *l)
{
    fn(l);
    double best = 1e30, start = qh_now_s();
    for (int i = 0; i < 3 || qh_now_s() - start < 0.25; i++) {
        double t0 = qh_now_s();
        fn(l);
        double t = qh_now_s() - t0;
        best = t < best ? t : best;
    }
    return best;
}

static void bench_lenet(int64_t batch, int threads)
{
    qh_set_threads(threads);
    qh_rng r;
    qh_rng_seed(&r, 1);
    layer L[5] = {
        {.name = "conv1 1->6 5x5 p2 28x28", .conv = true, .need_dx = false,
         .cs = {.n = batch, .c_in = 1, .h_in = 28, .w_in = 28, .c_out = 6, .kh = 5, .kw = 5, .sh = 1, .sw = 1,
                .ph = 2, .pw = 2, .groups = 1}},
        {.name = "conv2 6->16 5x5 14x14", .conv = true, .need_dx = true,
         .cs = {.n = batch, .c_in = 6, .h_in = 14, .w_in = 14, .c_out = 16, .kh = 5, .kw = 5, .sh = 1, .sw = 1,
                .groups = 1}},
        {.name = "fc1 400->120", .need_dx = true, .n = batch, .in = 400, .out = 120},
        {.name = "fc2 120->84", .need_dx = true, .n = batch, .in = 120, .out = 84},
        {.name = "fc3 84->10", .need_dx = true, .n = batch, .in = 84, .out = 10},
    };
    double tf = 0, tb = 0, ff = 0, fb = 0;
    printf("LeNet-5 layers, batch %ld, %d thread(s)\n", (long)batch, threads);
    printf("  %-26s %9s %8s %9s %8s\n", "layer", "fwd ms", "GFLOP/s", "bwd ms", "GFLOP/s");
    for (int i = 0; i < 5; i++) {
        layer_alloc(&L[i], &r);
        double f = fwd_flops(&L[i]), bf = f * (L[i].need_dx ? 2.0 : 1.0);
        double a = best_time(run_fwd, &L[i]), b = best_time(run_bwd, &L[i]);
        printf("  %-26s %9.3f %8.1f %9.3f %8.1f\n", L[i].name, 1e3 * a, f / a * 1e-9, 1e3 * b, bf / b * 1e-9);
        tf += a, tb += b, ff += f, fb += bf;
        layer_free(&L[i]);
    }
    printf("  %-26s %9.3f %8.1f %9.3f %8.1f\n", "total", 1e3 * tf, ff / tf * 1e-9, 1e3 * tb, fb / tb * 1e-9);
    printf("  conv+linear only: inference %.0f img/s, training fwd+bwd %.0f img/s\n\n", batch / tf,
           batch / (tf + tb));
}

typedef struct gemm_job {
    int64_t n;
    const float *A, *B;
    float *C;
    bool ref;
} gemm_job;

static double time_gemm(const gemm_job *j, int reps)
{
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = qh_now_s();
        if (j->ref)
            qh_k_gemm_f32_ref(false, false, j->n, j->n, j->n, 1.0f, j->A, j->n, j->B, j->n, 0.0f, j->C, j->n);
        else
            qh_k_gemm_f32(false, false, j->n, j->n, j->n, 1.0f, j->A, j->n, j->B, j->n, 0.0f, j->C, j->n);
        double t = qh_now_s() - t0;
        best = t < best ? t : best;
    }
    return best;
}

static void bench_square(int64_t n)
{
    qh_rng r;
    qh_rng_seed(&r, 2);
    size_t sz = (size_t)(n * n);
    float *A = rand_buf(&r, sz), *B = rand_buf(&r, sz), *C = rand_buf(&r, sz);
    double flops = 2.0 * n * n * n;
    gemm_job j = {n, A, B, C, true};
    double tr = time_gemm(&j, 1);
    j.ref = false;
    qh_set_threads(1);
    double t1 = time_gemm(&j, n <= 256 ? 20 : 3);
    qh_set_threads(2);
    double t2 = time_gemm(&j, n <= 256 ? 20 : 3);
    printf("GEMM %ldx%ldx%ld: reference %.1f ms (%.2f GFLOP/s); optimized 1 thread %.2f ms (%.1f GFLOP/s), "
           "2 threads %.2f ms (%.1f GFLOP/s)\n",
           (long)n, (long)n, (long)n, 1e3 * tr, flops / tr * 1e-9, 1e3 * t1, flops / t1 * 1e-9, 1e3 * t2,
           flops / t2 * 1e-9);
    free(A), free(B), free(C);
}

int main(int argc, char **argv)
{
    int64_t batch = argc > 1 ? atol(argv[1]) : 256;
    if (batch < 1) {
        fprintf(stderr, "bench-kernels: batch must be >= 1\n");
        return 2;
    }
    bench_lenet(batch, 1);
    bench_lenet(batch, 2);
    bench_square(256);
    bench_square(1024);
    return 0;
}
