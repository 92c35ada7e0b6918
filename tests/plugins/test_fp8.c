/* test_fp8.c - the fp8 quantizer plugin (OCP E4M3 / E5M2 and seed 001's variant).
 *
 * References written here from the definitions, not from the plugin: an OCP decoder built from the
 * bit fields (bias, subnormals, specials), the round-to-nearest-even rule stated on neighbours,
 * and seed 001's round_fp8 re-implemented with frexp from seeds.md 2.3. The encoder itself
 * (fp8code.c) is also linked in to test saturation far past the range, which absmax scaling never
 * produces through the plugin. The plugin's fast path (fp8_fast.c / fp8_simd.h, fp8_run.c) is
 * compiled in as well and compared with the scalar encoder on every float whose low 11 bits are
 * zero plus the neighbours of every code and every halfway point, and with the reference loop on
 * whole tensors.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/fp8/fp8_impl.h"
#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_FP8, QH_KIND_QUANTIZER, "fp8");
    return desc ? 0 : -1;
}

enum { E4M3 = 0, E5M2 = 1 };
enum { G_TENSOR = 0, G_CHANNEL, G_ROW, G_BLOCK };

static void *make_cfg(int format, int gran, int block, int seed)
{
    return test_config_ints(desc, "format", format, "granularity", gran, "block", block, "mode", seed);
}

/* OCP decode from the fields: E4M3 (4, 3, bias 7), E5M2 (5, 2, bias 15). */
static double ref_decode(int fmt, int c)
{
    int eb = fmt == E4M3 ? 4 : 5, mb = 7 - eb, bias = fmt == E4M3 ? 7 : 15;
    int s = c >> 7, ef = (c >> mb) & ((1 << eb) - 1), m = c & ((1 << mb) - 1);
    double v;
    if (fmt == E4M3 && ef == 15 && m == 7)
        v = NAN;
    else if (fmt == E5M2 && ef == 31)
        v = m ? NAN : INFINITY;
    else if (ef == 0)
        v = m * pow(2.0, 1 - bias - mb);
    else
        v = (1.0 + m / (double)(1 << mb)) * pow(2.0, ef - bias);
    return s ? -v : v;
}

static double fmt_max(int fmt) { return fmt == E4M3 ? 448.0 : 57344.0; }

static qh_status quantize(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err)
{
    return test_quantize(desc, cfg, w, out, err);
}

static qh_tensor *vec(const float *v, int64_t n)
{
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, n}, v);
    assert_non_null(w);
    return w;
}

/* Per-tensor scale with +-max present: scale = 1 exactly, so codes are plain FP8 casts. */
static test_qrun cast_values(int fmt, const float *v, int64_t n)
{
    float *buf = malloc((size_t)(n + 1) * sizeof *buf);
    memcpy(buf, v, (size_t)n * sizeof *v);
    buf[n] = (float)fmt_max(fmt);
    qh_tensor *w = vec(buf, n + 1);
    void *cfg = make_cfg(fmt, G_TENSOR, 32, 0);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    assert_true(qh_tensor_f32(r.q.scale)[0] == 1.0f);
    test_check_decoder(&r);
    free(cfg);
    free(buf);
    qh_tensor_free(w);
    return r;
}

static int is_special(int fmt, int c) { return !isfinite(ref_decode(fmt, c)); }

/* Every finite code decodes (code book) and re-encodes (cast of its value) to itself. Excepted: the
 * NaN codes (E4M3 0x7F/0xFF, E5M2 0x7D-0x7F/0xFD-0xFF) and E5M2's infinities (0x7C/0xFC), since
 * non-finite weights are refused; their code-book entries must still be NaN / Inf. */
