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

#include "fp8code.h"
#include "qhost/qh_plugin.h"

typedef struct fp8_cfg {
    int format, granularity, mode;
    int64_t block;
} fp8_cfg;

enum { GRAN_TENSOR = 0, GRAN_CHANNEL, GRAN_ROW, GRAN_BLOCK };
enum { MODE_OCP = 0, MODE_SEED001 };

static const char *const format_names[] = {"e4m3", "e5m2", NULL};
static const char *const gran_names[] = {"tensor", "channel", "row", "block", NULL};
static const char *const mode_names[] = {"ocp", "seed001", NULL};

static const qh_param params[] = {
    {"format", QH_PARAM_ENUM, offsetof(fp8_cfg, format), {.i = FP8_E4M3}, 0, 0, format_names, 0, "format",
     "e4m3 (bias 7, max 448, no infinities) or e5m2 (bias 15, max 57344)"},
    {"granularity", QH_PARAM_ENUM, offsetof(fp8_cfg, granularity), {.i = GRAN_CHANNEL}, 0, 0, gran_names, 0,
     "group", "one scale per tensor, per output channel (axis 0), per row of the last dimension, or per block"},
    QH_P_INT("block", fp8_cfg, block, 32, 1, 16777216, "elements",
             "block length along the last dimension (granularity = block); a shorter last block is kept"),
    {"mode", QH_PARAM_ENUM, offsetof(fp8_cfg, mode), {.i = MODE_OCP}, 0, 0, mode_names, 0, "rule",
     "ocp: round to nearest even with subnormals and saturation; seed001: seed 001's truncating round_fp8"},
    QH_P_END,
};

/* Contiguous groups: group g covers [start(g), start(g) + len(g)). */
typedef struct layout {
    int64_t groups, len, cols, nblk, block;
} layout;

static void group_range(const layout *L, int64_t g, int64_t *start, int64_t *len)
{
    if (L->nblk == 0) { /* equal contiguous groups */
        *start = g * L->len;
        *len = L->len;
        return;
    }
    int64_t row = g / L->nblk, b = g % L->nblk;
    *start = row * L->cols + b * L->block;
    *len = L->cols - b * L->block < L->block ? L->cols - b * L->block : L->block;
}

static layout make_layout(const fp8_cfg *cfg, const qh_tensor *w, qh_qtensor *q)
{
    int64_t n = qh_tensor_numel(w), cols = w->ndim > 0 ? w->shape[w->ndim - 1] : 1;
    layout L = {1, n, cols, 0, 0};
    q->gran = QH_QG_TENSOR;
    if (cfg->granularity == GRAN_CHANNEL && w->ndim > 0) {
        q->gran = QH_QG_CHANNEL;
        q->axis = 0;
        L.groups = w->shape[0];
    } else if (cfg->granularity == GRAN_ROW || cfg->granularity == GRAN_BLOCK) {
        q->gran = QH_QG_BLOCK;
        q->block = (int32_t)(cfg->granularity == GRAN_ROW || cfg->block > cols ? cols : cfg->block);
        L.block = q->block;
        L.nblk = cols > 0 ? (cols + L.block - 1) / L.block : 0;
        L.groups = cols > 0 ? (n / cols) * L.nblk : 0;
    }
    if (L.nblk == 0)
        L.len = L.groups > 0 ? n / L.groups : 0;
    return L;
}

typedef struct coder {
    const fp8_cfg *cfg;
    const fp8_format *fmt;
    const float *book;
    int nbook;
} coder;

static uint8_t encode(const coder *c, float v)
{
    if (c->cfg->mode == MODE_OCP)
        return fp8_encode(v, c->fmt);
    /* every seed value of |v| <= 1 is in the book by construction */
    return (uint8_t)fp8_book_find(c->book, c->nbook, fp8_seed_round(v, c->fmt->ebits));
}

static float group_scale(const coder *c, const float *x, int64_t n)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    if (c->cfg->mode == MODE_SEED001)
        return amax;
    float s = amax / c->fmt->max;
    return s > 0.0f ? s : 1.0f; /* all zeros (or an absmax that underflows) */
}

static void encode_range(const coder *c, const float *x, int64_t n, float s, uint8_t *codes, float *deq)
{
    for (int64_t i = 0; i < n; i++) {
        /* seed001 with s == 0: an all-zero group, any code decodes to 0 */
        uint8_t k = encode(c, s > 0.0f ? x[i] / s : 0.0f);
        codes[i] = k;
        deq[i] = c->book[k] * s;
    }
}

static qh_status check_input(const fp8_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if ((unsigned)cfg->format > FP8_E5M2 || (unsigned)cfg->granularity > GRAN_BLOCK ||
        (unsigned)cfg->mode > MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad format, granularity or mode index");
    if (cfg->block < 1 || cfg->block > 16777216)
        return qh_error_set(err, QH_E_INVAL, "block = %lld outside [1, 16777216]", (long long)cfg->block);
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)qh_tensor_numel(w));
    const float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qh_error_set(err, QH_E_INVAL, "element %lld is %s; FP8 scaling needs finite weights",
                                (long long)i, isnan(x[i]) ? "NaN" : "infinite");
    return QH_OK;
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

static qh_status fp8_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                              qh_error *err)
{
    (void)name; /* the host prefixes messages with it */
    const fp8_cfg *cfg = state;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    memset(q, 0, sizeof *q);
    layout L = make_layout(cfg, w, q);
    float seed_book[256];
    coder c = {cfg, fp8_format_get((fp8_kind)cfg->format), seed_book, 0};
    if (cfg->mode == MODE_SEED001)
        c.nbook = fp8_seed_book(c.fmt->ebits, seed_book);
    st = alloc_q(w, L.groups, cfg->mode == MODE_SEED001 ? c.nbook : 256, q, err);
    if (st != QH_OK)
        return st;
    float *book = qh_tensor_f32(q->codebook);
    if (cfg->mode == MODE_OCP)
        for (int k = 0; k < 256; k++)
            book[k] = fp8_decode((uint8_t)k, c.fmt);
    else
        memcpy(book, seed_book, (size_t)c.nbook * sizeof *book);
    c.book = book;
    const float *x = qh_tensor_f32(w);
    float *y = qh_tensor_f32(deq), *scale = qh_tensor_f32(q->scale);
    uint8_t *codes = q->codes->data;
    if (L.groups == 1) { /* one group: parallel inside it (max and per-element coding are order-free) */
        int64_t n = L.len;
        float amax = 0.0f;
#pragma omp parallel for reduction(max : amax) schedule(static)
        for (int64_t i = 0; i < n; i++)
            amax = fmaxf(amax, fabsf(x[i]));
        float one = amax;
        scale[0] = group_scale(&c, &one, 1);
#pragma omp parallel for schedule(static)
        for (int64_t i0 = 0; i0 < n; i0 += 4096)
            encode_range(&c, x + i0, n - i0 < 4096 ? n - i0 : 4096, scale[0], codes + i0, y + i0);
        return QH_OK;
    }
    /* Groups are independent, so the result is the same for any thread count. */
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < L.groups; g++) {
        int64_t s0, len;
        group_range(&L, g, &s0, &len);
        scale[g] = group_scale(&c, x + s0, len);
        encode_range(&c, x + s0, len, scale[g], codes + s0, y + s0);
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
