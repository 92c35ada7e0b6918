/* test_dynamic_tree.c - the dynamic_tree quantizer plugin.
 *
 * References: tests/data/golden/dynamic_map.txt (bitsandbytes' create_dynamic_map written out by
 * tests/golden/gen_dynamic_map.py in numpy float64 and in torch float32), the level counts seed 001's
 * rule produces (seeds.md 2.4: 337, 281, 255, 241, 235, 233 for N = 8..3), nearest-code optimality
 * checked against both neighbours, and the core reference decoder.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/dynamic_tree/dt_impl.h"
#include "plugin_util.h"
#include "qhost/qh_log.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_DT, QH_KIND_QUANTIZER, "dynamic_tree");
    return desc ? 0 : -1;
}

enum { G_BLOCK = 0, G_ROW, G_CHANNEL, G_TENSOR };

static void *make_cfg(int bits, int gran, int block, int seed)
{
    return test_config_ints(desc, "bits", bits, "granularity", gran, "block", block, "mode", seed);
}

static qh_status quantize(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err)
{
    return test_quantize(desc, cfg, w, out, err);
}

static qh_tensor *gaussian(int64_t rows, int64_t cols, uint64_t seed)
{
    return test_gaussian(2, (int64_t[]){rows, cols}, seed, 0.05, NULL);
}

/* The code book of one configuration (quantizing a small tensor). */
static test_qrun book_of(int bits, int seed)
{
    float v[3] = {0.5f, -0.25f, 1.0f};
    qh_tensor *w = test_tensor_from(1, (int64_t[]){3}, v);
    void *cfg = make_cfg(bits, G_ROW, 4096, seed);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    free(cfg);
    qh_tensor_free(w);
    return r;
}

/* Units in the last place between two floats of one sign. */
static int64_t ulps(float a, float b)
{
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x > y ? (int64_t)x - y : (int64_t)y - x;
}

/* 2^N distinct sorted entries for N = 2..8, with 0 and +1 but not -1; equal to the float64
 * construction bit for bit and within 1 ulp of bitsandbytes' torch float32 map. */
static void test_book_golden(void **state)
{
    (void)state;
    FILE *f = fopen(QH_TEST_DATA "/golden/dynamic_map.txt", "r");
    assert_non_null(f);
    char line[256];
    int rows = 0, torch_diff = 0;
    test_qrun r = {0};
    int cur = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        int n, k;
        char a[64], b[64];
        assert_int_equal(sscanf(line, "%d %d %63s %63s", &n, &k, a, b), 4);
        if (n != cur) {
            if (cur)
                test_qrun_free(&r);
            r = book_of(n, 0);
            cur = n;
            int64_t levels = qh_tensor_numel(r.q.codebook);
            assert_int_equal(levels, 1 << n);
            assert_int_equal(r.q.bits, n);
            const float *bk = qh_tensor_f32(r.q.codebook);
            for (int64_t j = 1; j < levels; j++)
                assert_true(bk[j - 1] < bk[j]);
            assert_true(bk[levels - 1] == 1.0f && bk[0] > -1.0f);
        }
        const float *bk = qh_tensor_f32(r.q.codebook);
        float exact = (float)strtod(a, NULL), tv = (float)strtod(b, NULL);
        assert_true(bk[k] == exact);
        assert_true(ulps(bk[k], tv) <= 1);
        torch_diff += bk[k] != tv;
        rows++;
    }
    test_qrun_free(&r);
    fclose(f);
    assert_int_equal(rows, 4 + 8 + 16 + 32 + 64 + 128 + 256);
    assert_true(torch_diff > 0); /* the golden's torch column is a genuinely separate computation */
}

/* The published 8-bit map: 2 * (1 + 2 + ... + 64) + 2 entries, smallest magnitude 0.55e-6,
 * most negative -0.99297 (seeds.md 2.4). */
static void test_book_anchor(void **state)
{
    (void)state;
    test_qrun r = book_of(8, 0);
    const float *bk = qh_tensor_f32(r.q.codebook);
    assert_float_equal(bk[0], -0.9929687, 1e-6);
    assert_true(bk[126] < 0.0f && bk[127] == 0.0f); /* 127 negatives: -1.0 is not a code */
    assert_float_equal(bk[128], 0.55e-6, 1e-12);
    test_qrun_free(&r);
    r = book_of(4, 0); /* N = 4: +-{0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875}, 0, 1 */
    const double pos[7] = {0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875};
    bk = qh_tensor_f32(r.q.codebook);
    for (int j = 0; j < 7; j++) {
        assert_float_equal(bk[8 + j], pos[j], 1e-7);
        assert_float_equal(bk[6 - j], -pos[j], 1e-7);
    }
    test_qrun_free(&r);
}

