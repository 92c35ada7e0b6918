/* pow2.c - an out-of-tree quantizer: every weight becomes 0 or +-top * 2^-k.
 *
 * Power-of-two (logarithmic) levels turn multiplications into shifts, the idea behind
 * LogQuant / INQ-style weight quantization. With b bits there are L = 2^(b-1) - 1 magnitudes
 * per sign, top * 2^0 ... top * 2^-(L-1), plus zero. `top` is max|w| (range = max) or max|w|
 * rounded up to a power of two (range = pow2, so every level is an exact power of two). Each
 * weight goes to the nearest level in the linear domain.
 *
 * The result uses the code-book form of qh_quant.h: codes index a code book of 2L + 1 levels in
 * units of `top`, and the single scale is `top`, so real value = codebook[code] * scale.
 *
 * Build against an installed qhost: see the Makefile and README.md next to this file.
 */
#include <math.h>
#include <string.h>

#include <qhost/qh_plugin.h>

typedef struct pow2_cfg {
    int64_t bits;
    int range; /* index into range_names */
} pow2_cfg;

enum { RANGE_MAX = 0, RANGE_POW2 };
static const char *const range_names[] = {"max", "pow2", NULL};

static const qh_param pow2_params[] = {
    QH_P_INT("bits", pow2_cfg, bits, 4, 2, 8, "bits", "code width: 2^(bits-1)-1 magnitudes per sign, plus zero"),
    QH_P_ENUM("range", pow2_cfg, range, RANGE_MAX, range_names,
              "top level: max|w|, or max|w| rounded up to a power of two"),
    QH_P_END,
};

/* Code book in units of top: [0, 1, 1/2, ..., 2^-(L-1), -1, -1/2, ..., -2^-(L-1)]. */
static void fill_codebook(float *cb, int levels)
{
    cb[0] = 0.0f;
    for (int k = 0; k < levels; k++) {
        cb[1 + k] = ldexpf(1.0f, -k);
        cb[1 + levels + k] = -ldexpf(1.0f, -k);
    }
}

/* Index of the nearest magnitude level for m = |w| / top in [0, 1]: 0 for zero, else 1 + k. */
static int32_t nearest_level(float m, int levels)
{
    if (m <= 0.0f)
        return 0;
    int k = (int)floorf(-log2f(m)); /* 2^-(k+1) < m <= 2^-k */
    if (k < 0)
        k = 0;
    if (k >= levels) /* below the smallest level: zero or the smallest, whichever is nearer */
        return m * 2.0f < ldexpf(1.0f, -(levels - 1)) ? 0 : levels;
    if (k + 1 < levels && ldexpf(1.0f, -k) - m > m - ldexpf(1.0f, -(k + 1)))
        k++;
    if (k == levels - 1 && m * 2.0f < ldexpf(1.0f, -k))
        return 0;
    return 1 + k;
}

static qh_status pow2_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                               qh_error *err)
{
    const pow2_cfg *cfg = state; /* no create(): the host passes the config block */
    (void)name;
    const int levels = (1 << (cfg->bits - 1)) - 1;
    const int64_t n = qh_tensor_numel(w);
    const float *x = qh_tensor_f32(w);
    float amax = 0.0f;
#pragma omp parallel for reduction(max : amax) num_threads(qh_threads())
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float top = amax > 0.0f ? amax : 1.0f;
    if (cfg->range == RANGE_POW2)
        top = ldexpf(1.0f, (int)ceilf(log2f(top)));

    const int64_t n_levels = 2 * levels + 1, one = 1;
    q->bits = (int32_t)cfg->bits;
    q->gran = QH_QG_TENSOR;
    q->codes = qh_tensor_new(QH_I32, w->ndim, w->shape, err);
    q->scale = qh_tensor_new(QH_F32, 1, &one, err);
    q->codebook = qh_tensor_new(QH_F32, 1, &n_levels, err);
    if (!q->codes || !q->scale || !q->codebook)
        return QH_E_NOMEM; /* err is set; the host frees what was allocated */
    float *cb = qh_tensor_f32(q->codebook);
    fill_codebook(cb, levels);
    qh_tensor_f32(q->scale)[0] = top;

    int32_t *codes = q->codes->data;
    float *out = qh_tensor_f32(deq);
#pragma omp parallel for num_threads(qh_threads())
    for (int64_t i = 0; i < n; i++) {
        int32_t c = nearest_level(fabsf(x[i]) / top, levels);
        if (c > 0 && x[i] < 0.0f)
            c += levels;
        codes[i] = c;
        out[i] = cb[c] * top;
    }
    return QH_OK;
}

/* ABI 1.1: only weight matrices and kernels; biases and norms stay in float. */
static int pow2_accepts(void *state, const char *name, const qh_tensor *w)
{
    (void)state;
    size_t len = strlen(name);
    return w->dtype == QH_F32 && w->ndim >= 2 && len >= 7 && strcmp(name + len - 7, ".weight") == 0;
}

static const qh_quantizer_ops pow2_ops = {
    .struct_size = sizeof(qh_quantizer_ops),
    .quantize = pow2_quantize,
    .accepts = pow2_accepts,
};

static const qh_plugin_desc pow2_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "pow2",
    .summary = "power-of-two levels: each weight becomes 0 or +-top*2^-k (example plugin)",
    .help = "Logarithmic quantization: multiplications by a weight become shifts. Code-book output.",
    .params = pow2_params,
    .config_size = sizeof(pow2_cfg),
    .ops.quantizer = &pow2_ops,
};

static const qh_plugin_desc *const pow2_plugins[] = {&pow2_desc};

static const qh_library pow2_library = {
    QH_LIBRARY_HEADER,
    .name = "qhost-example-pow2",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = pow2_plugins,
};

QH_PLUGIN_LIBRARY(pow2_library)
