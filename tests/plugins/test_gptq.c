/* test_gptq.c - the GPTQ quantizer plugin, called directly through its ops with H computed here.
 *
 * References: a plain unblocked GPTQ written below (column by column, explicit H^-1 from
 * Gauss-Jordan, downdated after each column as in OBS), the golden file of
 * tests/golden/gen_gptq.py (torch, the authors' Cholesky form), round-to-nearest (identity or
 * diagonal H must give it exactly; correlated data must give GPTQ a smaller layer-output error),
 * and the core reference decoder qh_qtensor_dequantize. The plugin's double kernel is checked
 * against its reference twin bit for bit.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/gptq/gptq_impl.h"
#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    qh_log_set_level(QH_LOG_WARN); /* the dead-input notes of the reference test */
    desc = test_plugin_desc(PLUGIN_GPTQ, QH_KIND_QUANTIZER, "gptq");
    return desc ? 0 : -1;
}

/* ------------------------------------------------------------------ configuration and data */

typedef struct opts {
    int bits, group, act, sym, block;
    double damp;
} opts;

static void *make_cfg(const opts *o)
{
    void *cfg = test_config_defaults(desc);
    assert_non_null(cfg);
    assert_int_equal(test_set_int(desc, cfg, "bits", o->bits), 0);
    assert_int_equal(test_set_int(desc, cfg, "group_size", o->group), 0);
    assert_int_equal(test_set_int(desc, cfg, "act_order", o->act), 0);
    assert_int_equal(test_set_int(desc, cfg, "mode", o->sym ? 0 : 1), 0); /* choices: symmetric, asymmetric */
    assert_int_equal(test_set_int(desc, cfg, "block_size", o->block), 0);
    assert_int_equal(test_set_double(desc, cfg, "damp", o->damp), 0);
    return cfg;
}

static qh_tensor *new_weight(int32_t ndim, const int64_t *shape, uint64_t seed)
{
    qh_tensor *w = qh_tensor_new(QH_F32, ndim, shape, NULL);
    assert_non_null(w);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = qh_tensor_f32(w);
    for (int64_t i = 0; i < qh_tensor_numel(w); i++)
        x[i] = (float)(qh_rng_normal(&r) * 0.1);
    return w;
}

/* m x d inputs with strong correlations: a shared factor plus mixed noise; `dead` columns zero. */
static float *make_x(int64_t m, int64_t d, uint64_t seed, const int64_t *dead, int n_dead)
{
    float *x = malloc(sizeof(float) * (size_t)(m * d));
    double *mix = malloc(sizeof(double) * (size_t)(d * 4));
    assert_true(x && mix);
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < d * 4; i++)
        mix[i] = qh_rng_normal(&r);
    for (int64_t s = 0; s < m; s++) {
        double f[4];
        for (int k = 0; k < 4; k++)
            f[k] = qh_rng_normal(&r);
        for (int64_t j = 0; j < d; j++) {
            double v = 0.5 * qh_rng_normal(&r);
            for (int k = 0; k < 4; k++)
                v += f[k] * mix[j * 4 + k];
            x[s * d + j] = (float)v;
        }
        for (int k = 0; k < n_dead; k++)
            x[s * d + dead[k]] = 0.0f;
    }
    free(mix);
    return x;
}

static double *gram(const float *x, int64_t m, int64_t d)
{
    double *h = calloc((size_t)(d * d), sizeof(double));
    assert_non_null(h);
    for (int64_t s = 0; s < m; s++)
        for (int64_t i = 0; i < d; i++)
            for (int64_t j = 0; j < d; j++)
                h[i * d + j] += (double)x[s * d + i] * x[s * d + j];
    return h;
}

static qh_status run_masked(void *cfg, const qh_tensor *w, const uint8_t *mask, const double *h, int64_t m,
                            test_qrun *out, qh_error *err)
{
    memset(out, 0, sizeof *out);
    out->deq = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    int64_t rows = w->shape[0];
    qh_calib_layer c = {.struct_size = sizeof c, .name = "test.weight", .w = w, .rows = rows,
                        .cols = qh_tensor_numel(w) / rows, .m = m, .h = h, .is_conv = w->ndim == 4, .mask = mask};
    return desc->ops.quantizer->quantize_calib(cfg, &c, &out->q, out->deq, err);
}

static qh_status run_calib(void *cfg, const qh_tensor *w, const double *h, int64_t m, test_qrun *out, qh_error *err)
{
    return run_masked(cfg, w, NULL, h, m, out, err);
}

