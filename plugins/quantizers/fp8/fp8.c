/* fp8.c - FP8 weight quantization (OCP E4M3 / E5M2) with per-tensor, per-channel, per-row or per-block
 * scales, and seed 001's truncating variant.
 *
 * mode = ocp: scale = absmax(group) / max_finite, code = the FP8 byte of w / scale rounded to nearest
 *   (ties to even, subnormals kept, saturating at +-max: no code ever decodes to NaN or infinity; E5M2's
 *   infinity codes exist but are never produced). Code book = the 256 decoded bytes (NaN / +-Inf at
 *   their codes), a fixed table, so only codes and scales count toward the size.
 * mode = seed001: seed 001's round_fp8(w / absmax, exp) (see fp8code.h): truncated mantissa, exponent
 *   clamped to [2 - 2^exp, 2^exp - 1], no zero (0 becomes +2^-14), no subnormals. The seed is row-wise
 *   (granularity = row); codes index its sorted 240- (E4M3) or 248-entry (E5M2) code book.
 * An all-zero group gets scale 1 (ocp: every code is 0 = +0.0) or 0 (seed001, whose code book has no
 * zero), so it decodes to exact zeros. Groups are contiguous ranges of the row-major weight: the whole
 * tensor, a slice along axis 0, a row of the last dimension, or `block` consecutive elements of a row;
 * a block size that does not divide the row leaves a shorter last block in each row (its own group,
 * as qh_qtensor defines), so no shape is refused. Dequantized values are codebook[code] * scale, the
 * reference decoder's expression, bit for bit.
 */
#include <math.h>
#include <string.h>

#include "fp8_impl.h"

static const char *const format_names[] = {"e4m3", "e5m2", NULL};
static const char *const gran_names[] = {"tensor", "channel", "row", "block", NULL};
static const char *const mode_names[] = {"ocp", "seed001", NULL};

static const qh_param params[] = {
    {"format", QH_PARAM_ENUM, offsetof(fp8_cfg, format), {.i = FP8_E4M3}, 0, 0, format_names, 0, "format",
     "e4m3 (bias 7, max 448, no infinities) or e5m2 (bias 15, max 57344)"},
    {"granularity", QH_PARAM_ENUM, offsetof(fp8_cfg, granularity), {.i = FP8_GRAN_CHANNEL}, 0, 0, gran_names, 0,
     "group", "one scale per tensor, per output channel (axis 0), per row of the last dimension, or per block"},
    QH_P_INT("block", fp8_cfg, block, 32, 1, 16777216, "elements",
             "block length along the last dimension (granularity = block); a shorter last block is kept"),
    {"mode", QH_PARAM_ENUM, offsetof(fp8_cfg, mode), {.i = FP8_MODE_OCP}, 0, 0, mode_names, 0, "rule",
     "ocp: round to nearest even with subnormals and saturation; seed001: seed 001's truncating round_fp8"},
    QH_P_END,
};

static qh_status check_input(const fp8_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if ((unsigned)cfg->format > FP8_E5M2 || (unsigned)cfg->granularity > FP8_GRAN_BLOCK ||
        (unsigned)cfg->mode > FP8_MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad format, granularity or mode index");
    if (cfg->block < 1 || cfg->block > 16777216)
        return qh_error_set(err, QH_E_INVAL, "block = %lld outside [1, 16777216]", (long long)cfg->block);
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)qh_tensor_numel(w));
    return QH_OK; /* non-finite weights are caught by the absmax pass, which reads every element anyway */
}

static qh_status alloc_q(const qh_tensor *w, int64_t groups, int64_t levels, qh_qtensor *q, qh_error *err)
{
    q->bits = 8;
    q->book_fixed = 1;
    q->codes = qh_tensor_new(QH_U8, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &groups, err) : NULL;
    q->codebook = q->scale ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    return q->codebook ? QH_OK : QH_E_NOMEM; /* the host clears partial outputs */
}

static qh_status not_finite(const qh_tensor *w, qh_error *err)
{
    const float *x = qh_tensor_f32(w);
    int64_t i = qq_first_nonfinite(x, qh_tensor_numel(w));
    return qh_error_set(err, QH_E_INVAL, "element %lld is %s; FP8 scaling needs finite weights", (long long)i,
                        isnan(x[i]) ? "NaN" : "infinite");
}

static qh_status fp8_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                              qh_error *err)
{
    (void)name; /* the host prefixes messages with it */
    const fp8_cfg *cfg = state;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    memset(q, 0, sizeof *q);
    fp8_layout L = fp8_make_layout(cfg, w, q);
    float book[256];
    int nbook = fp8_make_book(cfg, book);
    if ((st = alloc_q(w, L.groups, nbook, q, err)) != QH_OK)
        return st;
    memcpy(q->codebook->data, book, (size_t)nbook * sizeof *book);
    fp8_out o = {q->codes->data, qh_tensor_f32(q->scale), qh_tensor_f32(deq), qh_tensor_f32(q->codebook), nbook};
    if (fp8_run(cfg, &L, w, &o, 1)) {
        qh_qtensor_clear(q);
        return not_finite(w, err);
    }
    return QH_OK;
}

static const qh_quantizer_ops fp8_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = fp8_quantize,
};

static const qh_plugin_desc fp8_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "fp8",
    .summary = "FP8 (OCP E4M3 / E5M2) weights with per-tensor, per-channel, per-row or per-block scales",
    .help = "Codes are the FP8 bytes; scale = absmax / max finite value of the format; round to nearest "
            "even, subnormals, saturation. mode = seed001 reproduces seed 001's truncating round_fp8 "
            "(use granularity = row for the seed's row-wise scaling).",
    .params = params,
    .config_size = sizeof(fp8_cfg),
    .ops.quantizer = &fp8_ops,
};

static const qh_plugin_desc *const fp8_plugins[] = {&fp8_desc};

static const qh_library fp8_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-fp8",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = fp8_plugins,
};

QH_PLUGIN_LIBRARY(fp8_lib)
