/* dynamic_tree.c - Dettmers' dynamic tree quantization with block-wise absmax scaling (bitsandbytes'
 * quantize_blockwise), and seed 001's decimal-exponent variant.
 *
 * mode = bnb: the N-bit signed dynamic map (dtcode.h: exactly 2^N distinct codes, no padding);
 *   v = w / absmax(group), code = index of the nearest map entry (binary search over the midpoints;
 *   a v exactly halfway goes toward zero), value = map[code] * absmax. Default groups are blocks of
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
#include <string.h>

#include "dtcode.h"
#include "qhost/qh_plugin.h"

typedef struct dt_cfg {
    int64_t bits;
    int granularity, mode;
    int64_t block;
} dt_cfg;

enum { GRAN_BLOCK = 0, GRAN_ROW, GRAN_CHANNEL, GRAN_TENSOR };
enum { MODE_BNB = 0, MODE_SEED001 };

static const char *const gran_names[] = {"block", "row", "channel", "tensor", NULL};
static const char *const mode_names[] = {"bnb", "seed001", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", dt_cfg, bits, 8, 2, 8, "bits", "code width N: the map has 2^N entries"),
    {"granularity", QH_PARAM_ENUM, offsetof(dt_cfg, granularity), {.i = GRAN_BLOCK}, 0, 0, gran_names, 0,
     "group", "absmax per block of the flattened tensor, per row of the last dimension, per output channel, "
              "or per tensor"},
    QH_P_INT("block", dt_cfg, block, 4096, 2, 16777216, "elements",
             "block length over the flattened tensor (granularity = block); the last block may be shorter"),
    {"mode", QH_PARAM_ENUM, offsetof(dt_cfg, mode), {.i = MODE_BNB}, 0, 0, mode_names, 0, "rule",
     "bnb: bitsandbytes' dynamic map, nearest code; seed001: seed 001's decimal-exponent rule"},
    QH_P_END,
};

#define MAX_E 8 /* exponent buckets: 0..N-1 */

/* The table of one run: the book plus what lookups need. */
typedef struct coder {
    int bits, mode, n;
    float book[DT_SEED_MAX];
    int8_t expo[256];
    double mid[DT_SEED_MAX];
} coder;

static void coder_init(coder *c, const dt_cfg *cfg)
{
    c->bits = (int)cfg->bits;
    c->mode = cfg->mode;
    if (c->mode == MODE_BNB) {
        c->n = dt_bnb_book(c->bits, c->book, c->expo);
        dt_midpoints(c->book, c->n, c->mid);
    } else {
        c->n = dt_seed_book(c->bits, c->book);
    }
}

/* Code of v = w / absmax, |v| <= 1; *e = its exponent bucket (-1 for a zero code). */
static int encode(const coder *c, float v, int *e)
{
    if (c->mode == MODE_BNB) {
        int k = dt_nearest(c->mid, c->n, v);
        *e = c->expo[k];
        return k;
    }
    return dt_book_find(c->book, c->n, dt_seed_round(v, c->bits, e)); /* in the table by construction */
}

typedef struct groups {
    int64_t n, count, len; /* count groups of len elements, the last possibly shorter */
    int64_t cols, nblk;    /* rows of the last dimension split into nblk blocks (granularity row) */
} groups;

static void group_range(const groups *G, int64_t g, int64_t *start, int64_t *len)
{
    *start = g * G->len;
    *len = G->n - *start < G->len ? G->n - *start : G->len;
}

static groups make_groups(const dt_cfg *cfg, const qh_tensor *w, qh_qtensor *q)
{
    int64_t n = qh_tensor_numel(w), cols = w->ndim > 0 ? w->shape[w->ndim - 1] : 1;
    groups G = {n, 1, n > 0 ? n : 1, cols, 1};
    q->gran = QH_QG_TENSOR;
    if (cfg->granularity == GRAN_BLOCK) {
        q->gran = QH_QG_FLAT_BLOCK;
        q->block = (int32_t)cfg->block;
        G.len = cfg->block;
    } else if (cfg->granularity == GRAN_ROW) {
        q->gran = QH_QG_BLOCK; /* one block = one whole row */
        q->block = (int32_t)(cols > 0 ? cols : 1);
        G.len = q->block;
    } else if (cfg->granularity == GRAN_CHANNEL && w->ndim > 0 && w->shape[0] > 0) {
        q->gran = QH_QG_CHANNEL;
        q->axis = 0;
        G.len = n / w->shape[0] > 0 ? n / w->shape[0] : 1;
    }
    G.count = n > 0 ? (n + G.len - 1) / G.len : 0;
    if (q->gran == QH_QG_CHANNEL)
        G.count = w->shape[0];
    return G;
}

