/* bench_structured.c - inference speed of a model before and after structured pruning with physical
 * removal, in one process: ResNet-20 (3x32x32, batch 256, 2 threads) dense against the same network
 * with 50 % of its filters removed (plugin `structured`, L1, per layer; core/graph/qh_surgery.c).
 * Repetitions alternate between the two models (dense first in even ones), each ~0.5 s of forward
 * passes (eval mode, one batch of random images); medians, and their ratio. --profile adds the
 * per-op forward time of both models (stderr), to see where the time goes.
 *
 * usage: bench-structured [-m MODEL] [-s key=value] [-c C -H H -W W] [-b BATCH] [-t THREADS]
 *                         [-r REPS] [-p SPARSITY] [--weights FILE] [--profile]
 * Prints one JSON line: {"model", "threads", "batch", "sparsity", "params", "macs", "img_s", ...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/qh_surgery.h"
#include "pipeline/qh_prune_run.h"
#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "base/qh_timing.h"

enum { MAX_REPS = 31 };

typedef struct opts {
    const char *model, *set, *weights;
    int c, h, w, batch, threads, reps, profile;
    double sparsity;
} opts;

static int usage(void)
{
    fprintf(stderr, "usage: bench-structured [-m MODEL] [-s key=value] [-c C -H H -W W] [-b BATCH] [-t THREADS] "
                    "[-r REPS] [-p SPARSITY] [--weights FILE] [--profile]\n");
    return 2;
}

static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.model = "resnet20", .set = "shortcut=A", .c = 3, .h = 32, .w = 32, .batch = 256, .threads = 2,
                .reps = 7, .sparsity = 0.5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--profile")) {
            o->profile = 1;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "-m"))
            o->model = v;
        else if (!strcmp(a, "-s"))
            o->set = v;
        else if (!strcmp(a, "-c"))
            o->c = atoi(v);
        else if (!strcmp(a, "-H"))
            o->h = atoi(v);
        else if (!strcmp(a, "-W"))
            o->w = atoi(v);
        else if (!strcmp(a, "-b"))
            o->batch = atoi(v);
        else if (!strcmp(a, "-t"))
            o->threads = atoi(v);
        else if (!strcmp(a, "-r"))
            o->reps = atoi(v);
        else if (!strcmp(a, "-p"))
            o->sparsity = atof(v);
        else if (!strcmp(a, "--weights"))
            o->weights = v;
        else
            return usage();
    }
    if (o->c < 1 || o->h < 1 || o->w < 1 || o->batch < 1 || o->threads < 1 || !(o->sparsity >= 0 && o->sparsity < 1))
        return usage();
    o->reps = o->reps < 1 ? 1 : o->reps > MAX_REPS ? MAX_REPS : o->reps;
    return 0;
}

static qh_status load_plugin(qh_registry *reg, const char *kind, const char *name, qh_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/plugins/%s/%s/qh-%s-%s.so", QH_BUILD_ROOT, kind, name,
             strcmp(kind, "models") == 0 ? "model" : "pruner", name);
    return qh_registry_load_file(reg, path, err);
}

/* The model plugin's graph with PyTorch's initialization, or the weights of --weights. */
static qh_graph *build(const opts *o, qh_registry *reg, qh_error *err)
{
    if (load_plugin(reg, "models", o->model, err) != QH_OK)
        return NULL;
    const qh_plugin *mp = qh_registry_find(reg, QH_KIND_MODEL, o->model);
    void *cfg = qh_config_new(mp->params, mp->config_size);
    qh_graph *g = NULL;
    const char *eq = o->set ? strchr(o->set, '=') : NULL;
    char key[64];
    if (eq)
        snprintf(key, sizeof key, "%.*s", (int)(eq - o->set), o->set);
    if ((!eq || qh_config_set(mp->params, cfg, key, eq + 1, err) == QH_OK) &&
        (g = qh_graph_new(o->c, o->h, o->w, 10, err))) {
        qh_model_input in = {o->c, o->h, o->w, 10};
        qh_rng rng;
        qh_rng_seed(&rng, 0);
        if (qh_model_build(mp, cfg, &in, g, err) != QH_OK || qh_graph_finalize(g, err) != QH_OK) {
            qh_graph_free(g);
            g = NULL;
        } else {
            qh_graph_init_params(g, &rng);
        }
    }
    qh_config_free(mp->params, cfg);
    if (g && o->weights && qh_model_load(g, o->weights, err) != QH_OK) {
        qh_graph_free(g);
        return NULL;
    }
    return g;
}

/* A copy of g with `sparsity` of its filter groups pruned (L1, per layer) and removed. */
static qh_graph *pruned_copy(const opts *o, qh_registry *reg, const qh_graph *g, qh_error *err)
{
    if (load_plugin(reg, "pruners", "structured", err) != QH_OK)
        return NULL;
    const qh_plugin *pp = qh_registry_find(reg, QH_KIND_PRUNER, "structured");
    qh_graph *masked = qhi_graph_replay(g, NULL, err), *out = NULL;
    if (!masked)
        return NULL;
    for (int32_t i = 0; i < g->n_weights; i++)
        memcpy(masked->weights[i].value->data, g->weights[i].value->data, qh_tensor_nbytes(g->weights[i].value));
    void *cfg = qh_config_new(pp->params, pp->config_size);
    qh_pruner pr = {0};
    int32_t groups, pruned;
    if (qh_pruner_create(&pr, pp, cfg, err) == QH_OK) {
        if (qhi_prune_structured(masked, &pr, "*.weight", "", o->sparsity, true, &groups, &pruned, err) == QH_OK)
            out = qh_graph_compact(masked, err);
        qh_pruner_destroy(&pr);
    }
    qh_config_free(pp->params, cfg);
    qh_graph_free(masked);
    return out;
}

