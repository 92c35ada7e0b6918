/* idx.c - IDX datasets (MNIST, Fashion-MNIST layout), gzip-compressed or raw.
 *
 * IDX format (LeCun): bytes 0x00 0x00, a type code, the rank, then one big-endian u32 per dimension,
 * then the data in row-major order. Images are rank 3 of unsigned bytes (count x rows x cols), labels
 * rank 1 of unsigned bytes. zlib's gzopen/gzread read both gzip and uncompressed files.
 * Both splits are read whole at open() as bytes; load() converts a batch to floats
 *     x = (v / 255 - mean) / std          (computed in double, rounded once to float; a 256-entry table)
 * and the sample shape is 1 x rows x cols. So that one dataset can feed models built for CIFAR-sized
 * inputs, channels = 3 replicates the gray plane and pad_to = P centres the image on a P x P canvas of
 * background (the normalized value of pixel 0, -mean / std; an odd margin puts the extra row / column at
 * the bottom / right). augment() is the crop-then-flip of ../cifar/augment_impl.h on the final canvas,
 * off by default.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "../cifar/augment_impl.h"
#include "qhost/qh_plugin.h"

typedef struct idx_cfg {
    const char *dir;
    const char *train_images, *train_labels, *test_images, *test_labels;
    double mean, std;
    int64_t num_classes;
    int64_t channels, pad_to;
    int augment;
    int64_t crop_padding;
    int hflip;
} idx_cfg;

#define IDX_FILE(NAME, F, DEF, HELP)                                                                       \
    { NAME, QH_PARAM_PATH, offsetof(idx_cfg, F), {.s = DEF}, 0, 0, NULL, 0, "file", HELP }

static const qh_param params[] = {
    {"dir", QH_PARAM_PATH, offsetof(idx_cfg, dir), {.s = "/usr/share/datasets/fashion-mnist"}, 0, 0, NULL, 0,
     "directory", "directory holding the four IDX files (relative file names are looked up here)"},
    IDX_FILE("train_images", train_images, "train-images-idx3-ubyte.gz", "training images (IDX rank 3, u8)"),
    IDX_FILE("train_labels", train_labels, "train-labels-idx1-ubyte.gz", "training labels (IDX rank 1, u8)"),
    IDX_FILE("test_images", test_images, "t10k-images-idx3-ubyte.gz", "test images (IDX rank 3, u8)"),
    IDX_FILE("test_labels", test_labels, "t10k-labels-idx1-ubyte.gz", "test labels (IDX rank 1, u8)"),
    QH_P_DOUBLE("mean", idx_cfg, mean, 0.2860, -1000.0, 1000.0, "fraction",
                "subtracted from pixel/255 (the training set mean)"),
    QH_P_DOUBLE("std", idx_cfg, std, 0.3530, 1e-6, 1000.0, "fraction",
                "divides pixel/255 - mean (the training set standard deviation), > 0"),
    QH_P_INT("num_classes", idx_cfg, num_classes, 10, 2, 256, "classes", "labels must lie in [0, num_classes)"),
    QH_P_INT("channels", idx_cfg, channels, 1, 1, 3, "channels",
             "1, or 3 to replicate the gray plane into three identical channels"),
    QH_P_INT("pad_to", idx_cfg, pad_to, 0, 0, 4096, "pixels",
             "0, or centre each image on a pad_to x pad_to canvas of background (-mean/std), e.g. 32"),
    {"augment", QH_PARAM_BOOL, offsetof(idx_cfg, augment), {.i = 0}, 0, 1, NULL, 0, "switch",
     "augment training batches: random crop, then horizontal flip"},
    QH_P_INT("crop_padding", idx_cfg, crop_padding, 4, 0, AUG_MAX_PADDING, "pixels",
             "random crop after padding each side by this many background pixels (0 = no crop)"),
    {"hflip", QH_PARAM_BOOL, offsetof(idx_cfg, hflip), {.i = 1}, 0, 1, NULL, 0, "switch",
     "flip each training image horizontally with probability 0.5"},
    QH_P_END,
};

/* ---------------------------------------------------------------- reading one IDX file */

typedef struct idx_array {
    int ndim;
    int64_t dims[3];
    int64_t size; /* bytes of data = product of dims */
    uint8_t *data;
} idx_array;

enum { IDX_TYPE_U8 = 0x08, IDX_CHUNK = 1 << 20 };

