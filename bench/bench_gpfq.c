/* bench_gpfq.c - GPFQ speed: the gpfq plugin's quantize_calib (transpose + loop, as the NumPy
 * reference's timed loop includes its transpose) on
 *   lenet5:    LeNet-5's five layers on Fashion-MNIST calibration data captured as a quantize stage
 *              does (2048 images, conv patches with stride = kernel size, retain rate 0.25), each
 *              layer quantized before the next is captured;
 *   synthetic: one large random layer (N neurons, d inputs, m samples).
 * Prints one JSON line per layer (median of -r repeats of the same call) and a last line with the
 * capture time and the process's peak resident memory. -o DIR also writes every layer's W, X, X~
 * and the dequantized result as .npy files plus index.txt, which bench/gpfq_numpy_ref.py reads to
 * time the NumPy reference on exactly the same data (bench/gpfq_bench.sh runs both).
 *
 * usage: bench-gpfq lenet5 WEIGHTS [-n IMAGES] [-b BITS] [-t THREADS] [-r REPS] [-o DIR]
 *        bench-gpfq synthetic N D M [-b BITS] [-t THREADS] [-r REPS] [-o DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "calib/qh_calib_impl.h"
#include "qhost/qh_engine.h"
#include "base/qh_timing.h"

enum { MAX_REPS = 32 };

typedef struct opts {
    const char *mode, *weights, *dir;
    int64_t n, d, m, images;
    int bits, threads, reps;
} opts;

static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* ---------------------------------------------------------------- .npy output (float32, C order) */

static int write_npy(const char *dir, const char *name, const char *what, const float *data, int64_t rows, int64_t cols)
{
    if (!dir)
        return 0;
    char path[1024], hdr[128];
    snprintf(path, sizeof path, "%s/%s_%s.npy", dir, name, what);
    int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    int total = (10 + len + 1 + 63) / 64 * 64; /* magic, version, length, dict, '\n' padded to 64 */
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((total - 10) & 0xff), (unsigned char)((total - 10) >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)len, f);
    for (int i = 10 + len; i < total - 1; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t n = (size_t)(rows * cols);
    int bad = fwrite(data, sizeof(float), n, f) != n;
    return fclose(f) || bad ? -1 : 0;
}

/* ---------------------------------------------------------------- one layer */

typedef struct bench {
    const opts *o;
    qh_quantizer qz;
    FILE *index;
} bench;

/* Times quantize_calib on c (median of reps), dumps the layer, leaves the result in deq. */
static int run_layer(bench *b, const char *tag, const qh_calib_layer *c, qh_tensor *deq)
{
    double t[MAX_REPS], cpu[MAX_REPS];
    qh_error err;
    for (int r = 0; r < b->o->reps; r++) {
        qh_qtensor q = {0};
        double t0 = qh_now_s(), c0 = qh_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (qh_quantizer_quantize_calib(&b->qz, c, &q, deq, &err) != QH_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return -1;
        }
        t[r] = qh_now_s() - t0;
        cpu[r] = qh_clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        qh_qtensor_clear(&q);
    }
    qsort(cpu, (size_t)b->o->reps, sizeof(double), qh_cmp_double);
    double sorted[MAX_REPS];
    memcpy(sorted, t, sizeof(double) * (size_t)b->o->reps);
    qsort(sorted, (size_t)b->o->reps, sizeof(double), qh_cmp_double);
    printf("{\"impl\": \"qhost\", \"case\": \"%s\", \"layer\": \"%s\", \"N\": %lld, \"d\": %lld, \"m\": %lld, "
           "\"bits\": %d, \"threads\": %d, \"quant_s\": %.6f, \"min_s\": %.6f, \"cpu_s\": %.6f, \"runs_s\": [",
           b->o->mode, tag, (long long)c->rows, (long long)c->cols, (long long)c->m, b->o->bits, b->o->threads,
           sorted[b->o->reps / 2], sorted[0], cpu[b->o->reps / 2]);
    for (int r = 0; r < b->o->reps; r++)
        printf("%s%.6f", r ? ", " : "", t[r]);
    printf("]}\n");
    fflush(stdout);
    if (b->o->dir) {
        if (write_npy(b->o->dir, tag, "w", qh_tensor_f32(c->w), c->rows, c->cols) ||
            write_npy(b->o->dir, tag, "x", c->x, c->m, c->cols) ||
            write_npy(b->o->dir, tag, "xq", c->xq, c->m, c->cols) ||
            write_npy(b->o->dir, tag, "q", qh_tensor_f32(deq), c->rows, c->cols))
            return -1;
        fprintf(b->index, "%s %d\n", tag, b->o->bits);
        fflush(b->index);
    }
    return 0;
}

/* ---------------------------------------------------------------- cases */

