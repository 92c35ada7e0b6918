/* test_golden.c - every layer kernel (reference and optimized) against PyTorch 1.13 results.
 *
 * The files under QH_TEST_DATA/golden come from tests/golden/gen_golden.py, which also documents
 * the layout: "QHG1", a tensor count, then per tensor a 32-byte name, dtype, ndim, 4 dims and the
 * little-endian data. Tolerance: max|got - torch| / max(1e-6, max|torch|) <= 1e-5 per tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

#define TOL 1e-5
#define MAX_TENSORS 16
#define NAME_LEN 32

typedef struct golden_tensor {
    char name[NAME_LEN + 1];
    int32_t dtype; /* 0 = float32, 1 = int32 */
    int32_t ndim;
    int32_t dims[4];
    int64_t count;
    void *data;
} golden_tensor;

typedef struct golden_case {
    const char *name;
    unsigned char *blob;
    int n;
    golden_tensor t[MAX_TENSORS];
} golden_case;

static int32_t rd_i32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Reads the file and points each tensor at its data inside the blob (little-endian hosts only,
 * which is every host this project builds on; checked below). */
static void golden_load(golden_case *g, const char *case_name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden/%s.qhg", QH_TEST_DATA, case_name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot open (regenerate with tests/golden/gen_golden.py)", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->name = case_name;
    g->blob = malloc((size_t)size);
    assert_non_null(g->blob);
    assert_int_equal(fread(g->blob, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    const uint16_t probe = 1;
    assert_int_equal(*(const unsigned char *)&probe, 1);
    assert_true(size >= 8 && memcmp(g->blob, "QHG1", 4) == 0);
    g->n = rd_i32(g->blob + 4);
    assert_true(g->n > 0 && g->n <= MAX_TENSORS);
    long off = 8;
    for (int i = 0; i < g->n; i++) {
        golden_tensor *t = &g->t[i];
        assert_true(off + NAME_LEN + 24 <= size);
        memcpy(t->name, g->blob + off, NAME_LEN);
        t->name[NAME_LEN] = '\0';
        t->dtype = rd_i32(g->blob + off + NAME_LEN);
        t->ndim = rd_i32(g->blob + off + NAME_LEN + 4);
        assert_true(t->ndim >= 1 && t->ndim <= 4 && (t->dtype == 0 || t->dtype == 1));
        t->count = 1;
        for (int d = 0; d < 4; d++) {
            t->dims[d] = rd_i32(g->blob + off + NAME_LEN + 8 + 4 * d);
            assert_true(t->dims[d] >= 1);
            t->count *= t->dims[d];
        }
        off += NAME_LEN + 24;
        assert_true(off + 4 * t->count <= size);
        t->data = g->blob + off;
        off += 4 * t->count;
    }
    assert_int_equal(off, size);
}

/* The tensor called name, or NULL when optional and absent (fails when required). */
static golden_tensor *find(golden_case *g, const char *name, int required)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->t[i].name, name) == 0)
            return &g->t[i];
    if (required)
        fail_msg("%s: tensor '%s' missing", g->name, name);
    return NULL;
}

static const float *F32(golden_case *g, const char *name)
{
    golden_tensor *t = find(g, name, 1);
    assert_int_equal(t->dtype, 0);
    return t->data;
}

static const int32_t *I32(golden_case *g, const char *name)
{
    golden_tensor *t = find(g, name, 1);
    assert_int_equal(t->dtype, 1);
    return t->data;
}

static int64_t count(golden_case *g, const char *name) { return find(g, name, 1)->count; }

static void expect_close(golden_case *g, const char *variant, const char *name, const float *got)
{
    double e = rel_err(got, F32(g, name), count(g, name));
    if (!(e <= TOL))
        fail_msg("%s (%s): %s relative error %.3g > %.0e", g->name, variant, name, e, TOL);
}

/* ---------------------------------------------------------------- per-op checks */

static void check_conv2d(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1), *w = find(g, "w", 1), *y = find(g, "y", 1);
    const int32_t *p = I32(g, "params");
    const float *b = find(g, "b", 0) ? F32(g, "b") : NULL;
    qh_conv2d_shape s = {.n = x->dims[0], .c_in = x->dims[1], .h_in = x->dims[2], .w_in = x->dims[3],
                         .c_out = w->dims[0], .kh = p[0], .kw = p[1], .sh = p[2], .sw = p[3],
                         .ph = p[4], .pw = p[5], .groups = p[6]};
    qh_conv2d_shape_finish(&s);
    assert_int_equal(s.h_out, y->dims[2]);
    assert_int_equal(s.w_out, y->dims[3]);
    float *oy = falloc(y->count), *dx = falloc(x->count), *dw = falloc(w->count), *db = falloc(s.c_out);
    void *ws = malloc(qh_k_conv2d_ws_size(&s) + 1);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        if (opt) {
            qh_k_conv2d_fwd_f32(&s, x->data, w->data, b, oy, ws);
            qh_k_conv2d_bwd_f32(&s, x->data, w->data, F32(g, "dy"), dx, dw, b ? db : NULL, ws);
        } else {
            qh_k_conv2d_fwd_f32_ref(&s, x->data, w->data, b, oy);
            qh_k_conv2d_bwd_f32_ref(&s, x->data, w->data, F32(g, "dy"), dx, dw, b ? db : NULL);
        }
        expect_close(g, v, "y", oy);
        expect_close(g, v, "dx", dx);
        expect_close(g, v, "dw", dw);
        if (b)
            expect_close(g, v, "db", db);
    }
    free(oy), free(dx), free(dw), free(db), free(ws);
}