/* Quantizes one group; adds its exponent counts to cnt[0..MAX_E] (cnt[MAX_E] = zeros). */
/* codes: U8 (bnb) or I16 (seed001, up to 337 levels), at element offset `off`. */
static void quantize_group(const coder *c, const float *x, int64_t n, void *codes, int64_t off, float *deq,
                           float *scale, int64_t *cnt)
{
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float s = amax > 0.0f ? amax : 1.0f;
    for (int64_t i = 0; i < n; i++) {
        int e;
        int k = encode(c, x[i] / s, &e);
        if (c->mode == MODE_BNB)
            ((uint8_t *)codes)[off + i] = (uint8_t)k;
        else
            ((int16_t *)codes)[off + i] = (int16_t)k;
        deq[i] = c->book[k] * s;
        cnt[e < 0 ? MAX_E : e]++;
    }
    *scale = s;
}

static qh_status check_input(const dt_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if (cfg->block < 2 || cfg->block > 16777216)
        return qh_error_set(err, QH_E_INVAL, "block = %lld outside [2, 16777216]", (long long)cfg->block);
    if ((unsigned)cfg->granularity > GRAN_TENSOR || (unsigned)cfg->mode > MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad granularity or mode index");
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != qh_tensor_numel(w))
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)qh_tensor_numel(w));
    const float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qh_error_set(err, QH_E_INVAL, "element %lld is %s; absmax scaling needs finite weights",
                                (long long)i, isnan(x[i]) ? "NaN" : "infinite");
    return QH_OK;
}

static int width_of(int levels)
{
    int b = 1;
    while ((1 << b) < levels)
        b++;
    return b;
}

static void log_counts(const char *name, const coder *c, const int64_t *cnt)
{
    char buf[512];
    int off = snprintf(buf, sizeof buf, "{\"tensor\": \"%s\", \"mode\": \"%s\", \"bits\": %d, \"zero\": %lld, \"e\": [",
                       name, mode_names[c->mode], c->bits, (long long)cnt[MAX_E]);
    int ne = c->mode == MODE_BNB ? c->bits - 1 : c->bits; /* bnb exponents 0..N-2, seed buckets 0..N-1 */
    for (int e = 0; e < ne && off > 0 && off < (int)sizeof buf; e++)
        off += snprintf(buf + off, sizeof buf - (size_t)off, "%s%lld", e ? ", " : "", (long long)cnt[e]);
    if (off > 0 && off < (int)sizeof buf)
        snprintf(buf + off, sizeof buf - (size_t)off, "]}");
    qh_log(QH_LOG_INFO, "dynamic_tree", "codes by decimal exponent %s", buf);
}

static qh_status dt_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                             qh_error *err)
{
    const dt_cfg *cfg = state;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    coder c;
    coder_init(&c, cfg);
    memset(q, 0, sizeof *q);
    groups G = make_groups(cfg, w, q);
    int64_t levels = c.n, count = G.count;
    q->bits = c.mode == MODE_BNB ? c.bits : width_of(c.n);
    q->book_fixed = 1;
    q->codes = qh_tensor_new(c.mode == MODE_BNB ? QH_U8 : QH_I16, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &count, err) : NULL;
    q->codebook = q->scale ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    if (!q->codebook)
        return QH_E_NOMEM; /* the host clears partial outputs */
    memcpy(q->codebook->data, c.book, (size_t)c.n * sizeof(float));
    const float *x = qh_tensor_f32(w);
    float *y = qh_tensor_f32(deq), *scale = qh_tensor_f32(q->scale);
    void *codes = q->codes->data;
    int64_t cnt[MAX_E + 1] = {0};
    const coder *cc = &c;
    /* Groups are independent and the counts are integer sums: identical for any thread count. */
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : cnt[:MAX_E + 1])
    for (int64_t g = 0; g < count; g++) {
        int64_t s0, len;
        group_range(&G, g, &s0, &len);
        quantize_group(cc, x + s0, len, codes, s0, y + s0, scale + g, cnt);
    }
    log_counts(name, &c, cnt);
    return QH_OK;
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
