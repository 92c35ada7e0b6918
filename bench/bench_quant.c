/* bench_quant.c - quantization throughput against the memory bandwidth of the same process.
 *
 * usage: bench-quant [threads=2] [reps=5] [rows=4096] [cols=4096]
 * Throughput = bytes of fp32 input / wall time of one quantize call (through the host wrapper,
 * codes allocation included, the dequantized output buffer reused). Bandwidth = a STREAM-like
 * triad a[i] = b[i] + s * c[i] over three 128 MiB float arrays, counted as 3 x 128 MiB per pass
 * (write-allocate traffic not counted, as STREAM does). Both are medians of `reps` timed runs
 * after one warm-up, on the same OpenMP thread count. Issue 5 asks >= 40 % of the bandwidth for
 * linear (and fp8), >= 20 % for dynamic tree and stable embedding; kmeans has no target (it makes
 * many passes: one per Lloyd iteration). Prints a table and one JSON line per method.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
}

enum { TRIAD_FLOATS = 128 * 1024 * 1024 / 4, MAX_REPS = 64 };

static double triad_gbs(int reps)
{
    float *a = malloc(sizeof(float) * TRIAD_FLOATS), *b = malloc(sizeof(float) * TRIAD_FLOATS),
          *c = malloc(sizeof(float) * TRIAD_FLOATS);
    if (!a || !b || !c) {
        fprintf(stderr, "bench-quant: out of memory for the triad\n");
        exit(1);
    }
    /* first touch in parallel, as the kernels touch them */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < TRIAD_FLOATS; i++) {
        a[i] = 0.0f;
        b[i] = (float)(i & 1023);
        c[i] = 1.0f;
    }
    double t[MAX_REPS];
    for (int r = -1; r < reps; r++) {
        float s = 0.5f + (float)r;
        double t0 = now_s();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < TRIAD_FLOATS; i++)
            a[i] = b[i] + s * c[i];
        double dt = now_s() - t0;
        if (r >= 0)
            t[r] = dt;
    }
    volatile float sink = a[TRIAD_FLOATS / 3]; /* keep the stores observable */
    (void)sink;
    free(a);
    free(b);
    free(c);
    return 3.0 * sizeof(float) * TRIAD_FLOATS / median(t, reps) / 1e9;
}

typedef struct method {
    const char *label, *plugin, *file;
    const char *keys[4], *values[4];
    int max_reps; /* slow methods run fewer times */
} method;

static const method methods[] = {
    {"linear tensor 8b", "linear", "linear/qh-quantizer-linear.so", {"granularity", "bits"}, {"tensor", "8"}, MAX_REPS},
    {"linear channel 8b", "linear", "linear/qh-quantizer-linear.so", {"granularity", "bits"}, {"channel", "8"},
     MAX_REPS},
    {"linear block64 4b", "linear", "linear/qh-quantizer-linear.so", {"granularity", "block_size", "bits"},
     {"block", "64", "4"}, MAX_REPS},
    {"linear channel asym 4b", "linear", "linear/qh-quantizer-linear.so", {"granularity", "mode", "bits"},
     {"channel", "asymmetric", "4"}, MAX_REPS},
    {"kmeans 4b", "kmeans", "kmeans/qh-quantizer-kmeans.so", {"bits"}, {"4"}, 1},
};

static int time_method(qh_registry *reg, const method *m, const qh_tensor *w, qh_tensor *deq, int reps, double bw,
                       int threads)
{
    qh_error err = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/plugins/quantizers/%s", QH_BUILD_ROOT, m->file);
    const qh_plugin *p = qh_registry_find(reg, QH_KIND_QUANTIZER, m->plugin);
    if (!p && qh_registry_load_file(reg, path, &err) == QH_OK)
        p = qh_registry_find(reg, QH_KIND_QUANTIZER, m->plugin);
    if (!p) {
        fprintf(stderr, "bench-quant: %s: %s\n", path, err.msg);
        return 1;
    }
    void *cfg = qh_config_new(p->params, p->config_size);
    for (int k = 0; k < 4 && m->keys[k]; k++)
        if (qh_config_set(p->params, cfg, m->keys[k], m->values[k], &err) != QH_OK) {
            fprintf(stderr, "bench-quant: %s: %s\n", m->label, err.msg);
            return 1;
        }
    qh_quantizer qz = {0};
    if (qh_quantizer_create(&qz, p, cfg, &err) != QH_OK) {
        fprintf(stderr, "bench-quant: %s: %s\n", m->label, err.msg);
        return 1;
    }
    int n = reps < m->max_reps ? reps : m->max_reps;
    double t[MAX_REPS];
    for (int r = m->max_reps > 1 ? -1 : 0; r < n; r++) { /* a slow method gets no warm-up */
        qh_qtensor q = {0};
        double t0 = now_s();
        qh_status st = qh_quantizer_quantize(&qz, "bench.weight", w, &q, deq, &err);
        double dt = now_s() - t0;
        qh_qtensor_clear(&q);
        if (st != QH_OK) {
            fprintf(stderr, "bench-quant: %s: %s\n", m->label, err.msg);
            return 1;
        }
        if (r >= 0)
            t[r] = dt;
    }
    double gbs = (double)qh_tensor_nbytes(w) / median(t, n) / 1e9;
    printf("%-24s %8.2f GB/s  %6.1f %% of triad\n", m->label, gbs, 100.0 * gbs / bw);
    printf("{\"method\": \"%s\", \"threads\": %d, \"gb_s\": %.3f, \"triad_gb_s\": %.3f, \"ratio\": %.4f}\n", m->label,
           threads, gbs, bw, gbs / bw);
    qh_quantizer_destroy(&qz);
    qh_config_free(p->params, cfg);
    return 0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    int64_t shape[2] = {argc > 3 ? atoll(argv[3]) : 4096, argc > 4 ? atoll(argv[4]) : 4096};
    reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps;
    qh_set_threads(threads);
    qh_error err = {{0}};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, &err), *deq = qh_tensor_new(QH_F32, 2, shape, &err);
    if (!w || !deq) {
        fprintf(stderr, "bench-quant: %s\n", err.msg);
        return 1;
    }
    qh_rng rng;
    qh_rng_seed(&rng, 1);
    for (int64_t i = 0; i < qh_tensor_numel(w); i++)
        qh_tensor_f32(w)[i] = (float)(0.05 * qh_rng_normal(&rng));
    double bw = triad_gbs(reps);
    printf("%d threads, weight [%lld, %lld] (%.1f MiB fp32), median of %d\n", threads, (long long)shape[0],
           (long long)shape[1], (double)qh_tensor_nbytes(w) / (1 << 20), reps);
    printf("%-24s %8.2f GB/s\n", "triad (3 x 128 MiB)", bw);
    qh_registry *reg = qh_registry_new();
    int rc = 0;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0] && rc == 0; i++)
        rc = time_method(reg, &methods[i], w, deq, reps, bw, threads);
    qh_registry_free(reg);
    qh_tensor_free(w);
    qh_tensor_free(deq);
    return rc;
}