static int32_t code_at(const qh_qtensor *q, int64_t i)
{
    return q->codes->dtype == QH_I8 ? ((const int8_t *)q->codes->data)[i] : ((const uint8_t *)q->codes->data)[i];
}

/* The plugin's dequantized values are exactly what the core decoder makes of its codes. */
static void check_decodes(const test_qrun *r)
{
    qh_tensor *dec = qh_tensor_new(QH_F32, r->deq->ndim, r->deq->shape, NULL);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(&r->q, dec, &err), QH_OK);
    assert_memory_equal(dec->data, r->deq->data, qh_tensor_nbytes(dec));
    qh_tensor_free(dec);
}

static void assert_same_result(const test_qrun *a, const test_qrun *b)
{
    assert_memory_equal(a->q.codes->data, b->q.codes->data, qh_tensor_nbytes(a->q.codes));
    assert_memory_equal(a->q.scale->data, b->q.scale->data, qh_tensor_nbytes(a->q.scale));
    if (a->q.zero)
        assert_memory_equal(a->q.zero->data, b->q.zero->data, qh_tensor_nbytes(a->q.zero));
    assert_memory_equal(a->deq->data, b->deq->data, qh_tensor_nbytes(a->deq));
}

/* ------------------------------------------------------------------ the plain reference */

typedef struct rgrid {
    float scale;
    int zero, qmin, qmax;
} rgrid;

/* The min-max grid of gen_gptq.py / the reference's quant.py, from the definition. */
static rgrid ref_grid(const double *w, int64_t n, int bits, int sym)
{
    int maxq = (1 << bits) - 1;
    double lo = 0.0, hi = 0.0, amax = 0.0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
        amax = fmax(amax, fabs(w[i]));
    }
    rgrid g;
    if (sym) {
        g.scale = (float)(2.0 * (amax > 0 ? amax : 1.0) / maxq);
        g.zero = 0;
        g.qmin = -(1 << (bits - 1));
        g.qmax = (1 << (bits - 1)) - 1;
        return g;
    }
    if (lo == 0.0 && hi == 0.0) {
        lo = -1.0;
        hi = 1.0;
    }
    g.scale = (float)((hi - lo) / maxq);
    g.zero = (int)nearbyint(-lo / g.scale);
    g.qmin = 0;
    g.qmax = maxq;
    return g;
}

static int ref_code(double w, const rgrid *g)
{
    double c = nearbyint(w / g->scale) + g->zero;
    return c < g->qmin ? g->qmin : c > g->qmax ? g->qmax : (int)c;
}

/* Gauss-Jordan inverse with partial pivoting of the d x d matrix a (overwritten). */
static void invert(double *a, int64_t d, double *out)
{
    for (int64_t i = 0; i < d * d; i++)
        out[i] = i / d == i % d;
    for (int64_t c = 0; c < d; c++) {
        int64_t p = c;
        for (int64_t r = c + 1; r < d; r++)
            if (fabs(a[r * d + c]) > fabs(a[p * d + c]))
                p = r;
        for (int64_t j = 0; j < d; j++) {
            double t = a[c * d + j];
            a[c * d + j] = a[p * d + j];
            a[p * d + j] = t;
            t = out[c * d + j];
            out[c * d + j] = out[p * d + j];
            out[p * d + j] = t;
        }
        double inv = 1.0 / a[c * d + c];
        for (int64_t j = 0; j < d; j++) {
            a[c * d + j] *= inv;
            out[c * d + j] *= inv;
        }
        for (int64_t r = 0; r < d; r++) {
            double f = a[r * d + c];
            if (r == c || f == 0.0)
                continue;
            for (int64_t j = 0; j < d; j++) {
                a[r * d + j] -= f * a[c * d + j];
                out[r * d + j] -= f * out[c * d + j];
            }
        }
    }
}

/* GPTQ without blocks or Cholesky: after quantizing column i, w_j -= (w_i - q_i) / Hinv_ii * Hinv_ij
 * for the columns j still to go, then Hinv loses column i (Hinv -= Hinv_:i Hinv_i: / Hinv_ii), the
 * OBS update of the paper's equations (2) and (3) in a fixed order. A pruned weight (mask 0) is
 * "quantized" to 0, as SparseGPT does for a fixed mask. codes: int, deq: float. */
