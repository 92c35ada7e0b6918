/* stable_embedding.c - seed 001's "stable embedding" quantizer: magnitude-sorted block-wise coding.
 *
 * Not bitsandbytes' StableEmbedding layer (a training-stability embedding); this is what seed 001's
 * StableEmbeddingRun notebook does (seeds.md 2.5): flatten the weight, order its elements by |w|
 * ascending, cut that order into groups of `group` consecutive elements (the last may be shorter),
 * scale each group by its absmax and code it with the dynamic-tree map (bits N) or FP8 E4M3, and keep
 * the permutation. Grouping like magnitudes makes each group's absmax fit its members.
 *
 * Ties in |w| (and +0 / -0) keep the flat index order: the sort is stable (LSD radix on the bits of
 * |w|, or insertion sort for short segments), so the result is deterministic.
 *
 * Representation: QH_QG_FLAT_BLOCK with block = group and perm[i] = position of element i in the
 * sorted order, so element i belongs to group perm[i] / group; codes stay at the elements' own
 * positions and dequantization (codebook[code] * scale) needs no scatter. Size: codes + one F32
 * scale per group + the permutation at ceil(log2(numel)) bits per element (qh_qtensor_bytes); the
 * seed counted no permutation at all.
 *
 * mode = canonical: the whole tensor is one sequence; codes are bitsandbytes' N-bit dynamic map
 *   (nearest) or OCP E4M3 (scale = absmax / 448, round to nearest even).
 * mode = seed001: the seed's application and codes: a rank-4 (conv) weight is sorted within each
 *   [filter, channel] kh x kw slice and grouped by kw; a rank-2 weight is sorted whole and grouped by
 *   out_features (shape[0]); other ranks use `group`. Codes are seed 001's decimal-exponent rule
 *   (code = dynamic_tree) or its truncating round_fp8 with exp = 4 (code = fp8_e4m3).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtcode.h"
#include "fp8code.h"
#include "qhost/qh_plugin.h"

typedef struct se_cfg {
    int64_t bits;
    int code, mode;
    int64_t group;
} se_cfg;

enum { CODE_DT = 0, CODE_FP8 };
enum { MODE_CANONICAL = 0, MODE_SEED001 };

static const char *const code_names[] = {"dynamic_tree", "fp8_e4m3", NULL};
static const char *const mode_names[] = {"canonical", "seed001", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", se_cfg, bits, 8, 2, 8, "bits", "dynamic-tree code width N (fp8_e4m3 needs 8)"),
    {"code", QH_PARAM_ENUM, offsetof(se_cfg, code), {.i = CODE_DT}, 0, 0, code_names, 0, "code",
     "code for the normalized values: dynamic tree map or FP8 E4M3"},
    QH_P_INT("group", se_cfg, group, 256, 2, 16777216, "elements",
             "magnitude-sorted elements per scale (the last group may be shorter)"),
    {"mode", QH_PARAM_ENUM, offsetof(se_cfg, mode), {.i = MODE_CANONICAL}, 0, 0, mode_names, 0, "rule",
     "canonical: whole-tensor order, standard codes; seed001: seed 001's slices, group sizes and codes"},
    QH_P_END,
};

/* ---------------------------------------------------------------- the code of normalized values */

typedef struct coder {
    int kind; /* 0 bnb map, 1 OCP E4M3, 2 seed DT, 3 seed FP8 */
    int bits, n;
    float book[DT_SEED_MAX];
    double mid[DT_SEED_MAX];
    const fp8_format *fmt;
} coder;

enum { K_BNB = 0, K_OCP, K_SEED_DT, K_SEED_FP8 };

static void coder_init(coder *c, const se_cfg *cfg)
{
    c->kind = (cfg->mode == MODE_SEED001 ? 2 : 0) + (cfg->code == CODE_FP8);
    c->bits = (int)cfg->bits;
    c->fmt = fp8_format_get(FP8_E4M3);
    switch (c->kind) {
    case K_BNB:
        c->n = dt_bnb_book(c->bits, c->book, NULL);
        dt_midpoints(c->book, c->n, c->mid);
        break;
    case K_OCP:
        c->n = 256;
        for (int k = 0; k < 256; k++)
            c->book[k] = fp8_decode((uint8_t)k, c->fmt);
        break;
    case K_SEED_DT: c->n = dt_seed_book(c->bits, c->book); break;
    default: c->n = fp8_seed_book(4, c->book); break;
    }
}

/* Scale of a group with absmax a; 0 only for seed FP8's all-zero groups (its book has no zero). */
static float coder_scale(const coder *c, float a)
{
    if (c->kind == K_OCP)
        a /= c->fmt->max;
    if (a > 0.0f)
        return a;
    return c->kind == K_SEED_FP8 ? 0.0f : 1.0f;
}

