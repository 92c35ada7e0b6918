/* cifar.c - CIFAR-10 and CIFAR-100 in the official binary layout ("binary version" tarballs).
 *
 * A file is a sequence of fixed-size records: the label byte(s) then 3072 pixel bytes, 1024 red, 1024
 * green, 1024 blue, each a row-major 32 x 32 plane, so a record's pixels are already CHW.
 *   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin (train), test_batch.bin; 1 label byte (0..9).
 *   CIFAR-100: train.bin, test.bin; 2 label bytes, coarse (0..19) then fine (0..99).
 * All five CIFAR-10 training batches are required: a missing one would silently train on 4/5 of the data.
 * Every file is read whole at open() and checked (size a whole number of records, labels in range);
 * load() converts a batch to floats, x = (v / 255 - mean_c) / std_c (in double, rounded once: a table per
 * channel), and augment() applies augment_impl.h's crop and flip.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "augment_impl.h"
#include "qhost/qh_plugin.h"

enum { SIDE = 32, PLANE = SIDE * SIDE, PIXELS = 3 * PLANE, CHUNK_RECORDS = 1024 };
/* Official files hold 10,000 (CIFAR-10) or 50,000 (CIFAR-100 train) records; far more means a wrong file. */
#define CIFAR_MAX_RECORDS 1000000

enum { LABEL_FINE = 0, LABEL_COARSE };
static const char *const label_names[] = {"fine", "coarse", NULL};

typedef struct cifar_cfg {
    const char *dir;
    int label; /* cifar100 only: LABEL_FINE or LABEL_COARSE */
    double mean[3], std[3];
    int augment;
    int64_t crop_padding;
    int hflip;
} cifar_cfg;

/* ---------------------------------------------------------------- the two variants */

typedef struct cifar_variant {
    const char *name;
    const char *const *train_files; /* NULL-terminated */
    const char *test_file;
    int label_bytes;     /* 1: the class; 2: coarse then fine */
    int classes[2];      /* per label kind: [LABEL_FINE], [LABEL_COARSE] */
} cifar_variant;

static const char *const cifar10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin", NULL};
static const char *const cifar100_train[] = {"train.bin", NULL};

static const cifar_variant cifar10 = {"cifar10", cifar10_train, "test_batch.bin", 1, {10, 10}};
static const cifar_variant cifar100 = {"cifar100", cifar100_train, "test.bin", 2, {100, 20}};

/* ---------------------------------------------------------------- parameters */

#define CIFAR_DOUBLE(NAME, F, DEF, MIN, HELP) QH_P_DOUBLE(NAME, cifar_cfg, F, DEF, MIN, 1000.0, "fraction", HELP)
#define CIFAR_MEAN_STD(MR, MG, MB, SR, SG, SB)                                                                    \
    CIFAR_DOUBLE("mean_r", mean[0], MR, -1000.0, "red mean, subtracted from pixel/255"),                          \
    CIFAR_DOUBLE("mean_g", mean[1], MG, -1000.0, "green mean, subtracted from pixel/255"),                        \
    CIFAR_DOUBLE("mean_b", mean[2], MB, -1000.0, "blue mean, subtracted from pixel/255"),                         \
    CIFAR_DOUBLE("std_r", std[0], SR, 1e-6, "red standard deviation, divides pixel/255 - mean_r; > 0"),           \
    CIFAR_DOUBLE("std_g", std[1], SG, 1e-6, "green standard deviation, divides pixel/255 - mean_g; > 0"),         \
    CIFAR_DOUBLE("std_b", std[2], SB, 1e-6, "blue standard deviation, divides pixel/255 - mean_b; > 0")
#define CIFAR_AUGMENT                                                                                             \
    {"augment", QH_PARAM_BOOL, offsetof(cifar_cfg, augment), {.i = 1}, 0, 1, NULL, 0, "switch",                   \
     "augment training batches: random crop, then horizontal flip"},                                              \
    QH_P_INT("crop_padding", cifar_cfg, crop_padding, 4, 0, AUG_MAX_PADDING, "pixels",                            \
             "random crop after padding each side by this many black pixels (0 = no crop)"),                      \
    {"hflip", QH_PARAM_BOOL, offsetof(cifar_cfg, hflip), {.i = 1}, 0, 1, NULL, 0, "switch",                       \
     "flip each training image horizontally with probability 0.5"}

static const qh_param cifar10_params[] = {
    {"dir", QH_PARAM_PATH, offsetof(cifar_cfg, dir), {.s = "/usr/share/datasets/cifar-10-batches-bin"}, 0, 0,
     NULL, 0, "directory", "directory holding data_batch_1.bin .. data_batch_5.bin and test_batch.bin"},
    CIFAR_MEAN_STD(0.4914, 0.4822, 0.4465, 0.2470, 0.2435, 0.2616),
    CIFAR_AUGMENT,
    QH_P_END,
};

