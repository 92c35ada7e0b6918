/* linear.c - weight-only linear quantization, simulated with dequantized weights.
 *
 * Groups (each a contiguous range of the row-major weight):
 *   tensor:  the whole tensor;
 *   channel: one per output channel (index along axis 0);
 *   block:   runs of block_size consecutive elements of each row (the last dimension). A row whose
 *            length is not a multiple of block_size ends in a shorter block, which is a group of
 *            its own (the layout qh_qtensor_groups counts); nothing is refused or padded.
 * Grids per group (bits b in 2..16; codes I8 / U8 up to 8 bits, I16 / U16 above):
 *   symmetric:  qmax = 2^(b-1) - 1, scale = amax / qmax, code in [-qmax, qmax] (the restricted
 *               range, as PyTorch's per-channel symmetric qint8), no zero point;
 *   asymmetric: qmax = 2^b - 1, [lo, hi] contains 0 so 0 is exact, scale = (hi - lo) / qmax,
 *               zero = clamp(round(-lo / scale), 0, qmax), code in [0, qmax];
 *   seed001:    seed 001's quantize_requantize (seeds.md 2.2): S = (2^b - 1) / (max w - min w) from
 *               the raw range of the group, code = trunc(w * S) wrapped to b-bit two's complement
 *               (no rounding, no clamp, no zero point), scale = 1 / S. The seed divides by S; the
 *               stored form multiplies by 1 / S, which differs from code / S by at most an ulp or two.
 * The range (amax or [lo, hi]) comes from min/max, a percentile, or an MSE search (linear_grid.c).
 * Rounding: nearest (half away from zero) or stochastic, code = floor(w / scale + u): u comes from a
 * generator seeded with `seed` and forked per contiguous work range (one per group; per 64 Ki
 * elements in a single-group tensor), so codes do not depend on the thread count.
 * A group whose range is 0 (all zeros) gets scale 1 and codes 0 (and zero point 0).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/qq_qtensor.h"
#include "linear_impl.h"

static const char *const gran_names[] = {"tensor", "channel", "block", NULL};
static const char *const mode_names[] = {"symmetric", "asymmetric", "seed001", NULL};
static const char *const round_names[] = {"nearest", "stochastic", NULL};
static const char *const range_names[] = {"minmax", "percentile", "mse", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", linear_cfg, bits, 8, 2, 16, "bits", "code width in bits (I8/U8 codes up to 8, I16/U16 above)"),
    {"granularity", QH_PARAM_ENUM, offsetof(linear_cfg, granularity), {.i = LIN_GRAN_CHANNEL}, 0, 0, gran_names,
     0, "group", "one scale for the whole tensor, one per output channel (axis 0), or one per block of a row"},
    QH_P_INT("block_size", linear_cfg, block_size, 64, 1, 2147483647.0, "elements",
             "granularity = block: consecutive elements of a row per group (a shorter last block is its own group)"),
    {"mode", QH_PARAM_ENUM, offsetof(linear_cfg, mode), {.i = LIN_MODE_SYMMETRIC}, 0, 0, mode_names, 0, "grid",
     "symmetric: signed codes, no zero point; asymmetric: unsigned codes with a zero point; seed001: seed 001's "
     "truncating quantize_requantize"},
    {"rounding", QH_PARAM_ENUM, offsetof(linear_cfg, rounding), {.i = LIN_ROUND_NEAREST}, 0, 0, round_names, 0,
     "rounding", "nearest (half away from zero) or stochastic (unbiased, seeded by `seed`)"},
    {"range", QH_PARAM_ENUM, offsetof(linear_cfg, range), {.i = LIN_RANGE_MINMAX}, 0, 0, range_names, 0, "range",
     "clipping range per group: min/max, a percentile, or the ratio in [0.5, 1] of min/max with the least MSE"},
    QH_P_DOUBLE("percentile", linear_cfg, percentile, 99.9, 50.0, 100.0, "percent",
                "range = percentile: the percentile of |w| (symmetric) or of w and its mirror (asymmetric)"),
    QH_P_INT("seed", linear_cfg, seed, 0, 0, 9007199254740991.0, "seed", "rounding = stochastic: generator seed"),
    QH_P_END,
};

static qh_status check_cfg(const linear_cfg *cfg, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 16)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 16]", (long long)cfg->bits);
    if ((unsigned)cfg->granularity > LIN_GRAN_BLOCK || (unsigned)cfg->mode > LIN_MODE_SEED001 ||
        (unsigned)cfg->rounding > LIN_ROUND_STOCHASTIC || (unsigned)cfg->range > LIN_RANGE_MSE)
        return qh_error_set(err, QH_E_INVAL, "bad granularity, mode, rounding or range index");
    if (cfg->granularity == LIN_GRAN_BLOCK && (cfg->block_size < 1 || cfg->block_size > INT32_MAX))
        return qh_error_set(err, QH_E_INVAL, "block_size = %lld outside [1, 2147483647]", (long long)cfg->block_size);
    if (!(cfg->percentile >= 50.0 && cfg->percentile <= 100.0))
        return qh_error_set(err, QH_E_INVAL, "percentile = %g outside [50, 100]", cfg->percentile);
    if (cfg->mode == LIN_MODE_SEED001 && (cfg->rounding != LIN_ROUND_NEAREST || cfg->range != LIN_RANGE_MINMAX))
        return qh_error_set(err, QH_E_INVAL, "mode = seed001 fixes rounding (truncation) and range (min/max): "
                                             "leave rounding and range at their defaults");
    return QH_OK;
}

static qh_status check_input(const linear_cfg *cfg, const char *name, const qh_tensor *w, const qh_tensor *deq,
                             qh_error *err)
{
    qh_status st = check_cfg(cfg, err);
    if (st != QH_OK)
        return st;
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "tensor %s: dtype %s, only F32 can be quantized", name,
                            qh_dtype_name(w->dtype));
    if (cfg->granularity == LIN_GRAN_CHANNEL && w->ndim < 1)
        return qh_error_set(err, QH_E_UNSUPPORTED, "tensor %s: a scalar has no output channel", name);
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "tensor %s: output must be F32 with %lld elements", name,
                            (long long)qh_tensor_numel(w));
    return QH_OK; /* non-finite elements are caught by the min/max scan, which reads every element anyway */
}

