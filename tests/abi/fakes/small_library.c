/* A library descriptor that claims to be only its frozen prefix (12 bytes). */
#include "fake.h"

FAKE_DESC(desc, "small_library", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, .magic = QH_PLUGIN_MAGIC, .abi_major = QH_ABI_MAJOR, .abi_minor = QH_ABI_MINOR,
             .struct_size = 12)
