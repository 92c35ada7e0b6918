/* A plugin name that cannot be written as `plugin = name` in an INI file. */
#include "fake.h"

FAKE_DESC(desc, "Bad-Name", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&desc};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
