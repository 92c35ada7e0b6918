/* qh_pipeline_config.c - the host's own parameter tables and the validation of a whole pipeline
 * file into a qh_pipeline_config.
 *
 * Validation never stops at the first problem: every section and key is checked and each problem
 * is reported as "<file>:<line>: error: ..." (or "--set <section>.<key>: error: ..." for a command
 * line override), and only then does loading fail. The file is read with qh_ini_load; overrides are
 * merged into a private view of its sections, so they are checked by exactly the same code. */
#include "qhost/qh_config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config/qh_sweep_values.h"
#include "pipeline/qh_prune_schedule.h"
#include "qh_ini_impl.h"

/* ---------------------------------------------------------------- stage types */

static const char *const stage_type_names[] = {"train", "evaluate", "prune", "quantize", "export", NULL};
static_assert(sizeof stage_type_names / sizeof stage_type_names[0] == QH_STAGE_TYPE_COUNT + 1,
              "every stage type needs a name");

const char *qh_stage_type_name(qh_stage_type t)
{
    return (unsigned)t < QH_STAGE_TYPE_COUNT ? stage_type_names[t] : "?";
}

/* ---------------------------------------------------------------- host tables */

static const qh_param global_params[] = {
    QH_P_STRING("name", qh_global_config, name, NULL, "run name; default: the file name without its extension"),
    {"seed", QH_PARAM_INT, offsetof(qh_global_config, seed), {.i = 0}, 0, 0, NULL, QH_PF_HAS_MIN, NULL,
     "seed of every random stream (initialization, shuffling, augmentation)"},
    QH_P_INT("threads", qh_global_config, threads, 0, 0, 4096, "threads", "worker threads; 0 = all cores"),
    QH_P_PATH("output", qh_global_config, output, NULL, "output directory; default: runs/{name}"),
    {"stages", QH_PARAM_STRING, offsetof(qh_global_config, stages), {.s = NULL}, 0, 0, NULL, QH_PF_REQUIRED,
     NULL, "comma-separated stage sections, run in this order"},
    QH_P_END,
};

static const qh_param dataset_host_params[] = {
    {"train_limit", QH_PARAM_INT, offsetof(qh_dataset_limits, train_limit), {.i = 0}, 0, 0, NULL,
     QH_PF_HAS_MIN, "samples", "use only the first N training samples; 0 = all"},
    {"test_limit", QH_PARAM_INT, offsetof(qh_dataset_limits, test_limit), {.i = 0}, 0, 0, NULL, QH_PF_HAS_MIN,
     "samples", "use only the first N test samples; 0 = all"},
    QH_P_END,
};

static const qh_param model_host_params[] = {
    QH_P_PATH("weights", qh_model_host_config, weights, NULL,
              "safetensors file (PyTorch state_dict names) loaded after building; default: random initialization"),
    QH_P_STRING("weights_exclude", qh_model_host_config, weights_exclude, "",
                "comma-separated glob patterns of parameters not taken from weights (they keep their random "
                "initialization), e.g. a classifier head with another class count"),
    QH_P_END,
};

static const char *const schedule_choices[] = {"constant", "step", "cosine", "plateau", NULL};
static_assert(QH_LR_CONSTANT == 0 && QH_LR_STEP == 1 && QH_LR_COSINE == 2 && QH_LR_PLATEAU == 3,
              "schedule_choices follow qh_lr_schedule");
static const char *const optimizer_choices[] = {"sgd", "adam", "adamw", NULL};
static_assert(QH_OPT_SGD == 0 && QH_OPT_ADAM == 1 && QH_OPT_ADAMW == 2, "optimizer_choices follow qh_optimizer");
static const char *const monitor_choices[] = {"test_loss", "test_top1", NULL};
static_assert(QH_MONITOR_TEST_LOSS == 0 && QH_MONITOR_TEST_TOP1 == 1, "monitor_choices follow qh_monitor");

static const qh_param train_params[] = {
    QH_P_INT("epochs", qh_train_config, epochs, 1, 1, 10000, "epochs", "passes over the training set"),
    QH_P_INT("batch_size", qh_train_config, batch_size, 128, 1, 65536, "samples", "samples per SGD step"),
    QH_P_DOUBLE("lr", qh_train_config, lr, 0.05, 0, 10, NULL, "initial learning rate (above 0)"),
    QH_P_DOUBLE("momentum", qh_train_config, momentum, 0.9, 0, 1, NULL, "SGD momentum (below 1)"),
    QH_P_BOOL("nesterov", qh_train_config, nesterov, 0, "use Nesterov momentum"),
    QH_P_DOUBLE("weight_decay", qh_train_config, weight_decay, 0, 0, 1, NULL, "L2 penalty added to the gradient"),
    QH_P_ENUM("schedule", qh_train_config, schedule, QH_LR_COSINE, schedule_choices,
              "learning-rate schedule over the epochs of this stage"),
    QH_P_INT("step_size", qh_train_config, step_size, 10, 1, 10000, "epochs",
             "epochs between two decays (schedule = step)"),
    QH_P_DOUBLE("gamma", qh_train_config, gamma, 0.1, 0, 1, "factor",
                "learning-rate factor at each decay (schedule = step; above 0)"),
    QH_P_DOUBLE("min_lr", qh_train_config, min_lr, 0, 0, 10, NULL, "learning rate at the end (schedule = cosine), lowest learning rate (schedule = plateau)"),
    QH_P_BOOL("eval_each_epoch", qh_train_config, eval_each_epoch, 0,
              "evaluate on the test split after each epoch, in batches of batch_size (implied by plateau, "
              "early stopping and keep_best)"),
    QH_P_ENUM("optimizer", qh_train_config, optimizer, QH_OPT_SGD, optimizer_choices,
              "sgd (momentum, nesterov), adam (weight_decay as L2 in the gradient) or adamw (decoupled decay)"),
    QH_P_DOUBLE("beta1", qh_train_config, beta1, 0.9, 0, 1, NULL, "Adam: decay of the gradient average (below 1)"),
    QH_P_DOUBLE("beta2", qh_train_config, beta2, 0.999, 0, 1, NULL,
                "Adam: decay of the squared-gradient average (below 1)"),
    QH_P_DOUBLE("eps", qh_train_config, eps, 1e-8, 0, 1, NULL, "Adam: added to the denominator (above 0)"),
    QH_P_INT("warmup_epochs", qh_train_config, warmup_epochs, 0, 0, 10000, "epochs",
             "linear warm-up per iteration from lr/k to lr over the first k iterations of these epochs; the "
             "schedule then runs over the remaining epochs (below epochs)"),
    QH_P_ENUM("plateau_metric", qh_train_config, plateau_metric, QH_MONITOR_TEST_LOSS, monitor_choices,
              "metric watched by schedule = plateau: lower test_loss or higher test_top1 is better"),
    QH_P_INT("plateau_patience", qh_train_config, plateau_patience, 10, 0, 10000, "epochs",
             "epochs without improvement before the learning rate drops (schedule = plateau)"),
    QH_P_DOUBLE("plateau_factor", qh_train_config, plateau_factor, 0.1, 0, 1, "factor",
                "learning-rate factor at each drop, floor min_lr (schedule = plateau; above 0, below 1)"),
    QH_P_DOUBLE("plateau_threshold", qh_train_config, plateau_threshold, 1e-4, 0, 1, "fraction",
                "relative change that counts as an improvement (schedule = plateau)"),
    QH_P_DOUBLE("label_smoothing", qh_train_config, label_smoothing, 0, 0, 1, NULL,
                "training loss target (1 - s) one-hot + s / classes (below 1); evaluation stays plain cross-entropy"),
    QH_P_INT("early_stop_patience", qh_train_config, early_stop_patience, 0, 0, 10000, "epochs",
             "stop after this many epochs without improvement of early_stop_metric; 0 = never"),
    QH_P_ENUM("early_stop_metric", qh_train_config, early_stop_metric, QH_MONITOR_TEST_LOSS, monitor_choices,
              "metric watched by early stopping and keep_best (any decrease of test_loss or increase of test_top1)"),
    QH_P_BOOL("keep_best", qh_train_config, keep_best, 0,
              "at the end, restore the weights of the epoch with the best early_stop_metric"),
    QH_P_STRING("freeze", qh_train_config, freeze, "",
                "comma-separated glob patterns of parameters left unchanged by this stage"),
    QH_P_BOOL("checkpoint", qh_train_config, checkpoint, 1,
              "write checkpoints/{stage}.ckpt.safetensors after every epoch, for qhost --resume"),
    QH_P_END,
};

