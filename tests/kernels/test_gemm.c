/* test_gemm.c - the packed GEMM against the reference: odd shapes, transposes, alpha/beta, leading
 * dimensions, block boundaries (MC 144, KC 256, NC 4080), and byte-equal results for 1 and 2 threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kgemm_check.h"
#include "kernels/qh_gemm_impl.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef struct gemm_case {
    bool ta, tb;
    int64_t M, N, K;
    float alpha, beta;
} gemm_case;

typedef struct gemm_data {
    int64_t lda, ldb, ldc;
    float *A, *B, *C0;
} gemm_data;

/* Operands with leading dimensions a little larger than needed, so ld is really used. */
static gemm_data make_data(const gemm_case *c, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    gemm_data d;
    int64_t arows = c->ta ? c->K : c->M, acols = c->ta ? c->M : c->K;
    int64_t brows = c->tb ? c->N : c->K, bcols = c->tb ? c->K : c->N;
    d.lda = acols + 3;
    d.ldb = bcols + 1;
    d.ldc = c->N + 2;
    d.A = kg_random(&r, (size_t)(arows * d.lda));
    d.B = kg_random(&r, (size_t)(brows * d.ldb));
    d.C0 = kg_random(&r, (size_t)(c->M * d.ldc));
    if (c->beta == 0.0f) /* beta 0 must not read C */
        for (int64_t i = 0; i < c->M * d.ldc; i++)
            d.C0[i] = NAN;
    return d;
}

static void free_data(gemm_data *d)
{
    free(d->A);
    free(d->B);
    free(d->C0);
}

static float *run_opt(const gemm_case *c, const gemm_data *d)
{
    float *C = kg_copy(d->C0, (size_t)(c->M * d->ldc));
    qh_k_gemm_f32(c->ta, c->tb, c->M, c->N, c->K, c->alpha, d->A, d->lda, d->B, d->ldb, c->beta, C, d->ldc);
    return C;
}

static void check_case(const gemm_case *c, uint64_t seed)
{
    gemm_data d = make_data(c, seed);
    float *want = kg_copy(d.C0, (size_t)(c->M * d.ldc));
    qh_k_gemm_f32_ref(c->ta, c->tb, c->M, c->N, c->K, c->alpha, d.A, d.lda, d.B, d.ldb, c->beta, want, d.ldc);
    float *got = run_opt(c, &d);
    /* the padding between rows must be left alone: make it equal in want, then compare all of C */
    for (int64_t i = 0; i < c->M; i++)
        for (int64_t j = c->N; j < d.ldc; j++) {
            assert_memory_equal(&got[i * d.ldc + j], &d.C0[i * d.ldc + j], sizeof(float));
            got[i * d.ldc + j] = want[i * d.ldc + j] = 0.0f;
        }
    double err = kg_rel_err(got, want, (size_t)(c->M * d.ldc));
    if (!(err <= 1e-5))
        fail_msg("gemm ta=%d tb=%d M=%ld N=%ld K=%ld alpha=%g beta=%g: rel err %g", c->ta, c->tb, (long)c->M,
                 (long)c->N, (long)c->K, c->alpha, c->beta, err);
    free(want);
    free(got);
    free_data(&d);
}

static void test_small_shapes(void **state)
{
    (void)state;
    const int64_t dims[] = {1, 2, 6, 7, 16, 17, 23};
    const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-0.75f, 0.5f}};
    uint64_t seed = 1;
    for (size_t m = 0; m < 7; m++)
        for (size_t n = 0; n < 7; n++)
            for (size_t k = 0; k < 7; k++)
                for (int t = 0; t < 4; t++)
                    for (size_t s = 0; s < 3; s++) {
                        gemm_case c = {t & 1, t >> 1, dims[m], dims[n], dims[k], ab[s][0], ab[s][1]};
                        check_case(&c, seed++);
                    }
}

/* Shapes crossing the MC, KC and NC block edges, and the LeNet ones. */
static void test_block_edges(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{150, 70, 300}, {13, 4100, 9}, {289, 33, 513}, {6, 784, 25},
                                 {16, 100, 150}, {256, 120, 400}, {120, 400, 256}, {1, 300, 257}};
    uint64_t seed = 1000;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++) {
            gemm_case c = {t & 1, t >> 1, shapes[i][0], shapes[i][1], shapes[i][2], 0.5f, t == 3 ? 0.0f : 1.0f};
            check_case(&c, seed++);
        }
}

/* K == 0 and alpha == 0: C = beta C, A and B unread. */
static void test_degenerate(void **state)
{
    (void)state;
    float C[6] = {1, 2, 3, 4, 5, 6}, A[1] = {NAN}, B[1] = {NAN};
    qh_k_gemm_f32(false, false, 2, 3, 0, 1.0f, A, 1, B, 3, 0.5f, C, 3);
    for (int i = 0; i < 6; i++)
        assert_true(C[i] == 0.5f * (float)(i + 1));
    float D[4] = {NAN, NAN, NAN, NAN};
    qh_k_gemm_f32(false, false, 2, 2, 1, 0.0f, A, 1, B, 2, 0.0f, D, 2);
    for (int i = 0; i < 4; i++)
        assert_true(D[i] == 0.0f);
    qh_k_gemm_f32(false, false, 0, 2, 3, 1.0f, A, 3, B, 2, 0.0f, D, 2); /* M == 0: nothing */
}

/* 1 and 2 threads, and the single-threaded entry used by conv2d, give the same bytes. */
static void test_thread_invariance(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{301, 257, 600}, {6, 784, 25}, {256, 120, 400}, {40, 5000, 30}};
    int saved = qh_threads();
    uint64_t seed = 2000;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int t = 0; t < 4; t++) {
            gemm_case c = {t & 1, t >> 1, shapes[i][0], shapes[i][1], shapes[i][2], 1.0f, t == 1 ? 0.5f : 0.0f};
            gemm_data d = make_data(&c, seed++);
            qh_set_threads(1);
            float *one = run_opt(&c, &d);
            qh_set_threads(2);
            float *two = run_opt(&c, &d);
            size_t bytes = sizeof(float) * (size_t)(c.M * d.ldc);
            assert_memory_equal(one, two, bytes);
            float *ser = kg_copy(d.C0, (size_t)(c.M * d.ldc));
            float *pack = kg_alloc(qh_gemm_pack_floats(c.M, c.N, c.K));
            qh_gemm_serial(c.ta, c.tb, c.M, c.N, c.K, c.alpha, d.A, d.lda, d.B, d.ldb, c.beta, ser, d.ldc, pack);
            assert_memory_equal(one, ser, bytes);
            free(pack);
            free(ser);
            free(one);
            free(two);
            free_data(&d);
        }
    qh_set_threads(saved);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_shapes),
        cmocka_unit_test(test_block_edges),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_thread_invariance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
