/* Two quantizers of the same name in one library. */
#include "fake.h"

FAKE_DESC(first, "twin", &fake_ops, NULL, fake_cfg);
FAKE_DESC(second, "twin", &fake_ops, NULL, fake_cfg);
static const qh_plugin_desc *const descs[] = {&first, &second};
FAKE_LIBRARY(descs, QH_LIBRARY_HEADER)