static const char *const split_choices[] = {"train", "test", NULL};
static_assert(QH_SPLIT_TRAIN == 0 && QH_SPLIT_TEST == 1, "split_choices follow qh_split");

static const qh_param evaluate_params[] = {
    QH_P_INT("batch_size", qh_evaluate_config, batch_size, 256, 1, 65536, "samples", "samples per forward pass"),
    QH_P_ENUM("split", qh_evaluate_config, split, QH_SPLIT_TEST, split_choices, "which split to evaluate"),
    QH_P_END,
};

static const char *const prune_schedule_choices[] = {"oneshot", "geometric", "iterative", "agp", NULL};
static_assert(QH_PRUNE_ONESHOT == 0 && QH_PRUNE_GEOMETRIC == 1 && QH_PRUNE_ITERATIVE == 2 && QH_PRUNE_AGP == 3,
              "prune_schedule_choices follow qh_prune_schedule");

static const qh_param prune_params[] = {
    {"sparsity", QH_PARAM_DOUBLE, offsetof(qh_prune_config, sparsity), {.d = 0}, 0, 1, NULL,
     QH_PF_REQUIRED | QH_PF_HAS_MIN | QH_PF_HAS_MAX, "fraction",
     "target fraction of zeros over the targeted weights (below 1)"},
    QH_P_STRING("targets", qh_prune_config, targets, "*.weight",
                "comma-separated glob patterns of the parameters to prune"),
    QH_P_STRING("exclude", qh_prune_config, exclude, "", "comma-separated glob patterns of parameters to leave alone"),
    QH_P_ENUM("schedule", qh_prune_config, schedule, QH_PRUNE_ONESHOT, prune_schedule_choices,
              "oneshot: prune here; geometric, iterative, agp: prune during the epochs of the train stage `during`"),
    QH_P_STRING("during", qh_prune_config, during, "",
                "the train stage, listed after this one, whose epochs carry the pruning events (all but oneshot)"),
    QH_P_DOUBLE("rate", qh_prune_config, rate, 0.1, 0, 1, "fraction",
                "geometric, iterative: fraction of the remaining targeted weights removed per event (above 0, below 1)"),
    QH_P_INT("every_epochs", qh_prune_config, every_epochs, 1, 1, 10000, "epochs",
             "epochs of `during` between two events (geometric, iterative: per round; agp: delta t)"),
    QH_P_INT("start_epoch", qh_prune_config, start_epoch, 0, 0, 10000, "epochs",
             "epochs of `during` run before the first event (agp: t0)"),
    QH_P_DOUBLE("initial_sparsity", qh_prune_config, initial_sparsity, 0, 0, 1, "fraction",
                "agp: s_i, the sparsity of the first event (below sparsity)"),
    QH_P_INT("steps", qh_prune_config, steps, 10, 1, 10000, NULL,
             "agp: n, events after the first; the last reaches sparsity after start_epoch + steps * every_epochs epochs"),
    QH_P_DOUBLE("tolerance", qh_prune_config, tolerance, 1, 0, 100, "points",
                "iterative: stop, and keep the previous round's model, when test top-1 falls more than this below "
                "the model `during` started from"),
    QH_P_BOOL("physical", qh_prune_config, physical, 0,
              "oneshot with a structured pruner: rebuild the model without the pruned channels (smaller and faster)"),
    QH_P_END,
};

static const char *const patch_stride_choices[] = {"kernel", "stride", NULL};
static_assert(QH_PATCH_KERNEL == 0 && QH_PATCH_STRIDE == 1, "patch_stride_choices follow qh_patch_stride");

/* The calibration keys matter only to data-aware quantizers (gpfq, gptq); docs/pipeline-reference.md,
 * "Calibration". */
static const qh_param quantize_params[] = {
    QH_P_STRING("targets", qh_quantize_config, targets, "*.weight",
                "comma-separated glob patterns of the parameters to quantize"),
    QH_P_STRING("exclude", qh_quantize_config, exclude, "",
                "comma-separated glob patterns of parameters to leave alone"),
    QH_P_INT("calibration_images", qh_quantize_config, calibration_images, 1024, 1, 1 << 24, "images",
             "data-aware quantizers: images drawn (seeded, without replacement) from calibration_split"),
    QH_P_INT("calibration_batch", qh_quantize_config, calibration_batch, 256, 1, 65536, "images",
             "data-aware quantizers: images per forward chunk of the capture"),
    QH_P_ENUM("calibration_split", qh_quantize_config, calibration_split, QH_SPLIT_TRAIN, split_choices,
              "data-aware quantizers: the split the calibration images come from (train_limit / test_limit apply)"),
    {"calibration_seed", QH_PARAM_INT, offsetof(qh_quantize_config, calibration_seed), {.i = 0}, 0, 0, NULL,
     QH_PF_HAS_MIN, "seed", "data-aware quantizers: seed of the image subset and of the conv patch sampling"},
    QH_P_ENUM("patch_stride", qh_quantize_config, patch_stride, QH_PATCH_KERNEL, patch_stride_choices,
              "data-aware quantizers, conv layers: unfold with stride = kernel size (non-overlapping, the GPFQ "
              "reference) or with the layer's own stride"),
    QH_P_DOUBLE("retain_rate", qh_quantize_config, retain_rate, 0.25, 0.0001, 1, "fraction",
                "data-aware quantizers, conv layers: int(retain_rate * L + 1) of an image's L patches drawn with "
                "replacement; 1 keeps all L"),
    QH_P_BOOL("fold_batchnorm", qh_quantize_config, fold_batchnorm, 0,
              "fold each targeted conv's batch norm (its only consumer) into the conv weight before quantizing; "
              "the batch norm keeps only the shift"),
    QH_P_END,
};

static const qh_param export_params[] = {
    QH_P_PATH("file", qh_export_config, file, "model.safetensors", "output file, relative to the output directory"),
    QH_P_BOOL("masks", qh_export_config, masks, 0,
              "also write a {param}_mask U8 tensor for each pruned parameter (PyTorch then needs strict=False)"),
    QH_P_END,
};

