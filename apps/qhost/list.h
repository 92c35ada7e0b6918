/* list.h - `qhost --list-plugins` and `qhost --describe`, printed from the plugins' parameter tables. */
#ifndef QHOST_LIST_H
#define QHOST_LIST_H

#include <stdbool.h>
#include <stdio.h>

#include "qhost/qh_registry.h"

void cli_list_plugins(const qh_registry *reg, bool verbose, FILE *out);
/* NAME or KIND/NAME; returns 0, or 2 (message on err_out) when unknown or ambiguous. */
int cli_describe(const qh_registry *reg, const char *name, FILE *out, FILE *err_out);

#endif /* QHOST_LIST_H */
