/* magnitude.c - one-shot unstructured L1-magnitude pruning (global or per layer).
 *
 * With N weights in the ranked set (all targets for scope=global, one target for scope=layer), the
 * k = round(sparsity * N) smallest are pruned. Ranking key of a weight, ascending:
 *   1. already masked weights first (they are zeros and stay pruned: masks only ever shrink),
 *   2. then |w|,
 *   3. ties broken by (target index, element index) ascending, so the selection is deterministic
 *      and exactly k weights end up pruned (or the count already masked, when that is larger).
 * Selection is a radix select on the 32-bit key (|w|'s float bits are monotone in |w|): four
 * histogram passes, O(N), no copy of the weights and no worst case.
 */
#include <math.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct magnitude_cfg {
    int scope; /* index into scope_names */
} magnitude_cfg;

enum { SCOPE_GLOBAL = 0, SCOPE_LAYER };

static const char *const scope_names[] = {"global", "layer", NULL};

static const qh_param params[] = {
    {"scope", QH_PARAM_ENUM, offsetof(magnitude_cfg, scope), {.i = SCOPE_GLOBAL}, 0, 0, scope_names, 0,
     "ranking", "global: rank |w| over all targets together; layer: prune each target to the sparsity"},
    QH_P_END,
};

/* Masked weights get key 0; the others 1 + the bits of |w| (at most 0x7F800001 for +inf). */
static inline uint32_t key_of(const float *w, const uint8_t *mask, int64_t i)
{
    if (!mask[i])
        return 0;
    float a = fabsf(w[i]);
    uint32_t bits;
    memcpy(&bits, &a, sizeof bits);
    return bits + 1;
}

static void histogram(const qh_prune_target *t, uint32_t prefix, uint32_t pmask, int shift, int64_t hist[256])
{
    const float *w = qh_tensor_f32(t->weight);
    int64_t n = qh_tensor_numel(t->weight);
    for (int64_t i = 0; i < n; i++) {
        uint32_t key = key_of(w, t->mask, i);
        if ((key & pmask) == prefix)
            hist[(key >> shift) & 0xffu]++;
    }
}

/* Finds the k-th smallest key T (1 <= k <= total) over targets[0..n) and returns it; *take is how
 * many weights with key == T belong to the k smallest (the others below T all do). */
static uint32_t radix_select(const qh_prune_target *targets, int32_t n, int64_t k, int64_t *take)
{
    uint32_t prefix = 0, pmask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        int64_t hist[256] = {0};
        for (int32_t t = 0; t < n; t++)
            histogram(&targets[t], prefix, pmask, shift, hist);
        int b = 0;
        while (k > hist[b])
            k -= hist[b++];
        prefix |= (uint32_t)b << shift;
        pmask |= 0xffu << shift;
    }
    *take = k;
    return prefix;
}

/* Prunes the k smallest keys of targets[0..n) (k >= 1), ties in (target, element) order. */
static void prune_set(qh_prune_target *targets, int32_t n, int64_t k)
{
    int64_t take;
    uint32_t thr = radix_select(targets, n, k, &take);
    for (int32_t t = 0; t < n; t++) {
        const float *w = qh_tensor_f32(targets[t].weight);
        uint8_t *mask = targets[t].mask;
        int64_t len = qh_tensor_numel(targets[t].weight);
        for (int64_t i = 0; i < len; i++) {
            uint32_t key = key_of(w, mask, i);
            if (key < thr || (key == thr && take-- > 0))
                mask[i] = 0;
        }
    }
}

static qh_status check_target(const qh_prune_target *t, int32_t idx, qh_error *err)
{
    const char *name = t->name ? t->name : "?";
    if (!t->weight || t->weight->dtype != QH_F32 || !t->mask)
        return qh_error_set(err, QH_E_INVAL, "target %d (%s): needs an F32 weight and a mask", idx, name);
    const float *w = qh_tensor_f32(t->weight);
    int64_t n = qh_tensor_numel(t->weight);
    for (int64_t i = 0; i < n; i++)
        if (isnan(w[i]))
            return qh_error_set(err, QH_E_INVAL, "target %s: element %lld is NaN", name, (long long)i);
    return QH_OK;
}

static int64_t count_to_prune(double sparsity, int64_t numel) { return llround(sparsity * (double)numel); }

static qh_status magnitude_prune(void *state, qh_prune_target *targets, int32_t n, double sparsity,
                                 qh_error *err)
{
    const magnitude_cfg *cfg = state;
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return qh_error_set(err, QH_E_INVAL, "sparsity %g outside [0, 1)", sparsity);
    if ((unsigned)cfg->scope > SCOPE_LAYER)
        return qh_error_set(err, QH_E_INVAL, "scope index %d out of range", cfg->scope);
    if (n < 0 || (n > 0 && !targets))
        return qh_error_set(err, QH_E_INVAL, "bad target list");
    int64_t total = 0;
    for (int32_t t = 0; t < n; t++) {
        qh_status st = check_target(&targets[t], t, err);
        if (st != QH_OK)
            return st;
        total += qh_tensor_numel(targets[t].weight);
    }
    if (cfg->scope == SCOPE_GLOBAL) {
        int64_t k = count_to_prune(sparsity, total);
        if (k > 0)
            prune_set(targets, n, k);
        return QH_OK;
    }
    /* Per layer: targets are independent, so any thread count gives the same masks. */
#pragma omp parallel for schedule(dynamic)
    for (int32_t t = 0; t < n; t++) {
        int64_t k = count_to_prune(sparsity, qh_tensor_numel(targets[t].weight));
        if (k > 0)
            prune_set(&targets[t], 1, k);
    }
    return QH_OK;
}

static const qh_pruner_ops magnitude_ops = {
    .struct_size = sizeof(qh_pruner_ops),
    .prune = magnitude_prune,
};

static const qh_plugin_desc magnitude_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_PRUNER,
    .name = "magnitude",
    .summary = "one-shot unstructured L1-magnitude pruning, global or per layer",
    .help = "Prunes the round(sparsity * N) weights of smallest |w|; already pruned weights count first, "
            "ties go to the lower (target, element) index, so exactly that many end up pruned.",
    .params = params,
    .config_size = sizeof(magnitude_cfg),
    .ops.pruner = &magnitude_ops,
};

static const qh_plugin_desc *const magnitude_plugins[] = {&magnitude_desc};

static const qh_library magnitude_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-pruner-magnitude",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = magnitude_plugins,
};

QH_PLUGIN_LIBRARY(magnitude_lib)
