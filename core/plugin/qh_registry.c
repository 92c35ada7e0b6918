/* qh_registry.c - discovery and validation of plugin libraries (ABI v1).
 *
 * A library is checked completely before any of its plugins is registered, so a rejected library
 * contributes nothing. Every rejection is one line "<path>: <reason>". Descriptors and vtables are
 * copied into zeroed host structs, min(struct_size, sizeof) bytes each, so fields appended after
 * the plugin was built read as zero (NULL = host default). Libraries are never dlclose()d:
 * OpenMP and TLS teardown in unloaded code crashes, and descriptors point into them.
 */
#include "qhost/qh_registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qh_version.h"

#define SCAN_MAX_DEPTH 3

/* A registered plugin and the search directory it came from (0: loaded outside a scan). */
typedef struct entry {
    qh_plugin p;
    int origin;
} entry;

struct qh_registry {
    qh_dl_ops dl;
    entry **plugins;
    int n_plugins, cap_plugins;
    char **rejections;
    int n_rejections, cap_rejections;
    void **handles; /* kept, never closed */
    int n_handles, cap_handles;
    int origin;      /* number of the directory qh_registry_scan is reading, 0 outside a scan */
    int last_origin; /* numbers are never reused, so two scans never share one */
};

static const qh_param empty_params[] = {QH_P_END};
static const char *const reserved_keys[] = {"type", "plugin"};
static const char *const kind_names[] = {"model", "dataset", "pruner", "quantizer"};

/* ---------------------------------------------------------------- default loader */

static void *dl_open_default(const char *path) { return dlopen(path, RTLD_NOW | RTLD_LOCAL); }
static void *dl_sym_default(void *handle, const char *symbol) { return dlsym(handle, symbol); }
static const char *dl_error_default(void) { return dlerror(); }

static const qh_dl_ops dl_default = {dl_open_default, dl_sym_default, dl_error_default};

/* ---------------------------------------------------------------- small helpers */

static bool grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

static bool valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static bool kind_valid(qh_kind k) { return k >= QH_KIND_MODEL && k <= QH_KIND_QUANTIZER; }

const char *qh_kind_name(qh_kind kind) { return kind_valid(kind) ? kind_names[kind - 1] : "unknown"; }