static const struct {
    const qh_param *params;
    size_t size;
    qh_kind plugin_kind; /* 0: the stage takes no plugin */
} stage_tables[QH_STAGE_TYPE_COUNT] = {
    [QH_STAGE_TRAIN] = {train_params, sizeof(qh_train_config), 0},
    [QH_STAGE_EVALUATE] = {evaluate_params, sizeof(qh_evaluate_config), 0},
    [QH_STAGE_PRUNE] = {prune_params, sizeof(qh_prune_config), QH_KIND_PRUNER},
    [QH_STAGE_QUANTIZE] = {quantize_params, sizeof(qh_quantize_config), QH_KIND_QUANTIZER},
    [QH_STAGE_EXPORT] = {export_params, sizeof(qh_export_config), 0},
};

const qh_param *qh_global_params(void) { return global_params; }
const qh_param *qh_dataset_host_params(void) { return dataset_host_params; }
const qh_param *qh_model_host_params(void) { return model_host_params; }

const qh_param *qh_stage_params(qh_stage_type t)
{
    return (unsigned)t < QH_STAGE_TYPE_COUNT ? stage_tables[t].params : NULL;
}

/* qh_param bounds are inclusive; these host keys exclude one end (lr = 0 would never learn,
 * sparsity = 1 would remove every weight). */
static const struct {
    qh_stage_type type;
    const char *key;
    bool is_max;
} open_bounds[] = {
    {QH_STAGE_TRAIN, "lr", false},
    {QH_STAGE_TRAIN, "momentum", true},
    {QH_STAGE_TRAIN, "gamma", false},
    {QH_STAGE_TRAIN, "beta1", true},
    {QH_STAGE_TRAIN, "beta2", true},
    {QH_STAGE_TRAIN, "eps", false},
    {QH_STAGE_TRAIN, "plateau_factor", false},
    {QH_STAGE_TRAIN, "plateau_factor", true},
    {QH_STAGE_TRAIN, "label_smoothing", true},
    {QH_STAGE_PRUNE, "sparsity", true},
};

/* ---------------------------------------------------------------- the merged view of the file */

typedef struct src_entry {
    const char *key;
    const char *value;
    int line;               /* 0 for an override */
    const qh_override *ov;  /* non-NULL when the value comes from --set */
} src_entry;

typedef struct src_section {
    const char *name;
    int line;
    int n;
    src_entry *e;
} src_section;

typedef struct load_ctx {
    const char *path;
    const qh_registry *reg;
    qh_diag *d;
    int n_secs;
    src_section *secs;
    const qh_override *ov; /* the --set overrides */
    char *ov_keys;   /* lowercased copies of the override names, one block */
    qh_pipeline_config *pc;
    bool stages_given;
    int n_list;      /* stage names from [pipeline] stages */
    char **list;
    struct diag_item *items; /* problems, sorted into file order before they are printed */
    int n_items, cap_items;
} load_ctx;

/* ---------------------------------------------------------------- problems, in file order */

/* Problems are found section by section (and the INI scan finds its own first), but a reader wants
 * them in the order of the file: they are collected and printed sorted by line, then the ones
 * about the file as a whole, then those of --set overrides. */
typedef struct diag_item {
    int group; /* 0: a line of the file, 1: the whole file, 2: an override */
    int line;
    int seq;
    char *where;
    char *msg;
} diag_item;

static void collect(load_ctx *c, const char *where, int group, int line, const char *msg)
{
    if (c->n_items == c->cap_items) {
        int cap = c->cap_items ? 2 * c->cap_items : 16;
        diag_item *grown = realloc(c->items, (size_t)cap * sizeof *grown);
        if (!grown) {
            qh_diag_error(c->d, where, line, "%s", msg); /* no room to sort: print it now */
            return;
        }
        c->items = grown;
        c->cap_items = cap;
    }
    diag_item *it = &c->items[c->n_items];
    *it = (diag_item){group, line, c->n_items, strdup(where), strdup(msg)};
    if (!it->where || !it->msg) {
        free(it->where);
        free(it->msg);
        qh_diag_error(c->d, where, line, "%s", msg);
        return;
    }
    c->n_items++;
}

static void collect_file(load_ctx *c, int line, const char *fmt, ...) QH_PRINTF(3, 4);

static void collect_file(load_ctx *c, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    collect(c, c->path, line > 0 ? 0 : 1, line, msg);
}

/* Overrides sort in command-line order: their "line" is their index (never printed). */
static void collect_override(load_ctx *c, const qh_override *ov, const char *section, const char *key,
                             const char *msg)
{
    char where[600];
    snprintf(where, sizeof where, "--set %s.%s", section, key);
    collect(c, where, 2, (int)(ov - c->ov), msg);
}

/* Takes back what qh_ini_load printed ("<path>:<line>: error: <msg>") so it sorts in with the rest. */
static void collect_ini_output(load_ctx *c, char *text)
{
    size_t n = strlen(c->path);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        int at = 0;
        char *msg = line;
        if (strncmp(line, c->path, n) == 0 && line[n] == ':') {
            char *rest = line + n + 1, *end;
            long v = strtol(rest, &end, 10);
            if (end != rest && *end == ':') {
                at = (int)v;
                rest = end + 1;
            }
            if (strncmp(rest, " error: ", 8) == 0)
                msg = rest + 8;
        }
        collect(c, c->path, at > 0 ? 0 : 1, at, msg);
    }
}

static int cmp_items(const void *a, const void *b)
{
    const diag_item *x = a, *y = b;
    if (x->group != y->group)
        return x->group - y->group;
    if (x->line != y->line)
        return x->line - y->line;
    return x->seq - y->seq;
}

static void flush_items(load_ctx *c)
{
    if (c->n_items)
        qsort(c->items, (size_t)c->n_items, sizeof *c->items, cmp_items);
    for (int i = 0; i < c->n_items; i++) {
        diag_item *it = &c->items[i];
        qh_diag_error(c->d, it->where, it->group == 2 ? 0 : it->line, "%s", it->msg);
        free(it->where);
        free(it->msg);
    }
    free(c->items);
    c->items = NULL;
    c->n_items = c->cap_items = 0;
}

/* Reports at an entry (its line, or its --set origin), or at a section header when e is NULL. */
static void report(load_ctx *c, const src_section *s, const src_entry *e, const char *fmt, ...) QH_PRINTF(4, 5);

static void report(load_ctx *c, const src_section *s, const src_entry *e, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e && e->ov)
        collect_override(c, e->ov, s->name, e->key, msg);
    else
        collect_file(c, e ? e->line : s ? s->line : 0, "%s", msg);
}

static void report_oom(load_ctx *c)
{
    collect_file(c, 0, "out of memory");
}

static src_section *find_src(load_ctx *c, const char *name)
{
    for (int i = 0; i < c->n_secs; i++)
        if (strcmp(c->secs[i].name, name) == 0)
            return &c->secs[i];
    return NULL;
}

static src_entry *find_key(const src_section *s, const char *key)
{
    for (int i = 0; s && i < s->n; i++)
        if (strcmp(s->e[i].key, key) == 0)
            return &s->e[i];
    return NULL;
}

static char *lowered(char *dst, const char *src)
{
    char *out = dst;
    while (*src)
        *dst++ = (char)tolower((unsigned char)*src++);
    *dst++ = '\0';
    return out;
}