static void ref_gptq(const opts *o, const float *w32, const uint8_t *mask, int64_t rows, int64_t d, const double *h0,
                     int *codes, float *deq)
{
    double *h = malloc(sizeof(double) * (size_t)(d * d)), *hp = malloc(sizeof(double) * (size_t)(d * d));
    double *hinv = malloc(sizeof(double) * (size_t)(d * d)), *w = malloc(sizeof(double) * (size_t)(rows * d));
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)d);
    int64_t gsize = o->group <= 0 || o->group >= d ? d : o->group, ngr = (d + gsize - 1) / gsize;
    rgrid *grids = malloc(sizeof(rgrid) * (size_t)(rows * ngr));
    assert_true(h && hp && hinv && w && perm && grids);
    memcpy(h, h0, sizeof(double) * (size_t)(d * d));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++)
            w[r * d + j] = h[j * d + j] == 0.0 || (mask && !mask[r * d + j]) ? 0.0 : w32[r * d + j];
    double mean = 0.0;
    for (int64_t j = 0; j < d; j++) {
        if (h[j * d + j] == 0.0)
            h[j * d + j] = 1.0;
        mean += h[j * d + j] / (double)d;
    }
    for (int64_t j = 0; j < d; j++) /* insertion sort: stable, decreasing diagonal */
        perm[j] = j;
    for (int64_t a = 1; o->act && a < d; a++)
        for (int64_t b = a; b > 0 && h[perm[b] * d + perm[b]] > h[perm[b - 1] * d + perm[b - 1]]; b--) {
            int64_t t = perm[b];
            perm[b] = perm[b - 1];
            perm[b - 1] = t;
        }
    int dynamic = ngr > 1 && !o->act;
    for (int64_t r = 0; r < rows && !dynamic; r++)
        for (int64_t g = 0; g < ngr; g++)
            grids[r * ngr + g] = ref_grid(&w[r * d + g * gsize], g * gsize + gsize <= d ? gsize : d - g * gsize,
                                          o->bits, o->sym);
    for (int64_t a = 0; a < d; a++)
        for (int64_t b = 0; b < d; b++)
            hp[a * d + b] = h[perm[a] * d + perm[b]] + (a == b ? o->damp * mean : 0.0);
    invert(hp, d, hinv);
    for (int64_t i = 0; i < d; i++) {
        int64_t col = perm[i];
        for (int64_t r = 0; r < rows; r++) {
            double *wr = &w[r * d];
            if (dynamic && col % gsize == 0) {
                double tmp[256];
                int64_t len = d - col < gsize ? d - col : gsize;
                for (int64_t k = 0; k < len; k++)
                    tmp[k] = mask && !mask[r * d + col + k] ? 0.0 : wr[col + k];
                grids[r * ngr + col / gsize] = ref_grid(tmp, len, o->bits, o->sym);
            }
            const rgrid *g = &grids[r * ngr + col / gsize];
            int c = mask && !mask[r * d + col] ? g->zero : ref_code(wr[col], g);
            float v = g->scale * (float)(c - g->zero);
            codes[r * d + col] = c;
            deq[r * d + col] = v;
            double e = (wr[col] - v) / hinv[i * d + i];
            for (int64_t j = i + 1; j < d; j++)
                wr[perm[j]] -= e * hinv[i * d + j];
        }
        for (int64_t a = i + 1; a < d; a++)
            for (int64_t b = i + 1; b < d; b++)
                hinv[a * d + b] -= hinv[a * d + i] * hinv[i * d + b] / hinv[i * d + i];
    }
    free(h);
    free(hp);
    free(hinv);
    free(w);
    free(perm);
    free(grids);
}

/* A mask keeping about 3 weights in 5 (seeded). */
static uint8_t *make_mask(int64_t n, uint64_t seed)
{
    uint8_t *mask = malloc((size_t)n);
    assert_non_null(mask);
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        mask[i] = qh_rng_uniform(&r) < 0.6;
    return mask;
}

