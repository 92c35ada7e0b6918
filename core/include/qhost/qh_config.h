/* qh_config.h - parameters-as-data applied to config blocks, the line-aware INI reader, and the
 * validated pipeline description the runner executes.
 *
 * Validation is strict and complete: every problem in a file is reported as
 *   <file>:<line>: error: <message>
 * before any work starts (unknown sections and keys, duplicates, bad types, out-of-range values,
 * bad choices listing the valid ones, missing required keys, unknown plugins listing those of the
 * kind). iniparser loses line numbers and silently overwrites duplicates, so a pre-scan of the file
 * records both.
 */
#ifndef QH_CONFIG_H
#define QH_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qh_plugin.h"
#include "qh_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- diagnostics */

typedef struct qh_diag {
    FILE *out;      /* where messages go (stderr), or NULL to only count */
    int n_errors;
    int n_warnings;
} qh_diag;

/* "<file>:<line>: error: <msg>" (line <= 0: "<file>: error: <msg>"). */
void qh_diag_error(qh_diag *d, const char *file, int line, const char *fmt, ...) QH_PRINTF(4, 5);
void qh_diag_warn(qh_diag *d, const char *file, int line, const char *fmt, ...) QH_PRINTF(4, 5);

/* ---------------------------------------------------------------- config blocks from a schema */

/* Allocates size bytes (at least 1), zeroed, and applies every default of the table. */
void *qh_config_new(const qh_param *params, size_t size);
/* Parses value for key and stores it; on failure err gets e.g.
 * "bits: 9 is above the maximum 8" or "granularity: 'rows' is not one of: tensor, channel". */
qh_status qh_config_set(const qh_param *params, void *cfg, const char *key, const char *value, qh_error *err);
const qh_param *qh_param_find(const qh_param *params, const char *name);
/* Frees the host-owned strings inside cfg, then cfg. */
void qh_config_free(const qh_param *params, void *cfg);
/* Value of a parameter in cfg formatted for people ("8", "0.5", "channel", "true", "(unset)"). */
void qh_config_format(const qh_param *p, const void *cfg, char *buf, size_t size);
/* Default formatted the same way. */
void qh_param_format_default(const qh_param *p, char *buf, size_t size);
const char *qh_param_type_name(qh_param_type t); /* "int", "double", "bool", "string", "enum", "path" */
/* Suggests the closest name (edit distance <= 2) from the table, or NULL. */
const char *qh_param_suggest(const qh_param *params, const char *key);

/* ---------------------------------------------------------------- INI with line numbers */

typedef struct qh_ini_entry {
    char *key;   /* lowercased */
    char *value; /* as iniparser returns it: trimmed, quotes removed, comment stripped */
    int line;
} qh_ini_entry;

typedef struct qh_ini_section {
    char *name; /* lowercased */
    int line;
    int n_entries;
    qh_ini_entry *entries;
} qh_ini_section;

typedef struct qh_ini {
    char *path;
    int n_sections;
    qh_ini_section *sections; /* in file order */
} qh_ini;

/* Reads the file; syntax errors, duplicate sections and duplicate keys are reported to d (all of
 * them). Returns NULL only when the file cannot be read at all (reported too). */
qh_ini *qh_ini_load(const char *path, qh_diag *d);
void qh_ini_free(qh_ini *ini);
const qh_ini_section *qh_ini_find_section(const qh_ini *ini, const char *name);
const qh_ini_entry *qh_ini_find(const qh_ini_section *s, const char *key);

/* ---------------------------------------------------------------- the pipeline */

typedef enum qh_stage_type {
    QH_STAGE_TRAIN = 0,
    QH_STAGE_EVALUATE,
    QH_STAGE_PRUNE,
    QH_STAGE_QUANTIZE,
    QH_STAGE_EXPORT,
    QH_STAGE_TYPE_COUNT
} qh_stage_type;

const char *qh_stage_type_name(qh_stage_type t);