static bool build_view(load_ctx *c, const qh_ini *ini, const qh_override *ov, int n_ov)
{
    size_t names = 1;
    for (int i = 0; i < n_ov; i++)
        names += strlen(ov[i].section ? ov[i].section : "") + strlen(ov[i].key ? ov[i].key : "") + 2;
    c->ov_keys = malloc(names);
    c->secs = calloc((size_t)ini->n_sections + 1, sizeof *c->secs);
    if (!c->ov_keys || !c->secs)
        return false;
    for (int i = 0; i < ini->n_sections; i++) {
        const qh_ini_section *is = &ini->sections[i];
        src_section *s = &c->secs[c->n_secs++];
        s->name = is->name;
        s->line = is->line;
        /* room for every override: each may add one key */
        if (!(s->e = calloc((size_t)(is->n_entries + n_ov) + 1, sizeof *s->e)))
            return false;
        for (int j = 0; j < is->n_entries; j++)
            s->e[s->n++] = (src_entry){is->entries[j].key, is->entries[j].value, is->entries[j].line, NULL};
    }
    return true;
}

/* Overrides apply after the file: a later --set of the same key wins, as on most command lines. */
static void apply_overrides(load_ctx *c, const qh_override *ov, int n_ov)
{
    char *names = c->ov_keys;
    for (int i = 0; i < n_ov; i++) {
        char *sec = lowered(names, ov[i].section ? ov[i].section : "");
        names += strlen(sec) + 1;
        char *key = lowered(names, ov[i].key ? ov[i].key : "");
        names += strlen(key) + 1;
        src_section *s = find_src(c, sec);
        if (!s || !*key) {
            char msg[600];
            if (!*key)
                snprintf(msg, sizeof msg, "expected section.key=value");
            else
                snprintf(msg, sizeof msg, "no section [%s] in %s", sec, c->path);
            collect_override(c, &ov[i], sec, key, msg);
            continue;
        }
        src_entry *e = find_key(s, key);
        if (!e)
            e = &s->e[s->n++];
        *e = (src_entry){key, ov[i].value ? ov[i].value : "", 0, &ov[i]};
    }
}

static void free_view(load_ctx *c)
{
    for (int i = 0; i < c->n_secs; i++)
        free(c->secs[i].e);
    free(c->secs);
    free(c->ov_keys);
    for (int i = 0; i < c->n_list; i++)
        free(c->list[i]);
    free(c->list);
}

/* ---------------------------------------------------------------- keys of one section */

/* The keys a section reads besides its tables: `plugin`, and `type` for stages. */
static const qh_param reserved_model[] = {{.name = "plugin"}, QH_P_END};
static const qh_param reserved_stage[] = {{.name = "type"}, {.name = "plugin"}, QH_P_END};

typedef struct section_schema {
    const qh_param *host;    /* may be NULL */
    void *host_cfg;
    int stage_type;          /* for open bounds; -1 outside stages */
    const qh_param *plugin;  /* may be NULL */
    void *plugin_cfg;
    bool plugin_unknown;     /* the section names a plugin we could not find: its keys are unknowable */
    const qh_param *reserved;
    const char *not_required; /* a required host key this section may leave out (NULL: none) */
    qh_stage *stage;         /* a stage section: where lists and ranges (sweeps) go; else NULL */
} section_schema;

static void check_open_bound(load_ctx *c, const src_section *s, const src_entry *e, const section_schema *sc,
                             const qh_param *p)
{
    for (size_t i = 0; i < sizeof open_bounds / sizeof open_bounds[0]; i++) {
        if ((int)open_bounds[i].type != sc->stage_type || strcmp(open_bounds[i].key, p->name) != 0)
            continue;
        double v;
        memcpy(&v, (const char *)sc->host_cfg + p->offset, sizeof v);
        double bound = open_bounds[i].is_max ? p->max : p->min;
        if (v == bound)
            report(c, s, e, "[%s] %s: %s must be %s %g", s->name, p->name, e->value,
                   open_bounds[i].is_max ? "below" : "above", bound);
    }
}

static void report_unknown_key(load_ctx *c, const src_section *s, const src_entry *e, const section_schema *sc)
{
    const char *hint = qh_param_suggest(sc->host, e->key);
    if (!hint)
        hint = qh_param_suggest(sc->plugin, e->key);
    if (!hint)
        hint = qh_param_suggest(sc->reserved, e->key);
    if (hint)
        report(c, s, e, "unknown key '%s' in [%s]; did you mean '%s'?", e->key, s->name, hint);
    else
        report(c, s, e, "unknown key '%s' in [%s]", e->key, s->name);
}

/* Adds " (in '<list>')" to an open-bound message about one value of a list. */
static void annotate(diag_item *it, const char *list)
{
    size_t n = strlen(it->msg) + strlen(list) + 16;
    char *msg = malloc(n);
    if (!msg)
        return;
    snprintf(msg, n, "%s (in '%s')", it->msg, list);
    free(it->msg);
    it->msg = msg;
}

/* A list or a range (a sweep, docs "Sweeps"): every value is checked like a single one would be; the
 * stage keeps the first, the runner sets the others point by point. */
static void set_list(load_ctx *c, const src_section *s, const src_entry *e, const section_schema *sc,
                     const qh_param *p, bool host)
{
    const qh_param *table = host ? sc->host : sc->plugin;
    void *cfg = host ? sc->host_cfg : sc->plugin_cfg;
    qh_error err;
    qh_sweep_axis ax;
    if (!sc->stage) {
        report(c, s, e, "[%s] %s: '%s' lists several values, but only the keys of stages can be swept", s->name,
               e->key, e->value);
        return;
    }
    if (qhi_sweep_expand(p, e->value, &ax, &err) != QH_OK) {
        report(c, s, e, "[%s] %s", s->name, err.msg);
        return;
    }
    bool ok = true;
    for (int32_t i = 0; ok && i < ax.n_values; i++) {
        int before = c->n_items;
        src_entry one = *e;
        one.value = ax.values[i];
        if (qh_config_set(table, cfg, e->key, ax.values[i], &err) != QH_OK)
            report(c, s, e, "[%s] %s (in '%s')", s->name, err.msg, e->value);
        else if (host)
            check_open_bound(c, s, &one, sc, p);
        ok = c->n_items == before;
        if (!ok && host && c->n_items == before + 1 && !strstr(c->items[before].msg, " (in '"))
            annotate(&c->items[before], e->value);
    }
    ax.line = e->line;
    ax.host = host;
    if (ok && qh_config_set(table, cfg, e->key, ax.values[0], &err) == QH_OK &&
        qhi_sweep_add_axis(sc->stage, &ax, &err) == QH_OK)
        return;
    qhi_sweep_axis_clear(&ax);
}

static void set_key(load_ctx *c, const src_section *s, const src_entry *e, const section_schema *sc)
{
    qh_error err;
    const qh_param *p;
    if (qh_param_find(sc->reserved, e->key) || strncmp(e->key, "x_", 2) == 0)
        return; /* reserved keys are read by the caller; x_ keys are extensions (systemd's X-) */
    if ((p = qh_param_find(sc->host, e->key))) { /* a host key wins over a plugin key of that name */
        if (qhi_sweep_is_list(p, e->value))
            set_list(c, s, e, sc, p, true);
        else if (qh_config_set(sc->host, sc->host_cfg, e->key, e->value, &err) != QH_OK)
            report(c, s, e, "[%s] %s", s->name, err.msg);
        else
            check_open_bound(c, s, e, sc, p);
    } else if ((p = qh_param_find(sc->plugin, e->key))) {
        if (qhi_sweep_is_list(p, e->value))
            set_list(c, s, e, sc, p, false);
        else if (qh_config_set(sc->plugin, sc->plugin_cfg, e->key, e->value, &err) != QH_OK)
            report(c, s, e, "[%s] %s", s->name, err.msg);
    } else if (!sc->plugin_unknown) {
        report_unknown_key(c, s, e, sc);
    }
}