static const qh_param cifar100_params[] = {
    {"dir", QH_PARAM_PATH, offsetof(cifar_cfg, dir), {.s = "/usr/share/datasets/cifar-100-binary"}, 0, 0, NULL,
     0, "directory", "directory holding train.bin and test.bin"},
    {"label", QH_PARAM_ENUM, offsetof(cifar_cfg, label), {.i = LABEL_FINE}, 0, 0, label_names, 0, "label",
     "fine: the 100 classes; coarse: the 20 superclasses"},
    CIFAR_MEAN_STD(0.5071, 0.4865, 0.4409, 0.2673, 0.2564, 0.2762),
    CIFAR_AUGMENT,
    QH_P_END,
};

/* ---------------------------------------------------------------- reading the files */

typedef struct cifar_split {
    int64_t n;
    uint8_t *pixels; /* n * PIXELS, CHW bytes */
    int32_t *labels; /* n, the configured label kind */
} cifar_split;

typedef struct cifar_state {
    const cifar_variant *v;
    cifar_split split[2]; /* QH_SPLIT_TRAIN, QH_SPLIT_TEST */
    float lut[3][256];    /* normalized value of each byte, per channel */
    float fill[3];        /* normalized value of byte 0: the crop padding */
    aug_opts aug;
} cifar_state;

/* The files of one split, in order, with their record counts. */
typedef struct split_files {
    const char *dir;
    const char *names[8];
    int64_t records[8];
    int count;
} split_files;

static void join_path(char *buf, size_t n, const char *dir, const char *file)
{
    if (!dir || !dir[0])
        snprintf(buf, n, "%s", file);
    else
        snprintf(buf, n, "%s/%s", dir, file);
}

/* Checks one file's size and returns its record count in *records. */
static qh_status stat_file(const char *path, int64_t rec, int64_t *records, qh_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qh_error_set(err, QH_E_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return qh_error_set(err, QH_E_IO, "%s: not a regular file", path);
    int64_t size = (int64_t)sb.st_size;
    if (size % rec != 0)
        return qh_error_set(err, QH_E_FORMAT, "%s: size %lld bytes is not a multiple of the %lld-byte record "
                            "(remainder %lld)", path, (long long)size, (long long)rec, (long long)(size % rec));
    if (size == 0)
        return qh_error_set(err, QH_E_FORMAT, "%s: empty file, no records", path);
    if (size / rec > CIFAR_MAX_RECORDS)
        return qh_error_set(err, QH_E_FORMAT, "%s: %lld records, more than the %d a CIFAR file may hold (wrong "
                            "file?)", path, (long long)(size / rec), CIFAR_MAX_RECORDS);
    *records = size / rec;
    return QH_OK;
}

/* Checks the label bytes of a record and returns the configured one. */
static qh_status record_label(const cifar_variant *v, int label_kind, const uint8_t *r, const char *path,
                              int64_t index, int32_t *out, qh_error *err)
{
    static const char *const kind_names[] = {"fine label", "coarse label"};
    int32_t got[2]; /* [LABEL_FINE], [LABEL_COARSE] */
    got[LABEL_FINE] = v->label_bytes == 1 ? r[0] : r[1];
    got[LABEL_COARSE] = r[0];
    for (int k = v->label_bytes == 1 ? 0 : 1; k >= 0; k--)
        if (got[k] >= v->classes[k])
            return qh_error_set(err, QH_E_FORMAT, "%s: record %lld (offset %lld) has %s %d outside 0..%d", path,
                                (long long)index, (long long)(index * (v->label_bytes + PIXELS)),
                                v->label_bytes == 1 ? "label" : kind_names[k], got[k], v->classes[k] - 1);
    *out = got[label_kind];
    return QH_OK;
}

/* Reads `records` records of path into sp from sample `first` on, updating *crc with every byte. */
static qh_status read_file(const cifar_variant *v, int label_kind, const char *path, int64_t records,
                           cifar_split *sp, int64_t first, uLong *crc, uint8_t *chunk, qh_error *err)
{
    int64_t rec = v->label_bytes + PIXELS;
    FILE *f = fopen(path, "rb");
    if (!f)
        return qh_error_set(err, QH_E_IO, "%s: cannot open: %s", path, strerror(errno));
    qh_status st = QH_OK;
    for (int64_t i = 0; i < records && st == QH_OK; i += CHUNK_RECORDS) {
        int64_t m = records - i < CHUNK_RECORDS ? records - i : CHUNK_RECORDS;
        if (fread(chunk, (size_t)rec, (size_t)m, f) != (size_t)m) {
            st = qh_error_set(err, QH_E_IO, "%s: read failed at record %lld: %s", path, (long long)i,
                              ferror(f) ? strerror(errno) : "file shrank while reading");
            break;
        }
        *crc = crc32(*crc, chunk, (uInt)(m * rec));
        for (int64_t j = 0; j < m && st == QH_OK; j++) {
            const uint8_t *r = chunk + j * rec;
            st = record_label(v, label_kind, r, path, i + j, &sp->labels[first + i + j], err);
            memcpy(sp->pixels + (first + i + j) * PIXELS, r + v->label_bytes, PIXELS);
        }
    }
    fclose(f);
    return st;
}

static qh_status load_split(const cifar_variant *v, const cifar_cfg *c, const split_files *fs, cifar_split *sp,
                            uLong *crc, uint8_t *chunk, qh_error *err)
{
    char path[4096];
    sp->n = 0;
    for (int i = 0; i < fs->count; i++)
        sp->n += fs->records[i];
    sp->pixels = malloc((size_t)(sp->n * PIXELS));
    sp->labels = malloc((size_t)sp->n * sizeof *sp->labels);
    if (!sp->pixels || !sp->labels)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory for %lld images", v->name, (long long)sp->n);
    int64_t first = 0;
    for (int i = 0; i < fs->count; i++) {
        join_path(path, sizeof path, fs->dir, fs->names[i]);
        qh_status st = read_file(v, c->label, path, fs->records[i], sp, first, crc, chunk, err);
        if (st != QH_OK)
            return st;
        first += fs->records[i];
    }
    return QH_OK;
}

/* Sizes every file of both splits before reading any, so a bad last file fails fast. */
static qh_status stat_all(const cifar_variant *v, const cifar_cfg *c, split_files fs[2], qh_error *err)
{
    char path[4096];
    fs[QH_SPLIT_TRAIN] = (split_files){.dir = c->dir};
    fs[QH_SPLIT_TEST] = (split_files){.dir = c->dir, .names = {v->test_file}, .count = 1};
    for (const char *const *f = v->train_files; *f; f++)
        fs[QH_SPLIT_TRAIN].names[fs[QH_SPLIT_TRAIN].count++] = *f;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < fs[s].count; i++) {
            join_path(path, sizeof path, c->dir, fs[s].names[i]);
            qh_status st = stat_file(path, v->label_bytes + PIXELS, &fs[s].records[i], err);
            if (st != QH_OK)
                return st;
        }
    return QH_OK;
}

