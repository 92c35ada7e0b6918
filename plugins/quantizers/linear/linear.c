/* linear.c - weight-only round-to-nearest linear quantization, simulated with dequantized weights.
 *
 * For each group (the whole tensor, or one output channel = index along axis 0):
 *   symmetric:  qmax = 2^(b-1) - 1, scale = max|w| / qmax,
 *               code = clamp(round(w / scale), -qmax, qmax)    (the restricted range: -2^(b-1) is never
 *               used, as in PyTorch's per-channel symmetric qint8), no zero point;
 *   asymmetric: qmax = 2^b - 1, [lo, hi] = [min(min w, 0), max(max w, 0)] so that 0 is exactly
 *               representable, scale = (hi - lo) / qmax, zero = clamp(round(-lo / scale), 0, qmax),
 *               code = clamp(round(w / scale) + zero, 0, qmax).
 * A group whose scale is 0 (all zeros) gets scale 1 and codes 0 (and zero point 0).
 * round() is roundf: half away from zero. The dequantized value is scale * (float)(code - zero),
 * exactly the expression of qh_qtensor_dequantize, so |w - deq| <= scale / 2 for every element.
 */
#include <math.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct linear_cfg {
    int64_t bits;
    int granularity; /* index into gran_names */
    int mode;        /* index into mode_names */
} linear_cfg;

enum { GRAN_TENSOR = 0, GRAN_CHANNEL };
enum { MODE_SYMMETRIC = 0, MODE_ASYMMETRIC };

static const char *const gran_names[] = {"tensor", "channel", NULL};
static const char *const mode_names[] = {"symmetric", "asymmetric", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", linear_cfg, bits, 8, 2, 8, "bits", "code width in bits"),
    {"granularity", QH_PARAM_ENUM, offsetof(linear_cfg, granularity), {.i = GRAN_CHANNEL}, 0, 0, gran_names,
     0, "group", "one scale for the whole tensor, or one per output channel (axis 0)"},
    {"mode", QH_PARAM_ENUM, offsetof(linear_cfg, mode), {.i = MODE_SYMMETRIC}, 0, 0, mode_names, 0,
     "grid", "symmetric: signed codes, no zero point; asymmetric: unsigned codes with a zero point"},
    QH_P_END,
};

/* The grid of one group. */
typedef struct grid {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} grid;

static grid grid_symmetric(const float *w, int64_t n, int bits)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(w[i]));
    int32_t qmax = (1 << (bits - 1)) - 1;
    grid g = {amax / (float)qmax, 0, -qmax, qmax};
    if (g.scale == 0.0f)
        g.scale = 1.0f;
    return g;
}

static grid grid_asymmetric(const float *w, int64_t n, int bits)
{
    float lo = 0.0f, hi = 0.0f; /* starting at 0 extends the range to include it */
    for (int64_t i = 0; i < n; i++) {
        lo = fminf(lo, w[i]);
        hi = fmaxf(hi, w[i]);
    }
    int32_t qmax = (1 << bits) - 1;
    grid g = {(hi - lo) / (float)qmax, 0, 0, qmax};
    if (g.scale == 0.0f) {
        g.scale = 1.0f;
        return g;
    }
    float z = roundf(-lo / g.scale);
    g.zero = (int32_t)fminf(fmaxf(z, 0.0f), (float)qmax);
    return g;
}

static int32_t encode(float w, const grid *g)
{
    float c = roundf(w / g->scale) + (float)g->zero;
    c = fminf(fmaxf(c, (float)g->qmin), (float)g->qmax);
    return (int32_t)c;
}

