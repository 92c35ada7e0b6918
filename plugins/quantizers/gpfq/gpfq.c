/* gpfq.c - GPFQ, greedy path-following quantization (Lybrand & Saab 2021; Zhang, Zhou & Saab,
 * "Post-training quantization for neural networks with provable guarantees", SIAM J. Math. Data
 * Sci. 2023), with every option of seed 002 (seeds.md section 3): bits, alphabet scalar C,
 * percentile, stochastic rounding, L0 / L1 regularizers with lambda, layers to skip. The capture
 * options of the seed (batch size, retain rate, BN fusion) are quantize-stage keys of the host
 * (calibration_images, retain_rate, fold_batchnorm): the host captures each layer's inputs X (float
 * network) and X~ (network quantized so far) and calls quantize_calib in network order.
 *
 * Output: one scale per tensor (the alphabet step) and signed level codes, I8 (I16 above 127); with
 * L0, whose levels are not a uniform grid, a code book of the 2K + 3 levels and unsigned indices.
 * quantize() (data_free = true, and the host's fallback for grouped convs) rounds every weight to
 * the nearest level of the same alphabet: the round-to-nearest baseline GPFQ must beat.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpfq_impl.h"

typedef struct gpfq_cfg {
    int64_t bits;
    double scalar, percentile;
    double linear_scalar, conv_scalar;         /* 0: scalar */
    double linear_percentile, conv_percentile; /* 0: percentile */
    int levels;                                /* gpfq_levels */
    int stochastic;
    int regularizer; /* gpfq_reg */
    double lambda;
    const char *skip;
    int data_free;
    int64_t seed;
} gpfq_cfg;

static const char *const level_names[] = {"seed", "strict", NULL};
static const char *const reg_names[] = {"none", "l0", "l1", NULL};

static const qh_param params[] = {
    QH_P_INT("bits", gpfq_cfg, bits, 4, 1, 12, "bits",
             "alphabet {k * step : |k| <= 2^(bits-1)}: 2^bits + 1 levels (levels = seed), stored in bits + 1 bits"),
    QH_P_DOUBLE("scalar", gpfq_cfg, scalar, 1.16, 1e-6, 1e6, "factor",
                "alphabet scalar C: the largest level is C * radius (seed 002: -s, default 1.16)"),
    QH_P_DOUBLE("percentile", gpfq_cfg, percentile, 1.0, 1e-6, 1.0, "fraction",
                "radius = mean over neurons of this quantile of |w| (1 = the neuron's largest |w|; seed 002: -p)"),
    QH_P_DOUBLE("linear_scalar", gpfq_cfg, linear_scalar, 0.0, 0.0, 1e6, "factor",
                "scalar for linear layers (seed 002's MLP_Alphabet_Scalar); 0 = scalar"),
    QH_P_DOUBLE("conv_scalar", gpfq_cfg, conv_scalar, 0.0, 0.0, 1e6, "factor",
                "scalar for conv layers (seed 002's CNN_Alphabet_Scalar); 0 = scalar"),
    QH_P_DOUBLE("linear_percentile", gpfq_cfg, linear_percentile, 0.0, 0.0, 1.0, "fraction",
                "percentile for linear layers (MLP_Percentile); 0 = percentile"),
    QH_P_DOUBLE("conv_percentile", gpfq_cfg, conv_percentile, 0.0, 0.0, 1.0, "fraction",
                "percentile for conv layers (CNN_Percentile); 0 = percentile"),
    {"levels",
     QH_PARAM_ENUM,
     offsetof(gpfq_cfg, levels),
     {.i = GPFQ_LEVELS_SEED},
     0,
     0,
     level_names,
     0,
     "alphabet",
     "seed: K = 2^(bits-1), 2^bits + 1 levels as the reference; strict: K = 2^(bits-1) - 1, a true signed b-bit code"},
    {"stochastic",
     QH_PARAM_BOOL,
     offsetof(gpfq_cfg, stochastic),
     {.i = 0},
     0,
     1,
     NULL,
     0,
     "switch",
     "stochastic rounding (seed 002: -sq): down with probability 1 - frac(z / step), per-neuron seeded streams"},
    {"regularizer",
     QH_PARAM_ENUM,
     offsetof(gpfq_cfg, regularizer),
     {.i = GPFQ_REG_NONE},
     0,
     0,
     reg_names,
     0,
     "regularizer",
     "none; l1: soft threshold by lambda, then round; l0: |z| <= lambda -> 0, else lambda + k * step "
     "with step = (C * radius - lambda) / K (seed 002: -reg)"},
    QH_P_DOUBLE("lambda", gpfq_cfg, lambda, 0.1, 0.0, 1e6, "threshold",
                "regularizer threshold lambda, in weight units (seed 002: -l, default 0.1)"),
    {"skip",
     QH_PARAM_STRING,
     offsetof(gpfq_cfg, skip),
     {.s = ""},
     0,
     0,
     NULL,
     0,
     "patterns",
     "comma-separated glob patterns of weights left in float (seed 002's -ig takes layer indices)"},
    {"data_free",
     QH_PARAM_BOOL,
     offsetof(gpfq_cfg, data_free),
     {.i = 0},
     0,
     1,
     NULL,
     0,
     "switch",
     "no calibration: round every weight to the nearest level of the same alphabet (the RTN baseline)"},
    QH_P_INT("seed", gpfq_cfg, seed, 0, 0, 9007199254740991.0, "seed", "stochastic rounding: generator seed"),
    QH_P_END,
};