/* ---------------------------------------------------------------- open / close */

static void free_state(cifar_state *s)
{
    for (int i = 0; i < 2; i++) {
        free(s->split[i].pixels);
        free(s->split[i].labels);
    }
    free(s);
}

static qh_status check_cfg(const cifar_variant *v, const cifar_cfg *c, qh_error *err)
{
    for (int k = 0; k < 3; k++)
        if (!(c->std[k] > 0.0) || c->mean[k] != c->mean[k])
            return qh_error_set(err, QH_E_INVAL, "%s: std_%c must be > 0 (got %g) and mean_%c a number", v->name,
                                "rgb"[k], c->std[k], "rgb"[k]);
    if (c->label != LABEL_FINE && (v->label_bytes == 1 || c->label != LABEL_COARSE))
        return qh_error_set(err, QH_E_INVAL, "%s: label must be fine%s", v->name,
                            v->label_bytes == 1 ? " (CIFAR-10 has one label)" : " or coarse");
    if (c->crop_padding < 0 || c->crop_padding > AUG_MAX_PADDING)
        return qh_error_set(err, QH_E_INVAL, "%s: crop_padding %lld outside [0, %d]", v->name,
                            (long long)c->crop_padding, AUG_MAX_PADDING);
    return QH_OK;
}

static void init_tables(const cifar_cfg *c, cifar_state *s)
{
    for (int k = 0; k < 3; k++) {
        for (int b = 0; b < 256; b++)
            s->lut[k][b] = (float)(((double)b / 255.0 - c->mean[k]) / c->std[k]);
        s->fill[k] = s->lut[k][0];
    }
    s->aug = (aug_opts){.enabled = c->augment, .padding = c->crop_padding, .hflip = c->hflip};
}

static qh_status read_all(const cifar_variant *v, const cifar_cfg *c, cifar_state *s, uLong *crc, qh_error *err)
{
    split_files fs[2];
    qh_status st = stat_all(v, c, fs, err);
    if (st != QH_OK)
        return st;
    uint8_t *chunk = malloc((size_t)CHUNK_RECORDS * (size_t)(v->label_bytes + PIXELS));
    if (!chunk)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", v->name);
    *crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < 2 && st == QH_OK; i++)
        st = load_split(v, c, &fs[i], &s->split[i], crc, chunk, err);
    free(chunk);
    return st;
}