static void check_linear(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1), *w = find(g, "w", 1), *y = find(g, "y", 1);
    int64_t n = x->dims[0], in = x->dims[1], out = w->dims[0];
    float *oy = falloc(y->count), *dx = falloc(x->count), *dw = falloc(w->count), *db = falloc(out);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        (opt ? qh_k_linear_fwd_f32 : qh_k_linear_fwd_f32_ref)(n, in, out, x->data, w->data, F32(g, "b"), oy);
        (opt ? qh_k_linear_bwd_f32 : qh_k_linear_bwd_f32_ref)(n, in, out, x->data, w->data, F32(g, "dy"), dx, dw,
                                                              db);
        expect_close(g, v, "y", oy);
        expect_close(g, v, "dx", dx);
        expect_close(g, v, "dw", dw);
        expect_close(g, v, "db", db);
    }
    free(oy), free(dx), free(dw), free(db);
}

typedef void (*fwd_fn)(int64_t, const float *, float *);
typedef void (*bwd_fn)(int64_t, const float *, const float *, float *);

static void check_unary(golden_case *g, fwd_fn fwd[2], bwd_fn bwd[2])
{
    int64_t n = count(g, "x");
    float *y = falloc(n), *dx = falloc(n);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        fwd[opt](n, F32(g, "x"), y);
        bwd[opt](n, y, F32(g, "dy"), dx);
        expect_close(g, v, "y", y);
        expect_close(g, v, "dx", dx);
    }
    free(y), free(dx);
}

static void check_relu(golden_case *g)
{
    fwd_fn f[2] = {qh_k_relu_fwd_f32_ref, qh_k_relu_fwd_f32};
    bwd_fn b[2] = {qh_k_relu_bwd_f32_ref, qh_k_relu_bwd_f32};
    check_unary(g, f, b);
}

static void check_tanh(golden_case *g)
{
    fwd_fn f[2] = {qh_k_tanh_fwd_f32_ref, qh_k_tanh_fwd_f32};
    bwd_fn b[2] = {qh_k_tanh_bwd_f32_ref, qh_k_tanh_bwd_f32};
    check_unary(g, f, b);
}

static qh_pool2d_shape pool_shape(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1), *y = find(g, "y", 1);
    const int32_t *p = I32(g, "params");
    qh_pool2d_shape s = {.n = x->dims[0], .c = x->dims[1], .h_in = x->dims[2], .w_in = x->dims[3],
                         .kh = p[0], .kw = p[1], .sh = p[2], .sw = p[3], .ph = p[4], .pw = p[5]};
    qh_pool2d_shape_finish(&s);
    assert_int_equal(s.h_out, y->dims[2]);
    assert_int_equal(s.w_out, y->dims[3]);
    return s;
}

static void check_maxpool(golden_case *g)
{
    qh_pool2d_shape s = pool_shape(g);
    int64_t ni = count(g, "x"), no = count(g, "y");
    float *y = falloc(no), *dx = falloc(ni);
    int32_t *am = calloc((size_t)no, sizeof *am);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        (opt ? qh_k_maxpool2d_fwd_f32 : qh_k_maxpool2d_fwd_f32_ref)(&s, F32(g, "x"), y, am);
        (opt ? qh_k_maxpool2d_bwd_f32 : qh_k_maxpool2d_bwd_f32_ref)(&s, F32(g, "dy"), am, dx);
        expect_close(g, v, "y", y);
        if (memcmp(am, I32(g, "argmax"), (size_t)no * sizeof *am) != 0)
            fail_msg("%s (%s): argmax differs from PyTorch's indices", g->name, v);
        expect_close(g, v, "dx", dx);
    }
    free(y), free(dx), free(am);
}

