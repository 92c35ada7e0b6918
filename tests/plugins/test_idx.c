/* test_idx.c - the IDX dataset: small generated files (gzip and raw), every malformed-file error, and
 * the real Fashion-MNIST files when they are installed. */
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

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_IDX, QH_KIND_DATASET, "idx");
    return desc ? 0 : -1;
}

#define TRAIN_IMG "train-images-idx3-ubyte.gz"
#define TRAIN_LAB "train-labels-idx1-ubyte.gz"
#define TEST_IMG "t10k-images-idx3-ubyte.gz"
#define TEST_LAB "t10k-labels-idx1-ubyte.gz"
enum { N_TRAIN = 10, N_TEST = 6, ROWS = 4, COLS = 5, PX = ROWS * COLS };

/* ---------------------------------------------------------------- writing IDX files */

static size_t header(uint8_t *h, int type, int rank, const uint32_t *dims)
{
    h[0] = 0, h[1] = 0, h[2] = (uint8_t)type, h[3] = (uint8_t)rank;
    for (int d = 0; d < rank; d++)
        for (int b = 0; b < 4; b++)
            h[4 + 4 * d + b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    return 4 + 4 * (size_t)rank;
}

static void write_file(const char *dir, const char *name, int gz, const uint8_t *h, size_t hlen,
                       const uint8_t *data, size_t dlen)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, h, (unsigned)hlen), (int)hlen);
        if (dlen)
            assert_int_equal(gzwrite(f, data, (unsigned)dlen), (int)dlen);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(h, 1, hlen, f), hlen);
        assert_int_equal(fwrite(data, 1, dlen, f), dlen);
        assert_int_equal(fclose(f), 0);
    }
}

static uint8_t pixel(int64_t i, int64_t p) { return (uint8_t)((i * 37 + p * 11) % 256); }

static void write_images(const char *dir, const char *name, int gz, int n, int rows, int cols, size_t extra)
{
    uint8_t h[16];
    uint32_t dims[3] = {(uint32_t)n, (uint32_t)rows, (uint32_t)cols};
    size_t hl = header(h, 0x08, 3, dims), len = (size_t)n * rows * cols;
    uint8_t *d = malloc(len + extra + 1);
    for (size_t i = 0; i < len + extra; i++)
        d[i] = pixel((int64_t)(i / PX), (int64_t)(i % PX));
    write_file(dir, name, gz, h, hl, d, len + extra);
    free(d);
}

static void write_labels(const char *dir, const char *name, int gz, int n, int bad_at)
{
    uint8_t h[8], d[64];
    uint32_t dims[1] = {(uint32_t)n};
    size_t hl = header(h, 0x08, 1, dims);
    for (int i = 0; i < n; i++)
        d[i] = (uint8_t)(i == bad_at ? 10 : (i * 3) % 10);
    write_file(dir, name, gz, h, hl, d, (size_t)n);
}

static void write_valid(const char *dir, int gz)
{
    write_images(dir, TRAIN_IMG, gz, N_TRAIN, ROWS, COLS, 0);
    write_labels(dir, TRAIN_LAB, gz, N_TRAIN, -1);
    write_images(dir, TEST_IMG, gz, N_TEST, ROWS, COLS, 0);
    write_labels(dir, TEST_LAB, gz, N_TEST, -1);
}

