/* qh_elementwise_impl.h - the shared driver of elementwise kernels (internal to core/kernels).
 *
 * An elementwise kernel's AVX2 or reference body runs over one contiguous chunk per thread, each
 * chunk aligned to 8 elements so the vector loops see full lanes. Each output depends on one
 * position only, so any split gives the same bytes. */
#ifndef QH_ELEMENTWISE_IMPL_H
#define QH_ELEMENTWISE_IMPL_H

#include <stdint.h>

#include "qhost/qh_parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QH_X86 1
static inline int qhi_have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Below this many elements a parallel region costs more than it saves. */
#define QHI_PAR_MIN 32768

typedef void (*qhi_unary_fn)(int64_t n, const float *a, float *out);
typedef void (*qhi_binary_fn)(int64_t n, const float *a, const float *b, float *out);

static inline int qhi_chunk_count(int64_t n)
{
    int t = qh_threads();
    return n < QHI_PAR_MIN || t < 1 ? 1 : t;
}

static inline void qhi_chunk_range(int64_t n, int parts, int k, int64_t *lo, int64_t *len)
{
    int64_t step = ((n + parts - 1) / parts + 7) / 8 * 8;
    int64_t a = step * k, b = a + step;
    *lo = a < n ? a : n;
    *len = (b < n ? b : n) - *lo;
}

static inline void qhi_run_unary(qhi_unary_fn f, int64_t n, const float *a, float *out)
{
    int parts = qhi_chunk_count(n);
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
    for (int k = 0; k < parts; k++) {
        int64_t lo, len;
        qhi_chunk_range(n, parts, k, &lo, &len);
        f(len, a + lo, out + lo);
    }
}

static inline void qhi_run_binary(qhi_binary_fn f, int64_t n, const float *a, const float *b, float *out)
{
    int parts = qhi_chunk_count(n);
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
    for (int k = 0; k < parts; k++) {
        int64_t lo, len;
        qhi_chunk_range(n, parts, k, &lo, &len);
        f(len, a + lo, b + lo, out + lo);
    }
}

#endif /* QH_ELEMENTWISE_IMPL_H */