static void test_all_codes(void **state)
{
    (void)state;
    for (int fmt = 0; fmt < 2; fmt++) {
        float v[256];
        int codes[256], n = 0, specials = 0;
        for (int c = 0; c < 256; c++) {
            if (is_special(fmt, c)) {
                specials++;
                continue;
            }
            v[n] = (float)ref_decode(fmt, c);
            codes[n++] = c;
        }
        assert_int_equal(specials, fmt == E4M3 ? 2 : 8);
        test_qrun r = cast_values(fmt, v, n);
        const uint8_t *k = r.q.codes->data;
        const float *book = qh_tensor_f32(r.q.codebook);
        assert_int_equal(qh_tensor_numel(r.q.codebook), 256);
        for (int i = 0; i < n; i++) {
            assert_int_equal(k[i], codes[i]);
            assert_true(book[codes[i]] == v[i] && signbit(book[codes[i]]) == signbit(v[i]));
            assert_true(qh_tensor_f32(r.deq)[i] == v[i]);
        }
        for (int c = 0; c < 256; c++)
            if (is_special(fmt, c)) {
                double ref = ref_decode(fmt, c);
                assert_true(isnan(ref) ? isnan(book[c]) : book[c] == (float)ref);
            }
        test_qrun_free(&r);
    }
}

/* Midpoints between neighbouring codes go to the code with an even last bit; just off the
 * midpoint they go to the nearer code. Covers subnormals, the subnormal/normal border and every
 * binade up to the top. */
static void test_ties_to_even(void **state)
{
    (void)state;
    for (int fmt = 0; fmt < 2; fmt++) {
        int top = fmt == E4M3 ? 0x7E : 0x7B;
        float v[3 * 128];
        int want[3 * 128], n = 0;
        for (int c = 0; c < top; c++) {
            double a = ref_decode(fmt, c), b = ref_decode(fmt, c + 1), mid = 0.5 * (a + b);
            assert_true((double)(float)mid == mid);
            int sign = c % 2 ? -1 : 1; /* negative ties too */
            v[n] = (float)(sign * mid);
            want[n++] = (c % 2 == 0 ? c : c + 1) | (sign < 0 ? 0x80 : 0);
            v[n] = sign * nextafterf((float)mid, 0.0f);
            want[n++] = c | (sign < 0 ? 0x80 : 0);
            v[n] = sign * nextafterf((float)mid, INFINITY);
            want[n++] = (c + 1) | (sign < 0 ? 0x80 : 0);
        }
        test_qrun r = cast_values(fmt, v, n);
        const uint8_t *k = r.q.codes->data;
        for (int i = 0; i < n; i++)
            assert_int_equal(k[i], want[i]);
        test_qrun_free(&r);
    }
}

/* Subnormals: multiples of the smallest step are exact, and below half a step the value flushes to
 * a signed zero. */
static void test_subnormals(void **state)
{
    (void)state;
    for (int fmt = 0; fmt < 2; fmt++) {
        double tiny = fmt == E4M3 ? ldexp(1, -9) : ldexp(1, -16);
        int mmax = fmt == E4M3 ? 7 : 3;
        float v[16];
        int n = 0;
        for (int m = 1; m <= mmax; m++)
            v[n++] = (float)(m * tiny);
        v[n++] = (float)(0.49 * tiny);
        v[n++] = (float)(-0.49 * tiny);
        v[n++] = -0.0f;
        v[n++] = (float)(-0.51 * tiny);
        test_qrun r = cast_values(fmt, v, n);
        const uint8_t *k = r.q.codes->data;
        const float *y = qh_tensor_f32(r.deq);
        for (int m = 1; m <= mmax; m++)
            assert_int_equal(k[m - 1], m);
        assert_int_equal(k[mmax], 0x00);
        assert_int_equal(k[mmax + 1], 0x80);
        assert_int_equal(k[mmax + 2], 0x80);
        assert_int_equal(k[mmax + 3], 0x81);
        assert_true(y[mmax] == 0.0f && y[mmax + 1] == 0.0f && signbit(y[mmax + 1]));
        test_qrun_free(&r);
    }
}

/* Saturation: the encoder maps everything past +-max (even what IEEE rounding would send to
 * infinity, and E5M2's infinity range) to +-max; through the plugin, a scale whose rounding makes
 * w / scale exceed max still lands on max, never on a NaN or infinity code. */
