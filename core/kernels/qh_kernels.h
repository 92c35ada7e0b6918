/* qh_kernels.h - compute kernels of the core (internal to libqhost; the tests use them too).
 *
 * Every kernel qh_k_<op>_f32 has a plain reference twin qh_k_<op>_f32_ref it is tested against.
 * Optimized kernels use AVX2/FMA and OpenMP within qh_threads(). Work is split over rows, images
 * or channels, never with a floating-point reduction across threads, so the results are identical
 * for any thread count. Backward kernels overwrite (never accumulate into) their outputs.
 * All tensors are contiguous, NCHW, weights [out, in/groups, kh, kw] as in PyTorch.
 */
#ifndef QH_KERNELS_H
#define QH_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qhost/qh_rng.h"

/* ---------------------------------------------------------------- GEMM
 * C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major, leading dimensions in elements.
 * op(A) = A (ta = false, A is M x K) or A^T (ta = true, A is K x M); the same for B.
 * beta == 0 means C is not read (may hold NaN). */
void qh_k_gemm_f32_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void qh_k_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* ---------------------------------------------------------------- conv2d */
typedef struct qh_conv2d_shape {
    int64_t n;                   /* batch */
    int64_t c_in, h_in, w_in;
    int64_t c_out, h_out, w_out;
    int32_t kh, kw, sh, sw, ph, pw;
    int32_t groups;
} qh_conv2d_shape;

/* Fills h_out, w_out from the rest (PyTorch formula, dilation 1). */
void qh_conv2d_shape_finish(qh_conv2d_shape *s);
/* Scratch bytes the optimized forward/backward need for this shape. */
size_t qh_k_conv2d_ws_size(const qh_conv2d_shape *s);

/* y[n, c_out, h_out, w_out] = conv(x, w) + b (b may be NULL). */
void qh_k_conv2d_fwd_f32_ref(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y);
void qh_k_conv2d_fwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y,
                         void *ws);
/* From dy: dx (NULL = skip), dw (overwritten), db (NULL = skip, overwritten). */
void qh_k_conv2d_bwd_f32_ref(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                             float *dw, float *db);
void qh_k_conv2d_bwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw, float *db, void *ws);

/* ---------------------------------------------------------------- linear: y[n,out] = x[n,in] W^T + b */
void qh_k_linear_fwd_f32_ref(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *b,
                             float *y);
void qh_k_linear_fwd_f32(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *b,
                         float *y);
void qh_k_linear_bwd_f32_ref(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *dy,
                             float *dx, float *dw, float *db);
void qh_k_linear_bwd_f32(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db);

/* ---------------------------------------------------------------- elementwise
 * ReLU backward uses the forward output y (dx = dy where y > 0), as PyTorch does. */
void qh_k_relu_fwd_f32_ref(int64_t n, const float *x, float *y);
void qh_k_relu_fwd_f32(int64_t n, const float *x, float *y);
void qh_k_relu_bwd_f32_ref(int64_t n, const float *y, const float *dy, float *dx);
void qh_k_relu_bwd_f32(int64_t n, const float *y, const float *dy, float *dx);
/* tanh backward: dx = dy * (1 - y^2). */
void qh_k_tanh_fwd_f32_ref(int64_t n, const float *x, float *y);
void qh_k_tanh_fwd_f32(int64_t n, const float *x, float *y);
void qh_k_tanh_bwd_f32_ref(int64_t n, const float *y, const float *dy, float *dx);
void qh_k_tanh_bwd_f32(int64_t n, const float *y, const float *dy, float *dx);

/* ---------------------------------------------------------------- pooling (NCHW, per plane) */
typedef struct qh_pool2d_shape {
    int64_t n, c, h_in, w_in, h_out, w_out;
    int32_t kh, kw, sh, sw, ph, pw;
} qh_pool2d_shape;

/* Fills h_out, w_out (PyTorch formula, floor mode). */
void qh_pool2d_shape_finish(qh_pool2d_shape *s);
/* Max pooling; padding counts as -inf; argmax[i] = index of the winner inside its input plane
 * (first maximum on ties, as PyTorch). argmax may be NULL (inference): only y is written. */