/* img/s of ~0.5 s of forward passes. */
static double rate_of(qh_graph *g, const float *x, int batch, qh_error *err)
{
    int64_t iters = 0;
    double t0 = qh_now_s(), t;
    do {
        if (!qh_graph_forward(g, x, batch, false, NULL, err))
            return -1.0;
        iters++;
    } while ((t = qh_now_s() - t0) < 0.5);
    return (double)iters * batch / t;
}

/* Forward time per op kind of one pass, in ms (stderr). */
static void profile(const char *label, qh_graph *g, const float *x, int batch, qh_error *err)
{
    g->prof = calloc((size_t)(2 * g->n_nodes), sizeof(double));
    if (!g->prof)
        return;
    enum { PASSES = 5 };
    for (int k = 0; k < PASSES; k++)
        qh_graph_forward(g, x, batch, false, NULL, err);
    static const char *const kinds[] = {"conv 3x3", "conv 1x1", "batchnorm (+relu)", "add", "other"};
    double ms[5] = {0}, total = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        int k = nd->op == QH_OP_CONV2D ? (nd->u.conv.kernel_h == 1 ? 1 : 0)
              : nd->op == QH_OP_BATCHNORM2D ? 2 : nd->op == QH_OP_ADD ? 3 : 4;
        ms[k] += 1e3 * g->prof[2 * i] / PASSES;
        total += 1e3 * g->prof[2 * i] / PASSES;
    }
    fprintf(stderr, "profile %s: %.1f ms per batch of %d:", label, total, batch);
    for (int k = 0; k < 5; k++)
        fprintf(stderr, "  %s %.1f ms (%.0f %%)", kinds[k], ms[k], 100.0 * ms[k] / total);
    fputc('\n', stderr);
    free(g->prof);
    g->prof = NULL;
}

int main(int argc, char **argv)
{
    opts o;
    if (parse(argc, argv, &o))
        return 2;
    qh_set_threads(o.threads);
    qh_error err = {{0}};
    qh_registry *reg = qh_registry_new();
    qh_graph *dense = build(&o, reg, &err), *small = dense ? pruned_copy(&o, reg, dense, &err) : NULL;
    if (!small) {
        fprintf(stderr, "bench-structured: %s\n", err.msg);
        return 1;
    }
    int64_t n = (int64_t)o.batch * o.c * o.h * o.w;
    float *x = malloc(sizeof *x * (size_t)n);
    qh_rng rng;
    qh_rng_seed(&rng, 1);
    for (int64_t i = 0; x && i < n; i++)
        x[i] = (float)qh_rng_normal(&rng);
    qh_graph *pair[2] = {dense, small};
    double rate[2][MAX_REPS];
    for (int k = 0; k < 2; k++) /* warm-up: buffers, pages */
        if (!x || !qh_graph_forward(pair[k], x, o.batch, false, NULL, &err))
            return fprintf(stderr, "bench-structured: %s\n", x ? err.msg : "out of memory"), 1;
    for (int r = 0; r < o.reps; r++)
        for (int j = 0; j < 2; j++) {
            int k = r % 2 ? 1 - j : j;
            if ((rate[k][r] = rate_of(pair[k], x, o.batch, &err)) < 0)
                return fprintf(stderr, "bench-structured: %s\n", err.msg), 1;
        }
    if (o.profile) {
        profile("dense", dense, x, o.batch, &err);
        profile("pruned", small, x, o.batch, &err);
    }
    qsort(rate[0], (size_t)o.reps, sizeof(double), qh_cmp_double);
    qsort(rate[1], (size_t)o.reps, sizeof(double), qh_cmp_double);
    double d = rate[0][o.reps / 2], s = rate[1][o.reps / 2];
    printf("{\"model\": \"%s\", \"set\": \"%s\", \"input\": \"%dx%dx%d\", \"threads\": %d, \"batch\": %d, \"reps\": %d, "
           "\"sparsity\": %g, \"params\": [%lld, %lld], \"macs\": [%lld, %lld], \"img_s\": [%.1f, %.1f], "
           "\"img_s_min\": [%.1f, %.1f], \"img_s_max\": [%.1f, %.1f], \"speedup\": %.3f}\n",
           o.model, o.set ? o.set : "", o.c, o.h, o.w, o.threads, o.batch, o.reps, o.sparsity,
           (long long)qh_graph_n_params(dense), (long long)qh_graph_n_params(small), (long long)qh_graph_macs(dense),
           (long long)qh_graph_macs(small), d, s, rate[0][0], rate[1][0], rate[0][o.reps - 1], rate[1][o.reps - 1],
           s / d);
    free(x);
    qh_graph_free(small);
    qh_graph_free(dense);
    qh_registry_free(reg);
    return 0;
}
