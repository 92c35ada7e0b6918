/* qh_gemm_impl.h - the packed single-threaded GEMM, for kernels (conv2d) that parallelize at a
 * coarser level (over images) and hand each task its own packing scratch. Internal to core/kernels. */
#ifndef QH_GEMM_IMPL_H
#define QH_GEMM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The blocking of the packed GEMM: register tile width, depth block, width block. */
enum { QH_GEMM_NR = 16, QH_GEMM_KC = 256, QH_GEMM_NC = 4080 };

/* Floats of packing scratch qh_gemm_serial needs for an M x N x K product (plus 8 for alignment). */
size_t qh_gemm_pack_floats(int64_t M, int64_t N, int64_t K);

/* Same contract as qh_k_gemm_f32, on the calling thread only; pack holds qh_gemm_pack_floats floats.
 * Gives bit-identical results to qh_k_gemm_f32 (same blocking, same micro-kernel). */
void qh_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, float *pack);

/* A B operand already packed (N <= QH_GEMM_NC), so a producer such as im2col can write it directly
 * instead of building the matrix and packing it again. Layout: K is cut into blocks of QH_GEMM_KC
 * rows; block k0 starts at k0 * Npad (Npad = N rounded up to QH_GEMM_NR) and holds Npad / NR panels
 * of kc x NR values, k-major; columns N..Npad are zero. */
static inline int64_t qh_gemm_pb_npad(int64_t N) { return (N + QH_GEMM_NR - 1) / QH_GEMM_NR * QH_GEMM_NR; }
static inline size_t qh_gemm_pb_floats(int64_t N, int64_t K) { return (size_t)(qh_gemm_pb_npad(N) * K); }

/* C = alpha * op(A) * B + beta * C with B packed as above; apack holds qh_gemm_pack_floats(M, N, K).
 * Bit-identical to qh_gemm_serial on the unpacked B. */
void qh_gemm_serial_pb(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *bp, float beta, float *C, int64_t ldc, float *apack);

#endif /* QH_GEMM_IMPL_H */