static qh_status cifar_open(const cifar_variant *v, const void *cfg, void **state, qh_dataset_info *info,
                            qh_error *err)
{
    const cifar_cfg *c = cfg;
    qh_status st = check_cfg(v, c, err);
    if (st != QH_OK)
        return st;
    cifar_state *s = calloc(1, sizeof *s);
    if (!s)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", v->name);
    s->v = v;
    uLong crc = 0;
    if ((st = read_all(v, c, s, &crc, err)) != QH_OK) {
        free_state(s);
        return st;
    }
    init_tables(c, s);
    *info = (qh_dataset_info){.channels = 3, .height = SIDE, .width = SIDE, .num_classes = v->classes[c->label],
                              .n_train = s->split[QH_SPLIT_TRAIN].n, .n_test = s->split[QH_SPLIT_TEST].n};
    snprintf(info->identity, sizeof info->identity, "%s:%s train=%lld test=%lld crc32=%08lx", v->name,
             c->dir ? c->dir : "", (long long)info->n_train, (long long)info->n_test, (unsigned long)crc);
    *state = s;
    return QH_OK;
}

/* The data is fixed: the seed is unused (augmentation draws from the generator passed to augment). */
static qh_status cifar10_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err)
{
    (void)seed;
    return cifar_open(&cifar10, cfg, state, info, err);
}

static qh_status cifar100_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info,
                               qh_error *err)
{
    (void)seed;
    return cifar_open(&cifar100, cfg, state, info, err);
}

static void cifar_close(void *state)
{
    if (state)
        free_state(state);
}

/* ---------------------------------------------------------------- load / augment */

static qh_status cifar_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                           qh_error *err)
{
    const cifar_state *s = state;
    if (split != QH_SPLIT_TRAIN && split != QH_SPLIT_TEST)
        return qh_error_set(err, QH_E_INVAL, "%s: unknown split %d", s->v->name, (int)split);
    const cifar_split *sp = &s->split[split];
    for (int64_t b = 0; b < n; b++)
        if (idx[b] < 0 || idx[b] >= sp->n)
            return qh_error_set(err, QH_E_INVAL, "%s: index %lld out of range [0, %lld) of the %s split",
                                s->v->name, (long long)idx[b], (long long)sp->n,
                                split == QH_SPLIT_TRAIN ? "train" : "test");
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *src = sp->pixels + idx[b] * PIXELS;
        float *dst = x + b * PIXELS;
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < PLANE; j++)
                dst[k * PLANE + j] = s->lut[k][src[k * PLANE + j]];
        y[b] = sp->labels[idx[b]];
    }
    return QH_OK;
}

static qh_status cifar_augment(void *state, qh_rng *rng, float *x, int64_t n, qh_error *err)
{
    const cifar_state *s = state;
    return aug_batch(&s->aug, rng, x, n, 3, SIDE, SIDE, s->fill, s->v->name, err);
}

/* ---------------------------------------------------------------- descriptors */

static const qh_dataset_ops cifar10_ops = {
    .struct_size = sizeof(qh_dataset_ops),
    .open = cifar10_open,
    .close = cifar_close,
    .load = cifar_load,
    .augment = cifar_augment,
};

static const qh_dataset_ops cifar100_ops = {
    .struct_size = sizeof(qh_dataset_ops),
    .open = cifar100_open,
    .close = cifar_close,
    .load = cifar_load,
    .augment = cifar_augment,
};

static const qh_plugin_desc cifar10_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_DATASET,
    .name = "cifar10",
    .summary = "CIFAR-10 binary batches (3 x 32 x 32, 10 classes)",
    .help = "Reads data_batch_1..5.bin and test_batch.bin (all six required) into memory at open; samples are "
            "3 x 32 x 32 normalized per channel as (pixel/255 - mean) / std. Training batches are augmented "
            "with a random crop of the zero-padded image, then a horizontal flip.",
    .params = cifar10_params,
    .config_size = sizeof(cifar_cfg),
    .ops.dataset = &cifar10_ops,
};

static const qh_plugin_desc cifar100_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_DATASET,
    .name = "cifar100",
    .summary = "CIFAR-100 binary files (3 x 32 x 32, 100 fine or 20 coarse classes)",
    .help = "Reads train.bin and test.bin into memory at open; samples are 3 x 32 x 32 normalized per channel "
            "as (pixel/255 - mean) / std, labelled with the fine or the coarse class. Training batches are "
            "augmented with a random crop of the zero-padded image, then a horizontal flip.",
    .params = cifar100_params,
    .config_size = sizeof(cifar_cfg),
    .ops.dataset = &cifar100_ops,
};

static const qh_plugin_desc *const cifar_plugins[] = {&cifar10_desc, &cifar100_desc};

static const qh_library cifar_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-dataset-cifar",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 2,
    .plugins = cifar_plugins,
};

QH_PLUGIN_LIBRARY(cifar_lib)