static void check_against_reference(const opts *o, int32_t ndim, const int64_t *shape, const double *h, int64_t m,
                                    int masked)
{
    qh_tensor *w = new_weight(ndim, shape, 11);
    int64_t rows = shape[0], d = qh_tensor_numel(w) / rows;
    int *codes = malloc(sizeof(int) * (size_t)(rows * d));
    float *deq = malloc(sizeof(float) * (size_t)(rows * d));
    uint8_t *mask = masked ? make_mask(rows * d, 3) : NULL;
    assert_true(codes && deq);
    for (int64_t i = 0; mask && i < rows * d; i++) /* the host keeps pruned weights at 0 */
        qh_tensor_f32(w)[i] *= mask[i];
    ref_gptq(o, qh_tensor_f32(w), mask, rows, d, h, codes, deq);
    void *cfg = make_cfg(o);
    test_qrun r;
    qh_error err = {{0}};
    assert_int_equal(run_masked(cfg, w, mask, h, m, &r, &err), QH_OK);
    for (int64_t i = 0; mask && i < rows * d; i++)
        if (!mask[i] && qh_tensor_f32(r.deq)[i] != 0.0f)
            fail_msg("pruned weight %lld came back as %g", (long long)i, qh_tensor_f32(r.deq)[i]);
    int64_t diff = 0;
    double maxdev = 0.0;
    for (int64_t i = 0; i < rows * d; i++) {
        diff += code_at(&r.q, i) != codes[i];
        maxdev = fmax(maxdev, fabs((double)qh_tensor_f32(r.deq)[i] - deq[i]));
    }
    if (diff || !(maxdev <= 1e-5))
        fail_msg("bits %d group %d act %d sym %d block %d: %lld codes differ, max |deq - ref| %g", o->bits, o->group,
                 o->act, o->sym, o->block, (long long)diff, maxdev);
    check_decodes(&r);
    test_qrun_free(&r);
    free(cfg);
    free(codes);
    free(deq);
    free(mask);
    qh_tensor_free(w);
}

/* (a) equals the plain unblocked reference: every option, 2-D and conv layouts, dead inputs, and a
 * pruning mask on every other configuration. */
static void test_matches_reference(void **state)
{
    (void)state;
    const int64_t d = 64, m = 400, dead[2] = {3, 50};
    float *x = make_x(m, d, 5, dead, 2);
    double *h = gram(x, m, d);
    int64_t s2[2] = {12, 64}, s4[4] = {10, 4, 4, 4};
    static const int groups[] = {0, 16, 24, -1};
    static const int bitlist[] = {2, 3, 4, 8};
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 4; gi++)
            for (int act = 0; act < 2; act++)
                for (int sym = 0; sym < 2; sym++) {
                    opts o = {bitlist[bi], groups[gi], act, sym, gi == 2 ? 5 : 128, 0.01};
                    check_against_reference(&o, 2, s2, h, m, (bi + gi + act + sym) & 1);
                    if (groups[gi] != 24) /* a conv's group must divide its inputs */
                        check_against_reference(&o, 4, s4, h, m, (bi + gi + act + sym + 1) & 1);
                }
    free(x);
    free(h);
}

/* ------------------------------------------------------------------ golden file (torch) */

typedef struct gtensor {
    char name[33];
    int32_t dtype, count;
    const void *data;
} gtensor;

