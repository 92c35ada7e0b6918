/* qh_quantize_calib.h - the quantize stage's calibration path (data-aware quantizers). */
#ifndef QH_QUANTIZE_CALIB_H
#define QH_QUANTIZE_CALIB_H

#include "pipeline/qh_run_impl.h"

/* Does stage s take the calibration path: fold_batchnorm is set, or the quantizer asks for data for
 * one of the targets idx[0..n)? */
bool qhi_quantize_wants_calib(const qh_run *run, const qh_stage *s, qh_quantizer *qz, const int32_t *idx, int32_t n);

/* Quantizes the targets idx[0..n) in network order: each with quantize_calib on its captured data
 * when the quantizer asks for data, else with quantize (data-free; also grouped convs), so every
 * layer's X~ sees the layers before it as quantized. Fills mse[], run->qa[] and run->qt[] as the
 * data-free path does, counts the quantized tensors in *done, and writes calibration-<stage>.csv. */
qh_status qhi_quantize_calib(qh_run *run, const qh_stage *s, qh_quantizer *qz, const int32_t *idx, int32_t n,
                             double *mse, int32_t *done, qh_error *err);

#endif /* QH_QUANTIZE_CALIB_H */
