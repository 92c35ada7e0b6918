/* test_cifar.c - the cifar10 and cifar100 datasets on small generated files in the official binary layout:
 * normalization, labels, identity, every bad-file error, and the crop-then-flip augmentation checked
 * against a plain reference implementation of its documented contract. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "plugin_util.h"

static const qh_plugin_desc *c10, *c100;

static int setup(void **state)
{
    (void)state;
    c10 = test_plugin_desc(PLUGIN_CIFAR, QH_KIND_DATASET, "cifar10");
    c100 = test_plugin_desc(PLUGIN_CIFAR, QH_KIND_DATASET, "cifar100");
    return c10 && c100 ? 0 : -1;
}

enum { PLANE = 1024, PIXELS = 3 * PLANE, SIDE = 32 };

static const double mean10[3] = {0.4914, 0.4822, 0.4465}, std10[3] = {0.2470, 0.2435, 0.2616};
static const double mean100[3] = {0.5071, 0.4865, 0.4409}, std100[3] = {0.2673, 0.2564, 0.2762};

/* ---------------------------------------------------------------- generated files */

/* CIFAR-10: five training batches of these sizes (8 records in all) and a test batch of 3. */
static const char *const files10[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                      "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
static const int counts10[] = {3, 2, 1, 1, 1, 3};
static const char *const files100[] = {"train.bin", "test.bin"};
static const int counts100[] = {5, 2};

/* Pixel p of record r of file f; a different pattern per channel. */
static uint8_t pixel(int f, int r, int p) { return (uint8_t)((f * 71 + r * 37 + p * 11 + (p / PLANE) * 5) % 256); }
static uint8_t label10(int f, int r) { return (uint8_t)((f * 3 + r * 7) % 10); }
static uint8_t fine100(int f, int r) { return (uint8_t)((f * 41 + r * 13) % 100); }
static uint8_t coarse100(int f, int r) { return (uint8_t)((f * 7 + r * 3) % 20); }

/* The bytes of file f (label_bytes 1: CIFAR-10, 2: CIFAR-100); *len gets the size. */
static uint8_t *file_bytes(int label_bytes, int f, int n, size_t *len)
{
    size_t rec = (size_t)label_bytes + PIXELS;
    uint8_t *d = malloc(rec * (size_t)n + 16);
    for (int r = 0; r < n; r++) {
        uint8_t *p = d + rec * (size_t)r;
        if (label_bytes == 1) {
            p[0] = label10(f, r);
        } else {
            p[0] = coarse100(f, r);
            p[1] = fine100(f, r);
        }
        for (int j = 0; j < PIXELS; j++)
            p[label_bytes + j] = pixel(f, r, j);
    }
    *len = rec * (size_t)n;
    return d;
}

static void write_raw(const char *dir, const char *name, const uint8_t *d, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_set(const char *dir, int label_bytes)
{
    int nf = label_bytes == 1 ? 6 : 2;
    for (int f = 0; f < nf; f++) {
        size_t len;
        uint8_t *d = file_bytes(label_bytes, f, label_bytes == 1 ? counts10[f] : counts100[f], &len);
        write_raw(dir, label_bytes == 1 ? files10[f] : files100[f], d, len);
        free(d);
    }
}

static unsigned long set_crc(int label_bytes)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    int nf = label_bytes == 1 ? 6 : 2;
    for (int f = 0; f < nf; f++) {
        size_t len;
        uint8_t *d = file_bytes(label_bytes, f, label_bytes == 1 ? counts10[f] : counts100[f], &len);
        crc = crc32(crc, d, (uInt)len);
        free(d);
    }
    return crc;
}

static char *make_dir(void)
{
    char *dir = strdup("/tmp/qh-test-cifar-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_dir(char *dir)
{
    char path[1024];
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files10[i]);
        unlink(path);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files100[i]);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* ---------------------------------------------------------------- opening */

typedef struct opened {
    const qh_plugin_desc *d;
    void *cfg, *state;
    qh_dataset_info info;
    qh_error err;
    qh_status st;
} opened;

static void make_cfg(opened *o, const qh_plugin_desc *d, const char *dir)
{
    memset(o, 0, sizeof *o);
    o->d = d;
    o->cfg = test_config_defaults(d);
    test_set_str(d, o->cfg, "dir", dir);
}

static void do_open(opened *o) { o->st = o->d->ops.dataset->open(o->cfg, 0, &o->state, &o->info, &o->err); }

static void close_opened(opened *o)
{
    if (o->st == QH_OK)
        o->d->ops.dataset->close(o->state);
    free(o->cfg);
}

static float norm(uint8_t v, const double *mean, const double *std, int k)
{
    return (float)(((double)v / 255.0 - mean[k]) / std[k]);
}

/* ---------------------------------------------------------------- valid files */

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_CIFAR);
    assert_string_equal(lib->name, "qhost-dataset-cifar");
    assert_int_equal(lib->n_plugins, 2);
    assert_true(test_params_documented(c10));
    assert_true(test_params_documented(c100));
    assert_string_equal(test_param(c10, "dir")->def.s, "/usr/share/datasets/cifar-10-batches-bin");
    assert_string_equal(test_param(c100, "dir")->def.s, "/usr/share/datasets/cifar-100-binary");
    assert_null(test_param(c10, "label"));
    assert_int_equal(test_param(c100, "label")->def.i, 0);
    assert_string_equal(test_param(c100, "label")->choices[0], "fine");
    assert_string_equal(test_param(c100, "label")->choices[1], "coarse");
    static const char *const ms[] = {"mean_r", "mean_g", "mean_b"}, *const ss[] = {"std_r", "std_g", "std_b"};
    for (int k = 0; k < 3; k++) {
        assert_true(test_param(c10, ms[k])->def.d == mean10[k]);
        assert_true(test_param(c10, ss[k])->def.d == std10[k]);
        assert_true(test_param(c100, ms[k])->def.d == mean100[k]);
        assert_true(test_param(c100, ss[k])->def.d == std100[k]);
    }
    assert_int_equal(test_param(c10, "augment")->def.i, 1);
    assert_int_equal(test_param(c10, "crop_padding")->def.i, 4);
    assert_int_equal(test_param(c10, "hflip")->def.i, 1);
}