static void check_avgpool(golden_case *g)
{
    qh_pool2d_shape s = pool_shape(g);
    int64_t ni = count(g, "x"), no = count(g, "y");
    float *y = falloc(no), *dx = falloc(ni);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        (opt ? qh_k_avgpool2d_fwd_f32 : qh_k_avgpool2d_fwd_f32_ref)(&s, F32(g, "x"), y);
        (opt ? qh_k_avgpool2d_bwd_f32 : qh_k_avgpool2d_bwd_f32_ref)(&s, F32(g, "dy"), dx);
        expect_close(g, v, "y", y);
        expect_close(g, v, "dx", dx);
    }
    free(y), free(dx);
}

static void check_xent(golden_case *g)
{
    golden_tensor *z = find(g, "logits", 1);
    int64_t n = z->dims[0], classes = z->dims[1];
    float *dz = falloc(z->count);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        double loss = (opt ? qh_k_softmax_xent_f32 : qh_k_softmax_xent_f32_ref)(n, classes, z->data,
                                                                               I32(g, "labels"), dz);
        float lf = (float)loss;
        expect_close(g, v, "loss", &lf);
        expect_close(g, v, "dlogits", dz);
    }
    free(dz);
}

/* ---------------------------------------------------------------- model-zoo layers */

static const float *HYPER(golden_case *g) { return F32(g, "hyper"); }

/* BatchNorm2d in train mode: output, running statistics after one update, and the backward. */
static void check_bn_train(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1);
    int64_t n = x->dims[0], c = x->dims[1], hw = (int64_t)x->dims[2] * x->dims[3];
    double eps = HYPER(g)[0], momentum = HYPER(g)[1];
    float *y = falloc(x->count), *dx = falloc(x->count), *rm = falloc(c), *rv = falloc(c), *sm = falloc(c),
          *si = falloc(c), *dg = falloc(c), *db = falloc(c);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        memcpy(rm, F32(g, "rm0"), (size_t)c * sizeof *rm);
        memcpy(rv, F32(g, "rv0"), (size_t)c * sizeof *rv);
        (opt ? qh_k_bn2d_fwd_train_f32 : qh_k_bn2d_fwd_train_f32_ref)(n, c, hw, x->data, F32(g, "gamma"),
                                                                      F32(g, "beta"), eps, momentum, rm, rv, y,
                                                                      sm, si);
        (opt ? qh_k_bn2d_bwd_f32 : qh_k_bn2d_bwd_f32_ref)(n, c, hw, x->data, F32(g, "dy"), F32(g, "gamma"), sm, si,
                                                          dx, dg, db);
        expect_close(g, v, "y", y);
        expect_close(g, v, "rm", rm);
        expect_close(g, v, "rv", rv);
        expect_close(g, v, "dx", dx);
        expect_close(g, v, "dgamma", dg);
        expect_close(g, v, "dbeta", db);
    }
    free(y), free(dx), free(rm), free(rv), free(sm), free(si), free(dg), free(db);
}

/* BatchNorm2d in eval mode, directly and as the folded scale/shift epilogue. */
static void check_bn_eval(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1);
    int64_t n = x->dims[0], c = x->dims[1], hw = (int64_t)x->dims[2] * x->dims[3];
    double eps = HYPER(g)[0];
    const float *gamma = F32(g, "gamma"), *beta = F32(g, "beta"), *rm = F32(g, "rm"), *rv = F32(g, "rv");
    float *y = falloc(x->count), *scale = falloc(c), *shift = falloc(c);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        (opt ? qh_k_bn2d_fwd_eval_f32 : qh_k_bn2d_fwd_eval_f32_ref)(n, c, hw, x->data, gamma, beta, rm, rv, eps, y);
        expect_close(g, v, "y", y);
    }
    for (int64_t k = 0; k < c; k++) {
        double s = gamma[k] / sqrt((double)rv[k] + eps);
        scale[k] = (float)s;
        shift[k] = (float)(beta[k] - rm[k] * s);
    }
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "folded optimized" : "folded reference";
        (opt ? qh_k_scale_shift_act_f32 : qh_k_scale_shift_act_f32_ref)(n, c, hw, x->data, scale, shift, 0, y);
        expect_close(g, v, "y", y);
    }
    free(y), free(scale), free(shift);
}

/* ReLU6's backward takes the forward input, not the output. */
static void check_relu6(golden_case *g)
{
    int64_t n = count(g, "x");
    float *y = falloc(n), *dx = falloc(n);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        (opt ? qh_k_relu6_fwd_f32 : qh_k_relu6_fwd_f32_ref)(n, F32(g, "x"), y);
        (opt ? qh_k_relu6_bwd_f32 : qh_k_relu6_bwd_f32_ref)(n, F32(g, "x"), F32(g, "dy"), dx);
        expect_close(g, v, "y", y);
        expect_close(g, v, "dx", dx);
    }
    free(y), free(dx);
}

typedef void (*resample_fn)(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *in,
                            float *out);

