/* qh_gemm.c - GEMM: the plain reference, and a packed, cache-blocked version (BLIS layout) with a
 * 6x16 AVX2/FMA micro-kernel chosen at run time.
 *
 * Determinism: every C element is computed by exactly one task, with the K loop split at fixed
 * KC boundaries and the same micro-kernel whatever the thread count, so the threads only decide
 * who computes a tile, never how. Results are therefore bit-identical for any thread count. */
#include <stdlib.h>
#include <string.h>

#include "qh_gemm_impl.h"
#include "qh_kernels.h"
#include "qhost/qh_parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#define QH_GEMM_X86 1
#include <immintrin.h>
#endif

/* Register tile MR x NR (12 ymm accumulators), A block MC x KC (L2), B panel KC x NC (L3);
 * the Zen values of BLIS. */
enum { MR = 6, NR = QH_GEMM_NR, MC = 144, KC = QH_GEMM_KC, NC = QH_GEMM_NC };
/* Below this many multiply-adds a parallel region costs more than it saves. */
#define PAR_MIN_MACS 32768
/* Packing scratch up to this many floats lives on the stack (no malloc for small GEMMs). */
#define STACK_PACK_FLOATS 8192

typedef void (*ukr_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                       float beta);

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* ---------------------------------------------------------------- reference */

void qh_k_gemm_f32_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                       int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k];
                double b = tb ? B[j * ldb + k] : B[k * ldb + j];
                acc += a * b;
            }
            double v = (double)alpha * acc;
            if (beta != 0.0f)
                v += (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)v;
        }
    }
}

/* ---------------------------------------------------------------- packing
 * A block -> MR-row panels, each k-major (MR values per k); B block -> NR-column panels, each k-major.
 * Short panels are zero-padded so the micro-kernel always runs a full tile. */

static void pack_a(bool ta, const float *A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float *dst)
{
    for (int64_t ip = 0; ip < mc; ip += MR, dst += MR * kc) {
        int64_t mr = min64(MR, mc - ip);
        if (mr < MR)
            memset(dst, 0, sizeof(float) * MR * kc);
        for (int64_t r = 0; r < mr; r++) {
            int64_t row = i0 + ip + r;
            if (ta) {
                for (int64_t k = 0; k < kc; k++)
                    dst[k * MR + r] = A[(k0 + k) * lda + row];
            } else {
                const float *src = A + row * lda + k0;
                for (int64_t k = 0; k < kc; k++)
                    dst[k * MR + r] = src[k];
            }
        }
    }
}

#ifdef QH_GEMM_X86
/* Full transposed panel (tb, nr == NR): 8 x 8 blocks transposed in registers; the scalar loop
 * below does the same copy one float at a time (a strided store each). */