static void test_cifar10_valid(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 1);
    opened o;
    make_cfg(&o, c10, dir);
    do_open(&o);
    assert_int_equal(o.st, QH_OK);
    assert_int_equal(o.info.channels, 3);
    assert_int_equal(o.info.height, SIDE);
    assert_int_equal(o.info.width, SIDE);
    assert_int_equal(o.info.num_classes, 10);
    assert_int_equal(o.info.n_train, 8);
    assert_int_equal(o.info.n_test, 3);
    char want[512];
    snprintf(want, sizeof want, "cifar10:%s train=8 test=3 crc32=%08lx", dir, set_crc(1));
    assert_string_equal(o.info.identity, want);
    /* Training indices run through the batches in order: 0..2 batch 1, 3..4 batch 2, 5, 6, 7. */
    static const int64_t idx[4] = {7, 0, 3, 4};
    static const int file_of[4] = {4, 0, 1, 1}, rec_of[4] = {0, 0, 0, 1};
    float *x = malloc(4 * PIXELS * sizeof *x);
    int32_t y[4];
    assert_int_equal(c10->ops.dataset->load(o.state, QH_SPLIT_TRAIN, idx, 4, x, y, &o.err), QH_OK);
    for (int b = 0; b < 4; b++) {
        assert_int_equal(y[b], label10(file_of[b], rec_of[b]));
        for (int p = 0; p < PIXELS; p++)
            assert_true(x[b * PIXELS + p] == norm(pixel(file_of[b], rec_of[b], p), mean10, std10, p / PLANE));
    }
    int64_t t = 2;
    assert_int_equal(c10->ops.dataset->load(o.state, QH_SPLIT_TEST, &t, 1, x, y, &o.err), QH_OK);
    assert_int_equal(y[0], label10(5, 2));
    assert_true(x[PIXELS - 1] == norm(pixel(5, 2, PIXELS - 1), mean10, std10, 2));
    t = 3;
    assert_int_equal(c10->ops.dataset->load(o.state, QH_SPLIT_TEST, &t, 1, x, y, &o.err), QH_E_INVAL);
    assert_non_null(strstr(o.err.msg, "index 3 out of range [0, 3) of the test split"));
    free(x);
    close_opened(&o);
    remove_dir(dir);
}

