/* gptq.c - GPTQ (Frantar, Ashkboos, Hoefler & Alistarh 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers"): data-aware, one layer at a time, from
 * H = X^T X of the layer's inputs in the network quantized so far (the host captures it).
 *
 * Each row of W (rows x cols, a conv viewed as [out, C kh kw]) is quantized column by column;
 * the error of each column, scaled by the Cholesky factor of H^-1, is pushed onto the columns
 * not yet quantized, which minimizes ||X W^T - X Q^T|| greedily (the OBQ update with a fixed
 * column order). Options as the reference implementation: damping, group size, act order,
 * symmetric / asymmetric min-max grid, 2..8 bits, lazy batches of block_size columns.
 *
 * Storage (qh_qtensor): codes I8 (symmetric) or U8 plus I32 zero points (asymmetric), in the
 * weight's own shape and column order (act order only changes the processing order). Groups:
 *   one per row (group_size <= 0 or >= cols): per-channel scales, axis 0;
 *   group_size < cols on a 2-D weight: blocks of group_size columns of each row (a shorter last
 *     block is its own group);
 *   group_size < cols on a conv: flat blocks of group_size elements, which are runs of the
 *     row's C kh kw inputs only when group_size divides them; otherwise the layer is refused.
 *
 * Without calibration data (the data-free `quantize` method) the plugin rounds each weight to
 * nearest on the same grids: GPTQ with H = I, which is exactly round-to-nearest.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/qq_qtensor.h"
#include "gptq_impl.h"

static const char *const mode_names[] = {"symmetric", "asymmetric", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", gptq_cfg, bits, 4, 2, 8, "bits", "code width in bits"),
    QH_P_INT("group_size", gptq_cfg, group_size, 0, -1, 65536, "columns",
             "input columns per scale within a row; 0 or -1: one scale per row (a conv's group must divide C*kh*kw)"),
    QH_P_DOUBLE("damp", gptq_cfg, damp, 0.01, 0.0, 1.0, "fraction",
                "added to the diagonal of H: this fraction of mean(diag(H)) (percdamp of the reference)"),
    {"act_order", QH_PARAM_BOOL, offsetof(gptq_cfg, act_order), {.i = 0}, 0, 1, NULL, 0, "switch",
     "process columns in decreasing diag(H) (stored in their own order; with groups, scales come from the "
     "weights before any update)"},
    {"mode", QH_PARAM_ENUM, offsetof(gptq_cfg, mode), {.i = GQ_ASYMMETRIC}, 0, 0, mode_names, 0, "grid",
     "asymmetric: min-max range with a zero point (the paper's grid); symmetric: +-max|w|, signed codes"},
    QH_P_INT("block_size", gptq_cfg, block_size, 128, 1, 65536, "columns",
             "columns per lazy batch update (speed only: the result is the same for every value)"),
    QH_P_END,
};

static qh_status check_cfg(const gptq_cfg *cfg, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if (cfg->group_size < -1 || cfg->group_size > 65536)
        return qh_error_set(err, QH_E_INVAL, "group_size = %lld outside [-1, 65536]", (long long)cfg->group_size);
    if (!(cfg->damp >= 0.0 && cfg->damp <= 1.0))
        return qh_error_set(err, QH_E_INVAL, "damp = %g outside [0, 1]", cfg->damp);
    if (cfg->block_size < 1 || cfg->block_size > 65536)
        return qh_error_set(err, QH_E_INVAL, "block_size = %lld outside [1, 65536]", (long long)cfg->block_size);
    if ((unsigned)cfg->mode > GQ_ASYMMETRIC)
        return qh_error_set(err, QH_E_INVAL, "bad mode index %d", cfg->mode);
    return QH_OK;
}

static int weight_ok(const qh_tensor *w) { return w && w->dtype == QH_F32 && (w->ndim == 2 || w->ndim == 4); }

static int gptq_accepts(void *state, const char *name, const qh_tensor *w)
{
    (void)state;
    (void)name;
    return weight_ok(w);
}

static uint32_t gptq_calib_needs(void *state, const char *name, const qh_tensor *w)
{
    (void)state;
    (void)name;
    return weight_ok(w) ? QH_CALIB_H : 0;
}

static qh_status make_layout(const gptq_cfg *cfg, const qh_tensor *w, int64_t rows, int64_t cols, gq_layout *l,
                             qh_error *err)
{
    *l = (gq_layout){rows, cols, cols, 1, QH_QG_CHANNEL, 0};
    if (cfg->group_size <= 0 || cfg->group_size >= cols)
        return QH_OK;
    if (w->ndim != 2 && cols % cfg->group_size != 0)
        return qh_error_set(err, QH_E_UNSUPPORTED,
                            "group_size %lld does not divide the %lld inputs per output channel; use a divisor, "
                            "or 0 for one scale per channel",
                            (long long)cfg->group_size, (long long)cols);
    l->gsize = cfg->group_size;
    l->ngr = (cols + l->gsize - 1) / l->gsize;
    l->gran = w->ndim == 2 ? QH_QG_BLOCK : QH_QG_FLAT_BLOCK;
    l->block = (int32_t)l->gsize;
    return QH_OK;
}

static qh_status check_weight(const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if (!weight_ok(w))
        return qh_error_set(err, QH_E_UNSUPPORTED, "GPTQ takes F32 weights of rank 2 or 4");
    int64_t n = qh_tensor_numel(w);
    if (n == 0)
        return qh_error_set(err, QH_E_INVAL, "empty tensor");
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != n)
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)n);
    const float *x = qh_tensor_f32(w);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qh_error_set(err, QH_E_INVAL, "element %lld is not finite", (long long)i);
    return QH_OK;
}

static qh_status alloc_qtensor(const gptq_cfg *cfg, const qh_tensor *w, const gq_layout *l, qh_qtensor *q,
                               qh_error *err)
{
    memset(q, 0, sizeof *q);
    q->bits = (int32_t)cfg->bits;
    q->gran = l->gran;
    q->block = l->block;
    int64_t groups = l->rows * l->ngr;
    bool zp = cfg->mode == GQ_ASYMMETRIC;
    return qq_alloc_grid(q, zp ? QH_U8 : QH_I8, w, groups, zp, err);
}

static void store_grids(const gq_layout *l, const gq_grid *g, qh_qtensor *q)
{
    float *scale = qh_tensor_f32(q->scale);
    int32_t *zero = q->zero ? (int32_t *)q->zero->data : NULL;
    for (int64_t i = 0; i < l->rows * l->ngr; i++) {
        scale[i] = g[i].scale;
        if (zero)
            zero[i] = g[i].zero;
    }
}

/* The data-free fallback: round to nearest on GPTQ's grids. */
static qh_status gptq_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                               qh_error *err)
{
    (void)name; /* the host names the tensor in every message */
    const gptq_cfg *cfg = state;
    gq_layout l;
    qh_status st = check_cfg(cfg, err);
    if (st == QH_OK)
        st = check_weight(w, deq, err);
    if (st == QH_OK)
        st = make_layout(cfg, w, w->shape[0], qh_tensor_numel(w) / w->shape[0], &l, err);
    if (st != QH_OK)
        return st;
    gq_grid *grids = malloc(sizeof *grids * (size_t)(l.rows * l.ngr));
    if (!grids || alloc_qtensor(cfg, w, &l, q, err) != QH_OK) {
        free(grids);
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the codes");
    }
    gq_grids_static(&l, qh_tensor_f32(w), NULL, NULL, cfg->mode, (int)cfg->bits, grids);
    gq_encode_rtn(&l, qh_tensor_f32(w), grids, q->codes->dtype, q->codes->data, qh_tensor_f32(deq));
    store_grids(&l, grids, q);
    free(grids);
    return QH_OK;
}