bool qh_kind_from_name(const char *name, qh_kind *out)
{
    for (int k = QH_KIND_MODEL; name && k <= QH_KIND_QUANTIZER; k++) {
        if (strcmp(name, kind_names[k - 1]) == 0) {
            if (out)
                *out = (qh_kind)k;
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------- registry */

qh_registry *qh_registry_new_with(const qh_dl_ops *dl)
{
    qh_registry *r = calloc(1, sizeof *r);
    if (r)
        r->dl = dl ? *dl : dl_default;
    return r;
}

qh_registry *qh_registry_new(void) { return qh_registry_new_with(NULL); }

void qh_registry_free(qh_registry *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_plugins; i++)
        free(r->plugins[i]);
    for (int i = 0; i < r->n_rejections; i++)
        free(r->rejections[i]);
    free(r->plugins);
    free(r->rejections);
    free(r->handles); /* the libraries themselves stay mapped on purpose */
    free(r);
}

int qh_registry_count(const qh_registry *r) { return r ? r->n_plugins : 0; }

const qh_plugin *qh_registry_get(const qh_registry *r, int i)
{
    return r && i >= 0 && i < r->n_plugins ? &r->plugins[i]->p : NULL;
}

static entry *find_entry(const qh_registry *r, qh_kind kind, const char *name)
{
    for (int i = 0; r && name && i < r->n_plugins; i++)
        if (r->plugins[i]->p.kind == kind && strcmp(r->plugins[i]->p.name, name) == 0)
            return r->plugins[i];
    return NULL;
}

const qh_plugin *qh_registry_find(const qh_registry *r, qh_kind kind, const char *name)
{
    entry *e = find_entry(r, kind, name);
    return e ? &e->p : NULL;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

void qh_registry_names(const qh_registry *r, qh_kind kind, char *buf, size_t size)
{
    if (!buf || size == 0)
        return;
    buf[0] = '\0';
    int n = 0;
    const char **names = r && r->n_plugins ? malloc((size_t)r->n_plugins * sizeof *names) : NULL;
    for (int i = 0; names && i < r->n_plugins; i++)
        if (r->plugins[i]->p.kind == kind)
            names[n++] = r->plugins[i]->p.name;
    if (n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    size_t len = 0;
    for (int i = 0; i < n && len < size; i++) {
        int w = snprintf(buf + len, size - len, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    free(names);
}

int qh_registry_n_rejections(const qh_registry *r) { return r ? r->n_rejections : 0; }

const char *qh_registry_rejection(const qh_registry *r, int i)
{
    return r && i >= 0 && i < r->n_rejections ? r->rejections[i] : NULL;
}

/* Formats "<path>: <reason>" into err, keeps a copy in the rejection list, returns st. */
static qh_status reject(qh_registry *r, qh_error *err, qh_status st, const char *path, const char *fmt, ...)
    QH_PRINTF(5, 6);

static qh_status reject(qh_registry *r, qh_error *err, qh_status st, const char *path, const char *fmt, ...)
{
    char line[QH_ERROR_MSG_MAX];
    int w = snprintf(line, sizeof line, "%s: ", path);
    if (w >= 0 && (size_t)w < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line + w, sizeof line - (size_t)w, fmt, ap);
        va_end(ap);
    }
    if (grow((void **)&r->rejections, &r->cap_rejections, r->n_rejections + 1, sizeof(char *))) {
        char *copy = strdup(line);
        if (copy)
            r->rejections[r->n_rejections++] = copy;
    }
    qh_log(QH_LOG_DEBUG, "registry", "rejected %s", line);
    return qh_error_set(err, st, "%s", line);
}

/* ---------------------------------------------------------------- validation */

/* Bytes of the config field a parameter of type t writes (0: unknown type). */
static size_t param_field_size(qh_param_type t)
{
    switch (t) {
    case QH_PARAM_BOOL: return sizeof(int);
    case QH_PARAM_INT: return sizeof(int64_t);
    case QH_PARAM_DOUBLE: return sizeof(double);
    case QH_PARAM_STRING: return sizeof(const char *);
    case QH_PARAM_ENUM: return sizeof(int);
    case QH_PARAM_PATH: return sizeof(const char *);
    }
    return 0;
}

/* Why one parameter is unusable (written to why), or false when it is fine. */
static bool param_problem(const qh_param *p, size_t config_size, char *why, size_t size)
{
    size_t fsize = param_field_size(p->type);
    if (fsize == 0) {
        snprintf(why, size, "unknown type %d", (int)p->type);
        return true;
    }
    if (p->offset > config_size || fsize > config_size - p->offset) {
        snprintf(why, size, "offset %zu + size %zu is beyond config_size %zu", p->offset, fsize, config_size);
        return true;
    }
    bool has_default = !(p->flags & QH_PF_REQUIRED);
    if (p->type == QH_PARAM_ENUM) {
        int n = 0;
        while (p->choices && p->choices[n])
            n++;
        if (n == 0) {
            snprintf(why, size, "enum without choices");
            return true;
        }
        if (has_default && (p->def.i < 0 || p->def.i >= n)) {
            snprintf(why, size, "default index %lld is out of range (%d choices)", (long long)p->def.i, n);
            return true;
        }
    }
    if (p->type == QH_PARAM_INT || p->type == QH_PARAM_DOUBLE) {
        double v = p->type == QH_PARAM_INT ? (double)p->def.i : p->def.d;
        bool below = (p->flags & QH_PF_HAS_MIN) && v < p->min;
        bool above = (p->flags & QH_PF_HAS_MAX) && v > p->max;
        if (has_default && (below || above || v != v)) {
            snprintf(why, size, "default %g is outside [%g, %g]", v, p->min, p->max);
            return true;
        }
    }
    if (p->type == QH_PARAM_BOOL && has_default && p->def.i != 0 && p->def.i != 1) {
        snprintf(why, size, "bool default %lld is not 0 or 1", (long long)p->def.i);
        return true;
    }
    return false;
}

/* Checks the parameter table of plugin `who` ("quantizer 'x'"); rejects the first problem. */
static qh_status check_params(qh_registry *r, qh_error *err, const char *path, const char *who,
                              const qh_plugin_desc *d)
{
    const qh_param *params = d->params;
    if (!params || !params[0].name)
        return QH_OK;
    if (d->config_size == 0)
        return reject(r, err, QH_E_FORMAT, path, "%s: config_size is 0 but parameters are declared", who);
    for (int i = 0; params[i].name; i++) {
        const qh_param *p = &params[i];
        if (!valid_name(p->name))
            return reject(r, err, QH_E_FORMAT, path, "%s: bad parameter name '%s' (must match [a-z0-9_]+)", who,
                          p->name);
        for (size_t k = 0; k < sizeof reserved_keys / sizeof *reserved_keys; k++)
            if (strcmp(p->name, reserved_keys[k]) == 0)
                return reject(r, err, QH_E_FORMAT, path, "%s: parameter '%s' is a reserved stage key",
                              who, p->name);
        for (int j = 0; j < i; j++)
            if (strcmp(params[j].name, p->name) == 0)
                return reject(r, err, QH_E_FORMAT, path, "%s: duplicate parameter '%s'", who, p->name);
        char why[256];
        if (param_problem(p, d->config_size, why, sizeof why))
            return reject(r, err, QH_E_FORMAT, path, "%s: parameter '%s': %s", who, p->name, why);
    }
    return QH_OK;
}

static size_t ops_size_1_0(qh_kind k)
{
    switch (k) {
    case QH_KIND_MODEL: return QH_MODEL_OPS_SIZE_1_0;
    case QH_KIND_DATASET: return QH_DATASET_OPS_SIZE_1_0;
    case QH_KIND_PRUNER: return QH_PRUNER_OPS_SIZE_1_0;
    case QH_KIND_QUANTIZER: return QH_QUANTIZER_OPS_SIZE_1_0;
    }
    return 0;
}

static size_t ops_size_host(qh_kind k)
{
    switch (k) {
    case QH_KIND_MODEL: return sizeof(qh_model_ops);
    case QH_KIND_DATASET: return sizeof(qh_dataset_ops);
    case QH_KIND_PRUNER: return sizeof(qh_pruner_ops);
    case QH_KIND_QUANTIZER: return sizeof(qh_quantizer_ops);
    }
    return 0;
}

/* The first required method the normalized vtable lacks, or NULL. */
static const char *missing_method(const qh_plugin *p)
{
    switch (p->kind) {
    case QH_KIND_MODEL: return p->ops.model.build ? NULL : "build";
    case QH_KIND_DATASET:
        if (!p->ops.dataset.open)
            return "open";
        if (!p->ops.dataset.close)
            return "close";
        return p->ops.dataset.load ? NULL : "load";
    case QH_KIND_PRUNER: return p->ops.pruner.prune ? NULL : "prune";
    case QH_KIND_QUANTIZER:
        if (!p->ops.quantizer.quantize)
            return "quantize";
        /* a plugin that asks for calibration data must be able to use it */
        return p->ops.quantizer.calib_needs && !p->ops.quantizer.quantize_calib ? "quantize_calib (it has calib_needs)"
                                                                                 : NULL;
    }
    return NULL;
}

/* Validates plugin #idx of lib and fills the normalized copy *out. */
static qh_status check_plugin(qh_registry *r, qh_error *err, const char *path, const qh_library *lib, uint32_t idx,
                              qh_plugin *out)
{
    const qh_plugin_desc *src = lib->plugins[idx];
    if (!src)
        return reject(r, err, QH_E_FORMAT, path, "plugin #%u: descriptor is NULL", idx);
    if (src->struct_size < QH_PLUGIN_DESC_SIZE_1_0)
        return reject(r, err, QH_E_FORMAT, path, "plugin #%u: descriptor struct_size %u is smaller than %zu (ABI 1.0)",
                      idx, src->struct_size, (size_t)QH_PLUGIN_DESC_SIZE_1_0);
    qh_plugin_desc d = {0};
    memcpy(&d, src, src->struct_size < sizeof d ? src->struct_size : sizeof d);
    if (!d.name || !*d.name)
        return reject(r, err, QH_E_FORMAT, path, "plugin #%u: missing name", idx);
    if (!valid_name(d.name))
        return reject(r, err, QH_E_FORMAT, path, "plugin #%u: bad name '%s' (must match [a-z0-9_]+)", idx, d.name);
    if (!kind_valid(d.kind))
        return reject(r, err, QH_E_FORMAT, path, "plugin '%s': unknown kind %d", d.name, (int)d.kind);
    char who[160];
    snprintf(who, sizeof who, "%s '%s'", qh_kind_name(d.kind), d.name);
    if (!d.summary || !*d.summary)
        return reject(r, err, QH_E_FORMAT, path, "%s: missing summary", who);
    /* every member of the ops union is a pointer to a struct starting with struct_size */
    const uint32_t *ops = (const uint32_t *)(const void *)d.ops.model;
    if (!ops)
        return reject(r, err, QH_E_FORMAT, path, "%s: ops is NULL", who);
    if (*ops < ops_size_1_0(d.kind))
        return reject(r, err, QH_E_FORMAT, path, "%s: ops struct_size %u is smaller than %zu (ABI 1.0)", who, *ops,
                      ops_size_1_0(d.kind));
    memset(out, 0, sizeof *out);
    size_t host = ops_size_host(d.kind);
    memcpy(&out->ops, ops, *ops < host ? *ops : host);
    out->kind = d.kind;
    const char *method = missing_method(out);
    if (method)
        return reject(r, err, QH_E_FORMAT, path, "%s: missing required method %s", who, method);
    qh_status st = check_params(r, err, path, who, &d);
    if (st != QH_OK)
        return st;
    out->name = d.name;
    out->summary = d.summary;
    out->help = d.help;
    out->params = d.params ? d.params : empty_params;
    out->config_size = d.config_size;
    return QH_OK;
}

/* Checks the frozen prefix and the 1.0 part of the library; fills the normalized copy *lib. */
static qh_status check_library(qh_registry *r, qh_error *err, const char *path, const qh_library *src, qh_library *lib)
{
    if (src->magic != QH_PLUGIN_MAGIC)
        return reject(r, err, QH_E_FORMAT, path, "bad magic 0x%08X (expected 0x%08X)", (unsigned)src->magic,
                      (unsigned)QH_PLUGIN_MAGIC);
    if (src->abi_major != QH_ABI_MAJOR)
        return reject(r, err, QH_E_UNSUPPORTED, path, "built for ABI %u.x, this host supports %d.x",
                      (unsigned)src->abi_major, QH_ABI_MAJOR);
    if (src->abi_minor > QH_ABI_MINOR)
        return reject(r, err, QH_E_UNSUPPORTED, path, "built for ABI %u.%u, newer than this host's %d.%d",
                      (unsigned)src->abi_major, (unsigned)src->abi_minor, QH_ABI_MAJOR, QH_ABI_MINOR);
    if (src->struct_size < QH_LIBRARY_SIZE_1_0)
        return reject(r, err, QH_E_FORMAT, path, "library struct_size %u is smaller than %zu (ABI 1.0)",
                      (unsigned)src->struct_size, (size_t)QH_LIBRARY_SIZE_1_0);
    memset(lib, 0, sizeof *lib);
    memcpy(lib, src, src->struct_size < sizeof *lib ? src->struct_size : sizeof *lib);
    if (lib->n_plugins == 0 || !lib->plugins)
        return reject(r, err, QH_E_FORMAT, path, "library declares no plugins");
    return QH_OK;
}

/* ---------------------------------------------------------------- loading */

static qh_status add_entries(qh_registry *r, entry **fresh, uint32_t n, qh_error *err)
{
    if (!grow((void **)&r->plugins, &r->cap_plugins, r->n_plugins + (int)n, sizeof(entry *)))
        return qh_error_set(err, QH_E_NOMEM, "out of memory registering plugins");
    for (uint32_t i = 0; i < n; i++) {
        if (!fresh[i])
            continue;
        r->plugins[r->n_plugins++] = fresh[i];
        fresh[i] = NULL;
    }
    return QH_OK;
}

/* Resolves duplicates of the checked plugins fresh[0..n) against each other and the registry.
 * A plugin already registered from an earlier search directory wins silently (fresh[i] freed). */
static qh_status check_duplicates(qh_registry *r, qh_error *err, const char *path, entry **fresh, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const qh_plugin *p = &fresh[i]->p;
        for (uint32_t j = 0; j < i; j++)
            if (fresh[j] && fresh[j]->p.kind == p->kind && strcmp(fresh[j]->p.name, p->name) == 0)
                return reject(r, err, QH_E_FORMAT, path, "%s '%s': declared twice in this library",
                              qh_kind_name(p->kind), p->name);
        entry *old = find_entry(r, p->kind, p->name);
        if (!old)
            continue;
        if (r->origin > 0 && old->origin > 0 && old->origin != r->origin) {
            qh_log(QH_LOG_DEBUG, "registry", "%s: %s '%s' skipped, already provided by %s", path,
                   qh_kind_name(p->kind), p->name, old->p.path);
            free(fresh[i]);
            fresh[i] = NULL;
            continue;
        }
        return reject(r, err, QH_E_FORMAT, path, "%s '%s': already provided by %s", qh_kind_name(p->kind), p->name,
                      old->p.path);
    }
    return QH_OK;
}

static qh_status register_library(qh_registry *r, const char *path, const qh_library *lib, qh_error *err)
{
    entry **fresh = calloc(lib->n_plugins, sizeof *fresh);
    if (!fresh)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
    qh_status st = QH_OK;
    for (uint32_t i = 0; i < lib->n_plugins && st == QH_OK; i++) {
        fresh[i] = calloc(1, sizeof *fresh[i]);
        if (!fresh[i]) {
            st = qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
            break;
        }
        st = check_plugin(r, err, path, lib, i, &fresh[i]->p);
        qh_plugin *p = &fresh[i]->p;
        p->version = lib->version;
        p->lib_name = lib->name;
        p->abi_major = lib->abi_major;
        p->abi_minor = lib->abi_minor;
        snprintf(p->path, sizeof p->path, "%s", path);
        fresh[i]->origin = r->origin;
    }
    if (st == QH_OK)
        st = check_duplicates(r, err, path, fresh, lib->n_plugins);
    if (st == QH_OK)
        st = add_entries(r, fresh, lib->n_plugins, err);
    for (uint32_t i = 0; i < lib->n_plugins; i++)
        free(fresh[i]);
    free(fresh);
    return st;
}

/* dlerror() text usually repeats the path; keep only the reason. */
static const char *strip_path(const char *msg, const char *path)
{
    size_t n = strlen(path);
    if (msg && strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0)
        return msg + n + 2;
    return msg ? msg : "unknown error";
}

static bool keep_handle(qh_registry *r, void *handle)
{
    for (int i = 0; i < r->n_handles; i++)
        if (r->handles[i] == handle)
            return true;
    if (!grow((void **)&r->handles, &r->cap_handles, r->n_handles + 1, sizeof(void *)))
        return false;
    r->handles[r->n_handles++] = handle;
    return true;
}

qh_status qh_registry_load_file(qh_registry *r, const char *path, qh_error *err)
{
    if (!r || !path)
        return qh_error_set(err, QH_E_INVAL, "qh_registry_load_file: NULL argument");
    r->dl.error(); /* clear a stale error so the one we report is ours */
    void *handle = r->dl.open(path);
    if (!handle)
        return reject(r, err, QH_E_FORMAT, path, "not a loadable shared object: %s", strip_path(r->dl.error(), path));
    if (!keep_handle(r, handle))
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
    void *sym = r->dl.sym(handle, QH_PLUGIN_ENTRY_SYMBOL);
    if (!sym)
        return reject(r, err, QH_E_FORMAT, path, "no %s symbol (not a qhost plugin)", QH_PLUGIN_ENTRY_SYMBOL);
    qh_plugin_entry_fn entry_fn;
    memcpy(&entry_fn, &sym, sizeof entry_fn); /* object -> function pointer, as POSIX dlsym requires */
    const qh_library *src = entry_fn();
    if (!src)
        return reject(r, err, QH_E_FORMAT, path, "%s returned NULL", QH_PLUGIN_ENTRY_SYMBOL);
    qh_library lib;
    qh_status st = check_library(r, err, path, src, &lib);
    if (st != QH_OK)
        return st;
    st = register_library(r, path, &lib, err);
    if (st == QH_OK)
        qh_log(QH_LOG_DEBUG, "registry", "loaded %s (%s %s, ABI %u.%u)", path, lib.name ? lib.name : "?",
               lib.version ? lib.version : "?", (unsigned)lib.abi_major, (unsigned)lib.abi_minor);
    return st;
}

/* ---------------------------------------------------------------- directories */

static bool is_plugin_file_name(const char *name)
{
    size_t n = strlen(name);
    return n > 6 && strncmp(name, "qh-", 3) == 0 && strcmp(name + n - 3, ".so") == 0;
}

/* Sorted entry names of dir (without "." and ".."); NULL with errno set when it cannot be read. */
static char **list_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *copy = strdup(de->d_name);
        if (!copy || !grow((void **)&names, &cap, n + 1, sizeof *names)) {
            free(copy);
            break;
        }
        names[n++] = copy;
    }
    closedir(d);
    if (n)
        if (n > 1) /* qsort(NULL, 0, ...) is undefined */
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    *count = n;
    return names ? names : calloc(1, sizeof *names);
}

static void scan_dir(qh_registry *r, const char *dir, int depth)
{
    int n = 0;
    char **names = list_dir(dir, &n);
    if (!names) {
        qh_log(QH_LOG_WARN, "registry", "%s: cannot read directory: %s", dir, strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat sb;
        int w = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (w < 0 || (size_t)w >= sizeof path || stat(path, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth < SCAN_MAX_DEPTH) {
            scan_dir(r, path, depth + 1);
        } else if (S_ISREG(sb.st_mode) && is_plugin_file_name(names[i])) {
            qh_error e; /* recorded in the rejection list; the caller decides how to show it */
            qh_registry_load_file(r, path, &e);
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

qh_status qh_registry_add_dir(qh_registry *r, const char *dir, qh_error *err)
{
    if (!r || !dir)
        return qh_error_set(err, QH_E_INVAL, "qh_registry_add_dir: NULL argument");
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            qh_log(QH_LOG_DEBUG, "registry", "%s: no such plugin directory", dir);
            return QH_OK;
        }
        return qh_error_set(err, QH_E_IO, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return qh_error_set(err, QH_E_IO, "%s: not a directory", dir);
    scan_dir(r, dir, 0);
    return QH_OK;
}

/* Scans dir as a new search directory unless the same directory came earlier in this scan. */
static qh_status scan_one(qh_registry *r, const char *dir, char **seen, int *n_seen, qh_error *err)
{
    char *real = realpath(dir, NULL);
    if (!real) {
        qh_log(QH_LOG_DEBUG, "registry", "%s: no such plugin directory", dir);
        return QH_OK;
    }
    for (int i = 0; i < *n_seen; i++) {
        if (strcmp(seen[i], real) == 0) {
            free(real);
            return QH_OK;
        }
    }
    seen[(*n_seen)++] = real;
    r->origin = ++r->last_origin;
    return qh_registry_add_dir(r, dir, err);
}

/* The search path as a list of directories (strings owned by *store); the first *n_explicit of
 * them came from the command line. */
static int search_path(const char *const *extra, int n_extra, const char *exe_path, char **store, const char **dirs,
                       int max, int *n_explicit)
{
    int n = 0;
    for (int i = 0; extra && i < n_extra && n < max; i++)
        if (extra[i] && *extra[i])
            dirs[n++] = extra[i];
    *n_explicit = n;
    const char *env = getenv("QHOST_PLUGIN_PATH");
    if (env && (store[0] = strdup(env)) != NULL) {
        char *save = NULL;
        for (char *tok = strtok_r(store[0], ":", &save); tok && n < max; tok = strtok_r(NULL, ":", &save))
            dirs[n++] = tok;
    }
    if (n < max)
        dirs[n++] = QH_PLUGINDIR;
    /* a bare program name was found through $PATH, not relative to the working directory */
    const char *exe = exe_path && strchr(exe_path, '/') ? exe_path : (exe_path ? "/proc/self/exe" : NULL);
    char *real = exe ? realpath(exe, NULL) : NULL;
    char *slash = real ? strrchr(real, '/') : NULL;
    if (slash && n < max) {
        *slash = '\0';
        size_t len = strlen(real) + sizeof "/plugins";
        store[1] = malloc(len);
        if (store[1]) {
            snprintf(store[1], len, "%s/plugins", real);
            dirs[n++] = store[1];
        }
    }
    free(real);
    return n;
}

qh_status qh_registry_scan(qh_registry *r, const char *const *extra_dirs, int n_extra, const char *exe_path,
                           qh_error *err)
{
    if (!r)
        return qh_error_set(err, QH_E_INVAL, "qh_registry_scan: NULL registry");
    enum { MAX_DIRS = 256 };
    char *store[2] = {NULL, NULL};
    const char *dirs[MAX_DIRS];
    char *seen[MAX_DIRS];
    int n_seen = 0, n_explicit = 0;
    int n = search_path(extra_dirs, n_extra, exe_path, store, dirs, MAX_DIRS, &n_explicit);
    qh_status st = QH_OK;
    for (int i = 0; i < n && st == QH_OK; i++) {
        st = scan_one(r, dirs[i], seen, &n_seen, err);
        /* only directories the user named explicitly make a bad entry fatal */
        if (st != QH_OK && i >= n_explicit) {
            qh_log(QH_LOG_WARN, "registry", "%s", err ? err->msg : dirs[i]);
            st = QH_OK;
        }
    }
    r->origin = 0;
    for (int i = 0; i < n_seen; i++)
        free(seen[i]);
    free(store[0]);
    free(store[1]);
    return st;
}
