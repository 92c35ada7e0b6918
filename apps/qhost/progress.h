/* progress.h - progress display: a bar with rate and ETA on a terminal, plain lines otherwise. */
#ifndef QHOST_PROGRESS_H
#define QHOST_PROGRESS_H

#include <stdbool.h>
#include <stdio.h>

#include "qhost/qh_engine.h"

typedef struct cli_progress {
    FILE *out;
    bool tty;
    bool quiet;
    char label[96];
    double t_start;
    double t_last;
    int drawn;
} cli_progress;

void cli_progress_init(cli_progress *p, FILE *out, bool quiet);
qh_progress cli_progress_hooks(cli_progress *p);

#endif /* QHOST_PROGRESS_H */