static void test_saturation(void **state)
{
    (void)state;
    const fp8_format *f4 = fp8_format_get(FP8_E4M3), *f5 = fp8_format_get(FP8_E5M2);
    float big4[] = {448.0f, 449.0f, 463.9f, 464.0f, 480.0f, 1e6f, 3.4e38f};
    for (size_t i = 0; i < sizeof big4 / sizeof *big4; i++) {
        assert_int_equal(fp8_encode(big4[i], f4), 0x7E);
        assert_int_equal(fp8_encode(-big4[i], f4), 0xFE);
    }
    float big5[] = {57344.0f, 60000.0f, 61439.0f, 61440.0f, 65536.0f, 3.4e38f};
    for (size_t i = 0; i < sizeof big5 / sizeof *big5; i++) {
        assert_int_equal(fp8_encode(big5[i], f5), 0x7B);
        assert_int_equal(fp8_encode(-big5[i], f5), 0xFB);
    }
    assert_int_equal(fp8_encode(432.0f, f4), 0x7E);         /* tie between 416 and 448: even */
    assert_int_equal(fp8_encode(nextafterf(432.0f, 0), f4), 0x7D);
    for (int fmt = 0; fmt < 2; fmt++) {
        float mx = (float)fmt_max(fmt), x = 0.0f;
        for (float t = 1.0f; t < 2.0f; t = nextafterf(t, 2.0f)) /* an absmax whose scale rounds down */
            if (t / (t / mx) > mx) {
                x = t;
                break;
            }
        assert_true(x > 0.0f);
        float v[2] = {x, -x};
        qh_tensor *w = vec(v, 2);
        void *cfg = make_cfg(fmt, G_TENSOR, 32, 0);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        const uint8_t *k = r.q.codes->data;
        assert_int_equal(k[0], fmt == E4M3 ? 0x7E : 0x7B);
        assert_int_equal(k[1], fmt == E4M3 ? 0xFE : 0xFB);
        assert_true(isfinite(qh_tensor_f32(r.deq)[0]));
        test_qrun_free(&r);
        free(cfg);
        qh_tensor_free(w);
    }
}

/* Gaussian rows whose spread grows with the row index. */
static double row_sd(int64_t i, int64_t cols) { return 0.05 + 0.01 * (double)(i / cols); }

static qh_tensor *gaussian(int64_t rows, int64_t cols, uint64_t seed)
{
    return test_gaussian(2, (int64_t[]){rows, cols}, seed, 0, row_sd);
}

/* Error bound: |w - deq| <= half an ulp of the format at |w| / scale, i.e. relative 2^-(M+1) in
 * the normal range and 2^(emin - M - 1) * scale in the subnormal range (float slack 1e-6). And a
 * ggml-style table: RMS error / RMS weight on Gaussian rows stays under the per-format bound. */
static void test_error_bound(void **state)
{
    (void)state;
    const double rel_table[2] = {0.030, 0.060}; /* measured 0.025-0.026 (E4M3), 0.051-0.053 (E5M2) */
    qh_tensor *w = gaussian(16, 300, 42);
    const float *x = qh_tensor_f32(w);
    for (int fmt = 0; fmt < 2; fmt++)
        for (int gran = 0; gran < 4; gran++) {
            void *cfg = make_cfg(fmt, gran, 64, 0);
            test_qrun r = test_quantize_ok(quantize, cfg, w);
            test_check_decoder(&r);
            int mb = fmt == E4M3 ? 3 : 2, emin = fmt == E4M3 ? -6 : -14;
            int64_t groups = qh_tensor_numel(r.q.scale);
            assert_int_equal(groups, gran == G_TENSOR ? 1 : gran == G_BLOCK ? 16 * 5 : 16);
            assert_int_equal(qh_qtensor_groups(&r.q, w), groups);
            double se = 0, sx = 0;
            for (int64_t i = 0; i < 16 * 300; i++) {
                int64_t g = gran == G_TENSOR ? 0 : gran == G_BLOCK ? (i / 300) * 5 + (i % 300) / 64 : i / 300;
                double s = qh_tensor_f32(r.q.scale)[g], e = fabs((double)x[i] - qh_tensor_f32(r.deq)[i]);
                double bound = fmax(fabs(x[i]) * ldexp(1, -(mb + 1)), s * ldexp(1, emin - mb - 1));
                assert_true(e <= bound * (1 + 1e-6));
                se += e * e;
                sx += (double)x[i] * x[i];
            }
            assert_true(sqrt(se / sx) < rel_table[fmt]);
            assert_int_equal(qh_qtensor_bytes(&r.q), 16 * 300 + 4 * groups); /* fixed code book: not counted */
            test_qrun_free(&r);
            free(cfg);
        }
    qh_tensor_free(w);
}