static void test_cifar100_labels(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 2);
    for (int coarse = 0; coarse < 2; coarse++) {
        opened o;
        make_cfg(&o, c100, dir);
        test_set_int(c100, o.cfg, "label", coarse);
        do_open(&o);
        assert_int_equal(o.st, QH_OK);
        assert_int_equal(o.info.num_classes, coarse ? 20 : 100);
        assert_int_equal(o.info.n_train, 5);
        assert_int_equal(o.info.n_test, 2);
        char want[512];
        snprintf(want, sizeof want, "cifar100:%s train=5 test=2 crc32=%08lx", dir, set_crc(2));
        assert_string_equal(o.info.identity, want);
        for (int split = 0; split < 2; split++) {
            int64_t idx[5] = {0, 1, 2, 3, 4};
            int n = counts100[split];
            float *x = malloc((size_t)n * PIXELS * sizeof *x);
            int32_t y[5];
            assert_int_equal(c100->ops.dataset->load(o.state, (qh_split)split, idx, n, x, y, &o.err), QH_OK);
            for (int b = 0; b < n; b++) {
                assert_int_equal(y[b], coarse ? coarse100(split, b) : fine100(split, b));
                for (int p = 0; p < PIXELS; p += 7)
                    assert_true(x[b * PIXELS + p] == norm(pixel(split, b, p), mean100, std100, p / PLANE));
            }
            free(x);
        }
        close_opened(&o);
    }
    remove_dir(dir);
}

static void test_custom_normalization(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 1);
    opened o;
    make_cfg(&o, c10, dir);
    static const double m[3] = {0.25, 0.5, 0.75}, s[3] = {0.5, 2.0, 0.125};
    static const char *const ms[] = {"mean_r", "mean_g", "mean_b"}, *const ss[] = {"std_r", "std_g", "std_b"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(test_set_double(c10, o.cfg, ms[k], m[k]), 0);
        assert_int_equal(test_set_double(c10, o.cfg, ss[k], s[k]), 0);
    }
    do_open(&o);
    assert_int_equal(o.st, QH_OK);
    int64_t i = 1;
    float *x = malloc(PIXELS * sizeof *x);
    int32_t y;
    assert_int_equal(c10->ops.dataset->load(o.state, QH_SPLIT_TRAIN, &i, 1, x, &y, &o.err), QH_OK);
    for (int p = 0; p < PIXELS; p++)
        assert_true(x[p] == norm(pixel(0, 1, p), m, s, p / PLANE));
    free(x);
    close_opened(&o);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- bad files */

static void append_bytes(const char *dir, const char *name, int n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "ab");
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        fputc(i, f);
    assert_int_equal(fclose(f), 0);
}

static void set_byte(const char *dir, const char *name, long off, int v)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(v, f);
    assert_int_equal(fclose(f), 0);
}

static void set_size(const char *dir, const char *name, long long size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(truncate(path, (off_t)size), 0);
}

static void remove_file(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(unlink(path), 0);
}

typedef void (*breaker)(const char *dir);

static void b10_size(const char *dir) { append_bytes(dir, "data_batch_2.bin", 5); }
static void b10_label(const char *dir) { set_byte(dir, "data_batch_3.bin", 0, 10); }
static void b10_label_late(const char *dir) { set_byte(dir, "test_batch.bin", 2 * 3073, 255); }
static void b10_missing(const char *dir) { remove_file(dir, "data_batch_4.bin"); }
static void b10_missing_test(const char *dir) { remove_file(dir, "test_batch.bin"); }
static void b10_empty(const char *dir) { set_size(dir, "data_batch_5.bin", 0); }
/* A sparse file of 1,000,001 records: sized, never read. */
static void b10_huge(const char *dir) { set_size(dir, "data_batch_1.bin", 3073LL * 1000001); }
static void b100_size(const char *dir) { append_bytes(dir, "test.bin", 3073); }
static void b100_fine(const char *dir) { set_byte(dir, "train.bin", 3 * 3074 + 1, 100); }
static void b100_coarse(const char *dir) { set_byte(dir, "test.bin", 3074, 20); }