/* Seed 001's rule: a sweep over ten decades of magnitudes, both signs, row maximum 1, reaches
 * exactly the published numbers of distinct levels, which is also the code book's size. */
static void test_seed_level_counts(void **state)
{
    (void)state;
    const int want[9] = {0, 0, 233, 233, 235, 241, 255, 281, 337};
    int64_t per = 4096, n = 2 * 10 * per + 1;
    int64_t shape[2] = {1, n};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    float *x = qh_tensor_f32(w);
    int64_t m = 0;
    for (int e = 0; e < 10; e++)
        for (int64_t j = 0; j < per; j++) {
            float v = (float)((0.1 + 0.9 * (double)j / (double)per) * pow(10.0, -e));
            x[m++] = v;
            x[m++] = -v;
        }
    x[m++] = 1.0f;
    for (int bits = 2; bits <= 8; bits++) {
        void *cfg = make_cfg(bits, G_ROW, 4096, 1);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        int64_t levels = qh_tensor_numel(r.q.codebook);
        uint8_t *used = calloc((size_t)levels, 1);
        int distinct = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t c = test_code_at(r.q.codes, i);
            distinct += !used[c];
            used[c] = 1;
        }
        assert_int_equal(distinct, want[bits]);
        assert_int_equal(levels, want[bits]);
        assert_int_equal(r.q.bits, want[bits] > 256 ? 9 : 8); /* honest code width, not N */
        test_check_decoder(&r);
        free(used);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* seeds.md 2.4 by hand on a few values (N = 5): e = 0 keeps 7 bits; 1 <= E < N-2 keeps N-2-E bits of
 * a * 10^E; E >= N-2 gives 0. */
static void test_seed_values(void **state)
{
    (void)state;
    float v[7] = {1.0f, 0.3f, -0.77f, 0.047f, 0.0061f, 0.00099f, 0.0f};
    double want[7] = {127.0 / 128, floor(0.3 * 128) / 128, -floor(0.77 * 128) / 128,
                      floor(0.47 * 4) / 4 / 10, /* E = 1: f = 2 bits */
                      floor(0.61 * 2) / 2 / 100, /* E = 2: f = 1 bit */
                      0.0, 0.0};                 /* E = 3 >= N - 2 */
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, 7}, v);
    void *cfg = make_cfg(5, G_ROW, 4096, 1);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    for (int i = 0; i < 7; i++)
        assert_float_equal(qh_tensor_f32(r.deq)[i], want[i], 1e-7);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

static char logged[1024];

static void capture(qh_log_level level, const char *component, const char *msg, void *user)
{
    (void)level;
    (void)user;
    if (component && strcmp(component, "dynamic_tree") == 0)
        snprintf(logged, sizeof logged, "%s", msg);
}

/* The per-tensor exponent counts (seed buckets, and bnb code exponents). */
static void test_exponent_counts(void **state)
{
    (void)state;
    float v[7] = {1.0f, -0.5f, 0.05f, 0.005f, -0.0005f, 0.0f, 0.00000001f};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, 7}, v);
    qh_log_level old = qh_log_get_level();
    qh_log_set_level(QH_LOG_INFO);
    qh_log_set_sink(capture, NULL);
    for (int seed = 0; seed < 2; seed++) {
        void *cfg = make_cfg(8, G_ROW, 4096, seed);
        logged[0] = '\0';
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        if (seed) /* 1e-8: E = 8 -> bucket min(7, 8) = 7 */
            assert_non_null(strstr(logged, "\"zero\": 1, \"e\": [2, 1, 1, 1, 0, 0, 0, 1]"));
        else /* 1e-8 rounds to the zero code (smallest code 0.55e-6) */
            assert_non_null(strstr(logged, "\"zero\": 2, \"e\": [2, 1, 1, 1, 0, 0, 0]"));
        assert_non_null(strstr(logged, "\"tensor\": \"test.weight\""));
        test_qrun_free(&r);
        free(cfg);
    }
    qh_log_set_sink(NULL, NULL);
    qh_log_set_level(old);
    qh_tensor_free(w);
}

/* Nearest code: no neighbour is closer; exact halfway values go toward zero. And the error table:
 * RMS error / RMS weight on Gaussian blocks under a per-bits bound (measured values in comments). */