static qh_status not_finite(const char *name, const qh_tensor *w, qh_error *err)
{
    const float *x = qh_tensor_f32(w);
    int64_t i = 0;
    while (isfinite(x[i]))
        i++;
    return qh_error_set(err, QH_E_INVAL, "tensor %s: element %lld is not finite", name, (long long)i);
}

static qh_status alloc_qtensor(const linear_cfg *cfg, const qh_tensor *w, const lin_layout *l, qh_qtensor *q,
                               qh_error *err)
{
    static const qh_qgran grans[] = {QH_QG_TENSOR, QH_QG_CHANNEL, QH_QG_BLOCK};
    memset(q, 0, sizeof *q);
    q->bits = (int32_t)cfg->bits;
    q->gran = grans[cfg->granularity];
    q->axis = 0;
    q->block = cfg->granularity == LIN_GRAN_BLOCK ? (int32_t)cfg->block_size : 0;
    return qq_alloc_grid(q, lin_code_dtype(cfg), w, l->groups, cfg->mode == LIN_MODE_ASYMMETRIC, err);
}

static qh_status linear_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q,
                                 qh_tensor *deq, qh_error *err)
{
    const linear_cfg *cfg = state;
    qh_status st = check_input(cfg, name, w, deq, err);
    if (st != QH_OK)
        return st;
    int64_t n = qh_tensor_numel(w);
    lin_layout l = lin_make_layout(cfg, w);
    if ((st = alloc_qtensor(cfg, w, &l, q, err)) != QH_OK)
        return st;
    lin_out o = {q->codes->data, q->codes->dtype, qh_tensor_f32(q->scale), q->zero ? (int32_t *)q->zero->data : NULL,
                 qh_tensor_f32(deq)};
    int64_t wraps = lin_run(cfg, w, &o, 1);
    if (wraps < 0) {
        qh_qtensor_clear(q);
        if (wraps == LIN_NOMEM)
            return qh_error_set(err, QH_E_NOMEM, "tensor %s: out of memory", name);
        return not_finite(name, w, err);
    }
    if (wraps > 0)
        qh_log(QH_LOG_WARN, "linear", "%s: %lld of %lld codes wrapped around (seed001 reproduces the seed's int cast)",
               name, (long long)wraps, (long long)n);
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
    .summary = "linear weight quantization, per tensor, per output channel or per block",
    .help = "Symmetric (restricted signed range, no zero point) or asymmetric (unsigned codes, zero point, "
            "0 exactly representable) grids of 2..16 bits; round to nearest (half away from zero) or "
            "stochastic; range by min/max, percentile or MSE search; mode = seed001 reproduces seed 001's "
            "truncating quantize_requantize.",
    .params = params,
    .config_size = sizeof(linear_cfg),
    .ops.quantizer = &linear_ops,
};

static const qh_plugin_desc *const linear_plugins[] = {&linear_desc};

static const qh_library linear_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-linear",
    .version = "1.1.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = linear_plugins,
};

QH_PLUGIN_LIBRARY(linear_lib)