typedef struct bad_case {
    const char *what;
    int label_bytes;
    breaker fn;
    const char *file; /* the file the message must name */
    const char *needle;
    qh_status st;
} bad_case;

static const bad_case cases[] = {
    {"size", 1, b10_size, "data_batch_2.bin",
     "size 6151 bytes is not a multiple of the 3073-byte record (remainder 5)", QH_E_FORMAT},
    {"label", 1, b10_label, "data_batch_3.bin", "record 0 (offset 0) has label 10 outside 0..9", QH_E_FORMAT},
    {"label late", 1, b10_label_late, "test_batch.bin", "record 2 (offset 6146) has label 255 outside 0..9",
     QH_E_FORMAT},
    {"missing", 1, b10_missing, "data_batch_4.bin", "cannot open: No such file or directory", QH_E_IO},
    {"missing test", 1, b10_missing_test, "test_batch.bin", "cannot open: No such file or directory", QH_E_IO},
    {"empty", 1, b10_empty, "data_batch_5.bin", "empty file, no records", QH_E_FORMAT},
    {"huge", 1, b10_huge, "data_batch_1.bin", "1000001 records, more than the 1000000", QH_E_FORMAT},
    {"size 100", 2, b100_size, "test.bin",
     "size 9221 bytes is not a multiple of the 3074-byte record (remainder 3073)", QH_E_FORMAT},
    {"fine", 2, b100_fine, "train.bin", "record 3 (offset 9222) has fine label 100 outside 0..99", QH_E_FORMAT},
    {"coarse", 2, b100_coarse, "test.bin", "record 1 (offset 3074) has coarse label 20 outside 0..19",
     QH_E_FORMAT},
};

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = make_dir();
        write_set(dir, cases[c].label_bytes);
        cases[c].fn(dir);
        opened o;
        make_cfg(&o, cases[c].label_bytes == 1 ? c10 : c100, dir);
        do_open(&o);
        if (o.st != cases[c].st || !strstr(o.err.msg, cases[c].needle))
            fail_msg("case '%s': status %d, message '%s'", cases[c].what, o.st, o.err.msg);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s:", dir, cases[c].file);
        if (strncmp(o.err.msg, path, strlen(path)) != 0)
            fail_msg("case '%s': message '%s' does not start with %s", cases[c].what, o.err.msg, path);
        close_opened(&o);
        remove_dir(dir);
    }
}

static void test_bad_config(void **state)
{
    (void)state;
    opened o;
    make_cfg(&o, c10, "/nonexistent");
    test_set_double(c10, o.cfg, "std_g", 0.0);
    do_open(&o);
    assert_int_equal(o.st, QH_E_INVAL);
    assert_non_null(strstr(o.err.msg, "std_g must be > 0"));
    close_opened(&o);
}

/* ---------------------------------------------------------------- augmentation */

enum { N_AUG = 400 };

/* A gradient image with a distinct value at every position: 1000 k + 40 r + c. */
static void gradient(float *x, int64_t n)
{
    for (int64_t b = 0; b < n; b++)
        for (int k = 0; k < 3; k++)
            for (int r = 0; r < SIDE; r++)
                for (int c = 0; c < SIDE; c++)
                    x[b * PIXELS + k * PLANE + r * SIDE + c] = (float)(1000 * k + 40 * r + c);
}

/* The documented contract, written plainly: per sample dy, dx in [-pad, pad] (if pad > 0), then the flip
 * bit (if hflip), from the one generator in batch order; out(r, c) = in(r + dy, c' + dx) with
 * c' = 31 - c when flipped, the fill outside. */
