/* qh_plugin.h - plugin ABI v1: the only header a plugin author needs.
 *
 * A plugin library exports one symbol, qh_plugin_entry, returning a static qh_library. The first
 * four fields of qh_library (magic, abi_major, abi_minor, struct_size) never move. The host loads a
 * library when abi_major == QH_ABI_MAJOR and abi_minor <= QH_ABI_MINOR. Every extensible struct
 * starts with its struct_size; fields and methods are only ever appended, and the host copies
 * min(struct_size, sizeof) into a zeroed host-side copy, so a 1.0 plugin reads NULL for methods
 * added later. A NULL optional method means "host default"; only host wrappers call through the
 * vtables.
 *
 * Lifetime contract (see docs/plugin-authoring.md):
 *  - descriptors, strings and parameter tables are static and owned by the plugin;
 *  - the config block (config_size bytes, filled from the parameter table) and its strings are
 *    owned by the host and stay valid until the instance is destroyed;
 *  - create() makes plugin state; destroy() runs exactly once, and only if create() returned QH_OK,
 *    so create() cleans up its own partial failures;
 *  - tensors passed to a method are host-owned and valid only during the call, except tensors the
 *    plugin allocates into an output struct (qh_qtensor), which the host then owns;
 *  - the host calls an instance from one thread at a time; inside a call the plugin may use OpenMP
 *    within qh_threads();
 *  - libraries are never unloaded while the process runs.
 *
 * History: 1.0 first release. 1.1 appended qh_quantizer_ops.accepts. 1.2 appended
 * qh_quantizer_ops.calib_needs and quantize_calib (data-aware quantizers, qh_calib_layer) and
 * qh_pruner_ops.prune_groups (structured pruners, qh_channel_group).
 */
#ifndef QH_PLUGIN_H
#define QH_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "qh_graph.h"
#include "qh_log.h"
#include "qh_parallel.h"
#include "qh_quant.h"
#include "qh_rng.h"
#include "qh_status.h"
#include "qh_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QH_ABI_MAJOR 1
#define QH_ABI_MINOR 2
#define QH_PLUGIN_MAGIC 0x51484C42u /* "QHLB" */
#define QH_PLUGIN_ENTRY_SYMBOL "qh_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define QH_EXPORT __attribute__((visibility("default")))
#else
#define QH_EXPORT
#endif

/* ---------------------------------------------------------------- parameters as data */

typedef enum qh_param_type {
    QH_PARAM_BOOL = 1, /* stored as int (0/1); INI: true/false/yes/no/on/off/1/0 */
    QH_PARAM_INT,      /* int64_t */
    QH_PARAM_DOUBLE,   /* double */
    QH_PARAM_STRING,   /* const char * (host-owned) */
    QH_PARAM_ENUM,     /* int: index into choices */
    QH_PARAM_PATH      /* const char * (host-owned), a file or directory path */
} qh_param_type;

enum {
    QH_PF_REQUIRED = 1u << 0, /* no default: the INI must set it */
    QH_PF_HAS_MIN = 1u << 1,  /* min is honoured */
    QH_PF_HAS_MAX = 1u << 2   /* max is honoured */
};

typedef union qh_param_value {
    int64_t i; /* BOOL, INT, ENUM (index) */
    double d;  /* DOUBLE */
    const char *s; /* STRING, PATH (may be NULL = unset) */
} qh_param_value;

typedef struct qh_param {
    const char *name;           /* INI key, [a-z0-9_]+; a NULL name ends the table */
    qh_param_type type;
    size_t offset;              /* offsetof(config struct, field) */
    qh_param_value def;         /* default (ignored with QH_PF_REQUIRED) */
    double min, max;            /* honoured per QH_PF_HAS_MIN / QH_PF_HAS_MAX (INT, DOUBLE) */
    const char *const *choices; /* ENUM: NULL-terminated names */
    uint32_t flags;
    const char *unit;           /* "bits", "fraction", "epochs", or NULL */
    const char *help;           /* one line */
} qh_param;

