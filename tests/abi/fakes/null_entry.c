/* The entry point exists but returns NULL. */
#include "qhost/qh_plugin.h"

QH_EXPORT const qh_library *qh_plugin_entry(void);
QH_EXPORT const qh_library *qh_plugin_entry(void) { return NULL; }