static const char *type_name(int code)
{
    switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

/* Reads up to n bytes; returns the count, or -1 if the bytes ran out because zlib reported an error
 * (truncated or corrupt gzip, read failure). zlib decompresses ahead, so an error can be pending while
 * the requested bytes are still buffered: it is reported only where data is actually missing. */
static int64_t read_some(gzFile f, uint8_t *buf, int64_t n)
{
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got < IDX_CHUNK ? n - got : IDX_CHUNK;
        int r = gzread(f, buf + got, (unsigned)want);
        if (r <= 0)
            break;
        got += r;
    }
    int errnum = Z_OK;
    gzerror(f, &errnum);
    return got == n || errnum == Z_OK ? got : -1;
}

static qh_status gz_fail(gzFile f, const char *path, const char *what, qh_error *err)
{
    int errnum = Z_OK;
    const char *msg = gzerror(f, &errnum);
    if (errnum == Z_ERRNO)
        msg = strerror(errno);
    size_t plen = strlen(path); /* zlib's message starts with "<path>: " */
    if (strncmp(msg, path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0)
        msg += plen + 2;
    return qh_error_set(err, QH_E_FORMAT, "%s: %s while reading %s (truncated or corrupt gzip stream)", path,
                        msg, what);
}

static qh_status read_header(gzFile f, const char *path, int want_rank, idx_array *a, qh_error *err)
{
    uint8_t h[4 + 4 * 3];
    int64_t got = read_some(f, h, 4);
    if (got < 0)
        return gz_fail(f, path, "the header", err);
    if (got < 4)
        return qh_error_set(err, QH_E_FORMAT, "%s: %lld bytes, too short for an IDX header", path, (long long)got);
    if (h[0] != 0 || h[1] != 0)
        return qh_error_set(err, QH_E_FORMAT, "%s: bad magic 0x%02x 0x%02x at offset 0 (IDX starts with 0x00 0x00)",
                            path, h[0], h[1]);
    if (h[2] != IDX_TYPE_U8)
        return qh_error_set(err, QH_E_FORMAT, "%s: unsupported type code 0x%02x (%s) at offset 2; only 0x08 "
                            "(unsigned byte) is supported", path, h[2], type_name(h[2]));
    if (h[3] != want_rank)
        return qh_error_set(err, QH_E_FORMAT, "%s: rank %d at offset 3, expected %d (%s)", path, h[3], want_rank,
                            want_rank == 3 ? "images: count x rows x cols" : "labels: count");
    got = read_some(f, h + 4, 4 * want_rank);
    if (got < 0)
        return gz_fail(f, path, "the header", err);
    if (got < 4 * want_rank)
        return qh_error_set(err, QH_E_FORMAT, "%s: header truncated in the dimensions (offset %lld)", path,
                            (long long)(4 + got));
    a->ndim = want_rank;
    a->size = 1;
    for (int d = 0; d < want_rank; d++) {
        const uint8_t *p = h + 4 + 4 * d;
        a->dims[d] = (int64_t)p[0] << 24 | (int64_t)p[1] << 16 | (int64_t)p[2] << 8 | p[3];
        if (a->dims[d] == 0)
            return qh_error_set(err, QH_E_FORMAT, "%s: dimension %d (offset %d) is 0", path, d, 4 + 4 * d);
        if (a->size > (INT64_C(1) << 40) / a->dims[d])
            return qh_error_set(err, QH_E_FORMAT, "%s: dimensions too large (offset %d)", path, 4 + 4 * d);
        a->size *= a->dims[d];
    }
    return QH_OK;
}

static const char *dims_str(const idx_array *a, char *buf, size_t n)
{
    if (a->ndim == 3)
        snprintf(buf, n, "%lldx%lldx%lld", (long long)a->dims[0], (long long)a->dims[1], (long long)a->dims[2]);
    else
        snprintf(buf, n, "%lld", (long long)a->dims[0]);
    return buf;
}

/* Reads the data section, growing the buffer as bytes arrive so that a header claiming a huge size
 * on a short file reports "too short" instead of allocating the claim. */
static qh_status read_data(gzFile f, const char *path, idx_array *a, qh_error *err)
{
    char dims[64];
    int64_t have = 0, cap = 0;
    while (have < a->size) {
        if (have == cap) {
            cap = cap == 0 ? (a->size < IDX_CHUNK ? a->size : IDX_CHUNK) : (2 * cap < a->size ? 2 * cap : a->size);
            uint8_t *p = realloc(a->data, (size_t)cap);
            if (!p)
                return qh_error_set(err, QH_E_NOMEM, "%s: out of memory for %lld bytes", path, (long long)cap);
            a->data = p;
        }
        int64_t want = cap - have;
        int64_t got = read_some(f, a->data + have, want);
        if (got < 0)
            return gz_fail(f, path, "the data", err);
        have += got;
        if (got < want)
            return qh_error_set(err, QH_E_FORMAT, "%s: dims %s need %lld bytes of data after the header but only "
                                "%lld follow", path, dims_str(a, dims, sizeof dims), (long long)a->size,
                                (long long)have);
    }
    return QH_OK;
}

/* After the data the stream must end: trailing bytes mean the header's dims do not match the file. */
static qh_status check_end(gzFile f, const char *path, const idx_array *a, qh_error *err)
{
    uint8_t buf[4096];
    int64_t extra = 0, got;
    while ((got = read_some(f, buf, sizeof buf)) > 0)
        extra += got;
    if (got < 0)
        return gz_fail(f, path, "past the data", err);
    if (extra > 0) {
        char dims[64];
        return qh_error_set(err, QH_E_FORMAT, "%s: %lld bytes of trailing data after the %lld bytes that dims %s "
                            "describe", path, (long long)extra, (long long)a->size, dims_str(a, dims, sizeof dims));
    }
    return QH_OK;
}

static qh_status read_idx(const char *path, int want_rank, idx_array *a, qh_error *err)
{
    memset(a, 0, sizeof *a);
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f)
        return qh_error_set(err, QH_E_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f, 1 << 17);
    qh_status st = read_header(f, path, want_rank, a, err);
    if (st == QH_OK)
        st = read_data(f, path, a, err);
    if (st == QH_OK)
        st = check_end(f, path, a, err);
    gzclose(f);
    if (st != QH_OK) {
        free(a->data);
        a->data = NULL;
    }
    return st;
}

