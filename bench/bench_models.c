/* bench_models.c - training and inference throughput of any model plugin (batch 256 by default).
 * Prints one JSON line: {"impl", "model", "threads", "infer_img_s", "train_img_s", GFLOP/s ...};
 * run_models.sh runs it side by side with PyTorch (pytorch_models.py) and prints the ratios.
 * Inference = qh_graph_forward (eval) on one batch; training = the full qh_train loop (shuffle,
 * batch copy, forward, loss, backward, SGD step) over in-memory random data. Medians of repeats.
 * GFLOP/s = 2 * MACs * img/s, with 3x the forward MACs for a training step (forward, dx, dw).
 *
 * --profile: after the measurements, one more training epoch with per-node timing (the graph's
 * prof array, read through the internal header); a table per op kind (convolutions by kind)
 * goes to stderr, in ms per batch, forward and backward: wall time, and the main thread's CPU time
 * (with -t 1 the work itself, which other processes on a shared machine do not inflate);
 * "other" = loss, SGD step, batch copy; then the 12 nodes that took the most CPU time.
 *
 * "infer_act_mib", "train_act_mib": the activation (and gradient) buffers inference and training
 * allocated. --private-buffers gives every node its own output and gradient buffer (as before
 * outputs at inference and gradients in training shared buffers by liveness), for a side-by-side
 * comparison.
 *
 * usage: bench-models MODEL C H W [-b BATCH] [-t THREADS] [-r REPS] [-k TRAIN_BATCHES]
 *                     [-s key=value]... [--no-train] [--no-infer] [--profile] [--private-buffers]
 *                     [--label TEXT] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/qh_graph_impl.h" /* the per-node timing array (--profile) */
#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "base/qh_timing.h"

enum { MAX_REPS = 32, MAX_SETS = 8 };

typedef struct opts {
    const char *model, *label;
    int c, h, w, batch, threads, reps, train_batches;
    const char *sets[MAX_SETS];
    int n_sets;
    int infer, train, profile, private_buffers;
} opts;

typedef struct mem {
    float *x;
    int32_t *y;
    int64_t sample;
} mem;

static qh_status mem_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    (void)split;
    (void)err;
    mem *m = state;
    for (int64_t i = 0; i < n; i++) {
        memcpy(x + i * m->sample, m->x + idx[i] * m->sample, (size_t)m->sample * sizeof(float));
        y[i] = m->y[idx[i]];
    }
    return QH_OK;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-models MODEL C H W [-b BATCH] [-t THREADS] [-r REPS] [-k TRAIN_BATCHES] "
                    "[-s key=value]... [--no-train] [--no-infer] [--profile] [--private-buffers] [--label TEXT]\n");
    return 2;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.batch = 256, .threads = 2, .reps = 5, .train_batches = 4, .infer = 1, .train = 1};
    if (argc < 5)
        return usage();
    o->model = argv[1];
    o->label = argv[1];
    o->c = atoi(argv[2]);
    o->h = atoi(argv[3]);
    o->w = atoi(argv[4]);
    for (int i = 5; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-train"))
            o->train = 0;
        else if (!strcmp(a, "--no-infer"))
            o->infer = 0;
        else if (!strcmp(a, "--profile"))
            o->profile = 1;
        else if (!strcmp(a, "--private-buffers"))
            o->private_buffers = 1;
        else if (!v)
            return usage();
        else if (!strcmp(a, "-b"))
            o->batch = atoi(v), i++;
        else if (!strcmp(a, "-t"))
            o->threads = atoi(v), i++;
        else if (!strcmp(a, "-r"))
            o->reps = atoi(v), i++;
        else if (!strcmp(a, "-k"))
            o->train_batches = atoi(v), i++;
        else if (!strcmp(a, "--label"))
            o->label = v, i++;
        else if (!strcmp(a, "-s") && o->n_sets < MAX_SETS)
            o->sets[o->n_sets++] = v, i++;
        else
            return usage();
    }
    if (o->c < 1 || o->h < 1 || o->w < 1 || o->batch < 1 || o->threads < 1 || o->train_batches < 1)
        return usage();
    o->reps = o->reps < 1 ? 1 : o->reps > MAX_REPS ? MAX_REPS : o->reps;
    return 0;
}