/* ---------------------------------------------------------------- the four kinds */

typedef enum qh_kind { QH_KIND_MODEL = 1, QH_KIND_DATASET, QH_KIND_PRUNER, QH_KIND_QUANTIZER } qh_kind;

/* model: builds a graph of core layers. */
typedef struct qh_model_input {
    int32_t channels, height, width; /* per-sample input shape, from the dataset */
    int32_t num_classes;
} qh_model_input;

typedef struct qh_model_ops {
    uint32_t struct_size;
    /* required: append layers to g (created by the host for the input shape). */
    qh_status (*build)(const void *cfg, const qh_model_input *in, qh_graph *g, qh_error *err);
} qh_model_ops;

/* dataset: describes itself and yields normalized samples by index. */
typedef enum qh_split { QH_SPLIT_TRAIN = 0, QH_SPLIT_TEST = 1 } qh_split;

typedef struct qh_dataset_info {
    int32_t channels, height, width; /* per-sample shape */
    int32_t num_classes;
    int64_t n_train, n_test;
    char identity[256]; /* what the manifest records: source files, sizes, checksums or the generator seed */
} qh_dataset_info;

typedef struct qh_dataset_ops {
    uint32_t struct_size;
    /* required: open (read or generate) the data; seed is the pipeline seed. */
    qh_status (*open)(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err);
    /* required */
    void (*close)(void *state);
    /* required: samples idx[0..n) of split into x (n*C*H*W floats, normalized) and y (labels). */
    qh_status (*load)(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                      qh_error *err);
    /* optional (NULL = no augmentation): transforms a training batch in place. */
    qh_status (*augment)(void *state, qh_rng *rng, float *x, int64_t n, qh_error *err);
} qh_dataset_ops;

/* 1.2: a coupled channel group, for structured pruners. The host derives the groups from the graph:
 * output channels that residual adds, depthwise convolutions or option-A shortcuts tie together
 * must be kept or removed as one, so a group lists every filter (a slice along dim 0 of a target's
 * weight) of one such set. The layout is frozen: fields are never appended. */
typedef struct qh_channel_group {
    int32_t family;         /* groups over the same set of layers share a family (the unit of per-layer ranking) */
    int32_t n_members;
    const int32_t *target;  /* n_members indices into the targets array */
    const int64_t *channel; /* n_members filters: dim-0 indices into those targets' weights */
    uint8_t keep;           /* in: 1 = alive, 0 = already pruned; out: 0 = prune (never 0 -> 1) */
} qh_channel_group;

/* pruner: the criterion. The host owns the schedule and applies the masks to the weights. */
typedef struct qh_prune_target {
    const char *name;        /* state_dict name, e.g. "fc1.weight" */
    const qh_tensor *weight; /* F32 */
    uint8_t *mask;           /* numel bytes, 1 = keep; in: current mask, out: new mask (only ever shrinks) */
} qh_prune_target;

typedef struct qh_pruner_ops {
    uint32_t struct_size;
    /* optional (NULL: state = the config block) */
    qh_status (*create)(const void *cfg, void **state, qh_error *err);
    /* optional */
    void (*destroy)(void *state);
    /* required: update the masks of targets[0..n) so that the pruned fraction reaches `sparsity`
     * (a fraction in [0, 1)) in the way the criterion defines (per layer or over all targets). */
    qh_status (*prune)(void *state, qh_prune_target *targets, int32_t n, double sparsity, qh_error *err);
    /* --- 1.2 --- optional (NULL: an unstructured criterion, prune() only): structured pruning over the
     * coupled groups[0..n_groups) of targets[0..n_targets) (weights read-only here). Clears `keep` of
     * the groups to remove so that the pruned fraction of groups reaches `sparsity`; the host then
     * masks every filter of those groups together with the biases and batch norm channels that
     * belong to them (docs/pipeline-reference.md, "Structured pruning"). */
    qh_status (*prune_groups)(void *state, const qh_prune_target *targets, int32_t n_targets,
                              qh_channel_group *groups, int32_t n_groups, double sparsity, qh_error *err);
} qh_pruner_ops;

