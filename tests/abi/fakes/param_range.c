/* A default outside the parameter's own range. */
#include "fake.h"

static const qh_param params[] = {QH_P_INT("bits", fake_cfg, bits, 12, 2, 8, "bits", "code width"), QH_P_END};
FAKE_DESC(desc, "param_range", &fake_ops, params, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