static void check_required(load_ctx *c, const src_section *s, const qh_param *params, const char *skip)
{
    for (const qh_param *p = params; p && p->name; p++)
        if ((p->flags & QH_PF_REQUIRED) && !find_key(s, p->name) && !(skip && strcmp(skip, p->name) == 0))
            report(c, s, NULL, "missing required key '%s' in [%s]", p->name, s->name);
}

static void apply_section(load_ctx *c, const src_section *s, const section_schema *sc)
{
    for (int i = 0; i < s->n; i++)
        set_key(c, s, &s->e[i], sc);
    check_required(c, s, sc->host, sc->not_required);
    if (sc->plugin_cfg)
        check_required(c, s, sc->plugin, NULL);
}

/* ---------------------------------------------------------------- plugins */

static void kind_names(load_ctx *c, qh_kind kind, char *buf, size_t size)
{
    buf[0] = '\0';
    if (c->reg)
        qh_registry_names(c->reg, kind, buf, size);
    if (!buf[0])
        snprintf(buf, size, "(none)");
}

/* Resolves `plugin` of a section and allocates its config block; NULL (reported) when missing or
 * unknown. */
static const qh_plugin *resolve_plugin(load_ctx *c, const src_section *s, qh_kind kind, void **cfg)
{
    char names[512];
    const src_entry *e = find_key(s, "plugin");
    *cfg = NULL;
    if (!e) {
        kind_names(c, kind, names, sizeof names);
        report(c, s, NULL, "missing required key 'plugin' in [%s] (a %s; available: %s)", s->name,
               qh_kind_name(kind), names);
        return NULL;
    }
    const qh_plugin *p = c->reg ? qh_registry_find(c->reg, kind, e->value) : NULL;
    if (!p) {
        kind_names(c, kind, names, sizeof names);
        report(c, s, e, "unknown %s '%s' in [%s]; available: %s", qh_kind_name(kind), e->value, s->name, names);
        return NULL;
    }
    if (!(*cfg = qh_config_new(p->params, p->config_size))) {
        report_oom(c);
        return NULL;
    }
    return p;
}

/* ---------------------------------------------------------------- [pipeline], [model], [dataset] */

static bool set_default_string(load_ctx *c, void *cfg, const char *key, const char *value)
{
    qh_error err;
    if (qh_config_set(global_params, cfg, key, value, &err) != QH_OK) {
        report_oom(c);
        return false;
    }
    return true;
}

/* The run name defaults to the file's stem: "examples/quickstart.ini" -> "quickstart". */
static void file_stem(const char *path, char *buf, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(buf, size, "%s", base);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
    if (!buf[0])
        snprintf(buf, size, "pipeline");
}

static bool parse_stage_list(load_ctx *c, const src_section *s);

static bool load_global(load_ctx *c)
{
    qh_pipeline_config *pc = c->pc;
    if (!(pc->global = qh_config_new(global_params, sizeof *pc->global)))
        return false;
    const src_section *s = find_src(c, "pipeline");
    if (!s) {
        collect_file(c, 0, "missing section [pipeline]");
    } else {
        section_schema sc = {.host = global_params, .host_cfg = pc->global, .stage_type = -1,
                             .reserved = NULL};
        apply_section(c, s, &sc);
        const src_entry *name = find_key(s, "name");
        if (name && !name->value[0])
            report(c, s, name, "[pipeline] name: must not be empty");
    }
    char buf[4200];
    if (!pc->global->name || !pc->global->name[0]) {
        file_stem(c->path, buf, sizeof buf);
        if (!set_default_string(c, pc->global, "name", buf))
            return false;
    }
    if (!pc->global->output) {
        snprintf(buf, sizeof buf, "runs/%s", pc->global->name);
        if (!set_default_string(c, pc->global, "output", buf))
            return false;
    }
    return !s || parse_stage_list(c, s);
}

/* Keys of [train] that only mean something together with another setting: setting one without it is
 * almost surely a mistake (beta1 under sgd would be silently ignored), so it is an error. */
static bool is_sgd(const qh_train_config *t) { return t->optimizer == QH_OPT_SGD; }
static bool is_adam(const qh_train_config *t) { return t->optimizer != QH_OPT_SGD; }
static bool is_plateau(const qh_train_config *t) { return t->schedule == QH_LR_PLATEAU; }
static bool watches(const qh_train_config *t) { return t->early_stop_patience > 0 || t->keep_best; }

static const struct {
    const char *key;
    bool (*applies)(const qh_train_config *);
    const char *when;
} train_conditional[] = {
    {"momentum", is_sgd, "optimizer = sgd"},
    {"nesterov", is_sgd, "optimizer = sgd"},
    {"beta1", is_adam, "optimizer = adam or adamw"},
    {"beta2", is_adam, "optimizer = adam or adamw"},
    {"eps", is_adam, "optimizer = adam or adamw"},
    {"plateau_metric", is_plateau, "schedule = plateau"},
    {"plateau_patience", is_plateau, "schedule = plateau"},
    {"plateau_factor", is_plateau, "schedule = plateau"},
    {"plateau_threshold", is_plateau, "schedule = plateau"},
    {"early_stop_metric", watches, "early_stop_patience > 0 or keep_best"},
};

static void check_train(load_ctx *c, const src_section *s, const qh_train_config *t)
{
    for (size_t i = 0; i < sizeof train_conditional / sizeof train_conditional[0]; i++) {
        const src_entry *e = find_key(s, train_conditional[i].key);
        if (e && !train_conditional[i].applies(t))
            report(c, s, e, "[%s] %s: applies only with %s", s->name, e->key, train_conditional[i].when);
    }
    const src_entry *w = find_key(s, "warmup_epochs");
    if (w && t->warmup_epochs > 0 && t->warmup_epochs >= t->epochs)
        report(c, s, w, "[%s] warmup_epochs: %lld must be below epochs (%lld)", s->name, (long long)t->warmup_epochs,
               (long long)t->epochs);
}

/* ---------------------------------------------------------------- prune stages and their schedules */

/* Pruners whose pattern fixes the sparsity (nm: 1 - n/m). The stage then takes no `sparsity` and no
 * schedule: a schedule raises a target, and such a target cannot move. Known by name because the
 * pruner ABI has no way to say it; a plugin of another name gets `sparsity` as usual. */
static bool fixes_sparsity(const qh_plugin *p) { return p && strcmp(p->name, "nm") == 0; }

static bool sched_not_oneshot(int k) { return k != QH_PRUNE_ONESHOT; }
static bool sched_rate(int k) { return k == QH_PRUNE_GEOMETRIC || k == QH_PRUNE_ITERATIVE; }
static bool sched_agp(int k) { return k == QH_PRUNE_AGP; }
static bool sched_iterative(int k) { return k == QH_PRUNE_ITERATIVE; }
static bool sched_oneshot(int k) { return k == QH_PRUNE_ONESHOT; }

