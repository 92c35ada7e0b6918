/* Exports something, but not qh_plugin_entry. */
#include "qhost/qh_plugin.h"

QH_EXPORT int qh_plugin_version(void);
QH_EXPORT int qh_plugin_version(void) { return 1; }
