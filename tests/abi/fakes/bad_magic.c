/* A library descriptor whose magic is not "QHLB". */
#include "fake.h"

FAKE_DESC(desc, "bad_magic", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, .magic = 0xDEADBEEFu, .abi_major = QH_ABI_MAJOR, .abi_minor = QH_ABI_MINOR,
             .struct_size = sizeof(qh_library))