static const struct {
    const char *key;
    bool (*applies)(int schedule);
    const char *when;
} prune_conditional[] = {
    {"during", sched_not_oneshot, "schedule = geometric, iterative or agp"},
    {"every_epochs", sched_not_oneshot, "schedule = geometric, iterative or agp"},
    {"start_epoch", sched_not_oneshot, "schedule = geometric, iterative or agp"},
    {"rate", sched_rate, "schedule = geometric or iterative"},
    {"initial_sparsity", sched_agp, "schedule = agp"},
    {"steps", sched_agp, "schedule = agp"},
    {"tolerance", sched_iterative, "schedule = iterative"},
    {"physical", sched_oneshot, "schedule = oneshot"},
};

static const char *prune_schedule_name(int k)
{
    return k >= 0 && k <= QH_PRUNE_AGP ? prune_schedule_choices[k] : "?";
}

/* A pruner's create() checks what its parameter table cannot (nm: n below m); run it now, so that
 * --check finds it too. */
static void check_pruner_params(load_ctx *c, const src_section *s, const qh_stage *st)
{
    qh_pruner pr = {0};
    qh_error err = {{0}};
    if (!st->plugin || !st->plugin_cfg)
        return;
    if (qh_pruner_create(&pr, st->plugin, st->plugin_cfg, &err) != QH_OK)
        report(c, s, NULL, "[%s] %s", s->name, err.msg);
    else
        qh_pruner_destroy(&pr);
}

/* What one prune section says on its own; `during` against the other stages is checked later. */
static void check_prune(load_ctx *c, const src_section *s, const qh_stage *st)
{
    const qh_prune_config *p = st->host_cfg;
    check_pruner_params(c, s, st);
    for (size_t i = 0; i < sizeof prune_conditional / sizeof prune_conditional[0]; i++) {
        const src_entry *e = find_key(s, prune_conditional[i].key);
        if (e && !prune_conditional[i].applies(p->schedule))
            report(c, s, e, "[%s] %s: applies only with %s", s->name, e->key, prune_conditional[i].when);
    }
    if (fixes_sparsity(st->plugin)) {
        const src_entry *e = find_key(s, "sparsity");
        if (e)
            report(c, s, e, "[%s] sparsity: pruner %s fixes the sparsity at 1 - n/m; remove this key", s->name,
                   st->plugin->name);
        if ((e = find_key(s, "schedule")) && p->schedule != QH_PRUNE_ONESHOT)
            report(c, s, e, "[%s] schedule: pruner %s fixes the sparsity at 1 - n/m, so only schedule = oneshot "
                   "applies", s->name, st->plugin->name);
    }
    const src_entry *e = find_key(s, "rate");
    if (e && sched_rate(p->schedule) && !(p->rate > 0.0 && p->rate < 1.0))
        report(c, s, e, "[%s] rate: %s must be above 0 and below 1", s->name, e->value);
    e = find_key(s, "initial_sparsity");
    if (e && p->schedule == QH_PRUNE_AGP && p->initial_sparsity >= p->sparsity)
        report(c, s, e, "[%s] initial_sparsity: %s must be below sparsity (%g)", s->name, e->value, p->sparsity);
    if (sched_not_oneshot(p->schedule) && (!p->during || !p->during[0]) && !fixes_sparsity(st->plugin))
        report(c, s, find_key(s, "schedule"), "[%s] schedule = %s prunes during the epochs of a train stage: name "
               "it with 'during'", s->name, prune_schedule_name(p->schedule));
}

/* The train stage `during` names: listed after the prune stage, carrying no other schedule, with no
 * keep_best or early stopping (they would restore or cut the pruned epochs), and long enough for the
 * schedule to reach its target. */
static void check_during_stage(load_ctx *c, int i, int *owner)
{
    const qh_stage *st = &c->pc->stages[i];
    const qh_prune_config *p = st->host_cfg;
    const src_section *s = find_src(c, st->name);
    const src_entry *e = find_key(s, "during");
    int k = -1;
    for (int j = 0; j < c->pc->n_stages; j++)
        if (c->pc->stages[j].name && strcmp(c->pc->stages[j].name, p->during) == 0)
            k = j;
    if (k < 0) {
        report(c, s, e, "[%s] during: '%s' is not a stage listed in [pipeline] stages", s->name, p->during);
        return;
    }
    const qh_stage *tr = &c->pc->stages[k];
    if (!tr->host_cfg)
        return; /* its type is already reported */
    if (tr->type != QH_STAGE_TRAIN) {
        report(c, s, e, "[%s] during: [%s] is not a train stage (type = %s)", s->name, tr->name,
               qh_stage_type_name(tr->type));
        return;
    }
    if (tr->n_axes > 0) {
        report(c, s, e, "[%s] during: [%s] is a sweep; a pruning schedule cannot run inside one", s->name, tr->name);
        return;
    }
    if (k < i) {
        report(c, s, e, "[%s] during: [%s] runs before this stage; list it after [%s]", s->name, tr->name, s->name);
        return;
    }
    if (owner[k] >= 0) {
        report(c, s, e, "[%s] during: [%s] already carries the schedule of [%s]", s->name, tr->name,
               c->pc->stages[owner[k]].name);
        return;
    }
    owner[k] = i;
    const qh_train_config *t = tr->host_cfg;
    if (t->keep_best || t->early_stop_patience > 0)
        report(c, s, e, "[%s] during: [%s] uses %s, which would undo or cut the pruning events; turn it off there",
               s->name, tr->name, t->keep_best ? "keep_best" : "early stopping");
    int64_t last = qh_prune_schedule_last(p);
    bool iterative = p->schedule == QH_PRUNE_ITERATIVE;
    const char *what = iterative ? "its last round of fine-tuning ends" : "its last event comes";
    if (last < 0)
        report(c, s, e, "[%s] schedule = %s never reaches sparsity %g with rate %g", s->name,
               prune_schedule_name(p->schedule), p->sparsity, p->rate);
    else if (iterative ? last > t->epochs : last >= t->epochs)
        report(c, s, e, "[%s] schedule = %s cannot reach sparsity %g in [%s]: %s after epoch %lld, but [%s] trains "
               "%lld epochs (it needs at least %lld)", s->name, prune_schedule_name(p->schedule), p->sparsity,
               tr->name, what, (long long)last, tr->name, (long long)t->epochs,
               (long long)(iterative ? last : last + 1));
}

static bool check_during(load_ctx *c)
{
    int *owner = malloc(sizeof(int) * ((size_t)c->pc->n_stages + 1));
    if (!owner)
        return false;
    for (int i = 0; i < c->pc->n_stages; i++)
        owner[i] = -1;
    for (int i = 0; i < c->pc->n_stages; i++) {
        const qh_stage *st = &c->pc->stages[i];
        const qh_prune_config *p = st->host_cfg;
        if (st->type == QH_STAGE_PRUNE && p && p->schedule != QH_PRUNE_ONESHOT && p->during && p->during[0])
            check_during_stage(c, i, owner);
    }
    free(owner);
    return true;
}