static void test_nearest_and_error(void **state)
{
    (void)state;
    const double table[9] = {0, 0, 0.62, 0.33, 0.20, 0.105, 0.054, 0.028, 0.014};
    /* measured: N=2 0.578, 3 0.302, 4 0.179, 5 0.0954, 6 0.0488, 7 0.0247, 8 0.0125 */
    qh_tensor *w = gaussian(10, 1000, 11);
    const float *x = qh_tensor_f32(w);
    for (int bits = 2; bits <= 8; bits++) {
        void *cfg = make_cfg(bits, G_BLOCK, 2048, 0);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        assert_int_equal(r.q.gran, QH_QG_FLAT_BLOCK);
        assert_int_equal(qh_tensor_numel(r.q.scale), 5); /* 10000 / 2048: 4 full blocks and a short one */
        const float *bk = qh_tensor_f32(r.q.codebook), *s = qh_tensor_f32(r.q.scale);
        int64_t levels = qh_tensor_numel(r.q.codebook);
        double se = 0, sx = 0;
        for (int64_t i = 0; i < 10000; i++) {
            float v = x[i] / s[i / 2048];
            int64_t c = test_code_at(r.q.codes, i);
            double d = fabs((double)v - bk[c]);
            if (c > 0)
                assert_true(d <= fabs((double)v - bk[c - 1]));
            if (c + 1 < levels)
                assert_true(d <= fabs((double)v - bk[c + 1]));
            double e = (double)x[i] - qh_tensor_f32(r.deq)[i];
            se += e * e;
            sx += (double)x[i] * x[i];
        }
        assert_true(sqrt(se / sx) < table[bits]);
        assert_int_equal(qh_qtensor_bytes(&r.q), (10000 * bits + 7) / 8 + 5 * 4);
        test_check_decoder(&r);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
    /* ties: halfway between 0 and the smallest codes, and between two codes where the midpoint is a float */
    test_qrun b = book_of(8, 0);
    const float *bk = qh_tensor_f32(b.q.codebook);
    float v[6] = {1.0f, bk[128] / 2, bk[126] / 2, 0, 0, 0};
    int want[6] = {255, 127, 127, 0, 0, 0}, n = 3;
    for (int j = 129; j < 255 && n < 5; j++) { /* positive: toward zero = lower index */
        double mid = 0.5 * ((double)bk[j] + bk[j + 1]);
        if ((double)(float)mid == mid) {
            v[n] = (float)mid;
            want[n++] = j;
        }
    }
    for (int j = 0; j < 125 && n < 6; j++) { /* negative: toward zero = higher index */
        double mid = 0.5 * ((double)bk[j] + bk[j + 1]);
        if ((double)(float)mid == mid) {
            v[n] = (float)mid;
            want[n++] = j + 1;
        }
    }
    assert_int_equal(n, 6);
    test_qrun_free(&b);
    qh_tensor *t = test_tensor_from(2, (int64_t[]){1, 6}, v);
    void *cfg = make_cfg(8, G_TENSOR, 4096, 0);
    test_qrun r = test_quantize_ok(quantize, cfg, t);
    for (int i = 0; i < 6; i++)
        assert_int_equal(test_code_at(r.q.codes, i), want[i]);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(t);
}

/* Exact zeros and all-zero blocks: zeros stay exactly 0, no NaN, and the seed rule terminates. */
static void test_zeros(void **state)
{
    (void)state;
    float v[12] = {0, 0, 0, 0, 0.5f, 0.0f, -0.0f, -1.0f, 0, 0, 0, 0};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){3, 4}, v);
    for (int seed = 0; seed < 2; seed++)
        for (int gran = 0; gran < 4; gran++) {
            void *cfg = make_cfg(4, gran, 4, seed);
            test_qrun r = test_quantize_ok(quantize, cfg, w);
            for (int i = 0; i < 12; i++)
                if (v[i] == 0.0f)
                    assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
            test_check_decoder(&r);
            test_qrun_free(&r);
            free(cfg);
        }
    qh_tensor_free(w);
}

/* ---- the fast path (dt_run.c, qq_stepfn), compiled in: the same answers as dt_nearest and the
 * reference loop */