/* A block length that does not divide the row: each row ends with a shorter block of its own. */
static void test_partial_blocks(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(3, 10, 7);
    void *cfg = make_cfg(E4M3, G_BLOCK, 4, 0);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    assert_int_equal(r.q.gran, QH_QG_BLOCK);
    assert_int_equal(r.q.block, 4);
    assert_int_equal(qh_tensor_numel(r.q.scale), 9);
    const float *x = qh_tensor_f32(w), *s = qh_tensor_f32(r.q.scale);
    for (int row = 0; row < 3; row++) /* the short block's scale comes from its own 2 elements */
        assert_true(s[row * 3 + 2] == fmaxf(fabsf(x[row * 10 + 8]), fabsf(x[row * 10 + 9])) / 448.0f);
    test_check_decoder(&r);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* seed 001's round_fp8(v, exp) from seeds.md 2.3, with frexp instead of bit fields (normal floats). */
static double seed_ref(double v, int exp)
{
    int mb = 7 - exp, lo = -(1 << exp) + 2, hi = (1 << exp) - 1;
    double a = fabs(v), m = 0;
    int e = -127; /* zero: biased exponent field 0 */
    if (a > 0) {
        int fe;
        double fr = frexp(a, &fe); /* a = fr 2^fe, fr in [0.5, 1) */
        e = fe - 1;
        m = floor((2 * fr - 1) * (1 << mb)); /* truncate the fraction to mb bits */
    }
    e = e < lo ? lo : e > hi ? hi : e;
    double r = (1 + m / (1 << mb)) * pow(2.0, e);
    return signbit(v) ? -r : r;
}

static void test_seed_mode(void **state)
{
    (void)state;
    float v[2][8] = {{1.0f, 0.7f, -0.3f, 0.0f, 1e-5f, -3e-7f, 0.15f, 0.999f},
                     {2.5f, -2.5f, 1.3f, 0.01f, -0.77f, 2.4f, 0.0f, 1e-3f}};
    for (int fmt = 0; fmt < 2; fmt++) {
        qh_tensor *w = test_tensor_from(2, (int64_t[]){2, 8}, (const float *)v);
        void *cfg = make_cfg(fmt, G_ROW, 32, 1);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        assert_int_equal(qh_tensor_numel(r.q.codebook), fmt == E4M3 ? 240 : 248);
        const float *y = qh_tensor_f32(r.deq);
        for (int row = 0; row < 2; row++) {
            float amax = row == 0 ? 1.0f : 2.5f;
            assert_true(qh_tensor_f32(r.q.scale)[row] == amax);
            for (int i = 0; i < 8; i++) {
                double want = seed_ref(v[row][i] / amax, fmt == E4M3 ? 4 : 5) * amax;
                assert_float_equal(y[row * 8 + i], want, 1e-6 * fabs(want));
            }
        }
        /* the seed's zero: +2^-14 (E4M3-like) or +2^-30 (E5M2-like) times the row maximum */
        assert_true(y[3] == (fmt == E4M3 ? ldexpf(1, -14) : ldexpf(1, -30)));
        test_check_decoder(&r);
        test_qrun_free(&r);
        free(cfg);
        qh_tensor_free(w);
    }
}

/* All-zero rows and exact zeros: no NaN in any mode; OCP zeros are exact. */
static void test_zeros(void **state)
{
    (void)state;
    float v[12] = {0, 0, 0, 0, 0, 0, 1.5f, 0.0f, -0.0f, -2.0f, 0.25f, 0.0f};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){2, 6}, v);
    for (int seed = 0; seed < 2; seed++)
        for (int fmt = 0; fmt < 2; fmt++) {
            void *cfg = make_cfg(fmt, G_ROW, 32, seed);
            test_qrun r = test_quantize_ok(quantize, cfg, w);
            const float *y = qh_tensor_f32(r.deq);
            for (int i = 0; i < 12; i++)
                assert_false(isnan(y[i]));
            for (int i = 0; i < 6; i++)
                assert_true(y[i] == 0.0f); /* the all-zero row */
            if (!seed)
                assert_true(y[7] == 0.0f && y[8] == 0.0f && y[11] == 0.0f);
            test_check_decoder(&r);
            test_qrun_free(&r);
            free(cfg);
        }
    qh_tensor_free(w);
}