static bool load_model(load_ctx *c, const src_section *s)
{
    qh_pipeline_config *pc = c->pc;
    if (!(pc->model_host = qh_config_new(model_host_params, sizeof *pc->model_host)))
        return false;
    pc->model = resolve_plugin(c, s, QH_KIND_MODEL, &pc->model_cfg);
    section_schema sc = {.host = model_host_params, .host_cfg = pc->model_host, .stage_type = -1,
                         .reserved = reserved_model, .plugin_unknown = !pc->model};
    if (pc->model) {
        sc.plugin = pc->model->params;
        sc.plugin_cfg = pc->model_cfg;
    }
    apply_section(c, s, &sc);
    const src_entry *ex = find_key(s, "weights_exclude");
    if (ex && ex->value[0] && (!pc->model_host->weights || !pc->model_host->weights[0]))
        report(c, s, ex, "[model] weights_exclude: applies only together with weights");
    return true;
}

static bool load_dataset(load_ctx *c, const src_section *s)
{
    qh_pipeline_config *pc = c->pc;
    if (!(pc->dataset_limits = qh_config_new(dataset_host_params, sizeof *pc->dataset_limits)))
        return false;
    pc->dataset = resolve_plugin(c, s, QH_KIND_DATASET, &pc->dataset_cfg);
    section_schema sc = {.host = dataset_host_params, .host_cfg = pc->dataset_limits, .stage_type = -1,
                         .reserved = reserved_model, .plugin_unknown = !pc->dataset};
    if (pc->dataset) {
        sc.plugin = pc->dataset->params;
        sc.plugin_cfg = pc->dataset_cfg;
    }
    apply_section(c, s, &sc);
    return true;
}

/* ---------------------------------------------------------------- sweeps */

/* What a stage's keys say together (each key alone is checked as it is set). */
static void check_stage(load_ctx *c, const src_section *s, const qh_stage *st)
{
    if (st->type == QH_STAGE_TRAIN)
        check_train(c, s, st->host_cfg);
    if (st->type == QH_STAGE_PRUNE)
        check_prune(c, s, st);
}

/* Is b the problem a reports, maybe found at a sweep point ("... (at sweep point ...)")? */
static bool same_problem(const diag_item *a, const diag_item *b)
{
    size_t n = strlen(b->msg);
    return a->group == b->group && a->line == b->line && strcmp(a->where, b->where) == 0 &&
           strncmp(a->msg, b->msg, n) == 0 && (!a->msg[n] || strncmp(a->msg + n, " (at sweep point", 16) == 0);
}

/* Keeps the problems found from item `mark` on that were not reported before, naming point k. */
static void keep_new_problems(load_ctx *c, int mark, const qh_stage *st, int64_t k)
{
    int out = mark;
    char point[512];
    qhi_sweep_describe(st, k, point, sizeof point);
    for (int i = mark; i < c->n_items; i++) {
        diag_item it = c->items[i];
        bool seen = false;
        for (int j = 0; j < out && !seen; j++)
            seen = same_problem(&c->items[j], &it);
        size_t n = strlen(it.msg) + strlen(point) + 32;
        char *msg = seen ? NULL : malloc(n);
        if (msg)
            snprintf(msg, n, "%s (at sweep point %s)", it.msg, point);
        free(it.msg);
        it.msg = msg;
        if (!msg) {
            free(it.where);
            continue;
        }
        c->items[out++] = it;
    }
    c->n_items = out;
}

/* Checks between keys (warmup_epochs below epochs, a pruner's own checks, ...) must hold at every
 * point, not only the first that the stage's blocks hold: each new problem is reported once, with
 * the first point that shows it. */
static void check_sweep_points(load_ctx *c, const src_section *s, qh_stage *st, int64_t n)
{
    qh_error err;
    int start = c->n_items;
    /* a few points' problems are enough to fix the file; thousands would bury them */
    for (int64_t k = 1; k < n && c->n_items - start < 5; k++) {
        if (qhi_sweep_apply(st, k, st->host_cfg, st->plugin_cfg, &err) != QH_OK)
            break; /* every value was checked alone: only memory can fail here */
        int mark = c->n_items;
        check_stage(c, s, st);
        keep_new_problems(c, mark, st, k);
    }
    if (qhi_sweep_apply(st, 0, st->host_cfg, st->plugin_cfg, &err) != QH_OK)
        report_oom(c);
}

static void check_sweep(load_ctx *c, const src_section *s, qh_stage *st)
{
    const qh_sweep_axis *ax = &st->axes[0];
    const src_entry *e = find_key(s, ax->key);
    if (st->type != QH_STAGE_TRAIN && st->type != QH_STAGE_PRUNE && st->type != QH_STAGE_QUANTIZE) {
        report(c, s, e, "[%s] %s: lists several values, but only train, prune and quantize stages can be swept",
               s->name, ax->key);
        return;
    }
    for (int32_t i = 0; i < st->n_axes && st->type == QH_STAGE_PRUNE; i++) {
        const qh_prune_config *p = st->host_cfg;
        const char *key = st->axes[i].key;
        if (strcmp(key, "schedule") == 0 || p->schedule != QH_PRUNE_ONESHOT) {
            report(c, s, find_key(s, key), "[%s] %s: a swept prune stage prunes at the stage itself: it needs "
                   "schedule = oneshot", s->name, key);
            return;
        }
        /* every point starts from the same layers: a model rebuilt without its pruned channels cannot */
        if (strcmp(key, "physical") == 0 || p->physical) {
            report(c, s, find_key(s, key), "[%s] %s: a swept prune stage cannot rebuild the model (physical = "
                   "true): each point must start from the same layers", s->name, key);
            return;
        }
    }
    int64_t n = qhi_sweep_n_points(st);
    if (n < 0) {
        char sizes[256] = "";
        for (int32_t i = 0; i < st->n_axes; i++)
            snprintf(sizes + strlen(sizes), sizeof sizes - strlen(sizes), "%s%s %d", i ? " x " : "",
                     st->axes[i].key, (int)st->axes[i].n_values);
        report(c, s, e, "[%s] the sweep has more than %d points (%s)", s->name, QHI_SWEEP_MAX_POINTS, sizes);
        return;
    }
    check_sweep_points(c, s, st, n);
}

/* ---------------------------------------------------------------- stages */

static bool is_fixed_section(const char *name)
{
    return strcmp(name, "pipeline") == 0 || strcmp(name, "model") == 0 || strcmp(name, "dataset") == 0;
}

static int list_index(const load_ctx *c, const char *name)
{
    for (int i = 0; i < c->n_list; i++)
        if (strcmp(c->list[i], name) == 0)
            return i;
    return -1;
}

static bool add_list_name(load_ctx *c, const src_section *s, const src_entry *e, char *name)
{
    if (!*name) {
        report(c, s, e, "[pipeline] stages: empty stage name in '%s'", e->value);
    } else if (is_fixed_section(name)) {
        report(c, s, e, "[pipeline] stages: [%s] is not a stage section", name);
    } else if (list_index(c, name) >= 0) {
        report(c, s, e, "[pipeline] stages: stage '%s' is listed twice", name);
    } else {
        char *copy = strdup(name);
        if (!copy)
            return false;
        c->list[c->n_list++] = copy;
        if (!find_src(c, name))
            report(c, s, e, "[pipeline] stages: no section [%s] for stage '%s'", name, name);
    }
    return true;
}

