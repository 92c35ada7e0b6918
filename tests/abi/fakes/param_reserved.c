/* A parameter named like the stage key that selects the plugin. */
#include "fake.h"

static const qh_param params[] = {QH_P_INT("plugin", fake_cfg, bits, 4, 2, 8, "bits", "code width"), QH_P_END};
FAKE_DESC(desc, "param_reserved", &fake_ops, params, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
