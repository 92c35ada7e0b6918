/* A quantizer without its one required method. */
#include "fake.h"

static const qh_quantizer_ops ops = {.struct_size = sizeof(qh_quantizer_ops), .quantize = NULL};
FAKE_DESC(desc, "missing_method", &ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
