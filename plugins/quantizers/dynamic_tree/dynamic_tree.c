/* dynamic_tree.c - Dettmers' dynamic tree quantization with block-wise absmax scaling (bitsandbytes'
 * quantize_blockwise), and seed 001's decimal-exponent variant.
 *
 * mode = bnb: the N-bit signed dynamic map (dtcode.h: exactly 2^N distinct codes, no padding);
 *   v = w / absmax(group), code = index of the nearest map entry (binary search over the midpoints;
 *   a v exactly halfway goes toward zero; dt_run.c's fast loop gives the same codes by table
 *   look-up), value = map[code] * absmax. Default groups are blocks of
 *   4096 consecutive elements of the flattened tensor (bitsandbytes' blocksize default; the paper
 *   uses 2048); the last block may be shorter, so no size is refused. The map is a fixed table.
 * mode = seed001: seed 001's round_dt8(w / absmax, N) with granularity = row for the seed's row-wise
 *   scaling; its "N-bit" code has 337 ... 233 levels (N = 8 ... 3), so codes are I16 indices into
 *   that table (bnb codes are U8) and the honest width is ceil(log2(levels)) bits (9 for N = 8, 7; 8 below), not N.
 * Exact zeros stay exactly zero (0 is in both tables; the seed looped forever on them); an all-zero
 * group gets scale 1. Per tensor, one INFO line gives the codes by decimal exponent as JSON:
 * {"tensor": ..., "zero": z, "e": [n_0, n_1, ...]} with e = 0 for magnitudes >= 0.1 * absmax (bnb:
 * the exponent of the chosen code; seed001: the seed's bucket min(N-1, E), its exp-count table).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dt_impl.h"

static const char *const gran_names[] = {"block", "row", "channel", "tensor", NULL};
static const char *const mode_names[] = {"bnb", "seed001", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", dt_cfg, bits, 8, 2, 8, "bits", "code width N: the map has 2^N entries"),
    {"granularity", QH_PARAM_ENUM, offsetof(dt_cfg, granularity), {.i = DT_GRAN_BLOCK}, 0, 0, gran_names, 0,
     "group", "absmax per block of the flattened tensor, per row of the last dimension, per output channel, "
              "or per tensor"},
    QH_P_INT("block", dt_cfg, block, 4096, 2, 16777216, "elements",
             "block length over the flattened tensor (granularity = block); the last block may be shorter"),
    {"mode", QH_PARAM_ENUM, offsetof(dt_cfg, mode), {.i = DT_MODE_BNB}, 0, 0, mode_names, 0, "rule",
     "bnb: bitsandbytes' dynamic map, nearest code; seed001: seed 001's decimal-exponent rule"},
    QH_P_END,
};

static qh_status check_input(const dt_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if (cfg->block < 2 || cfg->block > 16777216)
        return qh_error_set(err, QH_E_INVAL, "block = %lld outside [2, 16777216]", (long long)cfg->block);
    if ((unsigned)cfg->granularity > DT_GRAN_TENSOR || (unsigned)cfg->mode > DT_MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad granularity or mode index");
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)qh_tensor_numel(w));
    return QH_OK; /* non-finite weights are caught by the absmax pass, which reads every element anyway */
}

static int width_of(int levels)
{
    int b = 1;
    while ((1 << b) < levels)
        b++;
    return b;
}

static void log_counts(const char *name, const dt_coder *c, const int64_t *cnt)
{
    char buf[512];
    int off = snprintf(buf, sizeof buf, "{\"tensor\": \"%s\", \"mode\": \"%s\", \"bits\": %d, \"zero\": %lld, \"e\": [",
                       name, mode_names[c->mode], c->bits, (long long)cnt[DT_MAX_E]);
    int ne = c->mode == DT_MODE_BNB ? c->bits - 1 : c->bits; /* bnb exponents 0..N-2, seed buckets 0..N-1 */
    for (int e = 0; e < ne && off > 0 && off < (int)sizeof buf; e++)
        off += snprintf(buf + off, sizeof buf - (size_t)off, "%s%lld", e ? ", " : "", (long long)cnt[e]);
    if (off > 0 && off < (int)sizeof buf)
        snprintf(buf + off, sizeof buf - (size_t)off, "]}");
    qh_log(QH_LOG_INFO, "dynamic_tree", "codes by decimal exponent %s", buf);
}

static qh_status alloc_q(const dt_coder *c, const qh_tensor *w, int64_t count, qh_qtensor *q, qh_error *err)
{
    int64_t levels = c->n;
    q->bits = c->mode == DT_MODE_BNB ? c->bits : width_of(c->n);
    q->book_fixed = 1;
    q->codes = qh_tensor_new(c->mode == DT_MODE_BNB ? QH_U8 : QH_I16, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &count, err) : NULL;
    q->codebook = q->scale ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    if (!q->codebook)
        return QH_E_NOMEM; /* the host clears partial outputs */
    memcpy(q->codebook->data, c->book, (size_t)c->n * sizeof(float));
    return QH_OK;
}

static qh_status dt_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                             qh_error *err)
{
    const dt_cfg *cfg = state;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    dt_coder *c = dt_coder_new(cfg);
    if (!c)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    memset(q, 0, sizeof *q);
    dt_groups G = dt_make_groups(cfg, w, q);
    int64_t cnt[DT_MAX_E + 1];
    if ((st = alloc_q(c, w, G.count, q, err)) == QH_OK) {
        dt_out o = {q->codes->data, qh_tensor_f32(q->scale), qh_tensor_f32(deq), cnt};
        if (dt_run(c, &G, w, &o, 1)) {
            const float *x = qh_tensor_f32(w);
            int64_t i = qq_first_nonfinite(x, qh_tensor_numel(w));
            qh_qtensor_clear(q);
            st = qh_error_set(err, QH_E_INVAL, "element %lld is %s; absmax scaling needs finite weights",
                              (long long)i, isnan(x[i]) ? "NaN" : "infinite");
        } else {
            log_counts(name, c, cnt);
        }
    }
    free(c);
    return st;
}

static const qh_quantizer_ops dt_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = dt_quantize,
};

static const qh_plugin_desc dt_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "dynamic_tree",
    .summary = "dynamic tree quantization (bitsandbytes' dynamic map) with block-wise absmax scaling",
    .help = "N = 2..8 bits: the signed map of create_dynamic_map(True, N-1, N), exactly 2^N codes, nearest "
            "code after dividing by the block's absmax. mode = seed001 reproduces seed 001's decimal-exponent "
            "rule (337 ... 233 levels for N = 8 ... 3; use granularity = row).",
    .params = params,
    .config_size = sizeof(dt_cfg),
    .ops.quantizer = &dt_ops,
};

static const qh_plugin_desc *const dt_plugins[] = {&dt_desc};

static const qh_library dt_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-dynamic-tree",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = dt_plugins,
};

QH_PLUGIN_LIBRARY(dt_lib)