__attribute__((target("avx2,fma"))) static void transpose8(const float *const *src, int64_t k, float *out)
{
    __m256 r0 = _mm256_loadu_ps(src[0] + k), r1 = _mm256_loadu_ps(src[1] + k), r2 = _mm256_loadu_ps(src[2] + k);
    __m256 r3 = _mm256_loadu_ps(src[3] + k), r4 = _mm256_loadu_ps(src[4] + k), r5 = _mm256_loadu_ps(src[5] + k);
    __m256 r6 = _mm256_loadu_ps(src[6] + k), r7 = _mm256_loadu_ps(src[7] + k);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(out + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(out + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(out + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(out + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(out + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(out + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(out + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(out + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* Returns the number of leading rows of the panel it packed (a multiple of 8). */
static int64_t pack_b_panel_t_avx2(const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j, float *dst)
{
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0;
    const float *src[NR];
    for (int c = 0; c < NR; c++)
        src[c] = B + (j + c) * ldb + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        transpose8(src, k, dst + k * NR);
        transpose8(src + 8, k, dst + k * NR + 8);
    }
    return k;
}
#endif

/* One NR-column panel: columns [j, j + nr) of op(B), rows [k0, k0 + kc). */
static void pack_b_panel(bool tb, const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t j, int64_t nr,
                         float *dst)
{
#ifdef QH_GEMM_X86
    if (tb && nr == NR) {
        int64_t done = pack_b_panel_t_avx2(B, ldb, k0, kc, j, dst);
        for (int64_t c = 0; c < NR; c++) {
            const float *src = B + (j + c) * ldb + k0;
            for (int64_t k = done; k < kc; k++)
                dst[k * NR + c] = src[k];
        }
        return;
    }
#endif
    if (!tb) {
        for (int64_t k = 0; k < kc; k++) {
            memcpy(dst + k * NR, B + (k0 + k) * ldb + j, sizeof(float) * (size_t)nr);
            for (int64_t c = nr; c < NR; c++)
                dst[k * NR + c] = 0.0f;
        }
        return;
    }
    if (nr < NR)
        memset(dst, 0, sizeof(float) * NR * kc);
    for (int64_t c = 0; c < nr; c++) {
        const float *src = B + (j + c) * ldb + k0;
        for (int64_t k = 0; k < kc; k++)
            dst[k * NR + c] = src[k];
    }
}

/* ---------------------------------------------------------------- micro-kernels
 * c[MR x NR] = alpha * (a-panel . b-panel) + beta * c; beta == 0 never reads c.
 * Both compute the scaling as mul, mul, add so an edge tile (computed with alpha 1, beta 0 into a
 * scratch tile and scaled by store_edge) rounds exactly like a full one. */

static void ukr_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha, float beta)
{
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++)
                acc[r][j] += a[r] * b[j];
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) {
            float v = alpha * acc[r][j];
            c[r * ldc + j] = beta != 0.0f ? v + beta * c[r * ldc + j] : v;
        }
}

#ifdef QH_GEMM_X86
#define QH_AVX2 __attribute__((target("avx2,fma")))

QH_AVX2 static inline void store_row_avx2(float *c, __m256 lo, __m256 hi, __m256 va, __m256 vb, bool rd)
{
    lo = _mm256_mul_ps(va, lo);
    hi = _mm256_mul_ps(va, hi);
    if (rd) {
        lo = _mm256_add_ps(lo, _mm256_mul_ps(vb, _mm256_loadu_ps(c)));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(vb, _mm256_loadu_ps(c + 8)));
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
}

#define QH_FMA_ROW(r)                                   \
    do {                                                \
        __m256 av = _mm256_broadcast_ss(a + (r));       \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);     \
        c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);     \
    } while (0)

QH_AVX2 static void ukr_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                             float beta)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, a += MR, b += NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        QH_FMA_ROW(0);
        QH_FMA_ROW(1);
        QH_FMA_ROW(2);
        QH_FMA_ROW(3);
        QH_FMA_ROW(4);
        QH_FMA_ROW(5);
    }
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    bool rd = beta != 0.0f;
    store_row_avx2(c + 0 * ldc, c00, c01, va, vb, rd);
    store_row_avx2(c + 1 * ldc, c10, c11, va, vb, rd);
    store_row_avx2(c + 2 * ldc, c20, c21, va, vb, rd);
    store_row_avx2(c + 3 * ldc, c30, c31, va, vb, rd);
    store_row_avx2(c + 4 * ldc, c40, c41, va, vb, rd);
    store_row_avx2(c + 5 * ldc, c50, c51, va, vb, rd);
}
#endif

static ukr_fn pick_ukr(void)
{
#ifdef QH_GEMM_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ukr_avx2;
#endif
    return ukr_generic;
}

/* ---------------------------------------------------------------- macro-kernel */

typedef struct gemm_args {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    ukr_fn ukr;
} gemm_args;