static char *make_dir(void)
{
    char *dir = strdup("/tmp/qh-test-idx-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_dir(char *dir)
{
    static const char *names[] = {TRAIN_IMG, TRAIN_LAB, TEST_IMG, TEST_LAB};
    char path[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* ---------------------------------------------------------------- opening */

typedef struct opened {
    void *cfg, *state;
    qh_dataset_info info;
    qh_error err;
    qh_status st;
} opened;

static void open_dir(opened *o, const char *dir)
{
    memset(o, 0, sizeof *o);
    o->cfg = test_config_defaults(desc);
    if (dir)
        test_set_str(desc, o->cfg, "dir", dir);
    o->st = desc->ops.dataset->open(o->cfg, 0, &o->state, &o->info, &o->err);
}

static void close_opened(opened *o)
{
    if (o->st == QH_OK)
        desc->ops.dataset->close(o->state);
    free(o->cfg);
}

/* augment defaults to false: the batch is left alone and no random number is drawn, so a pipeline's
 * generator sequence is the same as before idx had augmentation. */
static void assert_defaults_do_not_augment(opened *o)
{
    assert_int_equal(test_param(desc, "augment")->def.i, 0);
    float x[2 * PX], before[2 * PX];
    for (int i = 0; i < 2 * PX; i++)
        x[i] = before[i] = (float)i;
    qh_rng r, r0;
    qh_rng_seed(&r, 3);
    r0 = r;
    assert_int_equal(desc->ops.dataset->augment(o->state, &r, x, 2, &o->err), QH_OK);
    assert_memory_equal(x, before, sizeof x);
    assert_memory_equal(&r, &r0, sizeof r);
}

static void test_small_valid(void **state)
{
    (void)state;
    for (int gz = 0; gz < 2; gz++) {
        char *dir = make_dir();
        write_valid(dir, gz);
        opened o;
        open_dir(&o, dir);
        assert_int_equal(o.st, QH_OK);
        assert_int_equal(o.info.channels, 1);
        assert_int_equal(o.info.height, ROWS);
        assert_int_equal(o.info.width, COLS);
        assert_int_equal(o.info.n_train, N_TRAIN);
        assert_int_equal(o.info.n_test, N_TEST);
        assert_int_equal(o.info.num_classes, 10);
        assert_defaults_do_not_augment(&o);
        /* Identity: dir, shapes and the crc32 of the four data sections, computed here independently. */
        uLong crc = crc32(0L, Z_NULL, 0);
        uint8_t buf[N_TRAIN * PX];
        int counts[2] = {N_TRAIN, N_TEST};
        for (int s = 0; s < 2; s++) {
            for (int i = 0; i < counts[s] * PX; i++)
                buf[i] = pixel(i / PX, i % PX);
            crc = crc32(crc, buf, (uInt)(counts[s] * PX));
            for (int i = 0; i < counts[s]; i++)
                buf[i] = (uint8_t)((i * 3) % 10);
            crc = crc32(crc, buf, (uInt)counts[s]);
        }
        char want[512];
        snprintf(want, sizeof want, "idx:%s train=10x4x5 test=6x4x5 crc32=%08lx", dir, (unsigned long)crc);
        assert_string_equal(o.info.identity, want);
        /* Normalization: (v/255 - mean)/std in double, rounded once. */
        int64_t idx[3] = {5, 0, 5};
        float x[3 * PX];
        int32_t y[3];
        assert_int_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TRAIN, idx, 3, x, y, &o.err), QH_OK);
        for (int b = 0; b < 3; b++) {
            assert_int_equal(y[b], (idx[b] * 3) % 10);
            for (int p = 0; p < PX; p++)
                assert_true(x[b * PX + p] == (float)(((double)pixel(idx[b], p) / 255.0 - 0.2860) / 0.3530));
        }
        int64_t bad = N_TEST;
        assert_int_not_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TEST, &bad, 1, x, y, &o.err), QH_OK);
        assert_non_null(strstr(o.err.msg, "index 6 out of range [0, 6)"));
        close_opened(&o);
        remove_dir(dir);
    }
}

/* ---------------------------------------------------------------- malformed files */

typedef void (*breaker)(const char *dir);

static void bad_magic(const char *dir)
{
    uint8_t h[16];
    uint32_t dims[3] = {N_TRAIN, ROWS, COLS};
    header(h, 0x08, 3, dims);
    h[0] = 0x1f, h[1] = 0x02;
    uint8_t d[N_TRAIN * PX] = {0};
    write_file(dir, TRAIN_IMG, 1, h, 16, d, sizeof d);
}

static void bad_type(const char *dir)
{
    uint8_t h[16];
    uint32_t dims[3] = {N_TRAIN, ROWS, COLS};
    header(h, 0x0D, 3, dims);
    uint8_t d[N_TRAIN * PX * 4] = {0};
    write_file(dir, TRAIN_IMG, 1, h, 16, d, sizeof d);
}

static void bad_rank(const char *dir)
{
    uint8_t h[12];
    uint32_t dims[2] = {N_TRAIN, PX};
    header(h, 0x08, 2, dims);
    uint8_t d[N_TRAIN * PX] = {0};
    write_file(dir, TRAIN_IMG, 1, h, 12, d, sizeof d);
}

static void too_short(const char *dir)
{
    uint8_t h[16];
    uint32_t dims[3] = {N_TRAIN, ROWS, COLS};
    header(h, 0x08, 3, dims);
    uint8_t d[150] = {0};
    write_file(dir, TRAIN_IMG, 0, h, 16, d, sizeof d);
}

static void trailing(const char *dir) { write_images(dir, TRAIN_IMG, 1, N_TRAIN, ROWS, COLS, 7); }

static void short_header(const char *dir)
{
    uint8_t h[6] = {0, 0, 8, 3, 0, 0};
    write_file(dir, TEST_IMG, 1, h, sizeof h, NULL, 0);
}