static void reference(const float *in, float *out, int64_t n, int pad, int hflip, const float *fill, qh_rng *rng,
                      int (*offsets)[3])
{
    for (int64_t b = 0; b < n; b++) {
        int dy = 0, dx = 0, flip = 0;
        if (pad > 0) {
            dy = (int)qh_rng_below(rng, 2 * (uint64_t)pad + 1) - pad;
            dx = (int)qh_rng_below(rng, 2 * (uint64_t)pad + 1) - pad;
        }
        if (hflip)
            flip = (int)qh_rng_below(rng, 2);
        offsets[b][0] = dy, offsets[b][1] = dx, offsets[b][2] = flip;
        for (int k = 0; k < 3; k++)
            for (int r = 0; r < SIDE; r++)
                for (int c = 0; c < SIDE; c++) {
                    int sr = r + dy, sc = (flip ? SIDE - 1 - c : c) + dx;
                    out[b * PIXELS + k * PLANE + r * SIDE + c] =
                        sr < 0 || sr >= SIDE || sc < 0 || sc >= SIDE ? fill[k]
                                                                     : in[b * PIXELS + k * PLANE + sr * SIDE + sc];
                }
    }
}

/* Opens cifar10 with the given augmentation settings on a fresh set of files. */
static void open_aug(opened *o, const char *dir, int augment, int pad, int hflip)
{
    make_cfg(o, c10, dir);
    test_set_int(c10, o->cfg, "augment", augment);
    test_set_int(c10, o->cfg, "crop_padding", pad);
    test_set_int(c10, o->cfg, "hflip", hflip);
    do_open(o);
    assert_int_equal(o->st, QH_OK);
}

static void test_crop_flip(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 1);
    float *in = malloc(N_AUG * PIXELS * sizeof *in), *x = malloc(N_AUG * PIXELS * sizeof *x);
    float *want = malloc(N_AUG * PIXELS * sizeof *want);
    int(*off)[3] = malloc(N_AUG * sizeof *off);
    gradient(in, N_AUG);
    float fill[3];
    for (int k = 0; k < 3; k++)
        fill[k] = norm(0, mean10, std10, k);
    static const int settings[][2] = {{4, 1}, {4, 0}, {0, 1}, {2, 1}};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        int pad = settings[s][0], hflip = settings[s][1];
        opened o;
        open_aug(&o, dir, 1, pad, hflip);
        qh_rng r1, r2;
        qh_rng_seed(&r1, 1234 + s);
        r2 = r1;
        memcpy(x, in, N_AUG * PIXELS * sizeof *x);
        assert_int_equal(c10->ops.dataset->augment(o.state, &r1, x, N_AUG, &o.err), QH_OK);
        reference(in, want, N_AUG, pad, hflip, fill, &r2, off);
        assert_memory_equal(x, want, N_AUG * PIXELS * sizeof *x);
        assert_memory_equal(&r1, &r2, sizeof r1); /* the generator advanced by exactly the documented draws */
        /* Every offset in [-pad, pad] and both flip states occur over 400 samples. */
        int seen_dy[9] = {0}, seen_dx[9] = {0}, flips = 0;
        for (int b = 0; b < N_AUG; b++) {
            seen_dy[off[b][0] + 4] = 1, seen_dx[off[b][1] + 4] = 1, flips += off[b][2];
        }
        for (int v = -4; v <= 4; v++) {
            assert_int_equal(seen_dy[v + 4], v >= -pad && v <= pad);
            assert_int_equal(seen_dx[v + 4], v >= -pad && v <= pad);
        }
        if (hflip)
            assert_true(flips > N_AUG / 3 && flips < 2 * N_AUG / 3);
        else
            assert_int_equal(flips, 0);
        close_opened(&o);
    }
    free(in), free(x), free(want), free(off);
    remove_dir(dir);
}

/* Checks that do not go through the reference: a flipped row is the row reversed, and a cropped image is
 * the original shifted by at most 4 pixels with the fill (pixel 0, normalized) where it moved in. */