static qh_status check_calib(const qh_calib_layer *c, const qh_tensor *deq, qh_error *err)
{
    if (!c || c->struct_size < offsetof(qh_calib_layer, h) + sizeof c->h || !c->w || !c->name)
        return qh_error_set(err, QH_E_INVAL, "calibration record missing or too old");
    qh_status st = check_weight(c->w, deq, err);
    if (st != QH_OK)
        return st;
    if (c->rows < 1 || c->cols < 1 || c->rows != c->w->shape[0] || c->rows * c->cols != qh_tensor_numel(c->w))
        return qh_error_set(err, QH_E_INVAL, "calibration shape %lld x %lld does not match the weight",
                            (long long)c->rows, (long long)c->cols);
    if (!c->h)
        return qh_error_set(err, QH_E_INVAL, "no H = X^T X in the calibration data");
    if (c->m < 1)
        return qh_error_set(err, QH_E_INVAL, "no calibration samples");
    return QH_OK;
}

/* The pruning mask, when the host's record is new enough to carry one. */
static const uint8_t *calib_mask(const qh_calib_layer *c)
{
    return c->struct_size >= offsetof(qh_calib_layer, mask) + sizeof c->mask ? c->mask : NULL;
}

typedef struct work {
    gq_grid *grids;
    uint8_t *dead;
    int64_t *perm;
    double *u;
} work;

