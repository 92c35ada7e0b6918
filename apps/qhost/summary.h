/* summary.h - `qhost --summary MODEL`: layers with output shapes, parameters and MACs. */
#ifndef QHOST_SUMMARY_H
#define QHOST_SUMMARY_H

#include <stdio.h>

#include "qhost/qh_config.h"

/* ov: the --set overrides (section NULL or "model"); `input=CxHxW` and `classes=N` set the input,
 * everything else goes to the model plugin's parameters. Returns an exit code. */
int cli_summary(const qh_registry *reg, const char *model, const qh_override *ov, int n_ov, FILE *out,
                FILE *err_out);

#endif /* QHOST_SUMMARY_H */