/* ---------------------------------------------------------------- configuration and state */

/* The instance: its configuration and the transposed samples' buffer, kept from layer to layer so
 * small layers do not pay for fresh pages each time (the host calls one instance at a time). */
typedef struct gpfq_state {
    const gpfq_cfg *cfg;
    float *cols;
    size_t cap; /* floats */
} gpfq_state;

static qh_status gpfq_create(const void *cfg_, void **state, qh_error *err)
{
    const gpfq_cfg *cfg = cfg_;
    gpfq_alphabet a; /* the layer-independent checks, so a bad combination fails before any work */
    qh_status st = gpfq_alphabet_make((int)cfg->bits, cfg->levels, cfg->scalar, 1.0, cfg->regularizer,
                                      cfg->regularizer == GPFQ_REG_L0 ? 0.0 : cfg->lambda, cfg->stochastic, &a, err);
    if (st != QH_OK)
        return st;
    gpfq_state *s = calloc(1, sizeof *s);
    if (!s)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    s->cfg = cfg;
    *state = s;
    return QH_OK;
}

static void gpfq_destroy(void *state)
{
    gpfq_state *s = state;
    qh_free_aligned(s->cols);
    free(s);
}

/* At least n floats of column buffer. */
static float *column_buffer(gpfq_state *s, size_t n)
{
    if (n > s->cap) {
        qh_free_aligned(s->cols);
        s->cap = 0;
        if (!(s->cols = qh_alloc_aligned(sizeof(float) * n)))
            return NULL;
        s->cap = n;
    }
    return s->cols;
}

static bool skipped(const gpfq_cfg *cfg, const char *name)
{
    const char *p = cfg->skip ? cfg->skip : "";
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        char pat[256];
        size_t n = len < sizeof pat - 1 ? len : sizeof pat - 1;
        memcpy(pat, p, n);
        while (n > 0 && pat[n - 1] == ' ')
            n--;
        pat[n] = '\0';
        if (n > 0 && fnmatch(pat, name, 0) == 0)
            return true;
        p += len;
    }
    return false;
}

static int gpfq_accepts(void *state, const char *name, const qh_tensor *w)
{
    return w->dtype == QH_F32 && w->ndim >= 2 && !skipped(((gpfq_state *)state)->cfg, name);
}

static uint32_t gpfq_calib_needs(void *state, const char *name, const qh_tensor *w)
{
    (void)name, (void)w;
    return ((gpfq_state *)state)->cfg->data_free ? 0u : QH_CALIB_X | QH_CALIB_XQ;
}