static int case_synthetic(bench *b)
{
    const opts *o = b->o;
    int64_t shape[2] = {o->n, o->d};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL), *deq = qh_tensor_new(QH_F32, 2, shape, NULL);
    float *x = malloc(sizeof(float) * (size_t)(o->m * o->d)), *xq = malloc(sizeof(float) * (size_t)(o->m * o->d));
    if (!w || !deq || !x || !xq)
        return -1;
    qh_rng r;
    qh_rng_seed(&r, 2024);
    for (int64_t i = 0; i < o->n * o->d; i++)
        qh_tensor_f32(w)[i] = (float)(0.05 * qh_rng_normal(&r));
    for (int64_t i = 0; i < o->m * o->d; i++) { /* post-ReLU inputs, the quantized network's slightly off */
        double v = qh_rng_normal(&r);
        x[i] = v > 0 ? (float)v : 0.0f;
        xq[i] = x[i] + (float)(0.05 * qh_rng_normal(&r));
    }
    qh_tensor_set_name(w, "synthetic.weight");
    qh_calib_layer c = {.struct_size = sizeof c,
                        .name = "synthetic.weight",
                        .w = w,
                        .rows = o->n,
                        .cols = o->d,
                        .m = o->m,
                        .x = x,
                        .xq = xq};
    int rc = run_layer(b, "synthetic", &c, deq);
    qh_tensor_free(w);
    qh_tensor_free(deq);
    free(x);
    free(xq);
    return rc;
}

static const qh_plugin *load(qh_registry *reg, const char *rel, qh_kind kind, const char *name)
{
    char path[1024];
    qh_error err;
    snprintf(path, sizeof path, "%s/%s", QH_BUILD_ROOT, rel);
    if (qh_registry_load_file(reg, path, &err) != QH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    return qh_registry_find(reg, kind, name);
}

/* The calibration images of a quantize stage with calibration_seed 0: a seeded shuffle of the train split. */
static float *calibration_images(qh_dataset *ds, int64_t k)
{
    int64_t size = ds->info.n_train, per = (int64_t)ds->info.channels * ds->info.height * ds->info.width;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)size);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)k);
    float *x = malloc(sizeof(float) * (size_t)(k * per));
    qh_error err;
    for (int64_t i = 0; ids && i < size; i++)
        ids[i] = i;
    qh_rng base, r;
    qh_rng_seed(&base, 0);
    r = qh_rng_fork(&base, 0);
    if (ids)
        qh_rng_shuffle_i64(&r, ids, size);
    if (!ids || !y || !x || qh_dataset_load(ds, QH_SPLIT_TRAIN, ids, k, x, y, &err) != QH_OK) {
        free(x);
        x = NULL;
    }
    free(ids);
    free(y);
    return x;
}

/* LeNet-5's layers in order, each captured after the ones before it were quantized. */
static int lenet_layers(bench *b, qh_graph *g, const float *images)
{
    qhi_calib_options co = {.batch = 256, .seed = 0, .patch_stride = QH_PATCH_KERNEL, .retain_rate = 0.25};
    qhi_calib *s;
    qh_error err;
    double t0 = qh_now_s(), capture = 0.0;
    if (qhi_calib_new(g, images, b->o->images, &co, true, &s, &err) != QH_OK)
        return fprintf(stderr, "%s\n", err.msg), -1;
    int rc = 0, index = 0;
    for (int32_t j = 0; rc == 0 && j < g->n_nodes; j++) {
        qh_node *nd = &g->nodes[j];
        if (nd->op != QH_OP_CONV2D && nd->op != QH_OP_LINEAR)
            continue;
        qh_weight *w = &g->weights[nd->w_idx];
        qhi_calib_data d;
        double c0 = qh_now_s();
        if (qhi_calib_keep_original(s, j, &err) != QH_OK ||
            qhi_calib_capture(s, j, index, QH_CALIB_X | QH_CALIB_XQ, &d, &err) != QH_OK) {
            fprintf(stderr, "%s\n", err.msg);
            rc = -1;
            break;
        }
        capture += qh_now_s() - c0;
        qh_calib_layer c = qhi_calib_layer_of(&d, w, index);
        qh_tensor *deq = qh_tensor_new(QH_F32, w->value->ndim, w->value->shape, &err);
        char tag[QH_NAME_MAX];
        snprintf(tag, sizeof tag, "%s", nd->name);
        rc = deq ? run_layer(b, tag, &c, deq) : -1;
        if (rc == 0)
            memcpy(w->value->data, deq->data, qh_tensor_nbytes(deq));
        qh_tensor_free(deq);
        qhi_calib_data_free(&d);
        index++;
    }
    printf("{\"impl\": \"qhost\", \"case\": \"lenet5\", \"capture_s\": %.4f, \"total_s\": %.4f, "
           "\"activations_peak_mib\": %.1f}\n",
           capture, qh_now_s() - t0, (double)qhi_calib_peak_bytes(s) / 1048576.0);
    qhi_calib_free(s);
    return rc;
}

