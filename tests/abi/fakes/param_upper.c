/* A parameter name with upper-case letters (INI keys are [a-z0-9_]+). */
#include "fake.h"

static const qh_param params[] = {QH_P_INT("Bits", fake_cfg, bits, 4, 2, 8, "bits", "code width"), QH_P_END};
FAKE_DESC(desc, "param_upper", &fake_ops, params, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