/* The layer's alphabet: scalar and percentile by layer type, radius from its weights. */
static qh_status layer_alphabet(const gpfq_cfg *cfg, const float *w, int64_t rows, int64_t cols, bool conv,
                                gpfq_alphabet *a, qh_error *err)
{
    double scalar = conv ? cfg->conv_scalar : cfg->linear_scalar;
    double pct = conv ? cfg->conv_percentile : cfg->linear_percentile;
    double rad = gpfq_radius(w, rows, cols, pct > 0.0 ? pct : cfg->percentile);
    return gpfq_alphabet_make((int)cfg->bits, cfg->levels, scalar > 0.0 ? scalar : cfg->scalar, rad, cfg->regularizer,
                              cfg->lambda, cfg->stochastic, a, err);
}

/* ---------------------------------------------------------------- output */

/* Level numbers into q (codes in w's shape; a scale, or a code book for L0) and their values into deq. */
static qh_status encode(const gpfq_alphabet *a, const int32_t *codes, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                        qh_error *err)
{
    int64_t n = qh_tensor_numel(w), one = 1, levels = gpfq_levels_count(a);
    bool book = a->reg == GPFQ_REG_L0;
    qh_dtype dt = book ? (levels <= 256 ? QH_U8 : QH_I16) : (a->k <= 127 ? QH_I8 : QH_I16);
    q->bits = gpfq_storage_bits(a);
    q->gran = QH_QG_TENSOR;
    q->codes = qh_tensor_new(dt, w->ndim, w->shape, err);
    q->scale = book ? NULL : qh_tensor_new(QH_F32, 1, &one, err);
    q->codebook = book ? qh_tensor_new(QH_F32, 1, &levels, err) : NULL;
    if (!q->codes || (!book && !q->scale) || (book && !q->codebook))
        return QH_E_NOMEM;
    int32_t shift = book ? a->k + 1 : 0; /* L0: index = level number + K + 1 */
    if (book)
        for (int64_t i = 0; i < levels; i++)
            qh_tensor_f32(q->codebook)[i] = gpfq_value(a, (int32_t)i - shift);
    else
        qh_tensor_f32(q->scale)[0] = a->step;
    float *v = qh_tensor_f32(deq);
    for (int64_t i = 0; i < n; i++) {
        int32_t c = codes[i] + shift;
        if (dt == QH_I8)
            ((int8_t *)q->codes->data)[i] = (int8_t)c;
        else if (dt == QH_U8)
            ((uint8_t *)q->codes->data)[i] = (uint8_t)c;
        else
            ((int16_t *)q->codes->data)[i] = (int16_t)c;
        v[i] = gpfq_value(a, codes[i]);
    }
    return QH_OK;
}

static uint64_t name_stream(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 1099511628211ull;
    return h;
}

/* ---------------------------------------------------------------- data-free: round to the alphabet */

static qh_status gpfq_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                               qh_error *err)
{
    const gpfq_cfg *cfg = ((gpfq_state *)state)->cfg;
    int64_t rows = w->shape[0], cols = rows > 0 ? qh_tensor_numel(w) / rows : 0;
    gpfq_alphabet a;
    qh_status st = layer_alphabet(cfg, qh_tensor_f32(w), rows, cols, w->ndim == 4, &a, err);
    if (st != QH_OK)
        return st;
    int32_t *codes = malloc(sizeof(int32_t) * (size_t)(rows * cols + 1));
    if (!codes)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    qh_rng base;
    qh_rng_seed(&base, (uint64_t)cfg->seed);
    qh_rng tensor = qh_rng_fork(&base, name_stream(name));
    const float *wv = qh_tensor_f32(w);
    for (int64_t r = 0; r < rows; r++) {
        qh_rng rr = qh_rng_fork(&tensor, (uint64_t)r);
        for (int64_t i = 0; i < cols; i++)
            codes[r * cols + i] = gpfq_code(&a, wv[r * cols + i], &rr);
    }
    st = encode(&a, codes, w, q, deq, err);
    free(codes);
    return st == QH_OK ? QH_OK : qh_error_set(err, st, "out of memory");
}