#ifdef QQ_X86
QQ_AVX2 static void eval_avx2(const qq_stepfn *s, const float *v, int64_t n, int32_t *out)
{
    for (int64_t i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_si256((__m256i *)(out + i), qq_stepfn_avx2(s, _mm256_loadu_ps(v + i)));
}

/* Codes and values through the value table (dt_run's encoder), eight lanes at a time. */
QQ_AVX2 static void eval_valtab(const dt_coder *c, const float *v, int64_t n, int32_t *out, float *val)
{
    for (int64_t i = 0; i + 8 <= n; i += 8) {
        __m256 x;
        __m256i k = qq_valtab_avx2(&c->table, &c->nearest, c->book, _mm256_loadu_ps(v + i), &x);
        _mm256_storeu_si256((__m256i *)(out + i), k);
        _mm256_storeu_ps(val + i, x);
    }
}
#endif

/* The step table against dt_nearest on every float of [-1, 1] whose 10 low bits are zero, every
 * midpoint's neighbours (+-3 ulps) and both sides of every table cell boundary. */
static void test_step_table(void **state)
{
    (void)state;
    int64_t cap = (int64_t)1 << 22, n;
    float *v = malloc(sizeof(float) * (size_t)cap);
    int32_t *got = malloc(sizeof(int32_t) * (size_t)cap);
    float *val = malloc(sizeof(float) * (size_t)cap);
    for (int bits = 2; bits <= 8; bits++) {
        dt_cfg cfg = {bits, DT_GRAN_BLOCK, DT_MODE_BNB, 4096};
        dt_coder *c = dt_coder_new(&cfg);
        assert_non_null(c);
        assert_true(c->fast_ok);
        assert_true(c->nearest.steps <= 2);
        n = 0;
        for (uint32_t u = 0; u <= 0x3F800000u; u += 1024) {
            v[n++] = qq_float(u);
            v[n++] = -qq_float(u);
        }
        for (int k = 0; k + 1 < c->n; k++) {
            float m = (float)c->mid[k], lo = m, hi = m;
            v[n++] = m;
            for (int d = 0; d < 3; d++) {
                v[n++] = lo = nextafterf(lo, -2.0f);
                v[n++] = hi = nextafterf(hi, 2.0f);
            }
        }
        for (uint64_t cell = 0; ((cell << c->nearest.shift) + c->nearest.lo) <= c->nearest.hi && n + 2 < cap; cell++) {
            uint32_t k = (uint32_t)((cell << c->nearest.shift) + c->nearest.lo);
            v[n++] = qq_okey_float(k);
            v[n++] = qq_okey_float(k - 1);
        }
        for (int64_t i = 0; i < n; i++) /* keep to [-1, 1], the domain */
            v[i] = v[i] > 1.0f ? 1.0f : v[i] < -1.0f ? -1.0f : v[i];
        while (n % 8)
            v[n++] = 0.0f;
        for (int64_t i = 0; i < n; i++)
            if (qq_stepfn_eval(&c->nearest, v[i]) != dt_nearest(c->mid, c->n, v[i]))
                fail_msg("bits %d: v = %a: table %d, search %d", bits, (double)v[i], qq_stepfn_eval(&c->nearest, v[i]),
                         dt_nearest(c->mid, c->n, v[i]));
#ifdef QQ_X86
        if (qq_have_avx2()) {
            eval_avx2(&c->nearest, v, n, got);
            for (int64_t i = 0; i < n; i++)
                if (got[i] != dt_nearest(c->mid, c->n, v[i]))
                    fail_msg("bits %d: v = %a: AVX2 %d, search %d", bits, (double)v[i], got[i],
                             dt_nearest(c->mid, c->n, v[i]));
            /* and the value table, whose cells are on a log scale of |v|: their boundaries too */
            int64_t n0 = n;
            for (uint32_t cell = 0; cell < (uint32_t)c->table.cells && n + 4 < cap; cell++) {
                uint32_t a = c->table.mag_lo + (cell << c->table.shift);
                if (a > 0x3F800000u)
                    break;
                v[n++] = qq_float(a), v[n++] = -qq_float(a);
                v[n++] = qq_float(a - 1), v[n++] = -qq_float(a - 1);
            }
            while (n % 8)
                v[n++] = 0.0f;
            eval_valtab(c, v, n, got, val);
            for (int64_t i = 0; i < n; i++) {
                int want = dt_nearest(c->mid, c->n, v[i]);
                if (got[i] != want || qq_bits(val[i]) != qq_bits(c->book[want]))
                    fail_msg("bits %d: v = %a: value table %d (%a), search %d (%a)", bits, (double)v[i], got[i],
                             (double)val[i], want, (double)c->book[want]);
            }
            n = n0;
        }
#endif
        free(c);
    }
    free(v);
    free(got);
    free(val);
}

/* dt_run's reference and fast paths: codes, scales, exponent counts, values (and codes alone), with
 * 1 and 2 threads. */
typedef struct dt_case {
    dt_coder *c;
    const dt_groups *G;
    const qh_tensor *w;
} dt_case;

static void dt_path(void *ctx, int fast, void *const *out)
{
    const dt_case *k = ctx;
    dt_out o = {out[0], out[1], out[3], out[2]};
    assert_int_equal(dt_run(k->c, k->G, k->w, &o, fast), 0);
}

static void compare_runs(const dt_cfg *cfg, const qh_tensor *w)
{
    size_t n = (size_t)qh_tensor_numel(w);
    qh_qtensor q = {0};
    dt_groups G = dt_make_groups(cfg, w, &q);
    dt_case k = {dt_coder_new(cfg), &G, w};
    size_t cs = (cfg->mode == DT_MODE_BNB ? 1 : 2) * n, cnt = sizeof(int64_t) * (DT_MAX_E + 1);
    const test_path_out spec[4] = {
        {cs + 1, cs, 0},
        {sizeof(float) * ((size_t)G.count + 1), sizeof(float) * (size_t)G.count, 0},
        {cnt, cnt, 0},
        {sizeof(float) * (n + 1), sizeof(float) * n, 1},
    };
    test_compare_paths(dt_path, &k, spec, 4);
    free(k.c);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(31, 517, 14);
    float *x = qh_tensor_f32(w);
    for (int i = 0; i < 517; i++) /* row 0: zeros, -0, values far below the absmax */
        x[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? -0.0f : 1e-9f * (float)(i - 250);
    static const int64_t blocks[] = {4096, 33, 2};
    for (int bits = 2; bits <= 8; bits++)
        for (int gran = DT_GRAN_BLOCK; gran <= DT_GRAN_TENSOR; gran++)
            for (int b = 0; b < (gran == DT_GRAN_BLOCK ? 3 : 1); b++) {
                dt_cfg cfg = {bits, gran, DT_MODE_BNB, blocks[b]};
                compare_runs(&cfg, w);
            }
    dt_cfg seed = {8, DT_GRAN_ROW, DT_MODE_SEED001, 4096}; /* the fast flag changes nothing there */
    compare_runs(&seed, w);
    qh_tensor_free(w);
    qh_tensor *big = gaussian(4, 600001, 15); /* larger than QQ_NT_MIN: values streamed */
    dt_cfg cfg = {8, DT_GRAN_BLOCK, DT_MODE_BNB, 4096};
    compare_runs(&cfg, big);
    qh_tensor_free(big);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(33, 999, 3);
    for (int gran = 0; gran < 4; gran++)
        for (int seed = 0; seed < 2; seed++) {
            void *cfg = make_cfg(6, gran, 512, seed);
            test_assert_threads_identical(quantize, cfg, w, TEST_SAME_DEQ | TEST_SAME_CODES | TEST_SAME_SCALE);
            free(cfg);
        }
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(3, 8, 5);
    void *cfg = make_cfg(8, G_BLOCK, 4096, 0);
    qh_error err = {{0}};
    qh_tensor_f32(w)[7] = NAN;
    test_expect_reject(quantize, cfg, w, "element 7 is NaN", TEST_REJ_UNNAMED, &err);
    qh_tensor_f32(w)[7] = 0.0f;
    test_set_int(desc, cfg, "bits", 9);
    test_expect_reject(quantize, cfg, w, "bits = 9 outside [2, 8]", 0, &err);
    test_set_int(desc, cfg, "bits", 8);
    test_set_int(desc, cfg, "block", 1);
    test_expect_reject(quantize, cfg, w, "block = 1 outside", 0, &err);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_true(test_params_documented(desc));
    const qh_param *block = test_param(desc, "block"), *bits = test_param(desc, "bits");
    assert_int_equal(block->def.i, 4096); /* bitsandbytes' quantize_blockwise default */
    assert_true(bits->min == 2 && bits->max == 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),        cmocka_unit_test(test_book_golden),
        cmocka_unit_test(test_book_anchor),       cmocka_unit_test(test_seed_level_counts),
        cmocka_unit_test(test_seed_values),       cmocka_unit_test(test_exponent_counts),
        cmocka_unit_test(test_nearest_and_error), cmocka_unit_test(test_zeros),
        cmocka_unit_test(test_threads_identical), cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_step_table),        cmocka_unit_test(test_fast_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