static void test_known_image(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 1);
    float *in = malloc(64 * PIXELS * sizeof *in), *x = malloc(64 * PIXELS * sizeof *x);
    gradient(in, 64);
    opened o;
    open_aug(&o, dir, 1, 0, 1);
    qh_rng r;
    qh_rng_seed(&r, 5);
    memcpy(x, in, 64 * PIXELS * sizeof *x);
    assert_int_equal(c10->ops.dataset->augment(o.state, &r, x, 64, &o.err), QH_OK);
    int flipped = 0;
    for (int b = 0; b < 64; b++) {
        const float *p = x + b * PIXELS;
        int f = p[0] == (float)(SIDE - 1);
        flipped += f;
        for (int k = 0; k < 3; k++)
            for (int rr = 0; rr < SIDE; rr++)
                for (int c = 0; c < SIDE; c++)
                    assert_true(p[k * PLANE + rr * SIDE + c] == (float)(1000 * k + 40 * rr + (f ? SIDE - 1 - c : c)));
    }
    assert_true(flipped > 0 && flipped < 64);
    close_opened(&o);
    /* Crop only: the centre pixel (always inside for pad 4) tells each sample's offset; the whole sample
     * must then be the image shifted by it with the fill outside, and the offsets must span [-4, 4]. */
    open_aug(&o, dir, 1, 4, 0);
    qh_rng_seed(&r, 6);
    memcpy(x, in, 64 * PIXELS * sizeof *x);
    assert_int_equal(c10->ops.dataset->augment(o.state, &r, x, 64, &o.err), QH_OK);
    int lo = 0, hi = 0;
    for (int b = 0; b < 64; b++) {
        const float *p = x + b * PIXELS;
        int centre = (int)p[16 * SIDE + 16], dy = centre / 40 - 16, dx = centre % 40 - 16;
        assert_true(dy >= -4 && dy <= 4 && dx >= -4 && dx <= 4);
        lo = dy < lo ? dy : lo, hi = dx > hi ? dx : hi;
        for (int k = 0; k < 3; k++) {
            float fill = norm(0, mean10, std10, k);
            for (int rr = 0; rr < SIDE; rr++)
                for (int c = 0; c < SIDE; c++) {
                    int sr = rr + dy, sc = c + dx;
                    int inside = sr >= 0 && sr < SIDE && sc >= 0 && sc < SIDE;
                    assert_true(p[k * PLANE + rr * SIDE + c] == (inside ? (float)(1000 * k + 40 * sr + sc) : fill));
                }
        }
    }
    assert_int_equal(lo, -4);
    assert_int_equal(hi, 4);
    close_opened(&o);
    free(in), free(x);
    remove_dir(dir);
}

static void test_determinism(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_set(dir, 1);
    float *in = malloc(N_AUG * PIXELS * sizeof *in), *a = malloc(N_AUG * PIXELS * sizeof *a);
    float *b = malloc(N_AUG * PIXELS * sizeof *b);
    gradient(in, N_AUG);
    opened o;
    open_aug(&o, dir, 1, 4, 1);
    /* same seed, 1 thread vs 2 threads: identical bytes */
    float *out[2] = {a, b};
    for (int t = 0; t < 2; t++) {
        qh_set_threads(t + 1);
        qh_rng r;
        qh_rng_seed(&r, 99);
        memcpy(out[t], in, N_AUG * PIXELS * sizeof *a);
        assert_int_equal(c10->ops.dataset->augment(o.state, &r, out[t], N_AUG, &o.err), QH_OK);
    }
    assert_memory_equal(a, b, N_AUG * PIXELS * sizeof *a);
    assert_memory_not_equal(a, in, N_AUG * PIXELS * sizeof *a);
    /* another seed: another result */
    qh_rng r;
    qh_rng_seed(&r, 100);
    memcpy(b, in, N_AUG * PIXELS * sizeof *b);
    assert_int_equal(c10->ops.dataset->augment(o.state, &r, b, N_AUG, &o.err), QH_OK);
    assert_memory_not_equal(a, b, N_AUG * PIXELS * sizeof *a);
    close_opened(&o);
    /* augment = false: nothing changes and no random number is drawn */
    open_aug(&o, dir, 0, 4, 1);
    qh_rng_seed(&r, 99);
    qh_rng before = r;
    memcpy(a, in, N_AUG * PIXELS * sizeof *a);
    assert_int_equal(c10->ops.dataset->augment(o.state, &r, a, N_AUG, &o.err), QH_OK);
    assert_memory_equal(a, in, N_AUG * PIXELS * sizeof *a);
    assert_memory_equal(&r, &before, sizeof r);
    close_opened(&o);
    qh_set_threads(2);
    free(in), free(a), free(b);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_cifar10_valid),
        cmocka_unit_test(test_cifar100_labels),
        cmocka_unit_test(test_custom_normalization),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_crop_flip),
        cmocka_unit_test(test_known_image),
        cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
