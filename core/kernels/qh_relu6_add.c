/* qh_relu6_add.c - ReLU6 (forward, backward) and the residual add.
 *
 * Elementwise: each output depends on one position only, so any split over threads gives the same
 * bytes. The AVX2 paths do the very IEEE operations of the references, bit for bit. */
#include "qh_elementwise_impl.h"
#include "qh_kernels.h"

#include "qhost/qh_parallel.h"



/* ---------------------------------------------------------------- references */

/* NaN becomes 0, as in qh_k_relu_fwd_f32. */
void qh_k_relu6_fwd_f32_ref(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] > 0.0f ? x[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
}

/* PyTorch's hardtanh_backward: the gradient passes strictly inside (0, 6) only. */
void qh_k_relu6_bwd_f32_ref(int64_t n, const float *x, const float *dy, float *dx)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = x[i] > 0.0f && x[i] < 6.0f ? dy[i] : 0.0f;
}

void qh_k_add_f32_ref(int64_t n, const float *a, const float *b, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

/* ---------------------------------------------------------------- AVX2 chunks */

#ifdef QH_X86
/* maxps(x, 0) yields its second operand (0) for NaN, like the reference's comparison. */
__attribute__((target("avx2,fma"))) static void relu6_fwd_avx2(int64_t n, const float *x, float *y)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_min_ps(_mm256_max_ps(_mm256_loadu_ps(x + i), zero), six));
    qh_k_relu6_fwd_f32_ref(n - i, x + i, y + i);
}

__attribute__((target("avx2,fma"))) static void relu6_bwd_avx2(int64_t n, const float *x, const float *dy,
                                                               float *dx)
{
    const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 keep = _mm256_and_ps(_mm256_cmp_ps(v, zero, _CMP_GT_OQ), _mm256_cmp_ps(v, six, _CMP_LT_OQ));
        _mm256_storeu_ps(dx + i, _mm256_and_ps(keep, _mm256_loadu_ps(dy + i)));
    }
    qh_k_relu6_bwd_f32_ref(n - i, x + i, dy + i, dx + i);
}

__attribute__((target("avx2,fma"))) static void add_avx2(int64_t n, const float *a, const float *b, float *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    qh_k_add_f32_ref(n - i, a + i, b + i, y + i);
}
#endif

/* ---------------------------------------------------------------- optimized entry points */

void qh_k_relu6_fwd_f32(int64_t n, const float *x, float *y)
{
#ifdef QH_X86
    qhi_run_unary(qhi_have_avx2() ? relu6_fwd_avx2 : qh_k_relu6_fwd_f32_ref, n, x, y);
#else
    qhi_run_unary(qh_k_relu6_fwd_f32_ref, n, x, y);
#endif
}

void qh_k_relu6_bwd_f32(int64_t n, const float *x, const float *dy, float *dx)
{
#ifdef QH_X86
    qhi_run_binary(qhi_have_avx2() ? relu6_bwd_avx2 : qh_k_relu6_bwd_f32_ref, n, x, dy, dx);
#else
    qhi_run_binary(qh_k_relu6_bwd_f32_ref, n, x, dy, dx);
#endif
}

void qh_k_add_f32(int64_t n, const float *a, const float *b, float *y)
{
#ifdef QH_X86
    qhi_run_binary(qhi_have_avx2() ? add_avx2 : qh_k_add_f32_ref, n, a, b, y);
#else
    qhi_run_binary(qh_k_add_f32_ref, n, a, b, y);
#endif
}