static int coder_encode(const coder *c, float v)
{
    int e;
    switch (c->kind) {
    case K_BNB: return dt_nearest(c->mid, c->n, v);
    case K_OCP: return fp8_encode(v, c->fmt);
    case K_SEED_DT: return dt_book_find(c->book, c->n, dt_seed_round(v, c->bits, &e));
    default: return fp8_book_find(c->book, c->n, fp8_seed_round(v, 4));
    }
}

static int width_of(int levels)
{
    int b = 1;
    while ((1 << b) < levels)
        b++;
    return b;
}

/* ---------------------------------------------------------------- stable sort by magnitude */

static uint32_t mag_key(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u & 0x7FFFFFFFu; /* for finite floats, the order of |v| */
}

/* Insertion sort of idx[0..n) by key; stable. */
static void sort_small(const float *x, int32_t *idx, int64_t n)
{
    for (int64_t i = 1; i < n; i++) {
        int32_t t = idx[i];
        uint32_t k = mag_key(x[t]);
        int64_t j = i;
        while (j > 0 && mag_key(x[idx[j - 1]]) > k) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = t;
    }
}

/* LSD radix sort of idx[0..n) by key: (key << 32 | index) pairs keep the key next to the index
 * (sequential memory access), 3 stable passes of 11 bits over the key, starting from index order.
 * buf holds 2n pairs. */
static void sort_radix(const float *x, int32_t *idx, uint64_t *buf, int64_t n)
{
    uint64_t *src = buf, *dst = buf + n;
    for (int64_t i = 0; i < n; i++)
        src[i] = (uint64_t)mag_key(x[idx[i]]) << 32 | (uint32_t)idx[i];
    for (int shift = 32; shift < 65; shift += 11) {
        int64_t count[2049] = {0};
        for (int64_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 2047) + 1]++;
        for (int b = 0; b < 2048; b++)
            count[b + 1] += count[b];
        for (int64_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 2047]++] = src[i];
        uint64_t *t = src;
        src = dst;
        dst = t;
    }
    for (int64_t i = 0; i < n; i++)
        idx[i] = (int32_t)(uint32_t)src[i];
}

/* ---------------------------------------------------------------- the plugin */

typedef struct plan {
    int64_t n, seg, group; /* sort within segments of seg elements; groups of `group` positions */
} plan;

static plan make_plan(const se_cfg *cfg, const qh_tensor *w)
{
    int64_t n = qh_tensor_numel(w);
    plan P = {n, n, cfg->group};
    if (cfg->mode == MODE_SEED001 && w->ndim == 4) {
        P.seg = w->shape[2] * w->shape[3];
        P.group = w->shape[3];
    } else if (cfg->mode == MODE_SEED001 && w->ndim == 2) {
        P.group = w->shape[0];
    }
    if (P.seg < 1)
        P.seg = 1;
    if (P.group < 1)
        P.group = 1;
    return P;
}

/* order[p] = flat index of the element at sorted position p. */
static qh_status sort_all(const plan *P, const float *x, int32_t *order, qh_error *err)
{
    int64_t nseg = (P->n + P->seg - 1) / P->seg;
    for (int64_t i = 0; i < P->n; i++)
        order[i] = (int32_t)i;
    if (P->seg <= 64) {
#pragma omp parallel for schedule(static)
        for (int64_t s = 0; s < nseg; s++) {
            int64_t len = P->n - s * P->seg < P->seg ? P->n - s * P->seg : P->seg;
            sort_small(x, order + s * P->seg, len);
        }
        return QH_OK;
    }
    uint64_t *tmp = malloc((size_t)P->seg * 2 * sizeof *tmp);
    if (!tmp)
        return qh_error_set(err, QH_E_NOMEM, "out of memory sorting %lld elements", (long long)P->seg);
    for (int64_t s = 0; s < nseg; s++) {
        int64_t len = P->n - s * P->seg < P->seg ? P->n - s * P->seg : P->seg;
        sort_radix(x, order + s * P->seg, tmp, len);
    }
    free(tmp);
    return QH_OK;
}

static void encode_group(const coder *c, const float *x, const int32_t *order, int64_t p0, int64_t len,
                         void *codes, int wide, int32_t *perm, float *deq, float *scale)
{
    float amax = 0.0f;
    for (int64_t p = p0; p < p0 + len; p++)
        amax = fmaxf(amax, fabsf(x[order[p]]));
    float s = coder_scale(c, amax);
    for (int64_t p = p0; p < p0 + len; p++) {
        int32_t i = order[p];
        int k = coder_encode(c, s > 0.0f ? x[i] / s : 0.0f);
        if (wide)
            ((int16_t *)codes)[i] = (int16_t)k;
        else
            ((uint8_t *)codes)[i] = (uint8_t)k;
        deq[i] = c->book[k] * s;
        perm[i] = (int32_t)p;
    }
    *scale = s;
}

