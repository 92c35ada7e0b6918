/* nm.c - N:M semi-structured pruning (e.g. 2:4): in every group of M weights, at most N are kept.
 *
 * Groups run along the input channels, as NVIDIA's ASP and sparse tensor cores lay them out: for a
 * weight [out, in, kh, kw] (conv) or [out, in] (linear), one group is the M elements
 *   w[o, c0 .. c0 + M - 1, y, x]   with c0 a multiple of M,
 * for each output o and kernel position (y, x); in memory they lie kh*kw apart. This is the GEMM
 * reduction dimension K = in*kh*kw taken in (kh, kw, in) order, where M consecutive K entries share
 * one kernel position. `in` must be a multiple of M; other tensors are refused (name them in the
 * stage's `exclude`), since a short group would not match what N:M hardware executes.
 *
 * In each group the N weights of largest |w| are kept. Weights already masked count as pruned first
 * (masks only ever shrink, so a group with fewer than N survivors keeps only those); ties keep the
 * lower channel. The sparsity this gives is fixed at 1 - N/M: `sparsity` must be 0 (the host's "none
 * requested") or exactly that. */
#include <math.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct nm_cfg {
    int64_t n;
    int64_t m;
} nm_cfg;

static const qh_param params[] = {
    QH_P_INT("n", nm_cfg, n, 2, 1, 15, "weights", "weights kept in every group (below m)"),
    QH_P_INT("m", nm_cfg, m, 4, 2, 16, "weights", "group size along the input channels"),
    QH_P_END,
};

static qh_status nm_create(const void *cfg, void **state, qh_error *err)
{
    const nm_cfg *c = cfg;
    if (c->m < 2 || c->m > 16)
        return qh_error_set(err, QH_E_CONFIG, "m = %lld must be in [2, 16]", (long long)c->m);
    if (c->n < 1 || c->n >= c->m)
        return qh_error_set(err, QH_E_CONFIG, "n = %lld must be at least 1 and below m = %lld (an n:m pattern keeps "
                            "n of every m weights)", (long long)c->n, (long long)c->m);
    *state = (void *)cfg;
    return QH_OK;
}

/* Rank of |w| with masked weights lowest: 0 for masked, 1 + |w|'s bits otherwise. */
static inline uint32_t key_of(const float *w, const uint8_t *mask, int64_t i)
{
    if (!mask[i])
        return 0;
    float a = fabsf(w[i]);
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    return bits + 1;
}

/* One group: elements base + j * stride, j < m. Keeps the n largest keys (lower j on ties). */
static void prune_group(const float *w, uint8_t *mask, int64_t base, int64_t stride, int m, int n)
{
    uint32_t key[16];
    for (int j = 0; j < m; j++)
        key[j] = key_of(w, mask, base + j * stride);
    for (int j = 0; j < m; j++) {
        int above = 0; /* group members ranked before j: larger key, or equal key at a lower index */
        for (int i = 0; i < m; i++)
            above += key[i] > key[j] || (key[i] == key[j] && i < j);
        if (above >= n || key[j] == 0)
            mask[base + j * stride] = 0;
    }
}

static qh_status check_target(const qh_prune_target *t, int32_t idx, int64_t m, qh_error *err)
{
    const char *name = t->name ? t->name : "?";
    if (!t->weight || t->weight->dtype != QH_F32 || !t->mask)
        return qh_error_set(err, QH_E_INVAL, "target %d (%s): needs an F32 weight and a mask", idx, name);
    if (t->weight->ndim < 2)
        return qh_error_set(err, QH_E_INVAL, "%s: N:M groups need a weight [out, in, ...], not rank %d", name,
                            t->weight->ndim);
    int64_t in = t->weight->shape[1];
    if (in % m != 0)
        return qh_error_set(err, QH_E_INVAL, "%s: %lld input channels are not a multiple of m = %lld (groups run "
                            "along the input channels); leave it out with exclude", name, (long long)in, (long long)m);
    const float *w = qh_tensor_f32(t->weight);
    int64_t numel = qh_tensor_numel(t->weight);
    for (int64_t i = 0; i < numel; i++)
        if (isnan(w[i]))
            return qh_error_set(err, QH_E_INVAL, "%s: element %lld is NaN", name, (long long)i);
    return QH_OK;
}

static void prune_target(qh_prune_target *t, int m, int n)
{
    const float *w = qh_tensor_f32(t->weight);
    int64_t out = t->weight->shape[0], in = t->weight->shape[1];
    int64_t spatial = qh_tensor_numel(t->weight) / (out * in); /* kh * kw; 1 for linear */
    for (int64_t o = 0; o < out; o++)
        for (int64_t c0 = 0; c0 < in; c0 += m)
            for (int64_t p = 0; p < spatial; p++)
                prune_group(w, t->mask, (o * in + c0) * spatial + p, spatial, m, n);
}

static qh_status nm_prune(void *state, qh_prune_target *targets, int32_t n, double sparsity, qh_error *err)
{
    const nm_cfg *cfg = state;
    double implied = 1.0 - (double)cfg->n / (double)cfg->m;
    if (sparsity != 0.0 && fabs(sparsity - implied) > 1e-12)
        return qh_error_set(err, QH_E_INVAL, "%lld:%lld pruning fixes the sparsity at 1 - n/m = %g; %g was asked",
                            (long long)cfg->n, (long long)cfg->m, implied, sparsity);
    if (n < 0 || (n > 0 && !targets))
        return qh_error_set(err, QH_E_INVAL, "bad target list");
    for (int32_t t = 0; t < n; t++) {
        qh_status st = check_target(&targets[t], t, cfg->m, err);
        if (st != QH_OK)
            return st;
    }
    /* targets are independent: any thread count gives the same masks */
#pragma omp parallel for schedule(dynamic)
    for (int32_t t = 0; t < n; t++)
        prune_target(&targets[t], (int)cfg->m, (int)cfg->n);
    return QH_OK;
}

static const qh_pruner_ops nm_ops = {
    .struct_size = sizeof(qh_pruner_ops),
    .create = nm_create,
    .prune = nm_prune,
};

static const qh_plugin_desc nm_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_PRUNER,
    .name = "nm",
    .summary = "N:M semi-structured pruning (e.g. 2:4) along the input channels",
    .help = "Keeps the n largest |w| of every m consecutive input channels, for each output and kernel position "
            "(NVIDIA's 2:4 layout); the input channel count must be a multiple of m. The sparsity is 1 - n/m, so "
            "a prune stage using it sets no `sparsity`.",
    .params = params,
    .config_size = sizeof(nm_cfg),
    .ops.pruner = &nm_ops,
};

static const qh_plugin_desc *const nm_plugins[] = {&nm_desc};

static const qh_library nm_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-pruner-nm",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = nm_plugins,
};

QH_PLUGIN_LIBRARY(nm_lib)