/* Builds the model graph; options "key=value" go through the plugin's parameter table. */
static qh_graph *build(const opts *o, qh_registry *reg, void **cfg_out, const qh_plugin **mp_out, qh_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/plugins/models/%s/qh-model-%s.so", QH_BUILD_ROOT, o->model, o->model);
    if (qh_registry_load_file(reg, path, err) != QH_OK)
        return NULL;
    const qh_plugin *mp = qh_registry_find(reg, QH_KIND_MODEL, o->model);
    if (!mp) {
        qh_error_set(err, QH_E_INVAL, "%s: no model plugin named %s", path, o->model);
        return NULL;
    }
    void *cfg = qh_config_new(mp->params, mp->config_size);
    for (int i = 0; i < o->n_sets; i++) {
        char key[128];
        const char *eq = strchr(o->sets[i], '=');
        if (!eq || (size_t)(eq - o->sets[i]) >= sizeof key) {
            qh_error_set(err, QH_E_INVAL, "option '%s' is not key=value", o->sets[i]);
            return NULL;
        }
        memcpy(key, o->sets[i], (size_t)(eq - o->sets[i]));
        key[eq - o->sets[i]] = '\0';
        if (qh_config_set(mp->params, cfg, key, eq + 1, err) != QH_OK)
            return NULL;
    }
    qh_graph *g = qh_graph_new(o->c, o->h, o->w, 10, err);
    qh_model_input in = {o->c, o->h, o->w, 10};
    if (!g || qh_model_build(mp, cfg, &in, g, err) != QH_OK || qh_graph_finalize(g, err) != QH_OK)
        return NULL;
    *cfg_out = cfg;
    *mp_out = mp;
    return g;
}

static int64_t graph_macs(const qh_graph *g)
{
    int64_t macs = 0;
    for (int32_t i = 0; i < qh_graph_n_nodes(g); i++)
        macs += qh_graph_node_macs(g, i);
    return macs;
}

/* Inference: repeated forward passes over the batches of m, ~0.5 s per measurement. */
static int measure_infer(const opts *o, qh_graph *g, const mem *m, double *rate, double *act_mib, qh_error *err)
{
    int64_t nb = o->train_batches, stride = (int64_t)o->batch * m->sample;
    if (!qh_graph_forward(g, m->x, o->batch, false, NULL, err)) /* warm-up: buffers, pages */
        return -1;
    *act_mib = (double)g->act_bytes / (1 << 20);
    for (int r = 0; r < o->reps; r++) {
        int64_t iters = 0;
        double t0 = qh_now_s(), t;
        do {
            if (!qh_graph_forward(g, m->x + (iters % nb) * stride, o->batch, false, NULL, err))
                return -1;
            iters++;
        } while ((t = qh_now_s() - t0) < 0.5);
        rate[r] = (double)iters * o->batch / t;
    }
    return 0;
}

/* One training epoch over train_batches batches of m (SGD, lr 0.01, momentum 0.9); its seconds. */
static double train_epoch(const opts *o, qh_graph *g, mem *m, qh_rng *rng, qh_error *err)
{
    int64_t n = (int64_t)o->batch * o->train_batches;
    qh_plugin dsp = {.kind = QH_KIND_DATASET, .name = "mem"};
    dsp.ops.dataset.load = mem_load;
    qh_dataset ds = {.plugin = &dsp, .state = m,
                     .info = {.channels = o->c, .height = o->h, .width = o->w, .num_classes = 10, .n_train = n,
                              .n_test = n}};
    qh_train_config tc = {.epochs = 1, .batch_size = o->batch, .lr = 0.01, .momentum = 0.9,
                          .schedule = QH_LR_CONSTANT};
    double t0 = qh_now_s();
    return qh_train(g, &ds, &tc, 0, 0, rng, NULL, NULL, err) == QH_OK ? qh_now_s() - t0 : -1.0;
}

/* Training: one epoch over train_batches batches per measurement. */
static int measure_train(const opts *o, qh_graph *g, mem *m, qh_rng *rng, double *rate, double *act_mib, qh_error *err)
{
    if (train_epoch(o, g, m, rng, err) < 0) /* warm-up */
        return -1;
    *act_mib = (double)g->act_bytes / (1 << 20);
    for (int r = 0; r < o->reps; r++) {
        double t = train_epoch(o, g, m, rng, err);
        if (t < 0)
            return -1;
        rate[r] = (double)o->batch * o->train_batches / t;
    }
    return 0;
}