/* The AVX2 encoder against fp8_encode / fp8_decode, s = 1: codes and values, bit for bit. */
static void check_encoder(int fmt, const float *v, int64_t n)
{
    const fp8_format *f = fp8_format_get((fp8_kind)fmt);
    uint8_t *c = malloc((size_t)n);
    float *y = malloc(sizeof(float) * (size_t)n);
    int64_t done = fp8_encode_ocp_fast(v, n, 1.0f, f, c, y, 0);
    if (done == 0) { /* no AVX2 on this machine: nothing to compare */
        free(c);
        free(y);
        return;
    }
    assert_int_equal(done, n / 32 * 32);
    for (int64_t i = 0; i < done; i++) {
        uint8_t want = fp8_encode(v[i], f);
        float val = fp8_decode(want, f) * 1.0f;
        if (c[i] != want || memcmp(&y[i], &val, sizeof val) != 0)
            fail_msg("format %d: v = %a: code 0x%02x value %a, want 0x%02x %a", fmt, (double)v[i], c[i], (double)y[i],
                     want, (double)val);
    }
    free(c);
    free(y);
}

static void test_fast_encoder(void **state)
{
    (void)state;
    int64_t cap = (1 << 21) + 4 * 256 * 16 + 64, n = 0;
    float *v = malloc(sizeof(float) * (size_t)cap);
    for (uint64_t u = 0; u < (1ull << 32); u += 1u << 11) { /* every float with 11 low zero bits, finite */
        float x;
        uint32_t b = (uint32_t)u;
        memcpy(&x, &b, sizeof x);
        if (isfinite(x))
            v[n++] = x;
    }
    int64_t base = n;
    for (int fmt = 0; fmt < 2; fmt++) {
        n = base;
        const fp8_format *f = fp8_format_get((fp8_kind)fmt);
        for (int c = 0; c < 128; c++) { /* each code's value and the halfway point to the next, +-2 ulps */
            float a = fp8_decode((uint8_t)c, f), b = c < 127 ? fp8_decode((uint8_t)(c + 1), f) : 2 * f->max;
            if (!isfinite(a))
                continue;
            float pts[2] = {a, isfinite(b) ? a + (b - a) / 2 : 2 * f->max}; /* halfway is exact in FP32 */
            for (int p = 0; p < 2; p++) {
                float lo = pts[p], hi = pts[p];
                v[n++] = pts[p];
                v[n++] = -pts[p];
                for (int d = 1; d <= 2; d++) {
                    lo = nextafterf(lo, -INFINITY);
                    hi = nextafterf(hi, INFINITY);
                    v[n++] = lo;
                    v[n++] = -lo;
                    v[n++] = hi;
                    v[n++] = -hi;
                }
            }
        }
        while (n % 32) /* a full last vector */
            v[n++] = f->max;
        check_encoder(fmt, v, n);
    }
    free(v);
}

/* fp8_run's reference and fast paths: codes, scales, values (and codes alone), 1 and 2 threads. */
typedef struct fp8_case {
    const fp8_cfg *cfg;
    const fp8_layout *L;
    const qh_tensor *w;
    const float *book;
    int nb;
} fp8_case;

static void fp8_path(void *ctx, int fast, void *const *out)
{
    const fp8_case *k = ctx;
    fp8_out o = {out[0], out[1], out[2], k->book, k->nb};
    assert_int_equal(fp8_run(k->cfg, k->L, k->w, &o, fast), 0);
}