static void count_mismatch(const char *dir) { write_labels(dir, TRAIN_LAB, 1, N_TRAIN - 1, -1); }

static void label_range(const char *dir) { write_labels(dir, TEST_LAB, 1, N_TEST, 3); }

static void size_mismatch(const char *dir) { write_images(dir, TEST_IMG, 1, N_TEST, ROWS, COLS + 1, 0); }

static void missing(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, TEST_LAB);
    assert_int_equal(unlink(path), 0);
}

/* Keeps the first `keep` bytes of a valid gzip file (keep < 0: all but -keep). */
static void cut_file(const char *dir, const char *name, long keep)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, keep >= 0 ? keep : (long)st.st_size + keep), 0);
}

static void gz_cut_half(const char *dir)
{
    write_images(dir, TRAIN_IMG, 1, 2000, ROWS, COLS, 0); /* long enough to cut mid-stream */
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, TRAIN_IMG);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    cut_file(dir, TRAIN_IMG, (long)st.st_size / 2);
}

static void gz_cut_trailer(const char *dir) { cut_file(dir, TRAIN_LAB, -4); }

static void gz_corrupt_crc(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, TRAIN_LAB);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, -8, SEEK_END), 0); /* first byte of the CRC32 trailer */
    int c = fgetc(f);
    assert_int_equal(fseek(f, -8, SEEK_END), 0);
    fputc(c ^ 0xff, f);
    assert_int_equal(fclose(f), 0);
}

typedef struct bad_case {
    const char *what;
    breaker fn;
    const char *file; /* the file the message must name */
    const char *needle;
    qh_status st;
} bad_case;

static const bad_case cases[] = {
    {"bad magic", bad_magic, TRAIN_IMG, "bad magic 0x1f 0x02", QH_E_FORMAT},
    {"type code", bad_type, TRAIN_IMG, "unsupported type code 0x0d (float)", QH_E_FORMAT},
    {"rank", bad_rank, TRAIN_IMG, "rank 2 at offset 3, expected 3", QH_E_FORMAT},
    {"too short", too_short, TRAIN_IMG, "need 200 bytes of data after the header but only 150 follow",
     QH_E_FORMAT},
    {"trailing", trailing, TRAIN_IMG, "7 bytes of trailing data after the 200 bytes", QH_E_FORMAT},
    {"short header", short_header, TEST_IMG, "header truncated", QH_E_FORMAT},
    {"count", count_mismatch, TRAIN_LAB, "9 labels but", QH_E_FORMAT},
    {"label range", label_range, TEST_LAB, "label 10 at index 3 (offset 11) is not below num_classes 10",
     QH_E_FORMAT},
    {"image size", size_mismatch, TEST_IMG, "test images are 4x6 but training images 4x5", QH_E_FORMAT},
    {"missing", missing, TEST_LAB, "cannot open: No such file or directory", QH_E_IO},
    {"gzip cut", gz_cut_half, TRAIN_IMG, "truncated or corrupt gzip", QH_E_FORMAT},
    {"gzip trailer", gz_cut_trailer, TRAIN_LAB, "truncated or corrupt gzip", QH_E_FORMAT},
    {"gzip crc", gz_corrupt_crc, TRAIN_LAB, "truncated or corrupt gzip", QH_E_FORMAT},
};

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *dir = make_dir();
        write_valid(dir, 1);
        cases[c].fn(dir);
        opened o;
        open_dir(&o, dir);
        if (o.st != cases[c].st || !strstr(o.err.msg, cases[c].needle))
            fail_msg("case '%s': status %d, message '%s'", cases[c].what, o.st, o.err.msg);
        if (cases[c].file) {
            char path[1024];
            snprintf(path, sizeof path, "%s/%s:", dir, cases[c].file);
            if (!strstr(o.err.msg, path))
                fail_msg("case '%s': message '%s' does not name %s", cases[c].what, o.err.msg, path);
        }
        close_opened(&o);
        remove_dir(dir);
    }
}

static void test_bad_config(void **state)
{
    (void)state;
    void *cfg = test_config_defaults(desc);
    test_set_double(desc, cfg, "std", 0.0);
    void *st = NULL;
    qh_dataset_info info;
    qh_error err = {{0}};
    assert_int_equal(desc->ops.dataset->open(cfg, 0, &st, &info, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "std"));
    free(cfg);
}

/* ---------------------------------------------------------------- the real Fashion-MNIST files */

#define FMNIST "/usr/share/datasets/fashion-mnist"