typedef enum qh_lr_schedule { QH_LR_CONSTANT = 0, QH_LR_STEP, QH_LR_COSINE, QH_LR_PLATEAU } qh_lr_schedule;
typedef enum qh_optimizer { QH_OPT_SGD = 0, QH_OPT_ADAM, QH_OPT_ADAMW } qh_optimizer;
/* The test-split metric a plateau schedule, early stopping or keep_best watches. */
typedef enum qh_monitor { QH_MONITOR_TEST_LOSS = 0, QH_MONITOR_TEST_TOP1 } qh_monitor;

/* [pipeline] */
typedef struct qh_global_config {
    const char *name;   /* default: the file's stem */
    int64_t seed;
    int64_t threads;    /* 0 = all cores */
    const char *output; /* output directory; default "runs/<name>" */
    const char *stages; /* comma-separated section names, in order */
} qh_global_config;

/* Reserved keys of [dataset] besides `plugin`. */
typedef struct qh_dataset_limits {
    int64_t train_limit; /* 0 = all samples */
    int64_t test_limit;
} qh_dataset_limits;

/* Reserved keys of [model] besides `plugin`. */
typedef struct qh_model_host_config {
    const char *weights; /* safetensors file to load after building (PyTorch state_dict names); NULL = random init */
    const char *weights_exclude; /* globs of parameters not loaded from weights (a replaced head) */
} qh_model_host_config;

typedef struct qh_train_config {
    int64_t epochs;
    int64_t batch_size;
    double lr;
    double momentum;
    int nesterov;
    double weight_decay;
    int schedule;       /* qh_lr_schedule */
    int64_t step_size;  /* epochs between decays (step) */
    double gamma;       /* decay factor (step) */
    double min_lr;      /* floor (cosine) */
    int eval_each_epoch;
    /* appended for the full training engine (issue 3) */
    int optimizer;              /* qh_optimizer */
    double beta1, beta2, eps;   /* adam, adamw */
    int64_t warmup_epochs;      /* linear warm-up (per iteration) before the schedule */
    int plateau_metric;         /* qh_monitor (schedule = plateau) */
    int64_t plateau_patience;
    double plateau_factor;
    double plateau_threshold;   /* relative, as PyTorch's threshold_mode 'rel' */
    double label_smoothing;
    int64_t early_stop_patience; /* epochs without improvement; 0 = off */
    int early_stop_metric;      /* qh_monitor (early stopping, keep_best) */
    int keep_best;              /* restore the best epoch's weights at the end */
    const char *freeze;         /* globs of parameters kept fixed during this stage */
    int checkpoint;             /* write checkpoints/<stage>.ckpt.safetensors after every epoch */
} qh_train_config;

typedef struct qh_evaluate_config {
    int64_t batch_size;
    int split; /* qh_split */
} qh_evaluate_config;

/* How a prune stage reaches its sparsity (docs/pipeline-reference.md, "Pruning schedules"). */
typedef enum qh_prune_schedule {
    QH_PRUNE_ONESHOT = 0, /* one call of the pruner, at the stage */
    QH_PRUNE_GEOMETRIC,   /* events during a train stage: remove `rate` of the remaining weights each */
    QH_PRUNE_ITERATIVE,   /* rounds during a train stage: prune, fine-tune, stop at a top-1 tolerance */
    QH_PRUNE_AGP          /* events during a train stage on Zhu & Gupta's cubic curve */
} qh_prune_schedule;

typedef struct qh_prune_config {
    double sparsity;     /* target fraction of zeros over the targeted weights, [0, 1) */
    const char *targets; /* comma-separated glob patterns over parameter names */
    const char *exclude;
    /* appended for the pruning schedules (issue 4) */
    int schedule;            /* qh_prune_schedule */
    const char *during;      /* the train stage whose epochs carry the events (all but oneshot) */
    double rate;             /* geometric, iterative: fraction of the remaining weights removed per event */
    int64_t every_epochs;    /* epochs between two events */
    int64_t start_epoch;     /* epochs of `during` completed before the first event */
    double initial_sparsity; /* agp: s_i */
    int64_t steps;           /* agp: n; the last event comes after start_epoch + steps * every_epochs epochs */
    double tolerance;        /* iterative: top-1 points the model may lose against the start of `during` */
    /* appended for structured pruning (issue 4) */
    int physical;            /* oneshot, structured pruner: rebuild the model without the pruned channels */
} qh_prune_config;

