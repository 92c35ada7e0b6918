/* Built for a future, incompatible ABI 2.0. */
#include "fake.h"

FAKE_DESC(desc, "wrong_major", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, .magic = QH_PLUGIN_MAGIC, .abi_major = 2, .abi_minor = 0, .struct_size = sizeof(qh_library))