/* ---------------------------------------------------------------- the dataset */

typedef struct idx_split {
    idx_array images, labels;
} idx_split;

typedef struct idx_state {
    idx_split split[2]; /* QH_SPLIT_TRAIN, QH_SPLIT_TEST */
    int64_t rows, cols; /* of the stored images */
    int64_t channels, height, width, top, left; /* of a sample: the image at (top, left) of the canvas */
    float lut[256];     /* normalized value of each byte */
    float fill[3];      /* background: lut[0] in every channel */
    aug_opts aug;
} idx_state;

static void join_path(char *buf, size_t n, const char *dir, const char *file)
{
    if (file[0] == '/' || !dir || !dir[0])
        snprintf(buf, n, "%s", file);
    else
        snprintf(buf, n, "%s/%s", dir, file);
}

static qh_status check_labels(const idx_array *lab, const char *lab_path, const idx_array *img,
                              const char *img_path, int64_t classes, qh_error *err)
{
    if (lab->dims[0] != img->dims[0])
        return qh_error_set(err, QH_E_FORMAT, "%s: %lld labels but %s has %lld images", lab_path,
                            (long long)lab->dims[0], img_path, (long long)img->dims[0]);
    for (int64_t i = 0; i < lab->size; i++)
        if (lab->data[i] >= classes)
            return qh_error_set(err, QH_E_FORMAT, "%s: label %d at index %lld (offset %lld) is not below "
                                "num_classes %lld", lab_path, lab->data[i], (long long)i, (long long)(8 + i),
                                (long long)classes);
    return QH_OK;
}

static qh_status load_split(const idx_cfg *c, const char *img_file, const char *lab_file, idx_split *s,
                            qh_error *err)
{
    char img_path[4096], lab_path[4096];
    join_path(img_path, sizeof img_path, c->dir, img_file);
    join_path(lab_path, sizeof lab_path, c->dir, lab_file);
    qh_status st = read_idx(img_path, 3, &s->images, err);
    if (st == QH_OK)
        st = read_idx(lab_path, 1, &s->labels, err);
    if (st == QH_OK)
        st = check_labels(&s->labels, lab_path, &s->images, img_path, c->num_classes, err);
    if (st == QH_OK && s->images.dims[1] * s->images.dims[2] > INT32_MAX)
        st = qh_error_set(err, QH_E_FORMAT, "%s: images too large", img_path);
    return st;
}

static void free_state(idx_state *s)
{
    for (int i = 0; i < 2; i++) {
        free(s->split[i].images.data);
        free(s->split[i].labels.data);
    }
    free(s);
}