/* Reads `n` bytes at data offset `off` of a gzip IDX file with zlib alone (header of `hlen` bytes). */
static void read_raw(const char *name, size_t hlen, size_t off, uint8_t *out, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, FMNIST "/%s", name);
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(gzseek(f, (z_off_t)(hlen + off), SEEK_SET), (z_off_t)(hlen + off));
    assert_int_equal(gzread(f, out, (unsigned)n), (int)n);
    gzclose(f);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    if (access(FMNIST "/" TRAIN_IMG, R_OK) != 0) {
        fprintf(stderr, "Fashion-MNIST not installed in " FMNIST "; skipping\n");
        skip();
    }
    opened o;
    open_dir(&o, NULL); /* the default dir */
    assert_int_equal(o.st, QH_OK);
    assert_int_equal(o.info.n_train, 60000);
    assert_int_equal(o.info.n_test, 10000);
    assert_int_equal(o.info.height, 28);
    assert_int_equal(o.info.width, 28);
    assert_non_null(strstr(o.info.identity, "idx:" FMNIST " train=60000x28x28 test=10000x28x28 crc32="));
    int64_t idx[2] = {0, 59999};
    float *x = malloc(2 * 784 * sizeof *x);
    int32_t y[2];
    assert_int_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TRAIN, idx, 2, x, y, &o.err), QH_OK);
    assert_int_equal(y[0], 9); /* the first training image is an ankle boot */
    uint8_t raw[784];
    read_raw(TRAIN_IMG, 16, 59999 * 784, raw, 784);
    for (int p = 0; p < 784; p += 13)
        assert_true(x[784 + p] == (float)(((double)raw[p] / 255.0 - 0.2860) / 0.3530));
    read_raw(TRAIN_IMG, 16, 0, raw, 784);
    for (int p = 0; p < 784; p++)
        assert_true(x[p] == (float)(((double)raw[p] / 255.0 - 0.2860) / 0.3530));
    uint8_t lab;
    read_raw(TRAIN_LAB, 8, 59999, &lab, 1);
    assert_int_equal(y[1], lab);
    assert_int_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TEST, idx, 1, x, y, &o.err), QH_OK);
    assert_int_equal(y[0], 9); /* the first test image is an ankle boot too */
    free(x);
    close_opened(&o);
}

/* ---------------------------------------------------------------- channels, pad_to, augment */

static float norm_px(int64_t i, int64_t p) { return (float)(((double)pixel(i, p) / 255.0 - 0.2860) / 0.3530); }

/* channels = 3 repeats the plane; pad_to = P puts the 4 x 5 image at row (P - 4) / 2, column (P - 5) / 2
 * of a P x P canvas whose other pixels are the normalized 0, -mean / std. */
static void test_channels_pad(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_valid(dir, 0);
    const float bg = (float)((0.0 - 0.2860) / 0.3530);
    static const int64_t pads[] = {0, 5, 8, 32};
    for (size_t t = 0; t < sizeof pads / sizeof pads[0]; t++)
        for (int ch = 1; ch <= 3; ch += 2) {
            opened o;
            memset(&o, 0, sizeof o);
            o.cfg = test_config_defaults(desc);
            test_set_str(desc, o.cfg, "dir", dir);
            test_set_int(desc, o.cfg, "channels", ch);
            test_set_int(desc, o.cfg, "pad_to", pads[t]);
            o.st = desc->ops.dataset->open(o.cfg, 0, &o.state, &o.info, &o.err);
            assert_int_equal(o.st, QH_OK);
            int64_t h = pads[t] ? pads[t] : ROWS, w = pads[t] ? pads[t] : COLS, top = (h - ROWS) / 2,
                    left = (w - COLS) / 2;
            assert_int_equal(o.info.channels, ch);
            assert_int_equal(o.info.height, h);
            assert_int_equal(o.info.width, w);
            int64_t idx[2] = {7, 2}, size = ch * h * w;
            float *x = malloc(2 * (size_t)size * sizeof *x);
            int32_t y[2];
            assert_int_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TRAIN, idx, 2, x, y, &o.err), QH_OK);
            for (int b = 0; b < 2; b++)
                for (int k = 0; k < ch; k++)
                    for (int64_t r = 0; r < h; r++)
                        for (int64_t c = 0; c < w; c++) {
                            int64_t ir = r - top, ic = c - left;
                            int inside = ir >= 0 && ir < ROWS && ic >= 0 && ic < COLS;
                            assert_true(x[b * size + (k * h + r) * w + c] ==
                                        (inside ? norm_px(idx[b], ir * COLS + ic) : bg));
                        }
            if (pads[t] == 32 && ch == 3) /* the image starts at row 14, column 13 */
                assert_true(x[(2 * 32 + 13) * 32 + 13] == bg && x[(2 * 32 + 14) * 32 + 13] == norm_px(7, 0));
            free(x);
            close_opened(&o);
        }
    /* pad_to smaller than the images */
    opened o;
    memset(&o, 0, sizeof o);
    o.cfg = test_config_defaults(desc);
    test_set_str(desc, o.cfg, "dir", dir);
    test_set_int(desc, o.cfg, "pad_to", 4);
    o.st = desc->ops.dataset->open(o.cfg, 0, &o.state, &o.info, &o.err);
    assert_int_equal(o.st, QH_E_INVAL);
    char want[1024];
    snprintf(want, sizeof want, "pad_to 4 is smaller than the 4x5 images of %s/" TRAIN_IMG, dir);
    assert_non_null(strstr(o.err.msg, want));
    close_opened(&o);
    remove_dir(dir);
}