/* The row a node's time is added to: its op, convolutions split by kind (depthwise, 1x1, k x k). */
static void kind_of(const qh_node *nd, char *buf, size_t size)
{
    if (nd->op != QH_OP_CONV2D) {
        snprintf(buf, size, "%s", qh_op_name(nd->op));
        return;
    }
    const qh_conv2d_params *c = &nd->u.conv;
    int stride = c->stride_h > 1 ? c->stride_h : 1;
    snprintf(buf, size, "conv %s%dx%d s%d", c->groups > 1 ? "dw " : "", c->kernel_h, c->kernel_w, stride);
}

enum { MAX_KINDS = 32 };

typedef struct prof_row {
    char kind[40];
    double t[4]; /* ms per batch: wall fwd, bwd; CPU fwd, bwd */
    int nodes;
} prof_row;

static int row_of(prof_row *rows, int *n_rows, const char *kind)
{
    for (int r = 0; r < *n_rows; r++)
        if (!strcmp(rows[r].kind, kind))
            return r;
    if (*n_rows == MAX_KINDS)
        return MAX_KINDS - 1; /* the last row collects the overflow */
    snprintf(rows[*n_rows].kind, sizeof rows[*n_rows].kind, "%s", kind);
    return (*n_rows)++;
}

enum { TOP_NODES = 12 };

static double node_cpu(const qh_graph *g, int32_t i) { return g->prof[4 * i + 2] + g->prof[4 * i + 3]; }

/* The nodes that took the most CPU time, with their output shapes. */
static void print_top_nodes(const qh_graph *g, double per)
{
    int32_t top[TOP_NODES];
    int n_top = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) { /* insertion into the sorted top list */
        double t = node_cpu(g, i);
        int k;
        if (n_top < TOP_NODES)
            k = n_top++;
        else if (t > node_cpu(g, top[TOP_NODES - 1]))
            k = TOP_NODES - 1;
        else
            continue;
        for (; k > 0 && t > node_cpu(g, top[k - 1]); k--)
            top[k] = top[k - 1];
        top[k] = i;
    }
    fprintf(stderr, "top nodes by CPU time (ms per batch):\n");
    for (int k = 0; k < n_top; k++) {
        const qh_node *nd = &g->nodes[top[k]];
        char kind[40];
        kind_of(nd, kind, sizeof kind);
        fprintf(stderr, "  %-22s %-16s %4lldx%lldx%lld <- %4lldx%lldx%lld  fwd %8.1f  bwd %8.1f\n", nd->name, kind,
                (long long)nd->shape[0], (long long)nd->shape[1], (long long)nd->shape[2], (long long)nd->in_shape[0],
                (long long)nd->in_shape[1], (long long)nd->in_shape[2], g->prof[4 * top[k] + 2] * per,
                g->prof[4 * top[k] + 3] * per);
    }
}

/* One more training epoch with per-node timing; the table goes to stderr. */
static int profile_train(const opts *o, qh_graph *g, mem *m, qh_rng *rng, qh_error *err)
{
    if (!o->train && train_epoch(o, g, m, rng, err) < 0) /* warm-up: buffers */
        return -1;
    g->prof = calloc((size_t)(4 * g->n_nodes), sizeof(double));
    if (!g->prof)
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the profile"), -1;
    /* this thread's CPU time: the profile's "other" row is computed on the same clock */
    double cpu0 = qh_clock_s(CLOCK_THREAD_CPUTIME_ID), wall = train_epoch(o, g, m, rng, err);
    double cpu = qh_clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    if (wall < 0)
        return -1;
    prof_row rows[MAX_KINDS];
    memset(rows, 0, sizeof rows);
    int n_rows = 0;
    double sum[2] = {0.0, 0.0}, per = 1e3 / o->train_batches; /* ms per batch */
    for (int32_t i = 0; i < g->n_nodes; i++) {
        char kind[40];
        kind_of(&g->nodes[i], kind, sizeof kind);
        prof_row *r = &rows[row_of(rows, &n_rows, kind)];
        for (int k = 0; k < 4; k++)
            r->t[k] += g->prof[4 * i + k] * per;
        r->nodes++;
        sum[0] += (g->prof[4 * i] + g->prof[4 * i + 1]) * per;
        sum[1] += (g->prof[4 * i + 2] + g->prof[4 * i + 3]) * per;
    }
    double step[2] = {wall * per, cpu * per};
    fprintf(stderr, "profile: %s, batch %d, %d threads, %.1f ms per training step (main thread CPU %.1f ms)\n",
            o->label, o->batch, o->threads, step[0], step[1]);
    fprintf(stderr, "%-18s %5s %9s %9s %9s %6s | %9s %9s %9s %6s\n", "op", "nodes", "fwd ms", "bwd ms", "total",
            "%", "cpu fwd", "cpu bwd", "cpu total", "%");
    for (int r = 0; r < n_rows; r++) {
        const double *t = rows[r].t;
        fprintf(stderr, "%-18s %5d %9.1f %9.1f %9.1f %5.1f%% | %9.1f %9.1f %9.1f %5.1f%%\n", rows[r].kind,
                rows[r].nodes, t[0], t[1], t[0] + t[1], 100.0 * (t[0] + t[1]) / step[0], t[2], t[3], t[2] + t[3],
                100.0 * (t[2] + t[3]) / step[1]);
    }
    fprintf(stderr, "%-18s %5s %9s %9s %9.1f %5.1f%% | %9s %9s %9.1f %5.1f%%\n", "other", "", "", "",
            step[0] - sum[0], 100.0 * (step[0] - sum[0]) / step[0], "", "", step[1] - sum[1],
            100.0 * (step[1] - sum[1]) / step[1]);
    print_top_nodes(g, per);
    free(g->prof);
    g->prof = NULL;
    return 0;
}