static qh_status check_cfg(const idx_cfg *c, qh_error *err)
{
    if (!c->train_images || !c->train_labels || !c->test_images || !c->test_labels)
        return qh_error_set(err, QH_E_INVAL, "idx: the four file names must be set");
    if (!(c->std > 0.0) || c->mean != c->mean)
        return qh_error_set(err, QH_E_INVAL, "idx: std must be > 0 (got %g) and mean a number", c->std);
    if (c->num_classes < 2 || c->num_classes > 256)
        return qh_error_set(err, QH_E_INVAL, "idx: num_classes %lld outside [2, 256]", (long long)c->num_classes);
    if (c->channels != 1 && c->channels != 3)
        return qh_error_set(err, QH_E_INVAL, "idx: channels must be 1 or 3 (got %lld)", (long long)c->channels);
    if (c->pad_to < 0 || c->pad_to > 4096 || c->crop_padding < 0 || c->crop_padding > AUG_MAX_PADDING)
        return qh_error_set(err, QH_E_INVAL, "idx: pad_to %lld outside [0, 4096] or crop_padding %lld outside "
                            "[0, %d]", (long long)c->pad_to, (long long)c->crop_padding, AUG_MAX_PADDING);
    return QH_OK;
}

/* crc32 of the raw bytes of all four files' data, in the order train images, train labels, test images,
 * test labels: the manifest's proof of which data a run saw. */
static unsigned long data_crc(const idx_state *s)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < 2; i++) {
        const idx_array *parts[2] = {&s->split[i].images, &s->split[i].labels};
        for (int j = 0; j < 2; j++)
            for (int64_t off = 0; off < parts[j]->size; off += IDX_CHUNK) {
                int64_t len = parts[j]->size - off < IDX_CHUNK ? parts[j]->size - off : IDX_CHUNK;
                crc = crc32(crc, parts[j]->data + off, (uInt)len);
            }
    }
    return crc;
}

static void fill_info(const idx_cfg *c, const idx_state *s, qh_dataset_info *info)
{
    const idx_array *tr = &s->split[QH_SPLIT_TRAIN].images, *te = &s->split[QH_SPLIT_TEST].images;
    *info = (qh_dataset_info){.channels = (int32_t)s->channels, .height = (int32_t)s->height,
                              .width = (int32_t)s->width, .num_classes = (int32_t)c->num_classes,
                              .n_train = tr->dims[0], .n_test = te->dims[0]};
    char a[64], b[64];
    snprintf(info->identity, sizeof info->identity, "idx:%s train=%s test=%s crc32=%08lx", c->dir ? c->dir : "",
             dims_str(tr, a, sizeof a), dims_str(te, b, sizeof b), data_crc(s));
}

static qh_status check_same_size(const idx_cfg *c, const idx_state *s, qh_error *err)
{
    const idx_array *tr = &s->split[QH_SPLIT_TRAIN].images, *te = &s->split[QH_SPLIT_TEST].images;
    if (tr->dims[1] == te->dims[1] && tr->dims[2] == te->dims[2])
        return QH_OK;
    char path[4096];
    join_path(path, sizeof path, c->dir, c->test_images);
    return qh_error_set(err, QH_E_FORMAT, "%s: test images are %lldx%lld but training images %lldx%lld", path,
                        (long long)te->dims[1], (long long)te->dims[2], (long long)tr->dims[1],
                        (long long)tr->dims[2]);
}

/* The sample shape: channels x canvas, the image centred (extra margin bottom / right). */
static qh_status set_geometry(const idx_cfg *c, idx_state *s, qh_error *err)
{
    s->rows = s->split[QH_SPLIT_TRAIN].images.dims[1];
    s->cols = s->split[QH_SPLIT_TRAIN].images.dims[2];
    s->channels = c->channels;
    s->height = c->pad_to ? c->pad_to : s->rows;
    s->width = c->pad_to ? c->pad_to : s->cols;
    if (s->height < s->rows || s->width < s->cols) {
        char path[4096];
        join_path(path, sizeof path, c->dir, c->train_images);
        return qh_error_set(err, QH_E_INVAL, "idx: pad_to %lld is smaller than the %lldx%lld images of %s",
                            (long long)c->pad_to, (long long)s->rows, (long long)s->cols, path);
    }
    if (s->channels * s->height * s->width > INT32_MAX)
        return qh_error_set(err, QH_E_INVAL, "idx: samples of %lldx%lldx%lld are too large", (long long)s->channels,
                            (long long)s->height, (long long)s->width);
    s->top = (s->height - s->rows) / 2;
    s->left = (s->width - s->cols) / 2;
    return QH_OK;
}