static int case_lenet(bench *b, qh_registry *reg)
{
    const qh_plugin *mp = load(reg, "plugins/models/lenet5/qh-model-lenet5.so", QH_KIND_MODEL, "lenet5");
    const qh_plugin *dp = load(reg, "plugins/datasets/idx/qh-dataset-idx.so", QH_KIND_DATASET, "idx");
    if (!mp || !dp)
        return -1;
    qh_error err;
    void *mcfg = qh_config_new(mp->params, mp->config_size), *dcfg = qh_config_new(dp->params, dp->config_size);
    qh_dataset ds;
    if (qh_dataset_open(&ds, dp, dcfg, 0, &err) != QH_OK)
        return fprintf(stderr, "%s\n", err.msg), -1;
    qh_graph *g = qh_graph_new(ds.info.channels, ds.info.height, ds.info.width, ds.info.num_classes, &err);
    qh_model_input mi = {ds.info.channels, ds.info.height, ds.info.width, ds.info.num_classes};
    int rc = -1;
    if (g && qh_model_build(mp, mcfg, &mi, g, &err) == QH_OK && qh_graph_finalize(g, &err) == QH_OK &&
        qh_model_load(g, b->o->weights, &err) == QH_OK) {
        float *images = calibration_images(&ds, b->o->images);
        rc = images ? lenet_layers(b, g, images) : -1;
        free(images);
    } else {
        fprintf(stderr, "%s\n", err.msg);
    }
    qh_graph_free(g);
    qh_dataset_close(&ds);
    qh_config_free(mp->params, mcfg);
    qh_config_free(dp->params, dcfg);
    return rc;
}

/* ---------------------------------------------------------------- main */

static int usage(void)
{
    fprintf(stderr, "usage: bench-gpfq lenet5 WEIGHTS [-n IMAGES] [-b BITS] [-t THREADS] [-r REPS] [-o DIR]\n"
                    "       bench-gpfq synthetic N D M [-b BITS] [-t THREADS] [-r REPS] [-o DIR]\n");
    return 2;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.images = 2048, .bits = 4, .threads = 2, .reps = 3};
    int i = 2;
    if (argc < 3)
        return -1;
    o->mode = argv[1];
    if (strcmp(o->mode, "lenet5") == 0) {
        o->weights = argv[i++];
    } else if (strcmp(o->mode, "synthetic") == 0 && argc >= 5) {
        o->n = atoll(argv[2]), o->d = atoll(argv[3]), o->m = atoll(argv[4]);
        i = 5;
    } else {
        return -1;
    }
    for (; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-n") == 0)
            o->images = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "-b") == 0)
            o->bits = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-t") == 0)
            o->threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-r") == 0)
            o->reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-o") == 0)
            o->dir = argv[i + 1];
        else
            return -1;
    }
    if (i != argc || o->reps < 1 || o->reps > MAX_REPS || o->threads < 1 || o->images < 1)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o) != 0)
        return usage();
    qh_set_threads(o.threads);
    qh_log_set_level(QH_LOG_WARN);
    qh_registry *reg = qh_registry_new();
    const qh_plugin *qp = load(reg, "plugins/quantizers/gpfq/qh-quantizer-gpfq.so", QH_KIND_QUANTIZER, "gpfq");
    if (!qp)
        return 1;
    void *qcfg = qh_config_new(qp->params, qp->config_size);
    char bits[16];
    snprintf(bits, sizeof bits, "%d", o.bits);
    qh_error err;
    bench b = {.o = &o};
    if (qh_config_set(qp->params, qcfg, "bits", bits, &err) != QH_OK || qh_quantizer_create(&b.qz, qp, qcfg, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/index.txt", o.dir ? o.dir : ".");
    if (o.dir && !(b.index = fopen(path, strcmp(o.mode, "lenet5") == 0 ? "w" : "a")))
        return fprintf(stderr, "%s: cannot write\n", path), 1;
    int rc = strcmp(o.mode, "lenet5") == 0 ? case_lenet(&b, reg) : case_synthetic(&b);
    printf("{\"impl\": \"qhost\", \"case\": \"%s\", \"peak_rss_mib\": %.1f}\n", o.mode, peak_rss_mib());
    if (b.index)
        fclose(b.index);
    qh_quantizer_destroy(&b.qz);
    qh_config_free(qp->params, qcfg);
    qh_registry_free(reg);
    return rc == 0 ? 0 : 1;
}
