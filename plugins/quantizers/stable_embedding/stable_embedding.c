/* stable_embedding.c - seed 001's "stable embedding" quantizer: magnitude-sorted block-wise coding.
 *
 * Not bitsandbytes' StableEmbedding layer (a training-stability embedding); this is what seed 001's
 * StableEmbeddingRun notebook does (seeds.md 2.5): flatten the weight, order its elements by |w|
 * ascending, cut that order into groups of `group` consecutive elements (the last may be shorter),
 * scale each group by its absmax and code it with the dynamic-tree map (bits N) or FP8 E4M3, and keep
 * the permutation. Grouping like magnitudes makes each group's absmax fit its members.
 *
 * Ties in |w| (and +0 / -0) keep the flat index order: the order is the stable sort by |w| (se_run.c:
 * LSD radix, or insertion sort for short segments; se_fast.c computes the same ranks by a bucket
 * partition for canonical mode), so the result is deterministic and the same for any thread count.
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

#include "se_impl.h"

static const char *const code_names[] = {"dynamic_tree", "fp8_e4m3", NULL};
static const char *const mode_names[] = {"canonical", "seed001", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", se_cfg, bits, 8, 2, 8, "bits", "dynamic-tree code width N (fp8_e4m3 needs 8)"),
    {"code", QH_PARAM_ENUM, offsetof(se_cfg, code), {.i = SE_CODE_DT}, 0, 0, code_names, 0, "code",
     "code for the normalized values: dynamic tree map or FP8 E4M3"},
    QH_P_INT("group", se_cfg, group, 256, 2, 16777216, "elements",
             "magnitude-sorted elements per scale (the last group may be shorter)"),
    {"mode", QH_PARAM_ENUM, offsetof(se_cfg, mode), {.i = SE_MODE_CANONICAL}, 0, 0, mode_names, 0, "rule",
     "canonical: whole-tensor order, standard codes; seed001: seed 001's slices, group sizes and codes"},
    QH_P_END,
};

static int width_of(int levels)
{
    int b = 1;
    while ((1 << b) < levels)
        b++;
    return b;
}

/* ---------------------------------------------------------------- the plugin */

static qh_status check_input(const se_cfg *cfg, const qh_tensor *w, const qh_tensor *deq, qh_error *err)
{
    if (cfg->bits < 2 || cfg->bits > 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld outside [2, 8]", (long long)cfg->bits);
    if (cfg->code == SE_CODE_FP8 && cfg->bits != 8)
        return qh_error_set(err, QH_E_INVAL, "bits = %lld with code = fp8_e4m3, whose codes are 8 bits",
                            (long long)cfg->bits);
    if (cfg->group < 2 || cfg->group > 16777216)
        return qh_error_set(err, QH_E_INVAL, "group = %lld outside [2, 16777216]", (long long)cfg->group);
    if ((unsigned)cfg->code > SE_CODE_FP8 || (unsigned)cfg->mode > SE_MODE_SEED001)
        return qh_error_set(err, QH_E_INVAL, "bad code or mode index");
    if (w->dtype != QH_F32)
        return qh_error_set(err, QH_E_UNSUPPORTED, "dtype %s, only F32 can be quantized", qh_dtype_name(w->dtype));
    int64_t n = qh_tensor_numel(w);
    if (n > INT32_MAX)
        return qh_error_set(err, QH_E_UNSUPPORTED, "%lld elements; the permutation is 32-bit", (long long)n);
    if (!deq || deq->dtype != QH_F32 || qh_tensor_numel(deq) != n)
        return qh_error_set(err, QH_E_INVAL, "output must be F32 with %lld elements", (long long)n);
    return QH_OK; /* non-finite weights are caught by the first pass over them */
}

static qh_status alloc_q(const se_coder *c, const qh_tensor *w, const se_plan *P, qh_qtensor *q, qh_error *err)
{
    int64_t groups = (P->n + P->group - 1) / P->group, levels = c->n, n = P->n;
    memset(q, 0, sizeof *q);
    q->bits = c->kind == SE_K_SEED_DT ? width_of(c->n) : c->kind == SE_K_BNB ? c->bits : 8;
    q->gran = QH_QG_FLAT_BLOCK;
    q->block = (int32_t)P->group;
    q->book_fixed = 1;
    q->codes = qh_tensor_new(c->kind == SE_K_SEED_DT ? QH_I16 : QH_U8, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &groups, err) : NULL;
    q->codebook = q->scale ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    q->perm = q->codebook ? qh_tensor_new(QH_I32, 1, &n, err) : NULL;
    if (!q->perm)
        return QH_E_NOMEM; /* the host clears partial outputs */
    memcpy(q->codebook->data, c->book, (size_t)c->n * sizeof(float));
    return QH_OK;
}

/* The state: the configuration and the fast path's working memory, kept from tensor to tensor. */
typedef struct se_state {
    se_cfg cfg;
    se_scratch scratch;
} se_state;

static qh_status se_create(const void *cfg, void **state, qh_error *err)
{
    se_state *s = calloc(1, sizeof *s);
    if (!s)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    memcpy(&s->cfg, cfg, sizeof s->cfg);
    *state = s;
    return QH_OK;
}

static void se_destroy(void *state)
{
    se_state *s = state;
    if (s)
        se_scratch_free(&s->scratch);
    free(s);
}

static qh_status se_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                             qh_error *err)
{
    (void)name; /* the host prefixes messages with it */
    se_state *S = state;
    const se_cfg *cfg = &S->cfg;
    qh_status st = check_input(cfg, w, deq, err);
    if (st != QH_OK)
        return st;
    se_coder *c = se_coder_new(cfg);
    if (!c)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    se_plan P = se_make_plan(cfg, w);
    st = alloc_q(c, w, &P, q, err);
    free(c);
    if (st != QH_OK)
        return st;
    se_out o = {q->codes->data, qh_tensor_f32(q->scale), q->perm->data, qh_tensor_f32(deq)};
    int r = se_run(cfg, w, &o, 1, &S->scratch);
    if (r == SE_OK)
        return QH_OK;
    qh_qtensor_clear(q);
    if (r == SE_NOMEM)
        return qh_error_set(err, QH_E_NOMEM, "out of memory sorting %lld elements", (long long)P.n);
    const float *x = qh_tensor_f32(w);
    int64_t i = qq_first_nonfinite(x, P.n);
    return qh_error_set(err, QH_E_INVAL, "element %lld is %s; sorting by magnitude needs finite weights", (long long)i,
                        isnan(x[i]) ? "NaN" : "infinite");
}

static const qh_quantizer_ops se_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .create = se_create,
    .destroy = se_destroy,
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