static qh_status idx_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err)
{
    (void)seed; /* the data is fixed; nothing is random */
    const idx_cfg *c = cfg;
    qh_status st = check_cfg(c, err);
    if (st != QH_OK)
        return st;
    idx_state *s = calloc(1, sizeof *s);
    if (!s)
        return qh_error_set(err, QH_E_NOMEM, "idx: out of memory");
    st = load_split(c, c->train_images, c->train_labels, &s->split[QH_SPLIT_TRAIN], err);
    if (st == QH_OK)
        st = load_split(c, c->test_images, c->test_labels, &s->split[QH_SPLIT_TEST], err);
    if (st == QH_OK)
        st = check_same_size(c, s, err);
    if (st == QH_OK)
        st = set_geometry(c, s, err);
    if (st != QH_OK) {
        free_state(s);
        return st;
    }
    for (int v = 0; v < 256; v++)
        s->lut[v] = (float)(((double)v / 255.0 - c->mean) / c->std);
    for (int k = 0; k < 3; k++)
        s->fill[k] = s->lut[0];
    s->aug = (aug_opts){.enabled = c->augment, .padding = c->crop_padding, .hflip = c->hflip};
    fill_info(c, s, info);
    *state = s;
    return QH_OK;
}

static void idx_close(void *state)
{
    if (state)
        free_state(state);
}

/* One sample: the normalized image on its canvas in channel 0, copied to the other channels. */
static void write_sample(const idx_state *s, const uint8_t *src, float *dst)
{
    int64_t plane = s->height * s->width;
    if (s->height != s->rows || s->width != s->cols)
        for (int64_t j = 0; j < plane; j++)
            dst[j] = s->lut[0];
    for (int64_t r = 0; r < s->rows; r++) {
        float *row = dst + (s->top + r) * s->width + s->left;
        for (int64_t j = 0; j < s->cols; j++)
            row[j] = s->lut[src[r * s->cols + j]];
    }
    for (int64_t k = 1; k < s->channels; k++)
        memcpy(dst + k * plane, dst, (size_t)plane * sizeof *dst);
}

static qh_status idx_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    const idx_state *s = state;
    if (split != QH_SPLIT_TRAIN && split != QH_SPLIT_TEST)
        return qh_error_set(err, QH_E_INVAL, "idx: unknown split %d", (int)split);
    const idx_split *sp = &s->split[split];
    int64_t count = sp->images.dims[0];
    for (int64_t b = 0; b < n; b++)
        if (idx[b] < 0 || idx[b] >= count)
            return qh_error_set(err, QH_E_INVAL, "idx: index %lld out of range [0, %lld) of the %s split",
                                (long long)idx[b], (long long)count, split == QH_SPLIT_TRAIN ? "train" : "test");
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b++) {
        write_sample(s, sp->images.data + idx[b] * s->rows * s->cols, x + b * s->channels * s->height * s->width);
        y[b] = sp->labels.data[idx[b]];
    }
    return QH_OK;
}

static qh_status idx_augment(void *state, qh_rng *rng, float *x, int64_t n, qh_error *err)
{
    const idx_state *s = state;
    return aug_batch(&s->aug, rng, x, n, s->channels, s->height, s->width, s->fill, "idx", err);
}

static const qh_dataset_ops idx_ops = {
    .struct_size = sizeof(qh_dataset_ops),
    .open = idx_open,
    .close = idx_close,
    .load = idx_load,
    .augment = idx_augment,
};

static const qh_plugin_desc idx_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_DATASET,
    .name = "idx",
    .summary = "IDX image/label files (MNIST, Fashion-MNIST), gzip or raw",
    .help = "Reads the four IDX files of a train/test split into memory at open; samples are 1 x rows x cols, "
            "normalized as (pixel/255 - mean) / std. Defaults are Fashion-MNIST's. channels = 3 and pad_to = 32 "
            "give 3 x 32 x 32 samples for CIFAR-sized models; augment adds a random crop and a horizontal flip.",
    .params = params,
    .config_size = sizeof(idx_cfg),
    .ops.dataset = &idx_ops,
};

static const qh_plugin_desc *const idx_plugins[] = {&idx_desc};

static const qh_library idx_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-dataset-idx",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = idx_plugins,
};

QH_PLUGIN_LIBRARY(idx_lib)