static void work_free(work *k)
{
    free(k->grids);
    free(k->dead);
    free(k->perm);
    qh_free_aligned(k->u);
}

static qh_status work_alloc(const gq_layout *l, work *k, qh_error *err)
{
    k->grids = malloc(sizeof *k->grids * (size_t)(l->rows * l->ngr));
    k->dead = malloc((size_t)l->cols);
    k->perm = malloc(sizeof *k->perm * (size_t)l->cols);
    k->u = qh_alloc_aligned(sizeof(double) * (size_t)(l->cols * l->cols));
    if (k->grids && k->dead && k->perm && k->u)
        return QH_OK;
    work_free(k);
    return qh_error_set(err, QH_E_NOMEM, "out of memory for a %lld x %lld layer", (long long)l->rows,
                        (long long)l->cols);
}

static qh_status gptq_quantize_calib(void *state, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq,
                                     qh_error *err)
{
    const gptq_cfg *cfg = state;
    gq_layout l;
    work k = {0};
    gq_hinv hi;
    qh_status st = check_cfg(cfg, err);
    if (st == QH_OK)
        st = check_calib(c, deq, err);
    if (st == QH_OK)
        st = make_layout(cfg, c->w, c->rows, c->cols, &l, err);
    if (st == QH_OK)
        st = work_alloc(&l, &k, err);
    if (st != QH_OK)
        return st;
    st = gq_hinv_compute(c->h, l.cols, cfg->damp, cfg->act_order, k.dead, k.perm, k.u, &hi, err);
    if (st == QH_OK && (st = alloc_qtensor(cfg, c->w, &l, q, err)) != QH_OK)
        qh_error_set(err, st, "out of memory for the codes");
    if (st == QH_OK) {
        gq_problem p = {cfg, &l, qh_tensor_f32(c->w), k.dead, calib_mask(c), k.perm, k.u, k.grids,
                        l.ngr > 1 && !cfg->act_order, q->codes->dtype, q->codes->data, qh_tensor_f32(deq)};
        if (!p.dynamic)
            gq_grids_static(&l, p.w, k.dead, p.mask, cfg->mode, (int)cfg->bits, k.grids);
        st = gq_solve(&p, err);
        if (st == QH_OK)
            store_grids(&l, k.grids, q);
        else
            qh_qtensor_clear(q);
        if (st == QH_OK && hi.n_dead > 0)
            qh_log(QH_LOG_INFO, "gptq", "%s: %lld of %lld inputs are 0 on every calibration sample: their weights "
                   "were zeroed", c->name, (long long)hi.n_dead, (long long)l.cols);
    }
    work_free(&k);
    return st;
}

static const qh_quantizer_ops gptq_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = gptq_quantize,
    .accepts = gptq_accepts,
    .calib_needs = gptq_calib_needs,
    .quantize_calib = gptq_quantize_calib,
};

static const qh_plugin_desc gptq_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "gptq",
    .summary = "GPTQ: data-aware weight quantization from each layer's H = X^T X (Frantar et al. 2022)",
    .help = "Quantizes each row column by column and pushes every column's error onto the columns not yet "
            "quantized through the Cholesky factor of H^-1, minimizing ||X W^T - X Q^T|| on calibration data. "
            "Min-max grid per row or per group of columns, asymmetric (zero point) or symmetric, 2..8 bits; "
            "damping, act order, lazy batch updates. Without calibration data: round to nearest on the same grid.",
    .params = params,
    .config_size = sizeof(gptq_cfg),
    .ops.quantizer = &gptq_ops,
};

static const qh_plugin_desc *const gptq_plugins[] = {&gptq_desc};

static const qh_library gptq_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-quantizer-gptq",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = gptq_plugins,
};

QH_PLUGIN_LIBRARY(gptq_lib)