static void store_edge(const float *t, float *c, int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta)
{
    for (int64_t r = 0; r < mr; r++)
        for (int64_t j = 0; j < nr; j++) {
            float v = alpha * t[r * NR + j];
            c[r * ldc + j] = beta != 0.0f ? v + beta * c[r * ldc + j] : v;
        }
}

/* C block (rows [0, mc), NR-panels [p0, p1) of an nc-wide block) from packed A and B. */
static void macro_kernel(const gemm_args *g, int64_t mc, int64_t nc, int64_t p0, int64_t p1, int64_t kc,
                         const float *ap, const float *bp, float *C, float beta)
{
    float tile[MR * NR];
    for (int64_t p = p0; p < p1; p++) {
        int64_t nr = min64(NR, nc - p * NR);
        const float *b = bp + p * NR * kc;
        for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t mr = min64(MR, mc - ir);
            float *c = C + ir * g->ldc + p * NR;
            if (mr == MR && nr == NR) {
                g->ukr(kc, ap + ir * kc, b, c, g->ldc, g->alpha, beta);
            } else {
                g->ukr(kc, ap + ir * kc, b, tile, NR, 1.0f, 0.0f);
                store_edge(tile, c, g->ldc, mr, nr, g->alpha, beta);
            }
        }
    }
}

static void pack_b(const gemm_args *g, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp)
{
    for (int64_t p = 0; p * NR < nc; p++)
        pack_b_panel(g->tb, g->B, g->ldb, k0, kc, j0 + p * NR, min64(NR, nc - p * NR), bp + p * NR * kc);
}

/* C = beta * C, for K == 0 or alpha == 0 (BLAS semantics: A and B are not read). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++)
            C[i * ldc + j] = beta != 0.0f ? beta * C[i * ldc + j] : 0.0f;
}

static void gemm_blocked(const gemm_args *g, float *ap, float *bp)
{
    for (int64_t jc = 0; jc < g->N; jc += NC) {
        int64_t nc = min64(NC, g->N - jc);
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = min64(KC, g->K - pc);
            float beta = pc == 0 ? g->beta : 1.0f;
            pack_b(g, pc, kc, jc, nc, bp);
            for (int64_t ic = 0; ic < g->M; ic += MC) {
                int64_t mc = min64(MC, g->M - ic);
                pack_a(g->ta, g->A, g->lda, ic, mc, pc, kc, ap);
                macro_kernel(g, mc, nc, 0, (nc + NR - 1) / NR, kc, ap, bp, g->C + ic * g->ldc + jc, beta);
            }
        }
    }
}

static size_t a_pack_floats(int64_t M, int64_t K) { return (size_t)(round_up(min64(M, MC), MR) * min64(K, KC)); }
static size_t b_pack_floats(int64_t N, int64_t K) { return (size_t)(round_up(min64(N, NC), NR) * min64(K, KC)); }
static float *align32(float *p) { return (float *)(((uintptr_t)p + 31) & ~(uintptr_t)31); }

size_t qh_gemm_pack_floats(int64_t M, int64_t N, int64_t K)
{
    /* +8 floats of slack for each of the two 32-byte aligned sub-buffers */
    return a_pack_floats(M, K) + b_pack_floats(N, K) + 16;
}

static bool trivial(const gemm_args *g)
{
    if (g->M <= 0 || g->N <= 0)
        return true;
    if (g->K <= 0 || g->alpha == 0.0f) {
        scale_c(g->M, g->N, g->beta, g->C, g->ldc);
        return true;
    }
    return false;
}

void qh_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                    const float *B, int64_t ldb, float beta, float *C, int64_t ldc, float *pack)
{
    gemm_args g = {ta, tb, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, pick_ukr()};
    if (trivial(&g))
        return;
    float *ap = align32(pack);
    float *bp = align32(ap + a_pack_floats(M, K));
    gemm_blocked(&g, ap, bp);
}

