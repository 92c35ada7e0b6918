/* A quantizer vtable shorter than the 1.0 layout: quantize lies beyond its struct_size. */
#include "fake.h"

static const qh_quantizer_ops ops = {.struct_size = QH_QUANTIZER_OPS_SIZE_1_0 - sizeof(void (*)(void)),
                                     .quantize = fake_quantize};
FAKE_DESC(desc, "small_ops", &ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