/* Adaptive pooling and bilinear resize share a signature: input x, output size from y's dims. */
static void check_resample(golden_case *g, resample_fn fwd[2], resample_fn bwd[2])
{
    golden_tensor *x = find(g, "x", 1), *yt = find(g, "y", 1);
    float *y = falloc(yt->count), *dx = falloc(x->count);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        fwd[opt](x->dims[0], x->dims[1], x->dims[2], x->dims[3], yt->dims[2], yt->dims[3], x->data, y);
        bwd[opt](x->dims[0], x->dims[1], x->dims[2], x->dims[3], yt->dims[2], yt->dims[3], F32(g, "dy"), dx);
        expect_close(g, v, "y", y);
        expect_close(g, v, "dx", dx);
    }
    free(y), free(dx);
}

static void check_adaptive(golden_case *g)
{
    resample_fn f[2] = {qh_k_adaptive_avgpool2d_fwd_f32_ref, qh_k_adaptive_avgpool2d_fwd_f32};
    resample_fn b[2] = {qh_k_adaptive_avgpool2d_bwd_f32_ref, qh_k_adaptive_avgpool2d_bwd_f32};
    check_resample(g, f, b);
}

static void check_resize(golden_case *g)
{
    resample_fn f[2] = {qh_k_resize_bilinear_fwd_f32_ref, qh_k_resize_bilinear_fwd_f32};
    resample_fn b[2] = {qh_k_resize_bilinear_bwd_f32_ref, qh_k_resize_bilinear_bwd_f32};
    check_resample(g, f, b);
}

/* The shortcut has no reference twin: it is data movement, checked here and in test_shortcut.c. */
static void check_shortcut(golden_case *g)
{
    golden_tensor *x = find(g, "x", 1), *yt = find(g, "y", 1);
    const int32_t *p = I32(g, "params");
    assert_int_equal(yt->dims[1], p[1]);
    float *y = falloc(yt->count), *dx = falloc(x->count);
    qh_k_shortcut_a_fwd_f32(x->dims[0], x->dims[1], x->dims[2], x->dims[3], p[0], p[1], x->data, y);
    qh_k_shortcut_a_bwd_f32(x->dims[0], x->dims[1], x->dims[2], x->dims[3], p[0], p[1], F32(g, "dy"), dx);
    expect_close(g, "optimized", "y", y);
    expect_close(g, "optimized", "dx", dx);
    free(y), free(dx);
}

static void check_xent_ls(golden_case *g)
{
    golden_tensor *z = find(g, "logits", 1);
    int64_t n = z->dims[0], classes = z->dims[1];
    float *dz = falloc(z->count);
    for (int opt = 0; opt < 2; opt++) {
        const char *v = opt ? "optimized" : "reference";
        double loss = (opt ? qh_k_softmax_xent_ls_f32 : qh_k_softmax_xent_ls_f32_ref)(
            n, classes, z->data, I32(g, "labels"), HYPER(g)[0], dz);
        float lf = (float)loss;
        expect_close(g, v, "loss", &lf);
        expect_close(g, v, "dlogits", dz);
    }
    free(dz);
}

/* ---------------------------------------------------------------- the table of cases */

typedef struct golden_entry {
    const char *name;
    void (*check)(golden_case *g);
} golden_entry;

static const golden_entry entries[] = {
    {"conv2d_plain", check_conv2d},     {"conv2d_s2p1", check_conv2d},       {"conv2d_g2", check_conv2d},
    {"conv2d_asym_nobias", check_conv2d}, {"linear", check_linear},          {"relu", check_relu},
    {"tanh", check_tanh},               {"maxpool_2x2", check_maxpool},      {"maxpool_3x3s2p1", check_maxpool},
    {"avgpool_2x2", check_avgpool},     {"avgpool_3x3s2p1", check_avgpool},  {"xent", check_xent},
    {"bn_train", check_bn_train},       {"bn_eval", check_bn_eval},          {"relu6", check_relu6},
    {"adaptive_1x1", check_adaptive},   {"adaptive_6x6", check_adaptive},    {"adaptive_2x3", check_adaptive},
    {"resize_up", check_resize},        {"resize_down", check_resize},       {"shortcut_a", check_shortcut},
    {"shortcut_a_odd", check_shortcut}, {"xent_ls", check_xent_ls},
};

static void run_entry(void **state)
{
    const golden_entry *e = *state;
    golden_case g = {0};
    golden_load(&g, e->name);
    /* Two threads exercise the parallel paths; results do not depend on the count. */
    qh_set_threads(2);
    e->check(&g);
    free(g.blob);
}

int main(void)
{
    enum { N = sizeof entries / sizeof entries[0] };
    struct CMUnitTest tests[N];
    for (int i = 0; i < N; i++)
        tests[i] = (struct CMUnitTest){.name = entries[i].name, .test_func = run_entry,
                                       .initial_state = (void *)&entries[i]};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