/* Quantizes one group of n consecutive elements; codes go to i8 or u8 depending on the mode. */
static void quantize_group(const linear_cfg *cfg, const float *w, int64_t n, void *codes, float *deq,
                           float *scale, int32_t *zero)
{
    int bits = (int)cfg->bits;
    int sym = cfg->mode == MODE_SYMMETRIC;
    grid g = sym ? grid_symmetric(w, n, bits) : grid_asymmetric(w, n, bits);
    for (int64_t i = 0; i < n; i++) {
        int32_t c = encode(w[i], &g);
        if (sym)
            ((int8_t *)codes)[i] = (int8_t)c;
        else
            ((uint8_t *)codes)[i] = (uint8_t)c;
        deq[i] = g.scale * (float)(c - g.zero);
    }
    *scale = g.scale;
    if (zero)
        *zero = g.zero;
}

static qh_status check_input(const linear_cfg *cfg, const char *name, const qh_tensor *w, const qh_tensor *deq,
                             qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if ((unsigned)cfg->granularity > GRAN_CHANNEL || (unsigned)cfg->mode > MODE_ASYMMETRIC)
        return qh_error_set(err, QH_E_INVAL, "bad granularity or mode index");
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "tensor %s: dtype %s, only F32 can be quantized", name,
                            qh_dtype_name(w->dtype));
    if (cfg->granularity == GRAN_CHANNEL && w->ndim < 1)
        return qh_error_set(err, QH_E_UNSUPPORTED, "tensor %s: a scalar has no output channel", name);
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

static qh_status alloc_qtensor(const linear_cfg *cfg, const qh_tensor *w, int64_t groups, qh_qtensor *q,
                               qh_error *err)
{
    memset(q, 0, sizeof *q);
    q->bits = (int32_t)cfg->bits;
    q->gran = cfg->granularity == GRAN_CHANNEL ? QH_QG_CHANNEL : QH_QG_TENSOR;
    q->axis = 0;
    int sym = cfg->mode == MODE_SYMMETRIC;
    q->codes = qh_tensor_new(sym ? QH_I8 : QH_U8, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &groups, err) : NULL;
    if (q->scale && !sym)
        q->zero = qh_tensor_new(QH_I32, 1, &groups, err);
    if (!q->codes || !q->scale || (!sym && !q->zero)) {
        qh_qtensor_clear(q);
        return QH_E_NOMEM;
    }
    return QH_OK;
}

static qh_status linear_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q,
                                 qh_tensor *deq, qh_error *err)
{
    const linear_cfg *cfg = state;
    qh_status st = check_input(cfg, name, w, deq, err);
    if (st != QH_OK)
        return st;
    int64_t n = qh_tensor_numel(w);
    int64_t groups = cfg->granularity == GRAN_CHANNEL ? w->shape[0] : 1;
    st = alloc_qtensor(cfg, w, groups, q, err);
    if (st != QH_OK)
        return st;
    int64_t len = groups > 0 ? n / groups : 0;
    const float *x = qh_tensor_f32(w);
    float *y = qh_tensor_f32(deq), *scale = qh_tensor_f32(q->scale);
    int32_t *zero = q->zero ? (int32_t *)q->zero->data : NULL;
    uint8_t *codes = q->codes->data; /* one byte per code in both modes */
    /* Groups are independent, so the result is the same for any thread count. */
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups; g++)
        quantize_group(cfg, x + g * len, len, codes + g * len, y + g * len, scale + g, zero ? zero + g : NULL);
    return QH_OK;
}

static const qh_quantizer_ops linear_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = linear_quantize,
};

static const qh_plugin_desc linear_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "linear",
    .summary = "round-to-nearest linear weight quantization, per tensor or per output channel",
    .help = "Symmetric (restricted signed range, no zero point) or asymmetric (unsigned codes, zero point, "
            "0 exactly representable) grids of 2..8 bits; rounding is half away from zero.",
    .params = params,
    .config_size = sizeof(linear_cfg),
    .ops.quantizer = &linear_ops,
};

static const qh_plugin_desc *const linear_plugins[] = {&linear_desc};

static const qh_library linear_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-linear",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = linear_plugins,
};

QH_PLUGIN_LIBRARY(linear_lib)