/* Where a conv layer's calibration patches start (docs/pipeline-reference.md, "Calibration"). */
typedef enum qh_patch_stride {
    QH_PATCH_KERNEL = 0, /* non-overlapping: stride = kernel size, as the GPFQ reference unfolds */
    QH_PATCH_STRIDE      /* the layer's own stride: exactly the patches the convolution sees */
} qh_patch_stride;

typedef struct qh_quantize_config {
    const char *targets;
    const char *exclude;
    /* appended for data-aware quantizers (issue 6): what the calibration capture runs on */
    int64_t calibration_images;  /* images drawn (seeded, without replacement) from calibration_split */
    int64_t calibration_batch;   /* images per forward chunk */
    int calibration_split;       /* qh_split */
    int64_t calibration_seed;    /* image subset and conv patch sampling */
    int patch_stride;            /* qh_patch_stride */
    double retain_rate;          /* conv: int(retain_rate * L + 1) patches of the L per image (all at 1) */
    int fold_batchnorm;          /* fold each targeted conv's batch norm into it before quantizing */
} qh_quantize_config;

typedef struct qh_export_config {
    const char *file;   /* relative to the output directory */
    int masks;          /* also write <param>_mask tensors for pruned parameters */
} qh_export_config;

/* The host's own tables (used for validation, --list-plugins style docs and the INI reference). */
const qh_param *qh_global_params(void);
const qh_param *qh_dataset_host_params(void);
const qh_param *qh_model_host_params(void);
const qh_param *qh_stage_params(qh_stage_type t); /* keys besides `type` and `plugin` */

typedef struct qh_stage {
    char *name;             /* section name */
    int line;               /* line of the section header */
    qh_stage_type type;
    void *host_cfg;         /* one of the *_config structs above, by type */
    const qh_plugin *plugin; /* PRUNE, QUANTIZE: the plugin; else NULL */
    void *plugin_cfg;       /* filled from the plugin's table */
    /* appended for sweeps (issue 6): the keys given a list or a range, in file order; host_cfg and
     * plugin_cfg hold the first point (docs/pipeline-reference.md, "Sweeps") */
    int32_t n_axes;
    struct qh_sweep_axis *axes;
} qh_stage;

typedef struct qh_pipeline_config {
    char *path;
    char *text;             /* the whole file as read, for the manifest */
    qh_global_config *global;
    const qh_plugin *model;
    void *model_cfg;
    const qh_plugin *dataset;
    void *dataset_cfg;
    qh_dataset_limits *dataset_limits;
    int n_stages;
    qh_stage *stages;
    qh_model_host_config *model_host; /* reserved [model] keys (weights) */
} qh_pipeline_config;

/* One --set override: "section.key=value" (applied as if it were in the file, after it). */
typedef struct qh_override {
    const char *section;
    const char *key;
    const char *value;
} qh_override;

/* Reads and validates path against the registry. Every error goes to d; returns NULL when there
 * was any (d->n_errors > 0) or the file could not be read. */
qh_pipeline_config *qh_pipeline_config_load(const char *path, const qh_registry *reg, const qh_override *ov,
                                            int n_ov, qh_diag *d);
void qh_pipeline_config_free(qh_pipeline_config *pc);

/* ---------------------------------------------------------------- sweeps (appended, issue 6) */

/* One key of a sweep: `bits = 1..8`, `scalar = 1.0:2.0:0.05` or `granularity = tensor, channel`. */
typedef struct qh_sweep_axis {
    char *key;        /* the stage key (lowercased) */
    int line;         /* where the file sets it; 0 for a --set override */
    bool host;        /* a key of the stage type's own table (else of its plugin) */
    int32_t n_values;
    char **values;    /* each value as text, parsed by qh_config_set exactly like a single value */
} qh_sweep_axis;

#ifdef __cplusplus
}
#endif
#endif /* QH_CONFIG_H */