static void compare_runs(const fp8_cfg *cfg, const qh_tensor *w)
{
    size_t n = (size_t)qh_tensor_numel(w);
    qh_qtensor q = {0};
    fp8_layout L = fp8_make_layout(cfg, w, &q);
    float book[256];
    fp8_case k = {cfg, &L, w, book, fp8_make_book(cfg, book)};
    const test_path_out spec[3] = {
        {n + 1, n, 0},
        {sizeof(float) * ((size_t)L.groups + 1), sizeof(float) * (size_t)L.groups, 0},
        {sizeof(float) * (n + 1), sizeof(float) * n, 1},
    };
    test_compare_paths(fp8_path, &k, spec, 3);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(29, 333, 12);
    float *x = qh_tensor_f32(w);
    for (int i = 0; i < 333; i++) /* row 0: zeros, -0, tiny (subnormal after scaling) and huge values */
        x[i] = i % 4 == 0 ? 0.0f : i % 4 == 1 ? -0.0f : i % 4 == 2 ? 1e-30f * (float)i : -1e20f * (float)i;
    for (int fmt = 0; fmt < 2; fmt++)
        for (int gran = FP8_GRAN_TENSOR; gran <= FP8_GRAN_BLOCK; gran++)
            for (int mode = 0; mode < 2; mode++)
                for (int b = 0; b < (gran == FP8_GRAN_BLOCK ? 3 : 1); b++) {
                    static const int64_t blocks[] = {32, 7, 1};
                    fp8_cfg cfg = {fmt, gran, mode, blocks[b]};
                    compare_runs(&cfg, w);
                }
    qh_tensor_free(w);
    qh_tensor *big = gaussian(3, 700001, 13); /* larger than QQ_NT_MIN: values streamed */
    for (int gran = FP8_GRAN_TENSOR; gran <= FP8_GRAN_ROW; gran++) {
        fp8_cfg cfg = {0, gran, 0, 32};
        compare_runs(&cfg, big);
    }
    qh_tensor_free(big);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(37, 257, 3);
    for (int gran = 0; gran < 4; gran++)
        for (int seed = 0; seed < 2; seed++) {
            void *cfg = make_cfg(E4M3, gran, 16, seed);
            test_assert_threads_identical(quantize, cfg, w, TEST_SAME_DEQ | TEST_SAME_CODES | TEST_SAME_SCALE);
            free(cfg);
        }
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = gaussian(3, 8, 5);
    void *cfg = make_cfg(E4M3, G_CHANNEL, 32, 0);
    qh_error err = {{0}};
    qh_tensor_f32(w)[10] = NAN;
    /* unnamed: the host adds the tensor name */
    test_expect_reject(quantize, cfg, w, "element 10 is NaN", TEST_REJ_UNNAMED | TEST_REJ_NO_CODES, &err);
    qh_tensor_f32(w)[10] = -INFINITY;
    test_expect_reject(quantize, cfg, w, "element 10 is infinite", 0, &err);
    qh_tensor_f32(w)[10] = 0.0f;
    test_set_int(desc, cfg, "block", 0);
    test_expect_reject(quantize, cfg, w, "block = 0", 0, &err);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_FP8);
    assert_string_equal(lib->name, "qhost-quantizer-fp8");
    assert_true(test_params_documented(desc));
    const qh_param *fmt = test_param(desc, "format"), *mode = test_param(desc, "mode");
    assert_string_equal(fmt->choices[fmt->def.i], "e4m3");
    assert_string_equal(mode->choices[mode->def.i], "ocp");
    assert_true(test_param(desc, "block")->min == 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),     cmocka_unit_test(test_all_codes),
        cmocka_unit_test(test_ties_to_even),   cmocka_unit_test(test_subnormals),
        cmocka_unit_test(test_saturation),     cmocka_unit_test(test_error_bound),
        cmocka_unit_test(test_partial_blocks), cmocka_unit_test(test_seed_mode),
        cmocka_unit_test(test_zeros),          cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_rejects),        cmocka_unit_test(test_fast_encoder),
        cmocka_unit_test(test_fast_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
