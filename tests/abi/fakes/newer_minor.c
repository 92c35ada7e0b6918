/* Built for ABI 1.5: same major, but it may rely on methods this host does not know. */
#include "fake.h"

FAKE_DESC(desc, "newer_minor", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, .magic = QH_PLUGIN_MAGIC, .abi_major = QH_ABI_MAJOR, .abi_minor = 5,
             .struct_size = sizeof(qh_library))