void qh_gemm_serial_pb(bool ta, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *bp, float beta, float *C, int64_t ldc, float *apack)
{
    gemm_args g = {ta, false, M, N, K, alpha, beta, A, NULL, lda, 0, ldc, C, pick_ukr()};
    if (trivial(&g))
        return;
    float *ap = align32(apack);
    int64_t npad = qh_gemm_pb_npad(N);
    for (int64_t pc = 0; pc < K; pc += KC) {
        int64_t kc = min64(KC, K - pc);
        for (int64_t ic = 0; ic < M; ic += MC) {
            int64_t mc = min64(MC, M - ic);
            pack_a(ta, A, lda, ic, mc, pc, kc, ap);
            macro_kernel(&g, mc, N, 0, npad / NR, kc, ap, bp + pc * npad, C + ic * ldc, pc == 0 ? beta : 1.0f);
        }
    }
}

/* ---------------------------------------------------------------- parallel driver */

#ifdef _OPENMP
/* Tasks are (MC row block, run of NR panels) pairs inside one (jc, pc) block; the shared B block is
 * packed cooperatively first. Each thread repacks A only when its row block changes. */
static void gemm_parallel(const gemm_args *g, int nt, float *abufs, float *bp)
{
    int64_t mblocks = (g->M + MC - 1) / MC;
    size_t astride = a_pack_floats(g->M, g->K) + 8;
#pragma omp parallel num_threads(nt)
    {
        float *ap = align32(abufs + (size_t)omp_get_thread_num() * astride);
        for (int64_t jc = 0; jc < g->N; jc += NC) {
            int64_t nc = min64(NC, g->N - jc);
            int64_t npan = (nc + NR - 1) / NR;
            int64_t per_block = min64(npan, (4 * nt + mblocks - 1) / mblocks);
            int64_t run = (npan + per_block - 1) / per_block;
            int64_t runs = (npan + run - 1) / run;
            for (int64_t pc = 0; pc < g->K; pc += KC) {
                int64_t kc = min64(KC, g->K - pc);
                float beta = pc == 0 ? g->beta : 1.0f;
#pragma omp for schedule(static)
                for (int64_t p = 0; p < npan; p++)
                    pack_b_panel(g->tb, g->B, g->ldb, pc, kc, jc + p * NR, min64(NR, nc - p * NR),
                                 bp + p * NR * kc);
                int64_t packed = -1;
#pragma omp for schedule(static)
                for (int64_t t = 0; t < mblocks * runs; t++) {
                    int64_t ib = t / runs, p0 = (t % runs) * run;
                    int64_t ic = ib * MC, mc = min64(MC, g->M - ic);
                    if (packed != ib) {
                        pack_a(g->ta, g->A, g->lda, ic, mc, pc, kc, ap);
                        packed = ib;
                    }
                    macro_kernel(g, mc, nc, p0, min64(npan, p0 + run), kc, ap, bp, g->C + ic * g->ldc + jc,
                                 beta);
                }
            }
        }
    }
}
#endif

void qh_k_gemm_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                   const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    gemm_args g = {ta, tb, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, pick_ukr()};
    if (trivial(&g))
        return;
    int nt = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && (double)M * (double)N * (double)K >= PAR_MIN_MACS)
        nt = qh_threads();
#endif
    size_t need = (size_t)nt * (a_pack_floats(M, K) + 8) + b_pack_floats(N, K) + 8;
    float stack_buf[STACK_PACK_FLOATS];
    float *buf = need <= STACK_PACK_FLOATS ? stack_buf : malloc(sizeof(float) * need);
    if (!buf) {
        /* out of memory for packing: still give the right answer, slowly */
        qh_k_gemm_f32_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    float *bp = align32(buf + (size_t)nt * (a_pack_floats(M, K) + 8));
#ifdef _OPENMP
    if (nt > 1)
        gemm_parallel(&g, nt, buf, bp);
    else
#endif
        gemm_blocked(&g, align32(buf), bp);
    if (buf != stack_buf)
        free(buf);
}