/* 1.2: what a data-aware quantizer asks the host to capture for one layer (bits of calib_needs). */
enum {
    QH_CALIB_X = 1u << 0,  /* the layer's inputs in the original (float) network */
    QH_CALIB_XQ = 1u << 1, /* the layer's inputs in the network quantized so far */
    QH_CALIB_H = 1u << 2   /* H = XQ^T XQ (double, cols x cols), summed over the m samples */
};

/* 1.2: one target layer's calibration data, captured by the host in network order. For a conv the
 * samples are unfolded input patches laid out as the weight's rows are (channel, kh, kw). */
typedef struct qh_calib_layer {
    uint32_t struct_size;
    const char *name;    /* the weight's state_dict name, e.g. "layer1.0.conv1.weight" */
    const qh_tensor *w;  /* F32 weight as the model holds it: [rows, cols] or [rows, C, kh, kw] */
    int64_t rows, cols;  /* neurons N and inputs per neuron d (C*kh*kw for a conv) */
    int64_t m;           /* calibration samples: images x patches kept */
    const float *x;      /* m x cols, row-major; NULL unless QH_CALIB_X was asked for */
    const float *xq;     /* m x cols, row-major; NULL unless QH_CALIB_XQ was asked for */
    const double *h;     /* cols x cols; NULL unless QH_CALIB_H was asked for */
    int32_t is_conv;     /* 1: conv (samples are patches), 0: linear */
    int32_t index;       /* position among the stage's target layers, 0-based, network order */
    /* rows x cols bytes, 1 = kept, 0 = pruned; NULL = dense. A pruned weight must come back exactly 0
     * (the host checks): data-aware methods spread a layer's error over the kept weights only. */
    const uint8_t *mask;
} qh_calib_layer;

/* quantizer (tensor-wise, data-free contract; 1.2 adds an optional data-aware one). */
typedef struct qh_quantizer_ops {
    uint32_t struct_size;
    /* optional (NULL: state = the config block) */
    qh_status (*create)(const void *cfg, void **state, qh_error *err);
    /* optional */
    void (*destroy)(void *state);
    /* required: quantize w (F32) into q (the plugin allocates q's tensors with qh_tensor_new; the
     * host owns them afterwards) and write the dequantized values into deq (F32, w's shape). */
    qh_status (*quantize)(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                          qh_error *err);
    /* --- 1.1 --- optional (NULL: every F32 tensor of rank >= 2): whether this tensor can be
     * quantized; the host skips and logs the others. */
    int (*accepts)(void *state, const char *name, const qh_tensor *w);
    /* --- 1.2 --- optional (NULL or 0: data-free): the QH_CALIB_* data this tensor needs. When
     * nonzero the host captures it and calls quantize_calib instead of quantize. */
    uint32_t (*calib_needs)(void *state, const char *name, const qh_tensor *w);
    /* optional, required when calib_needs can return nonzero: as quantize, from calibration data. */
    qh_status (*quantize_calib)(void *state, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq,
                                qh_error *err);
} qh_quantizer_ops;

/* Sizes of the 1.0 layouts: the smallest struct_size a host accepts. */
#define QH_MODEL_OPS_SIZE_1_0 (offsetof(qh_model_ops, build) + sizeof(void (*)(void)))
#define QH_DATASET_OPS_SIZE_1_0 (offsetof(qh_dataset_ops, augment) + sizeof(void (*)(void)))
#define QH_PRUNER_OPS_SIZE_1_0 (offsetof(qh_pruner_ops, prune) + sizeof(void (*)(void)))
#define QH_QUANTIZER_OPS_SIZE_1_0 (offsetof(qh_quantizer_ops, quantize) + sizeof(void (*)(void)))

/* ---------------------------------------------------------------- descriptors */

