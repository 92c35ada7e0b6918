/* qh_resume.h - `qhost --resume`: which finished stages of a run can be skipped. */
#ifndef QH_RESUME_H
#define QH_RESUME_H

#include "pipeline/qh_run_impl.h"

/* Reads <outdir>/metrics.json (absent: nothing finished) and restores the longest prefix of
 * finished stages whose end state the run can rebuild exactly: the model file of its last train,
 * prune or quantize stage, and no quantization pending (the quantized form lives only in memory,
 * so stages from the last train or prune before a quantize stage on are run again). Fills
 * run->metrics of those stages, loads the model file into run->g and sets *n_skip. */
qh_status qhi_resume(qh_run *run, int32_t *n_skip, qh_error *err);

#endif /* QH_RESUME_H */