static void print_json(const opts *o, int64_t macs, double *inf, double *trn, const double *act_mib)
{
    int k = o->reps;
    qsort(inf, (size_t)k, sizeof *inf, qh_cmp_double);
    qsort(trn, (size_t)k, sizeof *trn, qh_cmp_double);
    double gi = 2e-9 * (double)macs * inf[k / 2], gt = 6e-9 * (double)macs * trn[k / 2];
    printf("{\"impl\": \"qhost\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, \"reps\": %d, "
           "\"macs_per_img\": %lld, \"infer_img_s\": %.1f, \"infer_min\": %.1f, \"infer_max\": %.1f, "
           "\"infer_gflops\": %.1f, \"train_img_s\": %.1f, \"train_min\": %.1f, \"train_max\": %.1f, "
           "\"train_gflops\": %.1f, \"infer_act_mib\": %.1f, \"train_act_mib\": %.1f}\n",
           o->label, o->threads, o->batch, k, (long long)macs, inf[k / 2], inf[0], inf[k - 1], gi, trn[k / 2], trn[0],
           trn[k - 1], gt, act_mib[0], act_mib[1]);
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o))
        return 2;
    qh_set_threads(o.threads);
    qh_error err = {{0}};
    qh_registry *reg = qh_registry_new();
    void *cfg = NULL;
    const qh_plugin *mp = NULL;
    qh_graph *g = build(&o, reg, &cfg, &mp, &err);
    if (!g) {
        fprintf(stderr, "bench-models: %s\n", err.msg);
        return 1;
    }
    g->private_buffers = o.private_buffers;
    qh_rng rng;
    qh_rng_seed(&rng, 0);
    qh_graph_init_params(g, &rng);
    int64_t n = (int64_t)o.batch * o.train_batches;
    mem m = {malloc(sizeof(float) * (size_t)(n * o.c * o.h * o.w)), malloc(sizeof(int32_t) * (size_t)n),
             (int64_t)o.c * o.h * o.w};
    if (!m.x || !m.y) {
        fprintf(stderr, "bench-models: out of memory for %lld samples\n", (long long)n);
        return 1;
    }
    for (int64_t i = 0; i < n * m.sample; i++)
        m.x[i] = (float)qh_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++)
        m.y[i] = (int32_t)qh_rng_below(&rng, 10);
    double inf[MAX_REPS] = {0}, trn[MAX_REPS] = {0}, act_mib[2] = {0.0, 0.0};
    if ((o.infer && measure_infer(&o, g, &m, inf, &act_mib[0], &err)) ||
        (o.train && measure_train(&o, g, &m, &rng, trn, &act_mib[1], &err)) ||
        (o.profile && profile_train(&o, g, &m, &rng, &err))) {
        fprintf(stderr, "bench-models: %s\n", err.msg);
        return 1;
    }
    print_json(&o, graph_macs(g), inf, trn, act_mib);
    free(m.x);
    free(m.y);
    qh_graph_free(g);
    qh_config_free(mp->params, cfg);
    qh_registry_free(reg);
    return 0;
}
