/* fake.h - the working quantizer every fake plugin starts from; each fake breaks one rule. */
#ifndef QH_FAKE_H
#define QH_FAKE_H

#include "qhost/qh_plugin.h"

/* not every fake uses these */
#define FAKE_UNUSED __attribute__((unused))

FAKE_UNUSED static qh_status fake_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                               qh_error *err)
{
    (void)state, (void)name, (void)w, (void)q, (void)deq, (void)err;
    return QH_E_UNSUPPORTED; /* never reached: every fake is rejected before it runs */
}

FAKE_UNUSED static const qh_quantizer_ops fake_ops = {.struct_size = sizeof(qh_quantizer_ops), .quantize = fake_quantize};

/* A descriptor for quantizer NAME with ops OPS and parameter table PARAMS over config struct S. */
#define FAKE_DESC(VAR, NAME, OPS, PARAMS, S)                                                                        \
    static const qh_plugin_desc VAR = {.struct_size = sizeof(qh_plugin_desc),                                      \
                                       .kind = QH_KIND_QUANTIZER,                                                  \
                                       .name = NAME,                                                               \
                                       .summary = "a fake plugin for the ABI tests",                               \
                                       .params = PARAMS,                                                           \
                                       .config_size = sizeof(S),                                                   \
                                       .ops.quantizer = OPS}

/* A library around the descriptors DESCS (an array), with the frozen prefix given as HEADER. */
#define FAKE_LIBRARY(DESCS, ...)                                                                                    \
    static const qh_library fake_library = {__VA_ARGS__, .name = "qh-fake", .version = "1.0.0",                   \
                                            .license = "MIT",                                                      \
                                            .n_plugins = sizeof(DESCS) / sizeof((DESCS)[0]),                       \
                                            .plugins = DESCS};                                                     \
    QH_PLUGIN_LIBRARY(fake_library)

typedef struct fake_cfg {
    int64_t bits;
} fake_cfg;

#endif /* QH_FAKE_H */