void qh_k_maxpool2d_fwd_f32_ref(const qh_pool2d_shape *s, const float *x, float *y, int32_t *argmax);
void qh_k_maxpool2d_fwd_f32(const qh_pool2d_shape *s, const float *x, float *y, int32_t *argmax);
void qh_k_maxpool2d_bwd_f32_ref(const qh_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx);
void qh_k_maxpool2d_bwd_f32(const qh_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx);
/* Average pooling, count_include_pad = true (PyTorch default). */
void qh_k_avgpool2d_fwd_f32_ref(const qh_pool2d_shape *s, const float *x, float *y);
void qh_k_avgpool2d_fwd_f32(const qh_pool2d_shape *s, const float *x, float *y);
void qh_k_avgpool2d_bwd_f32_ref(const qh_pool2d_shape *s, const float *dy, float *dx);
void qh_k_avgpool2d_bwd_f32(const qh_pool2d_shape *s, const float *dy, float *dx);

/* ---------------------------------------------------------------- dropout (inverted: kept values x / (1-p))
 * The mask is drawn serially from rng (one draw per element), so it is thread-count independent. */
void qh_k_dropout_mask(int64_t n, double p, qh_rng *rng, uint8_t *mask);
void qh_k_dropout_fwd_f32(int64_t n, double p, const uint8_t *mask, const float *x, float *y);
void qh_k_dropout_bwd_f32(int64_t n, double p, const uint8_t *mask, const float *dy, float *dx);

/* ---------------------------------------------------------------- softmax cross-entropy
 * Mean over the batch of -log softmax(logits)[label]; if dlogits != NULL it receives
 * (softmax - onehot) / n. Labels must be in [0, classes). Computed in double per row. */
double qh_k_softmax_xent_f32_ref(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                 float *dlogits);
double qh_k_softmax_xent_f32(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                             float *dlogits);


/* ================================================================ model-zoo layers (issue 3) */

/* ---------------------------------------------------------------- batch norm 2d (NCHW, per channel)
 * Training: normalizes with the batch statistics (biased variance), writes save_mean / save_invstd
 * (per channel, for backward) and updates the running statistics in place as PyTorch does:
 * running = (1 - momentum) * running + momentum * batch, with the UNBIASED batch variance.
 * Per-channel sums run serially inside one thread (work split over channels). */
void qh_k_bn2d_fwd_train_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                 const float *beta, double eps, double momentum, float *running_mean,
                                 float *running_var, float *y, float *save_mean, float *save_invstd);
void qh_k_bn2d_fwd_train_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                             double eps, double momentum, float *running_mean, float *running_var, float *y,
                             float *save_mean, float *save_invstd);
/* Inference: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta. */
void qh_k_bn2d_fwd_eval_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                const float *beta, const float *running_mean, const float *running_var, double eps,
                                float *y);
void qh_k_bn2d_fwd_eval_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, double eps, float *y);
/* Backward of the training forward: dx (NULL = skip), dgamma, dbeta (overwritten). */
void qh_k_bn2d_bwd_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy, const float *gamma,
                           const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);
void qh_k_bn2d_bwd_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta);

/* Fused inference epilogue: y = x * scale[ch] + shift[ch], then ReLU (relu = 1), ReLU6 (relu = 6)
 * or nothing (relu = 0). x == y allowed. Used for folded BN after conv. */
void qh_k_scale_shift_act_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
                                  const float *shift, int relu, float *y);
void qh_k_scale_shift_act_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
                              const float *shift, int relu, float *y);

/* ---------------------------------------------------------------- ReLU6: min(max(x, 0), 6)
 * backward: dx = dy where 0 < x < 6 (PyTorch's hardtanh rule), using the forward INPUT x. */
void qh_k_relu6_fwd_f32_ref(int64_t n, const float *x, float *y);
void qh_k_relu6_fwd_f32(int64_t n, const float *x, float *y);
void qh_k_relu6_bwd_f32_ref(int64_t n, const float *x, const float *dy, float *dx);
void qh_k_relu6_bwd_f32(int64_t n, const float *x, const float *dy, float *dx);