/* Splits "train, eval_fp32 ,prune50" into lowercased names (sections are lowercased too). */
static bool parse_stage_list(load_ctx *c, const src_section *s)
{
    const src_entry *e = find_key(s, "stages");
    if (!e)
        return true; /* reported as a missing required key */
    c->stages_given = true;
    size_t n = strlen(e->value);
    char *work = malloc(n + 1);
    c->list = calloc(n / 2 + 2, sizeof *c->list); /* at most one name per two bytes ("a,b,c") */
    if (!work || !c->list) {
        free(work);
        return false;
    }
    bool ok = true;
    char *item = lowered(work, e->value);
    while (ok) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        char *end = item + strlen(item);
        while (isspace((unsigned char)*item))
            item++;
        while (end > item && isspace((unsigned char)end[-1]))
            *--end = '\0';
        bool blank_list = !comma && item == end && c->n_list == 0;
        if (blank_list)
            report(c, s, e, "[pipeline] stages: lists no stage");
        else
            ok = add_list_name(c, s, e, item);
        if (!comma)
            break;
        item = comma + 1;
    }
    free(work);
    return ok;
}

static int stage_type_of(load_ctx *c, const src_section *s)
{
    const src_entry *e = find_key(s, "type");
    char list[128] = "";
    for (int t = 0; t < QH_STAGE_TYPE_COUNT; t++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", t ? ", " : "", stage_type_names[t]);
    if (!e) {
        report(c, s, NULL, "missing required key 'type' in [%s] (one of: %s)", s->name, list);
        return -1;
    }
    for (int t = 0; t < QH_STAGE_TYPE_COUNT; t++)
        if (strcmp(e->value, stage_type_names[t]) == 0)
            return t;
    report(c, s, e, "[%s] type: '%s' is not one of: %s", s->name, e->value, list);
    return -1;
}

static bool load_stage(load_ctx *c, const src_section *s, qh_stage *st)
{
    if (!(st->name = strdup(s->name)))
        return false;
    st->line = s->line;
    int t = stage_type_of(c, s);
    if (t < 0)
        return true; /* without a type its keys cannot be checked */
    st->type = (qh_stage_type)t;
    if (!(st->host_cfg = qh_config_new(stage_tables[t].params, stage_tables[t].size)))
        return false;
    section_schema sc = {.host = stage_tables[t].params, .host_cfg = st->host_cfg, .stage_type = t,
                         .reserved = reserved_stage, .stage = st};
    qh_kind kind = stage_tables[t].plugin_kind;
    const src_entry *pe = find_key(s, "plugin");
    if (kind) {
        st->plugin = resolve_plugin(c, s, kind, &st->plugin_cfg);
        if (st->plugin) {
            sc.plugin = st->plugin->params;
            sc.plugin_cfg = st->plugin_cfg;
            if (t == QH_STAGE_PRUNE && fixes_sparsity(st->plugin))
                sc.not_required = "sparsity";
        } else {
            sc.plugin_unknown = true;
        }
    } else if (pe) {
        report(c, s, pe, "key 'plugin' is not allowed in [%s]: %s stages take no plugin", s->name,
               stage_type_names[t]);
    }
    apply_section(c, s, &sc);
    check_stage(c, s, st);
    if (st->n_axes > 0)
        check_sweep(c, s, st);
    return true;
}

static bool load_sections(load_ctx *c)
{
    qh_pipeline_config *pc = c->pc;
    /* without a stage list every other section is checked as a stage, so its errors still show */
    int n_slots = c->stages_given ? c->n_list : c->n_secs;
    if (!(pc->stages = calloc((size_t)n_slots + 1, sizeof *pc->stages)))
        return false;
    pc->n_stages = n_slots;
    int next_free = 0;
    for (int i = 0; i < c->n_secs; i++) {
        const src_section *s = &c->secs[i];
        bool ok = true;
        if (strcmp(s->name, "pipeline") == 0)
            continue;
        if (strcmp(s->name, "model") == 0) {
            ok = load_model(c, s);
        } else if (strcmp(s->name, "dataset") == 0) {
            ok = load_dataset(c, s);
        } else if (c->stages_given) {
            int k = list_index(c, s->name);
            if (k < 0)
                report(c, s, NULL, "unknown section [%s]; add it to 'stages' in [pipeline] if it is a stage",
                       s->name);
            else
                ok = load_stage(c, s, &pc->stages[k]);
        } else {
            ok = load_stage(c, s, &pc->stages[next_free++]);
        }
        if (!ok)
            return false;
    }
    if (!c->stages_given)
        pc->n_stages = next_free;
    if (!check_during(c))
        return false;
    if (!find_src(c, "model"))
        collect_file(c, 0, "missing section [model]");
    if (!find_src(c, "dataset"))
        collect_file(c, 0, "missing section [dataset]");
    return true;
}

/* ---------------------------------------------------------------- entry points */

/* qh_ini_load reports into memory, so that its problems sort in with the others. */
static qh_ini *load_ini(load_ctx *c)
{
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    if (!mem)
        return qh_ini_load(c->path, c->d);
    qh_diag inner = {.out = mem};
    qh_ini *ini = qh_ini_load(c->path, &inner);
    fclose(mem);
    collect_ini_output(c, text);
    free(text);
    return ini;
}

qh_pipeline_config *qh_pipeline_config_load(const char *path, const qh_registry *reg, const qh_override *ov,
                                            int n_ov, qh_diag *d)
{
    qh_diag quiet = {0};
    if (!d)
        d = &quiet;
    int errors_before = d->n_errors;
    load_ctx c = {.path = path, .reg = reg, .d = d, .ov = ov};
    qh_ini *ini = load_ini(&c);
    size_t text_size = 0;
    bool ok = !ini || ((c.pc = calloc(1, sizeof *c.pc)) && (c.pc->path = strdup(path)));
    if (ini && ok && !qh_ini_read_text(path, &c.pc->text, &text_size)) { /* the file changed under us */
        collect_file(&c, 0, "cannot read file: %s", strerror(errno));
    } else if (ini && ok && (ok = build_view(&c, ini, ov, n_ov))) {
        apply_overrides(&c, ov, n_ov);
        ok = load_global(&c) && load_sections(&c);
    }
    if (!ok)
        report_oom(&c);
    flush_items(&c);
    free_view(&c);
    qh_ini_free(ini);
    if (!ini || !ok || d->n_errors > errors_before) {
        qh_pipeline_config_free(c.pc);
        return NULL;
    }
    return c.pc;
}

void qh_pipeline_config_free(qh_pipeline_config *pc)
{
    if (!pc)
        return;
    for (int i = 0; i < pc->n_stages; i++) {
        qh_stage *st = &pc->stages[i];
        if (st->host_cfg)
            qh_config_free(stage_tables[st->type].params, st->host_cfg);
        if (st->plugin)
            qh_config_free(st->plugin->params, st->plugin_cfg);
        qhi_sweep_free_axes(st);
        free(st->name);
    }
    free(pc->stages);
    if (pc->model)
        qh_config_free(pc->model->params, pc->model_cfg);
    if (pc->dataset)
        qh_config_free(pc->dataset->params, pc->dataset_cfg);
    qh_config_free(model_host_params, pc->model_host);
    qh_config_free(dataset_host_params, pc->dataset_limits);
    qh_config_free(global_params, pc->global);
    free(pc->text);
    free(pc->path);
    free(pc);
}