/* augment = true on a 3 x 8 x 8 canvas: crop and flip with the background as fill, reproducible from the
 * generator alone (draws: dy, dx in [-2, 2], then the flip bit, per sample), same bytes on 1 and 2 threads. */
static void test_augment(void **state)
{
    (void)state;
    char *dir = make_dir();
    write_valid(dir, 0);
    opened o;
    memset(&o, 0, sizeof o);
    o.cfg = test_config_defaults(desc);
    test_set_str(desc, o.cfg, "dir", dir);
    test_set_int(desc, o.cfg, "channels", 3);
    test_set_int(desc, o.cfg, "pad_to", 8);
    test_set_int(desc, o.cfg, "augment", 1);
    test_set_int(desc, o.cfg, "crop_padding", 2);
    o.st = desc->ops.dataset->open(o.cfg, 0, &o.state, &o.info, &o.err);
    assert_int_equal(o.st, QH_OK);
    enum { N = N_TRAIN, S = 3 * 64 };
    int64_t idx[N];
    for (int i = 0; i < N; i++)
        idx[i] = i;
    float in[N * S], out[2][N * S];
    int32_t y[N];
    assert_int_equal(desc->ops.dataset->load(o.state, QH_SPLIT_TRAIN, idx, N, in, y, &o.err), QH_OK);
    for (int t = 0; t < 2; t++) {
        qh_set_threads(t + 1);
        qh_rng r;
        qh_rng_seed(&r, 42);
        memcpy(out[t], in, sizeof in);
        assert_int_equal(desc->ops.dataset->augment(o.state, &r, out[t], N, &o.err), QH_OK);
    }
    assert_memory_equal(out[0], out[1], sizeof in);
    const float bg = (float)((0.0 - 0.2860) / 0.3530);
    qh_rng r;
    qh_rng_seed(&r, 42);
    int changed = 0;
    for (int b = 0; b < N; b++) {
        int dy = (int)qh_rng_below(&r, 5) - 2, dx = (int)qh_rng_below(&r, 5) - 2, flip = (int)qh_rng_below(&r, 2);
        changed += dy != 0 || dx != 0 || flip;
        for (int k = 0; k < 3; k++)
            for (int rr = 0; rr < 8; rr++)
                for (int c = 0; c < 8; c++) {
                    int sr = rr + dy, sc = (flip ? 7 - c : c) + dx;
                    float want = sr < 0 || sr >= 8 || sc < 0 || sc >= 8 ? bg : in[b * S + k * 64 + sr * 8 + sc];
                    assert_true(out[0][b * S + k * 64 + rr * 8 + c] == want);
                }
    }
    assert_true(changed > 0);
    qh_set_threads(2);
    close_opened(&o);
    remove_dir(dir);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_IDX);
    assert_string_equal(lib->name, "qhost-dataset-idx");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
    assert_string_equal(test_param(desc, "dir")->def.s, FMNIST);
    assert_true(test_param(desc, "mean")->def.d == 0.2860);
    assert_true(test_param(desc, "std")->def.d == 0.3530);
    assert_int_equal(test_param(desc, "num_classes")->def.i, 10);
    assert_int_equal(test_param(desc, "channels")->def.i, 1);
    assert_int_equal(test_param(desc, "pad_to")->def.i, 0);
    assert_int_equal(test_param(desc, "crop_padding")->def.i, 4);
    assert_int_equal(test_param(desc, "hflip")->def.i, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_small_valid),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_channels_pad),
        cmocka_unit_test(test_augment),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
