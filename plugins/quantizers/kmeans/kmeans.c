/* kmeans.c - per-layer weight sharing as in Deep Compression (Han, Mao & Dally, ICLR 2016).
 *
 * k = 2^bits shared values per tensor (bits 1..8), fitted by Lloyd's iterations from Deep
 * Compression's linear initialization (km_core.c has the exact definition). Pruned weights stay
 * pruned: when the tensor has exact zeros, code 0 is the value 0.0, given to the zeros and to
 * nothing else, and the other 2^bits - 1 shared values are fitted to the nonzero weights.
 * Output: codes U8 (weight's shape), code book F32 [2^bits] (ascending, except that a reserved zero
 * code comes first), no scales; value = codebook[code].
 * Speed: the weights are sorted once, after which every iteration costs O(k log n) instead of a
 * pass over the weights (km_fast.c); the plain iterations (km_ref.c) give the same bytes.
 * Determinism: cluster sums are exact integers (order-free) and the assignment is per element, so
 * the result is the same for every thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "km_impl.h"

static const qh_param params[] = {
    QH_P_INT("bits", kmeans_cfg, bits, 5, 1, 8, "bits", "code width: 2^bits shared values per tensor"),
    QH_P_INT("max_iter", kmeans_cfg, max_iter, 100, 1, 1000000, "iterations",
             "at most this many Lloyd updates (it stops earlier once no assignment changes)"),
    QH_P_END,
};

static qh_status check_input(const kmeans_cfg *cfg, const char *name, const qh_tensor *w, const qh_tensor *deq,
                             qh_error *err)
{
    if (cfg->bits < 1 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [1, 8]", (long long)cfg->bits);
    if (cfg->max_iter < 1)
        return qh_error_set(err, QH_E_INVAL, "max_iter = %lld must be at least 1", (long long)cfg->max_iter);
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "tensor %s: dtype %s, only F32 can be quantized", name,
                            qh_dtype_name(w->dtype));
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "tensor %s: output must be F32 with %lld elements", name,
                            (long long)qh_tensor_numel(w));
    return QH_OK; /* non-finite weights are caught by the first pass over them */
}

static qh_status alloc_qtensor(const qh_tensor *w, int bits, qh_qtensor *q, qh_error *err)
{
    memset(q, 0, sizeof *q);
    int64_t k = (int64_t)1 << bits;
    q->bits = bits;
    q->gran = QH_QG_TENSOR;
    q->codes = qh_tensor_new(QH_U8, w->ndim, w->shape, err);
    q->codebook = q->codes ? qh_tensor_new(QH_F32, 1, &k, err) : NULL;
    if (!q->codebook) {
        qh_qtensor_clear(q);
        return QH_E_NOMEM;
    }
    return QH_OK;
}

static qh_status kmeans_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                                 qh_error *err)
{
    const kmeans_cfg *cfg = state;
    qh_status st = check_input(cfg, name, w, deq, err);
    if (st != QH_OK || (st = alloc_qtensor(w, (int)cfg->bits, q, err)) != QH_OK)
        return st;
    km_out o = {q->codes->data, qh_tensor_f32(q->codebook), qh_tensor_f32(deq)};
    km_info info = {0, 0};
    int r = km_run(cfg, w, &o, 1, &info);
    if (r != KM_OK) {
        qh_qtensor_clear(q);
        if (r == KM_NOMEM)
            return qh_error_set(err, QH_E_NOMEM, "tensor %s: out of memory", name);
        const float *x = qh_tensor_f32(w);
        return qh_error_set(err, QH_E_INVAL, "tensor %s: element %lld is not finite", name,
                            (long long)qq_first_nonfinite(x, qh_tensor_numel(w)));
    }
    qh_log(QH_LOG_DEBUG, "kmeans", "%s: %d centroids, %s after %lld updates", name, 1 << cfg->bits,
           info.converged ? "converged" : "stopped at max_iter", (long long)info.updates);
    return QH_OK;
}

static const qh_quantizer_ops kmeans_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = kmeans_quantize,
};

static const qh_plugin_desc kmeans_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "kmeans",
    .summary = "k-means weight sharing per tensor (Deep Compression): 2^bits shared values",
    .help = "Linear initialization over [min, max], Lloyd iterations until no assignment changes (at most "
            "max_iter); codes index a per-tensor F32 code book; empty clusters keep their centroid. A tensor "
            "with exact zeros (pruned) keeps them: code 0 is reserved for 0.0 and the other 2^bits - 1 values "
            "are fitted to the nonzero weights.",
    .params = params,
    .config_size = sizeof(kmeans_cfg),
    .ops.quantizer = &kmeans_ops,
};

static const qh_plugin_desc *const kmeans_plugins[] = {&kmeans_desc};

static const qh_library kmeans_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-kmeans",
    .version = "1.1.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = kmeans_plugins,
};

QH_PLUGIN_LIBRARY(kmeans_lib)