static int32_t rd32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Reads QH_TEST_DATA/golden/gptq.qhg (layout in gen_gptq.py); returns the tensor count. */
static int golden_load(unsigned char **blob, gtensor *t, int max)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden/gptq.qhg", QH_TEST_DATA);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot open (regenerate with tests/golden/gen_gptq.py)", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *blob = malloc((size_t)size);
    assert_non_null(*blob);
    assert_int_equal(fread(*blob, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    assert_true(size >= 8 && memcmp(*blob, "QHG1", 4) == 0);
    int n = rd32(*blob + 4);
    assert_true(n > 0 && n <= max);
    long off = 8;
    for (int i = 0; i < n; i++) {
        assert_true(off + 56 <= size);
        memcpy(t[i].name, *blob + off, 32);
        t[i].name[32] = '\0';
        t[i].dtype = rd32(*blob + off + 32);
        t[i].count = 1;
        for (int k = 0; k < 4; k++)
            t[i].count *= rd32(*blob + off + 40 + 4 * k);
        off += 56;
        assert_true(off + 4L * t[i].count <= size);
        t[i].data = *blob + off;
        off += 4L * t[i].count;
    }
    assert_int_equal(off, size);
    return n;
}

static const gtensor *gfind(const gtensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

/* (b) the torch implementation of gen_gptq.py: codes identical, scales and values within 1e-5. */
static void test_golden(void **state)
{
    (void)state;
    unsigned char *blob;
    gtensor t[64];
    int n = golden_load(&blob, t, 64);
    const gtensor *gh = gfind(t, n, "h"), *gw = gfind(t, n, "w");
    assert_true(gh && gw && gh->count == 64 * 64 && gw->count == 16 * 64);
    double *h = malloc(sizeof(double) * 64 * 64);
    for (int i = 0; i < 64 * 64; i++)
        h[i] = ((const float *)gh->data)[i];
    int64_t shape[2] = {16, 64};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    memcpy(w->data, gw->data, sizeof(float) * 16 * 64);
    int cases = 0;
    for (int k = 0;; k++, cases++) {
        char name[4][16];
        snprintf(name[0], 16, "p%d", k);
        snprintf(name[1], 16, "c%d", k);
        snprintf(name[2], 16, "s%d", k);
        snprintf(name[3], 16, "z%d", k);
        const gtensor *gp = gfind(t, n, name[0]), *gc = gfind(t, n, name[1]), *gs = gfind(t, n, name[2]),
                      *gz = gfind(t, n, name[3]);
        if (!gp)
            break;
        assert_true(gc && gs && gz && gp->count == 7);
        const int32_t *p = gp->data;
        opts o = {p[0], p[1], p[2], p[3], p[4], (double)p[5] / p[6]};
        void *cfg = make_cfg(&o);
        test_qrun r;
        qh_error err = {{0}};
        assert_int_equal(run_calib(cfg, w, h, 128, &r, &err), QH_OK);
        assert_int_equal(qh_tensor_numel(r.q.scale), gs->count);
        const float *gsc = gs->data;
        const int32_t *gzp = gz->data, *gco = gc->data;
        int64_t gsize = o.group <= 0 || o.group >= 64 ? 64 : o.group, ngr = (64 + gsize - 1) / gsize;
        assert_int_equal(gs->count, 16 * ngr);
        for (int64_t i = 0; i < gs->count; i++) {
            float s = qh_tensor_f32(r.q.scale)[i];
            if (!(fabs(s - gsc[i]) <= 1e-5 * fabs(gsc[i])))
                fail_msg("case %d: scale %lld = %.9g, torch %.9g", k, (long long)i, s, gsc[i]);
            if (r.q.zero)
                assert_int_equal(((int32_t *)r.q.zero->data)[i], gzp[i]);
        }
        for (int64_t i = 0; i < 16 * 64; i++) {
            if (code_at(&r.q, i) != gco[i])
                fail_msg("case %d (bits %d group %d act %d sym %d): code %lld = %d, torch %d", k, o.bits, o.group,
                         o.act, o.sym, (long long)i, code_at(&r.q, i), gco[i]);
            int64_t g = (i / 64) * ngr + (i % 64) / gsize;
            float want = gsc[g] * (float)(gco[i] - gzp[g]);
            assert_true(fabs(qh_tensor_f32(r.deq)[i] - want) <= 1e-5);
        }
        check_decodes(&r);
        test_qrun_free(&r);
        free(cfg);
    }
    assert_true(cases >= 6);
    qh_tensor_free(w);
    free(h);
    free(blob);
}

/* ------------------------------------------------------------------ properties */

/* ||X W^T - X Q^T||_F over the m samples. */
static double output_error(const float *x, int64_t m, const qh_tensor *w, const qh_tensor *deq)
{
    int64_t rows = w->shape[0], d = qh_tensor_numel(w) / rows;
    const float *a = qh_tensor_f32(w), *b = qh_tensor_f32(deq);
    double s = 0.0;
    for (int64_t k = 0; k < m; k++)
        for (int64_t r = 0; r < rows; r++) {
            double y = 0.0;
            for (int64_t j = 0; j < d; j++)
                y += (double)x[k * d + j] * ((double)a[r * d + j] - b[r * d + j]);
            s += y * y;
        }
    return sqrt(s);
}

/* (c) on correlated inputs GPTQ's layer-output error is well below round-to-nearest's, also with a
 * pruning mask (both then quantize the pruned weights, which stay 0). */
static void test_beats_rtn(void **state)
{
    (void)state;
    const int64_t d = 96, m = 600;
    float *x = make_x(m, d, 21, NULL, 0);
    double *h = gram(x, m, d);
    int64_t shape[2] = {24, 96};
    qh_tensor *w = new_weight(2, shape, 3);
    uint8_t *mask = make_mask(24 * 96, 5);
    for (int masked = 0; masked < 2; masked++) {
        for (int64_t i = 0; masked && i < 24 * 96; i++)
            qh_tensor_f32(w)[i] *= mask[i];
        for (int bits = 2; bits <= 4; bits++)
            for (int variant = 0; variant < 4; variant++) {
                opts o = {bits, variant & 1 ? 32 : 0, variant >> 1, 0, 128, 0.01};
                void *cfg = make_cfg(&o);
                test_qrun g, n;
                qh_error err = {{0}};
                assert_int_equal(run_masked(cfg, w, masked ? mask : NULL, h, m, &g, &err), QH_OK);
                assert_int_equal(test_quantize(desc, cfg, w, &n, &err), QH_OK);
                double eg = output_error(x, m, w, g.deq), en = output_error(x, m, w, n.deq);
                if (!(eg < 0.8 * en))
                    fail_msg("bits %d group %d act %d masked %d: GPTQ error %g, RTN %g", bits, o.group, o.act, masked,
                             eg, en);
                test_qrun_free(&g);
                test_qrun_free(&n);
                free(cfg);
            }
    }
    free(mask);
    qh_tensor_free(w);
    free(x);
    free(h);
}

/* (d) with H = c I, or any positive diagonal H, no error propagates: GPTQ is round-to-nearest. */
static void test_diagonal_h_is_rtn(void **state)
{
    (void)state;
    const int64_t d = 48;
    double *h = calloc(d * d, sizeof(double));
    int64_t s2[2] = {9, 48}, s4[4] = {6, 3, 4, 4};
    qh_rng r;
    qh_rng_seed(&r, 8);
    for (int diag = 0; diag < 2; diag++) {
        for (int64_t i = 0; i < d; i++)
            h[i * d + i] = diag ? 0.5 + qh_rng_uniform(&r) : 7.5;
        for (int k = 0; k < 16; k++) {
            opts o = {2 + k % 7, k & 1 ? 16 : 0, (k >> 1) & 1, (k >> 2) & 1, 128, 0.01};
            void *cfg = make_cfg(&o);
            for (int shp = 0; shp < 2; shp++) {
                qh_tensor *w = new_weight(shp ? 4 : 2, shp ? s4 : s2, 40 + k);
                test_qrun g, n;
                qh_error err = {{0}};
                assert_int_equal(run_calib(cfg, w, h, 10, &g, &err), QH_OK);
                assert_int_equal(test_quantize(desc, cfg, w, &n, &err), QH_OK);
                assert_same_result(&g, &n);
                check_decodes(&n);
                test_qrun_free(&g);
                test_qrun_free(&n);
                qh_tensor_free(w);
            }
            free(cfg);
        }
    }
    free(h);
}

/* The data-free fallback rounds each weight on the closed-form grid of its group. */
static void test_rtn_closed_form(void **state)
{
    (void)state;
    int64_t shape[2] = {7, 40};
    qh_tensor *w = new_weight(2, shape, 77);
    float *x = qh_tensor_f32(w);
    for (int64_t j = 0; j < 40; j++)
        x[2 * 40 + j] = 0.0f;       /* an all-zero row: range [-1, 1] */
    for (int64_t j = 0; j < 40; j++)
        x[3 * 40 + j] = fabsf(x[3 * 40 + j]); /* no negative weight */
    for (int bits = 2; bits <= 8; bits++)
        for (int k = 0; k < 4; k++) {
            opts o = {bits, k & 1 ? 16 : 0, 0, k >> 1, 128, 0.01};
            void *cfg = make_cfg(&o);
            test_qrun n;
            qh_error err = {{0}};
            assert_int_equal(test_quantize(desc, cfg, w, &n, &err), QH_OK);
            int64_t gs = o.group ? 16 : 40, ngr = (40 + gs - 1) / gs;
            assert_int_equal(n.q.gran, o.group ? QH_QG_BLOCK : QH_QG_CHANNEL);
            assert_int_equal(qh_qtensor_groups(&n.q, w), 7 * ngr);
            assert_int_equal(n.q.codes->dtype, o.sym ? QH_I8 : QH_U8);
            assert_true(o.sym ? n.q.zero == NULL : n.q.zero != NULL);
            for (int64_t row = 0; row < 7; row++)
                for (int64_t g = 0; g < ngr; g++) {
                    double tmp[40];
                    int64_t len = (g + 1) * gs <= 40 ? gs : 40 - g * gs;
                    for (int64_t j = 0; j < len; j++)
                        tmp[j] = x[row * 40 + g * gs + j];
                    rgrid rg = ref_grid(tmp, len, bits, o.sym);
                    assert_true(qh_tensor_f32(n.q.scale)[row * ngr + g] == rg.scale);
                    for (int64_t j = 0; j < len; j++)
                        assert_int_equal(code_at(&n.q, row * 40 + g * gs + j), ref_code(tmp[j], &rg));
                }
            check_decodes(&n);
            test_qrun_free(&n);
            free(cfg);
        }
    qh_tensor_free(w);
}

/* The block size and the thread count change nothing, bit for bit (a layer large enough for every
 * parallel path of the Cholesky, the inverse and the row tiles). */
static void test_block_and_thread_invariance(void **state)
{
    (void)state;
    const int64_t d = 400, m = 500;
    float *x = make_x(m, d, 9, NULL, 0);
    double *h = gram(x, m, d);
    int64_t shape[4] = {40, 16, 5, 5};
    qh_tensor *w = new_weight(4, shape, 4);
    uint8_t *mask = make_mask(40 * 400, 6);
    int saved = qh_threads();
    for (int k = 0; k < 3; k++) {
        opts o = {3 + k, k == 1 ? 80 : 0, k == 2, k == 2, 128, 0.01};
        test_qrun base;
        qh_error err = {{0}};
        qh_set_threads(1);
        void *cfg = make_cfg(&o);
        const uint8_t *mk = k == 1 ? mask : NULL;
        assert_int_equal(run_masked(cfg, w, mk, h, m, &base, &err), QH_OK);
        free(cfg);
        static const int blocks[] = {1, 37, 400};
        for (int b = 0; b < 3; b++) {
            o.block = blocks[b];
            cfg = make_cfg(&o);
            qh_set_threads(1 + (b & 1));
            test_qrun other;
            assert_int_equal(run_masked(cfg, w, mk, h, m, &other, &err), QH_OK);
            assert_same_result(&base, &other);
            test_qrun_free(&other);
            free(cfg);
        }
        test_qrun_free(&base);
    }
    qh_set_threads(saved);
    free(mask);
    qh_tensor_free(w);
    free(x);
    free(h);
}

/* The AVX2 kernel gives its reference's bits on odd shapes and strides. */
static void test_gemm_kernel(void **state)
{
    (void)state;
    qh_rng r;
    qh_rng_seed(&r, 1);
    static const int64_t dims[][3] = {{1, 1, 1}, {7, 13, 5}, {6, 8, 130}, {13, 300, 129}, {2, 3, 0}, {25, 260, 64}};
    for (int t = 0; t < 6; t++) {
        int64_t m = dims[t][0], n = dims[t][1], k = dims[t][2], lda = k + 3, ldb = n + 1, ldc = n + 2;
        double *a = malloc(sizeof(double) * (size_t)(m * lda + k * (m + 1) + 1));
        double *b = malloc(sizeof(double) * (size_t)(k * ldb + 1)), *c1 = malloc(sizeof(double) * (size_t)(m * ldc));
        double *c2 = malloc(sizeof(double) * (size_t)(m * ldc));
        for (int64_t i = 0; i < m * lda + k * (m + 1) + 1; i++)
            a[i] = qh_rng_normal(&r);
        for (int64_t i = 0; i < k * ldb + 1; i++)
            b[i] = qh_rng_normal(&r);
        for (int64_t i = 0; i < m * ldc; i++)
            c1[i] = c2[i] = qh_rng_normal(&r);
        for (int tr = 0; tr < 2; tr++) { /* a row-major (sai = lda) and column-strided (sap = m + 1) */
            int64_t sai = tr ? 1 : lda, sap = tr ? m + 1 : 1;
            gq_gemm_sub_ref(m, n, k, a, sai, sap, b, ldb, c1, ldc);
            gq_gemm_sub(m, n, k, a, sai, sap, b, ldb, c2, ldc);
            assert_memory_equal(c1, c2, sizeof(double) * (size_t)(m * ldc));
        }
        /* and the reference is C - A B */
        double c0 = c1[0];
        gq_gemm_sub_ref(1, 1, k, a, lda, 1, b, ldb, c1, ldc);
        double want = c0;
        for (int64_t p = 0; p < k; p++)
            want -= a[p] * b[p * ldb];
        assert_true(fabs(c1[0] - want) <= 1e-9 * (1.0 + fabs(want)));
        free(a);
        free(b);
        free(c1);
        free(c2);
    }
}

/* (e) bad input: clear errors, nothing allocated. */
static void expect_error(void *cfg, const qh_tensor *w, const double *h, int64_t m, qh_status want, const char *text)
{
    test_qrun r;
    qh_error err = {{0}};
    qh_status st = run_calib(cfg, w, h, m, &r, &err);
    if (st != want || !strstr(err.msg, text))
        fail_msg("status %d, message '%s'; wanted %d with '%s'", st, err.msg, want, text);
    assert_null(r.q.codes);
    qh_tensor_free(r.deq);
}

static void test_bad_input(void **state)
{
    (void)state;
    const int64_t d = 36;
    float *x = make_x(50, d, 2, NULL, 0);
    double *h = gram(x, 50, d);
    int64_t s4[4] = {4, 4, 3, 3}, s2[2] = {4, 36};
    qh_tensor *w4 = new_weight(4, s4, 1), *w2 = new_weight(2, s2, 1);
    opts o = {4, 0, 0, 0, 128, 0.01};
    for (int bits = 1; bits <= 9; bits += 8) { /* the host checks ranges first; the plugin still refuses */
        o.bits = bits;
        void *cfg = make_cfg(&o);
        expect_error(cfg, w2, h, 50, QH_E_INVAL, "outside [2, 8]");
        test_qrun r;
        qh_error err = {{0}};
        assert_int_equal(test_quantize(desc, cfg, w2, &r, &err), QH_E_INVAL);
        test_qrun_free(&r);
        free(cfg);
    }
    o.bits = 4;
    o.group = 8; /* 36 inputs: fine for a linear layer (groups 8, 8, 8, 8, 4), refused for a conv */
    void *cfg = make_cfg(&o);
    expect_error(cfg, w4, h, 50, QH_E_UNSUPPORTED, "does not divide the 36 inputs per output channel");
    test_qrun r;
    qh_error err = {{0}};
    assert_int_equal(run_calib(cfg, w2, h, 50, &r, &err), QH_OK);
    assert_int_equal(qh_tensor_numel(r.q.scale), 4 * 5);
    check_decodes(&r);
    test_qrun_free(&r);
    free(cfg);
    o.group = 0;
    cfg = make_cfg(&o);
    qh_tensor_f32(w2)[17] = NAN;
    expect_error(cfg, w2, h, 50, QH_E_INVAL, "element 17 is not finite");
    qh_tensor_f32(w2)[17] = INFINITY;
    expect_error(cfg, w2, h, 50, QH_E_INVAL, "element 17 is not finite");
    qh_tensor_f32(w2)[17] = 0.5f;
    expect_error(cfg, w2, h, 0, QH_E_INVAL, "no calibration samples");
    expect_error(cfg, w2, NULL, 50, QH_E_INVAL, "no H");
    h[5 * d + 7] = NAN;
    expect_error(cfg, w2, h, 50, QH_E_INVAL, "H[5][7] = nan is not finite");
    for (int64_t i = 0; i < d * d; i++) /* rank one, and damping 0 cannot rescue it */
        h[i] = 1.0;
    free(cfg);
    o.damp = 0.0;
    cfg = make_cfg(&o);
    expect_error(cfg, w2, h, 50, QH_E_INVAL, "not positive definite even after damping");
    free(cfg);
    o.damp = 0.01;
    cfg = make_cfg(&o);
    for (int64_t i = 0; i < d * d; i++)
        h[i] = i / d == i % d ? 1.0 : 0.0;
    h[9 * d + 9] = -1.0; /* negative curvature: the damping is too small to fix it */
    expect_error(cfg, w2, h, 50, QH_E_INVAL, "pivot of input column 9");
    free(cfg);
    qh_tensor_free(w4);
    qh_tensor_free(w2);
    free(x);
    free(h);
}

/* The descriptor: documented parameters, the 1.2 methods, and what it accepts. */
static void test_descriptor(void **state)
{
    (void)state;
    assert_true(test_params_documented(desc));
    const qh_quantizer_ops *ops = desc->ops.quantizer;
    assert_true(ops->struct_size >= sizeof(qh_quantizer_ops));
    assert_non_null(ops->quantize_calib);
    int64_t s1[1] = {5}, s2[2] = {3, 4}, s4[4] = {2, 3, 3, 3};
    qh_tensor *b = qh_tensor_new(QH_F32, 1, s1, NULL), *l = qh_tensor_new(QH_F32, 2, s2, NULL);
    qh_tensor *c = qh_tensor_new(QH_F32, 4, s4, NULL), *i8 = qh_tensor_new(QH_I8, 2, s2, NULL);
    void *cfg = test_config_defaults(desc);
    assert_false(ops->accepts(cfg, "fc.bias", b));
    assert_true(ops->accepts(cfg, "fc.weight", l));
    assert_true(ops->accepts(cfg, "conv.weight", c));
    assert_false(ops->accepts(cfg, "q.weight", i8));
    assert_int_equal(ops->calib_needs(cfg, "fc.weight", l), QH_CALIB_H);
    assert_int_equal(ops->calib_needs(cfg, "conv.weight", c), QH_CALIB_H);
    assert_int_equal(ops->calib_needs(cfg, "fc.bias", b), 0);
    free(cfg);
    qh_tensor_free(b);
    qh_tensor_free(l);
    qh_tensor_free(c);
    qh_tensor_free(i8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_gemm_kernel),
        cmocka_unit_test(test_rtn_closed_form),
        cmocka_unit_test(test_matches_reference),
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_beats_rtn),
        cmocka_unit_test(test_diagonal_h_is_rtn),
        cmocka_unit_test(test_block_and_thread_invariance),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
