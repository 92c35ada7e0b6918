/* A quantizer exactly as the ABI 1.0 SDK produced it: abi_minor 0 and a vtable that ends at
 * quantize (1.1 appended `accepts`). A 1.1 host must load it, read `accepts` as NULL and apply the
 * default, and run its quantize.
 *
 * The method is plain symmetric per-tensor rounding: scale = max|w| / (2^(bits-1) - 1),
 * code = round(w / scale), deq = code * scale.
 */
#include <math.h>

#include "qhost/qh_plugin.h"

/* qh_quantizer_ops as declared by the 1.0 header. */
typedef struct quantizer_ops_1_0 {
    uint32_t struct_size;
    qh_status (*create)(const void *cfg, void **state, qh_error *err);
    void (*destroy)(void *state);
    qh_status (*quantize)(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                          qh_error *err);
} quantizer_ops_1_0;

_Static_assert(sizeof(quantizer_ops_1_0) == QH_QUANTIZER_OPS_SIZE_1_0, "the 1.0 layout is frozen");

typedef struct old_cfg {
    int64_t bits;
} old_cfg;

static qh_status old_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                              qh_error *err)
{
    (void)name;
    const old_cfg *cfg = state; /* no create(): the host passes the config block */
    const int64_t n = qh_tensor_numel(w);
    const float *x = qh_tensor_f32(w);
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    const float qmax = (float)((1 << (cfg->bits - 1)) - 1);
    const float scale = amax > 0.0f ? amax / qmax : 1.0f;
    const int64_t one = 1;
    q->bits = (int32_t)cfg->bits;
    q->gran = QH_QG_TENSOR;
    q->codes = qh_tensor_new(QH_I8, w->ndim, w->shape, err);
    q->scale = qh_tensor_new(QH_F32, 1, &one, err);
    if (!q->codes || !q->scale)
        return QH_E_NOMEM; /* the host frees what was allocated */
    int8_t *codes = q->codes->data;
    for (int64_t i = 0; i < n; i++) {
        codes[i] = (int8_t)fmaxf(-qmax, fminf(qmax, roundf(x[i] / scale)));
        qh_tensor_f32(deq)[i] = (float)codes[i] * scale;
    }
    qh_tensor_f32(q->scale)[0] = scale;
    return QH_OK;
}

static const quantizer_ops_1_0 ops = {.struct_size = sizeof(quantizer_ops_1_0), .quantize = old_quantize};

static const qh_param params[] = {
    QH_P_INT("bits", old_cfg, bits, 4, 2, 8, "bits", "code width"),
    QH_P_END,
};

static const qh_plugin_desc desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_QUANTIZER,
    .name = "old_minor",
    .summary = "an ABI 1.0 quantizer (symmetric per-tensor rounding)",
    .params = params,
    .config_size = sizeof(old_cfg),
    .ops.quantizer = (const qh_quantizer_ops *)(const void *)&ops,
};

static const qh_plugin_desc *const descs[] = {&desc};

static const qh_library library = {
    .magic = QH_PLUGIN_MAGIC,
    .abi_major = 1,
    .abi_minor = 0,
    .struct_size = sizeof(qh_library),
    .name = "qh-fake-old-minor",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = descs,
};

QH_PLUGIN_LIBRARY(library)