/* ---------------------------------------------------------------- GPFQ on captured data */

static qh_status gpfq_quantize_calib(void *state, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq, qh_error *err)
{
    const gpfq_cfg *cfg = ((gpfq_state *)state)->cfg;
    gpfq_problem p = {.rows = c->rows,
                      .cols = c->cols,
                      .m = c->m,
                      .mpad = gpfq_mpad(c->m),
                      .w = qh_tensor_f32(c->w),
                      .mask = c->mask};
    qh_status st = layer_alphabet(cfg, p.w, p.rows, p.cols, c->is_conv != 0, &p.a, err);
    if (st != QH_OK)
        return st;
    qh_rng base;
    qh_rng_seed(&base, (uint64_t)cfg->seed);
    p.rng = qh_rng_fork(&base, (uint64_t)c->index + 1u);
    size_t floats = (size_t)(p.cols * p.mpad);
    float *xt = column_buffer(state, 2 * floats), *xqt = xt ? xt + floats : NULL;
    float *nrm = malloc(sizeof(float) * (size_t)p.cols);
    int32_t *codes = malloc(sizeof(int32_t) * (size_t)(p.rows * p.cols));
    double unorm = NAN;
    if (xt && nrm && codes) {
        gpfq_transpose(c->x, p.m, p.cols, p.mpad, xt, NULL);
        gpfq_transpose(c->xq, p.m, p.cols, p.mpad, xqt, nrm);
        p.xt = xt;
        p.xqt = xqt;
        p.nrm = nrm;
        unorm = gpfq_run(&p, codes);
    }
    free(nrm);
    if (isnan(unorm)) {
        free(codes);
        return qh_error_set(err, QH_E_NOMEM, "out of memory for %lld x %lld samples", (long long)p.m,
                            (long long)p.cols);
    }
    qh_log(QH_LOG_DEBUG, "gpfq", "%s: step %.6g, K %d, ||U||_F %.6g over %lld samples", c->name, (double)p.a.step,
           p.a.k, sqrt(unorm), (long long)p.m);
    st = encode(&p.a, codes, c->w, q, deq, err);
    free(codes);
    return st == QH_OK ? QH_OK : qh_error_set(err, st, "out of memory");
}

/* ---------------------------------------------------------------- descriptor */

static const qh_quantizer_ops gpfq_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .create = gpfq_create,
    .destroy = gpfq_destroy,
    .quantize = gpfq_quantize,
    .accepts = gpfq_accepts,
    .calib_needs = gpfq_calib_needs,
    .quantize_calib = gpfq_quantize_calib,
};

static const qh_plugin_desc gpfq_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "gpfq",
    .summary = "GPFQ: greedy path-following post-training quantization on calibration data (seed 002)",
    .help = "Quantizes each conv/linear layer in network order so that its outputs on the calibration data, "
            "fed by the already quantized layers before it, stay close to the float network's: for every "
            "neuron and input coordinate t, the accumulated error u picks the level nearest <u, X~_t> / "
            "||X~_t||^2. Alphabet {k * step}, |k| <= 2^(bits-1), step = scalar * radius / 2^(bits-1). "
            "Calibration keys (calibration_images, retain_rate, patch_stride, fold_batchnorm) belong to "
            "the quantize stage.",
    .params = params,
    .config_size = sizeof(gpfq_cfg),
    .ops.quantizer = &gpfq_ops,
};

static const qh_plugin_desc *const gpfq_plugins[] = {&gpfq_desc};

static const qh_library gpfq_lib = {
    QH_LIBRARY_HEADER, .name = "qhost-quantizer-gpfq", .version = "1.0.0", .license = "MIT",
    .n_plugins = 1,    .plugins = gpfq_plugins,
};

QH_PLUGIN_LIBRARY(gpfq_lib)