static qh_status check_input(const se_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if (cfg->code == CODE_FP8 && cfg->bits != 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld with code = fp8_e4m3, whose codes are 8 bits",
                            (long long)cfg->bits);
    if (cfg->group < 2 || cfg->group > 16777216)
        return qh_error_set(err, QH_E_INVAL, "group = %lld outside [2, 16777216]", (long long)cfg->group);
    if ((unsigned)cfg->code > CODE_FP8 || (unsigned)cfg->mode > MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad code or mode index");
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    int64_t n = qh_tensor_numel(w);
    if (n > INT32_MAX)
        return qh_error_set(err, QH_E_UNSUPPORTED, "%lld elements; the permutation is 32-bit", (long long)n);
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != n)
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)n);
    const float *x = qh_tensor_f32(w);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qh_error_set(err, QH_E_INVAL, "element %lld is %s; sorting by magnitude needs finite weights",
                                (long long)i, isnan(x[i]) ? "NaN" : "infinite");
    return QH_OK;
}

static qh_status alloc_q(const coder *c, const qh_tensor *w, const plan *P, qh_qtensor *q, qh_error *err)
{
    int64_t groups = (P->n + P->group - 1) / P->group, levels = c->n, n = P->n;
    memset(q, 0, sizeof *q);
    q->bits = c->kind == K_SEED_DT ? width_of(c->n) : c->kind == K_BNB ? c->bits : 8;
    q->gran = QH_QG_FLAT_BLOCK;
    q->block = (int32_t)P->group;
    q->book_fixed = 1;
    q->codes = qh_tensor_new(c->kind == K_SEED_DT ? QH_I16 : QH_U8, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &groups, err) : NULL;
    q->codebook = q->scale ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    q->perm = q->codebook ? qh_tensor_new(QH_I32, 1, &n, err) : NULL;
    if (!q->perm)
        return QH_E_NOMEM; /* the host clears partial outputs */
    memcpy(q->codebook->data, c->book, (size_t)c->n * sizeof(float));
    return QH_OK;
}

static qh_status se_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                             qh_error *err)
{
    (void)name; /* the host prefixes messages with it */
    const se_cfg *cfg = state;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    coder c;
    coder_init(&c, cfg);
    plan P = make_plan(cfg, w);
    st = alloc_q(&c, w, &P, q, err);
    if (st != QH_OK)
        return st;
    const float *x = qh_tensor_f32(w);
    int32_t *order = malloc((size_t)(P.n > 0 ? P.n : 1) * sizeof *order);
    if (!order)
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the order of %lld elements", (long long)P.n);
    st = sort_all(&P, x, order, err);
    if (st == QH_OK) {
        int64_t groups = qh_tensor_numel(q->scale);
        int wide = c.kind == K_SEED_DT;
        void *codes = q->codes->data;
        int32_t *perm = q->perm->data;
        float *y = qh_tensor_f32(deq), *scale = qh_tensor_f32(q->scale);
        const coder *cc = &c;
        /* Groups touch disjoint elements: identical for any thread count. */
#pragma omp parallel for schedule(static)
        for (int64_t g = 0; g < groups; g++) {
            int64_t p0 = g * P.group, len = P.n - p0 < P.group ? P.n - p0 : P.group;
            encode_group(cc, x, order, p0, len, codes, wide, perm, y, scale + g);
        }
    }
    free(order);
    return st;
}

static const qh_quantizer_ops se_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = se_quantize,
};

static const qh_plugin_desc se_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "stable_embedding",
    .summary = "seed 001's magnitude-sorted block-wise quantizer (dynamic tree or FP8 E4M3 codes)",
    .help = "Sorts the flattened weight by |w| (stable), scales groups of `group` consecutive sorted elements "
            "by their absmax, codes them, and stores the permutation (counted at ceil(log2(numel)) bits per "
            "element). mode = seed001 uses the seed's per-slice sorting, group sizes and codes.",
    .params = params,
    .config_size = sizeof(se_cfg),
    .ops.quantizer = &se_ops,
};

static const qh_plugin_desc *const se_plugins[] = {&se_desc};

static const qh_library se_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-stable-embedding",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = se_plugins,
};

QH_PLUGIN_LIBRARY(se_lib)