typedef struct qh_plugin_desc {
    uint32_t struct_size;
    qh_kind kind;
    const char *name;        /* [a-z0-9_]+, unique within its kind; the INI's `plugin = name` */
    const char *summary;     /* one line */
    const char *help;        /* longer text or NULL */
    const qh_param *params;  /* terminated by an entry with name == NULL; NULL = no parameters */
    size_t config_size;      /* bytes of the config struct the host allocates and fills */
    union {
        const qh_model_ops *model;
        const qh_dataset_ops *dataset;
        const qh_pruner_ops *pruner;
        const qh_quantizer_ops *quantizer;
    } ops;
} qh_plugin_desc;

#define QH_PLUGIN_DESC_SIZE_1_0 sizeof(qh_plugin_desc)

typedef struct qh_library {
    /* frozen prefix: never moves */
    uint32_t magic;     /* QH_PLUGIN_MAGIC */
    uint16_t abi_major; /* QH_ABI_MAJOR the plugin was built against */
    uint16_t abi_minor; /* QH_ABI_MINOR the plugin was built against */
    uint32_t struct_size;
    /* 1.0 */
    const char *name;    /* library name, e.g. "qhost-builtin-linear" */
    const char *version; /* plugin version, "1.0.0" */
    const char *license;
    uint32_t n_plugins;
    const qh_plugin_desc *const *plugins;
} qh_library;

#define QH_LIBRARY_SIZE_1_0 sizeof(qh_library)

typedef const qh_library *(*qh_plugin_entry_fn)(void);

/* Defines the entry point returning `lib` (a static qh_library). */
#define QH_PLUGIN_LIBRARY(lib)                                                                     \
    QH_EXPORT const qh_library *qh_plugin_entry(void);                                             \
    QH_EXPORT const qh_library *qh_plugin_entry(void) { return &(lib); }

/* Fills the frozen prefix for the ABI this file declares. */
#define QH_LIBRARY_HEADER                                                                          \
    .magic = QH_PLUGIN_MAGIC, .abi_major = QH_ABI_MAJOR, .abi_minor = QH_ABI_MINOR,               \
    .struct_size = sizeof(qh_library)

/* Parameter table helpers: S is the config struct, F its field. */
#define QH_P_INT(NAME, S, F, DEF, MIN, MAX, UNIT, HELP)                                            \
    { NAME, QH_PARAM_INT, offsetof(S, F), { .i = (DEF) }, (MIN), (MAX), NULL,                      \
      QH_PF_HAS_MIN | QH_PF_HAS_MAX, UNIT, HELP }
#define QH_P_DOUBLE(NAME, S, F, DEF, MIN, MAX, UNIT, HELP)                                         \
    { NAME, QH_PARAM_DOUBLE, offsetof(S, F), { .d = (DEF) }, (MIN), (MAX), NULL,                   \
      QH_PF_HAS_MIN | QH_PF_HAS_MAX, UNIT, HELP }
#define QH_P_BOOL(NAME, S, F, DEF, HELP)                                                           \
    { NAME, QH_PARAM_BOOL, offsetof(S, F), { .i = (DEF) }, 0, 1, NULL, 0, NULL, HELP }
#define QH_P_ENUM(NAME, S, F, DEF, CHOICES, HELP)                                                  \
    { NAME, QH_PARAM_ENUM, offsetof(S, F), { .i = (DEF) }, 0, 0, CHOICES, 0, NULL, HELP }
#define QH_P_STRING(NAME, S, F, DEF, HELP)                                                         \
    { NAME, QH_PARAM_STRING, offsetof(S, F), { .s = (DEF) }, 0, 0, NULL, 0, NULL, HELP }
#define QH_P_PATH(NAME, S, F, DEF, HELP)                                                           \
    { NAME, QH_PARAM_PATH, offsetof(S, F), { .s = (DEF) }, 0, 0, NULL, 0, NULL, HELP }
#define QH_P_END { NULL, (qh_param_type)0, 0, { .i = 0 }, 0, 0, NULL, 0, NULL, NULL }

#ifdef __cplusplus
}
#endif
#endif /* QH_PLUGIN_H */