/* ---------------------------------------------------------------- residual add: y = a + b */
void qh_k_add_f32_ref(int64_t n, const float *a, const float *b, float *y);
void qh_k_add_f32(int64_t n, const float *a, const float *b, float *y);

/* ---------------------------------------------------------------- adaptive average pooling
 * PyTorch's bins: rows [floor(i*H/Ho), ceil((i+1)*H/Ho)), the same for columns. Ho = Wo = 1 is
 * global average pooling. */
void qh_k_adaptive_avgpool2d_fwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                         const float *x, float *y);
void qh_k_adaptive_avgpool2d_fwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                     const float *x, float *y);
void qh_k_adaptive_avgpool2d_bwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                         const float *dy, float *dx);
void qh_k_adaptive_avgpool2d_bwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                     const float *dy, float *dx);

/* ---------------------------------------------------------------- option-A shortcut (He et al. 2016)
 * y = zero-pad channels of x[:, :, ::stride, ::stride]: output channel k + pad_front holds input
 * channel k, the other c_out - c_in channels are 0; output size ceil(h/stride) x ceil(w/stride).
 * pad_front = (c_out - c_in) / 2 as F.pad(..., (0,0,0,0, p//2, p - p//2)) does. */
void qh_k_shortcut_a_fwd_f32(int64_t n, int64_t c_in, int64_t h, int64_t w, int32_t stride, int64_t c_out,
                             const float *x, float *y);
void qh_k_shortcut_a_bwd_f32(int64_t n, int64_t c_in, int64_t h, int64_t w, int32_t stride, int64_t c_out,
                             const float *dy, float *dx);

/* ---------------------------------------------------------------- bilinear resize
 * align_corners = False, PyTorch's F.interpolate(mode='bilinear'): source coordinate
 * (dst + 0.5) * in/out - 0.5, clamped below at 0. */
void qh_k_resize_bilinear_fwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                      const float *x, float *y);
void qh_k_resize_bilinear_fwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *x,
                                  float *y);
void qh_k_resize_bilinear_bwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                      const float *dy, float *dx);
void qh_k_resize_bilinear_bwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *dy,
                                  float *dx);

/* ---------------------------------------------------------------- cross-entropy with label smoothing
 * PyTorch's cross_entropy(label_smoothing = s): target distribution (1 - s) onehot + s / classes;
 * mean loss over the batch; dlogits (may be NULL) = (softmax - target) / n. s = 0 equals
 * qh_k_softmax_xent_f32. */
double qh_k_softmax_xent_ls_f32_ref(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                    double smoothing, float *dlogits);
double qh_k_softmax_xent_ls_f32(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                double smoothing, float *dlogits);

/* ---------------------------------------------------------------- depthwise 3x3 backward (MobileNetV2)
 * Depthwise (groups == c_in == c_out), 3x3, padding 1, stride 1 or 2 (the same both ways): dx (NULL =
 * skip) and dw (overwritten) with AVX2/FMA, one channel per task so that every tap gradient has one
 * owner and one summation order: identical for any thread count. Returns false, writing nothing, for
 * any other shape, without AVX2/FMA or without scratch memory. qh_k_conv2d_bwd_f32 dispatches here;
 * the reference is qh_k_conv2d_bwd_f32_ref. */
bool qh_k_dwconv3x3_bwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                            float *dw);

/* ---------------------------------------------------------------- batch norm + activation, training
 * qh_k_bn2d_fwd_train_f32 followed by ReLU (relu = 1) or ReLU6 (relu = 6) in the same pass (relu = 0:
 * none); the graph runs batchnorm -> ReLU/ReLU6 this way in training too. Since the activation keeps
 * exactly the values inside (0, 6) or (0, inf), its backward mask can be read from y. */
void qh_k_bn2d_fwd_train_act_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                     const float *beta, double eps, double momentum, float *running_mean,
                                     float *running_var, int relu, float *y, float *save_mean, float *save_invstd);
void qh_k_bn2d_fwd_train_act_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                 const float *beta, double eps, double momentum, float *running_mean,
                                 float *running_var, int relu, float *y, float *save_mean, float *save_invstd);

#endif /* QH_KERNELS_H */
