/* kmeans.c - per-layer weight sharing as in Deep Compression (Han, Mao & Dally, ICLR 2016).
 *
 * k = 2^bits shared values per tensor (bits 1..8). Centroids start evenly spaced over [min, max]
 * (the paper's linear initialization, c_j = min + (max - min) * j / (k - 1)); Lloyd iterations
 * then alternate assignment (each weight to its nearest centroid, the lower one on an exact tie)
 * and update (each centroid to the mean of its weights) until no assignment changes, at most
 * max_iter updates. The codes are always the nearest-centroid assignment of the final code book.
 * An empty cluster keeps its previous centroid: in one dimension it then still lies between its
 * neighbours (their weights are all on their own side of it), so the code book stays sorted, which
 * is what the binary-search assignment relies on, and a later iteration may fill it again.
 * Output: codes U8 (weight's shape), code book F32 [k], no scales; value = codebook[code].
 * Determinism: assignment is per element; the update sums are doubles accumulated per fixed chunk
 * of CHUNK elements in element order and the chunks are added in chunk order, so the result is the
 * same for every thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct kmeans_cfg {
    int64_t bits;
    int64_t max_iter;
} kmeans_cfg;

static const qh_param params[] = {
    QH_P_INT("bits", kmeans_cfg, bits, 5, 1, 8, "bits", "code width: 2^bits shared values per tensor"),
    QH_P_INT("max_iter", kmeans_cfg, max_iter, 100, 1, 1000000, "iterations",
             "at most this many Lloyd updates (it stops earlier once no assignment changes)"),
    QH_P_END,
};

enum { CHUNK = 1 << 15 };

typedef struct sums {
    double *sum;  /* [nchunks][k] */
    int64_t *cnt; /* [nchunks][k] */
} sums;

/* Index of the centroid nearest to x in the sorted c[0..k), k a power of two: a branchless binary
 * search finds the first centroid >= x; it and the one before are the only candidates, and the
 * lower one wins a tie (distances compared in float). */
static int nearest(const float *c, int k, float x)
{
    int pos = 0; /* c[0..pos) < x throughout */
    for (int step = k / 2; step > 0; step /= 2)
        pos += c[pos + step - 1] < x ? step : 0;
    pos += c[pos] < x; /* now the first index with c[pos] >= x, or k */
    if (pos == k)
        return k - 1;
    if (pos == 0)
        return 0;
    return x - c[pos - 1] <= c[pos] - x ? pos - 1 : pos;
}

/* Assigns every element and accumulates the chunk sums; returns how many codes changed. */
static int64_t assign(const float *w, int64_t n, const float *c, int k, uint8_t *codes, sums *s)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK, changed = 0;
#pragma omp parallel for schedule(static) reduction(+ : changed)
    for (int64_t ch = 0; ch < nch; ch++) {
        double *sum = s->sum + ch * k;
        int64_t *cnt = s->cnt + ch * k;
        memset(sum, 0, sizeof(double) * (size_t)k);
        memset(cnt, 0, sizeof(int64_t) * (size_t)k);
        int64_t end = (ch + 1) * CHUNK < n ? (ch + 1) * CHUNK : n;
        for (int64_t i = ch * CHUNK; i < end; i++) {
            int j = nearest(c, k, w[i]);
            changed += codes[i] != (uint8_t)j;
            codes[i] = (uint8_t)j;
            sum[j] += (double)w[i];
            cnt[j]++;
        }
    }
    return changed;
}

static void update(float *c, int k, int64_t nch, const sums *s)
{
    for (int j = 0; j < k; j++) {
        double sum = 0.0;
        int64_t cnt = 0;
        for (int64_t ch = 0; ch < nch; ch++) {
            sum += s->sum[ch * k + j];
            cnt += s->cnt[ch * k + j];
        }
        if (cnt > 0) /* an empty cluster keeps its centroid */
            c[j] = (float)(sum / (double)cnt);
    }
}

static void init_linear(const float *w, int64_t n, float *c, int k)
{
    float lo = n > 0 ? w[0] : 0.0f, hi = lo;
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi)
    for (int64_t i = 0; i < n; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    for (int j = 0; j < k; j++)
        c[j] = k > 1 ? lo + (hi - lo) * ((float)j / (float)(k - 1)) : lo;
    if (k > 1)
        c[k - 1] = hi; /* exact, whatever the rounding of the expression above */
}

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
    const float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qh_error_set(err, QH_E_INVAL, "tensor %s: element %lld is not finite", name, (long long)i);
    return QH_OK;
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
    int k = 1 << cfg->bits;
    int64_t n = qh_tensor_numel(w), nch = (n + CHUNK - 1) / CHUNK;
    sums s = {malloc(sizeof(double) * (size_t)(nch * k + 1)), malloc(sizeof(int64_t) * (size_t)(nch * k + 1))};
    if (!s.sum || !s.cnt) {
        free(s.sum);
        free(s.cnt);
        qh_qtensor_clear(q);
        return qh_error_set(err, QH_E_NOMEM, "tensor %s: out of memory", name);
    }
    const float *x = qh_tensor_f32(w);
    float *c = qh_tensor_f32(q->codebook);
    uint8_t *codes = q->codes->data;
    init_linear(x, n, c, k);
    assign(x, n, c, k, codes, &s);
    int64_t it = 0, changed = 1;
    while (changed && it < cfg->max_iter) {
        update(c, k, nch, &s);
        changed = assign(x, n, c, k, codes, &s);
        it++;
    }
    free(s.sum);
    free(s.cnt);
    float *y = qh_tensor_f32(deq);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = c[codes[i]];
    qh_log(QH_LOG_DEBUG, "kmeans", "%s: %d centroids, %s after %lld updates", name, k,
           changed ? "stopped at max_iter" : "converged", (long long)it);
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
            "max_iter); codes index a per-tensor F32 code book; empty clusters keep their centroid.",
    .params = params,
    .config_size = sizeof(kmeans_cfg),
    .ops.quantizer = &kmeans_ops,
};

static const qh_plugin_desc *const kmeans_plugins[] = {&kmeans_desc};

static const qh_library kmeans_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-kmeans",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = kmeans_plugins,
};

QH_PLUGIN_LIBRARY(kmeans_lib)
