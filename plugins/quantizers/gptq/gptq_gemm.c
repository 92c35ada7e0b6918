/* gptq_gemm.c - C -= A B in double: the Cholesky, the triangular inverse and GPTQ's error
 * propagation all reduce to it.
 *
 * The element update is fixed (c = fma(-a, b, c), p ascending), so the AVX2 version is blocked
 * freely (KC x NC panels for the caches, a 6 x 8 register tile as BLIS's Haswell dgemm) and still
 * gives the reference's bits: fnmadd is the same single rounding as fma(-a, b, c).
 */
#include <math.h>

#include "gptq_impl.h"

void gq_gemm_sub_ref(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap, const double *b,
                     int64_t ldb, double *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t p = 0; p < k; p++) {
            double x = -a[i * sai + p * sap];
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = fma(x, b[p * ldb + j], c[i * ldc + j]);
        }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define GQ_AVX2 __attribute__((target("avx2,fma")))
#define GQ_INLINE __attribute__((always_inline)) inline

enum { MR = 6, NR = 8, KC = 128, NC = 256 };

/* mr x 8 tile over kc steps; mr is a constant at every call site, so the loops unroll into registers. */
GQ_AVX2 static GQ_INLINE void tile8(int mr, int64_t kc, const double *a, int64_t sai, int64_t sap, const double *b,
                                    int64_t ldb, double *c, int64_t ldc)
{
    __m256d c0[MR], c1[MR];
    for (int r = 0; r < mr; r++) {
        c0[r] = _mm256_loadu_pd(c + r * ldc);
        c1[r] = _mm256_loadu_pd(c + r * ldc + 4);
    }
    for (int64_t p = 0; p < kc; p++) {
        __m256d b0 = _mm256_loadu_pd(b + p * ldb), b1 = _mm256_loadu_pd(b + p * ldb + 4);
        for (int r = 0; r < mr; r++) {
            __m256d x = _mm256_broadcast_sd(a + r * sai + p * sap);
            c0[r] = _mm256_fnmadd_pd(x, b0, c0[r]);
            c1[r] = _mm256_fnmadd_pd(x, b1, c1[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_pd(c + r * ldc, c0[r]);
        _mm256_storeu_pd(c + r * ldc + 4, c1[r]);
    }
}

/* mr x nr tile, nr < 8: four at a time, then one at a time (still one fma per step). */
GQ_AVX2 static void tile_edge(int mr, int nr, int64_t kc, const double *a, int64_t sai, int64_t sap,
                              const double *b, int64_t ldb, double *c, int64_t ldc)
{
    for (int r = 0; r < mr; r++) {
        int j = 0;
        if (nr >= 4) {
            __m256d acc = _mm256_loadu_pd(c + r * ldc);
            for (int64_t p = 0; p < kc; p++)
                acc = _mm256_fnmadd_pd(_mm256_broadcast_sd(a + r * sai + p * sap), _mm256_loadu_pd(b + p * ldb), acc);
            _mm256_storeu_pd(c + r * ldc, acc);
            j = 4;
        }
        for (; j < nr; j++) {
            __m128d acc = _mm_set_sd(c[r * ldc + j]);
            for (int64_t p = 0; p < kc; p++)
                acc = _mm_fnmadd_sd(_mm_set_sd(a[r * sai + p * sap]), _mm_set_sd(b[p * ldb + j]), acc);
            c[r * ldc + j] = _mm_cvtsd_f64(acc);
        }
    }
}

GQ_AVX2 static void rows8(int mr, int64_t kc, const double *a, int64_t sai, int64_t sap, const double *b,
                          int64_t ldb, double *c, int64_t ldc)
{
    switch (mr) {
    case 6: tile8(6, kc, a, sai, sap, b, ldb, c, ldc); break;
    case 5: tile8(5, kc, a, sai, sap, b, ldb, c, ldc); break;
    case 4: tile8(4, kc, a, sai, sap, b, ldb, c, ldc); break;
    case 3: tile8(3, kc, a, sai, sap, b, ldb, c, ldc); break;
    case 2: tile8(2, kc, a, sai, sap, b, ldb, c, ldc); break;
    default: tile8(1, kc, a, sai, sap, b, ldb, c, ldc); break;
    }
}

GQ_AVX2 static void gemm_avx2(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap,
                              const double *b, int64_t ldb, double *c, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < n; j0 += NC) {
        int64_t nc = n - j0 < NC ? n - j0 : NC;
        for (int64_t p0 = 0; p0 < k; p0 += KC) {
            int64_t kc = k - p0 < KC ? k - p0 : KC;
            const double *bp = b + p0 * ldb + j0;
            for (int64_t i0 = 0; i0 < m; i0 += MR) {
                int mr = (int)(m - i0 < MR ? m - i0 : MR);
                const double *ap = a + i0 * sai + p0 * sap;
                double *cp = c + i0 * ldc + j0;
                int64_t j = 0;
                for (; j + NR <= nc; j += NR)
                    rows8(mr, kc, ap, sai, sap, bp + j, ldb, cp + j, ldc);
                if (j < nc)
                    tile_edge(mr, (int)(nc - j), kc, ap, sai, sap, bp + j, ldb, cp + j, ldc);
            }
        }
    }
}

void gq_gemm_sub(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap, const double *b,
                 int64_t ldb, double *c, int64_t ldc)
{
    if (m <= 0 || n <= 0 || k <= 0)
        return;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        gemm_avx2(m, n, k, a, sai, sap, b, ldb, c, ldc);
    else
        gq_gemm_sub_ref(m, n, k, a, sai, sap, b, ldb, c, ldc);
}
#else
void gq_gemm_sub(int64_t m, int64_t n, int64_t k, const double *a, int64_t sai, int64_t sap, const double *b,
                 int64_t ldb, double *c, int64_t ldc)
{
    gq_gemm_sub_ref(m, n, k, a, sai, sap, b, ldb, c, ldc);
}
#endif
