/* qh_schema.c - parameter tables (qh_param) applied to config blocks: defaults, strict parsing,
 * range and choice checks, formatting for people and "did you mean" suggestions.
 *
 * One table drives parsing, validation, defaults, --list-plugins and the docs (FFmpeg AVOption),
 * so nothing here knows a particular plugin or stage. */
#include "qhost/qh_config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Config fields are reached through offsets into an untyped block: memcpy keeps that free of
 * aliasing and alignment assumptions. */
static void field_put(void *cfg, const qh_param *p, const void *v, size_t n)
{
    memcpy((char *)cfg + p->offset, v, n);
}

static void field_get(const void *cfg, const qh_param *p, void *v, size_t n)
{
    memcpy(v, (const char *)cfg + p->offset, n);
}

static char *get_str(const void *cfg, const qh_param *p)
{
    char *s;
    field_get(cfg, p, &s, sizeof s);
    return s;
}

static void put_str(void *cfg, const qh_param *p, char *s)
{
    free(get_str(cfg, p)); /* the block owns its strings: replacing one frees the old copy */
    field_put(cfg, p, &s, sizeof s);
}

static bool is_string_type(qh_param_type t)
{
    return t == QH_PARAM_STRING || t == QH_PARAM_PATH;
}

const char *qh_param_type_name(qh_param_type t)
{
    switch (t) {
    case QH_PARAM_BOOL: return "bool";
    case QH_PARAM_INT: return "int";
    case QH_PARAM_DOUBLE: return "double";
    case QH_PARAM_STRING: return "string";
    case QH_PARAM_ENUM: return "enum";
    case QH_PARAM_PATH: return "path";
    }
    return "?";
}

const qh_param *qh_param_find(const qh_param *params, const char *name)
{
    for (const qh_param *p = params; p && p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* ---------------------------------------------------------------- defaults and lifetime */

static bool apply_default(const qh_param *p, void *cfg)
{
    if (p->flags & QH_PF_REQUIRED)
        return true; /* stays zero until the INI sets it */
    switch (p->type) {
    case QH_PARAM_INT: field_put(cfg, p, &p->def.i, sizeof(int64_t)); return true;
    case QH_PARAM_DOUBLE: field_put(cfg, p, &p->def.d, sizeof(double)); return true;
    case QH_PARAM_BOOL:
    case QH_PARAM_ENUM: {
        int v = (int)p->def.i;
        field_put(cfg, p, &v, sizeof v);
        return true;
    }
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: {
        char *s = NULL;
        if (p->def.s && !(s = strdup(p->def.s)))
            return false;
        put_str(cfg, p, s);
        return true;
    }
    }
    return true;
}

void *qh_config_new(const qh_param *params, size_t size)
{
    void *cfg = calloc(1, size ? size : 1);
    if (!cfg)
        return NULL;
    for (const qh_param *p = params; p && p->name; p++) {
        if (!apply_default(p, cfg)) {
            qh_config_free(params, cfg);
            return NULL;
        }
    }
    return cfg;
}

void qh_config_free(const qh_param *params, void *cfg)
{
    if (!cfg)
        return;
    for (const qh_param *p = params; p && p->name; p++)
        if (is_string_type(p->type))
            free(get_str(cfg, p));
    free(cfg);
}

/* ---------------------------------------------------------------- strict parsing */

/* Bounds print as integers when they are whole numbers ("10000", not "1e+04"). */
static void format_bound(double v, char *buf, size_t size)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, size, "%.0f", v);
    else
        snprintf(buf, size, "%g", v);
}

static qh_status check_range(const qh_param *p, double v, const char *shown, qh_error *err)
{
    char bound[64];
    if ((p->flags & QH_PF_HAS_MIN) && v < p->min) {
        format_bound(p->min, bound, sizeof bound);
        return qh_error_set(err, QH_E_CONFIG, "%s: %s is below the minimum %s", p->name, shown, bound);
    }
    if ((p->flags & QH_PF_HAS_MAX) && v > p->max) {
        format_bound(p->max, bound, sizeof bound);
        return qh_error_set(err, QH_E_CONFIG, "%s: %s is above the maximum %s", p->name, shown, bound);
    }
    return QH_OK;
}

static qh_status set_int(const qh_param *p, void *cfg, const char *value, qh_error *err)
{
    /* base 10 on purpose: iniparser's strtol(.., 0) reads "08" as 0 (octal) */
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end != '\0')
        return qh_error_set(err, QH_E_CONFIG, "%s: '%s' is not an integer", p->name, value);
    if (errno == ERANGE)
        return qh_error_set(err, QH_E_CONFIG, "%s: '%s' does not fit in a 64-bit integer", p->name, value);
    char shown[32];
    snprintf(shown, sizeof shown, "%lld", v);
    qh_status st = check_range(p, (double)v, shown, err);
    if (st != QH_OK)
        return st;
    int64_t i = (int64_t)v;
    field_put(cfg, p, &i, sizeof i);
    return QH_OK;
}

static qh_status set_double(const qh_param *p, void *cfg, const char *value, qh_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    if (end == value || *end != '\0')
        return qh_error_set(err, QH_E_CONFIG, "%s: '%s' is not a number", p->name, value);
    if (!isfinite(v)) /* nan, inf and overflow */
        return qh_error_set(err, QH_E_CONFIG, "%s: '%s' is not a finite number", p->name, value);
    qh_status st = check_range(p, v, value, err);
    if (st != QH_OK)
        return st;
    field_put(cfg, p, &v, sizeof v);
    return QH_OK;
}

static qh_status set_bool(const qh_param *p, void *cfg, const char *value, qh_error *err)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        /* exact names only: iniparser's getboolean would read "yes_please" as true */
        int v = strcmp(value, yes[i]) == 0 ? 1 : strcmp(value, no[i]) == 0 ? 0 : -1;
        if (v >= 0) {
            field_put(cfg, p, &v, sizeof v);
            return QH_OK;
        }
    }
    return qh_error_set(err, QH_E_CONFIG, "%s: '%s' is not a boolean (use true/false, yes/no, on/off or 1/0)",
                        p->name, value);
}

static void join_choices(const char *const *choices, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; choices && choices[i] && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", choices[i]);
}

static qh_status set_enum(const qh_param *p, void *cfg, const char *value, qh_error *err)
{
    for (int i = 0; p->choices && p->choices[i]; i++) {
        if (strcmp(p->choices[i], value) == 0) {
            field_put(cfg, p, &i, sizeof i);
            return QH_OK;
        }
    }
    char list[384];
    join_choices(p->choices, list, sizeof list);
    return qh_error_set(err, QH_E_CONFIG, "%s: '%s' is not one of: %s", p->name, value, list);
}

qh_status qh_config_set(const qh_param *params, void *cfg, const char *key, const char *value, qh_error *err)
{
    const qh_param *p = qh_param_find(params, key);
    if (!p)
        return qh_error_set(err, QH_E_CONFIG, "unknown key '%s'", key);
    if (!value)
        value = "";
    switch (p->type) {
    case QH_PARAM_INT: return set_int(p, cfg, value, err);
    case QH_PARAM_DOUBLE: return set_double(p, cfg, value, err);
    case QH_PARAM_BOOL: return set_bool(p, cfg, value, err);
    case QH_PARAM_ENUM: return set_enum(p, cfg, value, err);
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: {
        char *s = strdup(value);
        if (!s)
            return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", p->name);
        put_str(cfg, p, s);
        return QH_OK;
    }
    }
    return qh_error_set(err, QH_E_INTERNAL, "%s: parameter has unknown type %d", p->name, (int)p->type);
}

/* ---------------------------------------------------------------- formatting */

static void format_value(const qh_param *p, qh_param_value v, char *buf, size_t size)
{
    switch (p->type) {
    case QH_PARAM_INT: snprintf(buf, size, "%" PRId64, v.i); return;
    case QH_PARAM_DOUBLE: snprintf(buf, size, "%g", v.d); return;
    case QH_PARAM_BOOL: snprintf(buf, size, "%s", v.i ? "true" : "false"); return;
    case QH_PARAM_ENUM: {
        int n = 0;
        while (p->choices && p->choices[n])
            n++;
        snprintf(buf, size, "%s", v.i >= 0 && v.i < n ? p->choices[v.i] : "(invalid)");
        return;
    }
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: snprintf(buf, size, "%s", v.s ? v.s : "(unset)"); return;
    }
    snprintf(buf, size, "?");
}

void qh_config_format(const qh_param *p, const void *cfg, char *buf, size_t size)
{
    qh_param_value v = {.i = 0};
    switch (p->type) {
    case QH_PARAM_INT: field_get(cfg, p, &v.i, sizeof v.i); break;
    case QH_PARAM_DOUBLE: field_get(cfg, p, &v.d, sizeof v.d); break;
    case QH_PARAM_BOOL:
    case QH_PARAM_ENUM: {
        int i;
        field_get(cfg, p, &i, sizeof i);
        v.i = i;
        break;
    }
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: v.s = get_str(cfg, p); break;
    }
    format_value(p, v, buf, size);
}

void qh_param_format_default(const qh_param *p, char *buf, size_t size)
{
    if (p->flags & QH_PF_REQUIRED)
        snprintf(buf, size, "(required)");
    else
        format_value(p, p->def, buf, size);
}

/* ---------------------------------------------------------------- suggestions */

#define SUGGEST_MAX_LEN 64

/* Levenshtein distance with two rolling rows; names are short INI keys. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int prev[SUGGEST_MAX_LEN + 1], cur[SUGGEST_MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

const char *qh_param_suggest(const qh_param *params, const char *key)
{
    size_t lk = strlen(key);
    if (lk == 0 || lk > SUGGEST_MAX_LEN)
        return NULL;
    const char *best = NULL;
    int best_d = 3; /* suggest only within distance 2 */
    for (const qh_param *p = params; p && p->name; p++) {
        size_t ln = strlen(p->name);
        if (ln > SUGGEST_MAX_LEN)
            continue;
        int d = edit_distance(key, p->name);
        /* a name that shares nothing with the key ("x" vs "lr") is no suggestion */
        size_t longest = lk > ln ? lk : ln;
        if (d < best_d && (size_t)d < longest) {
            best = p->name;
            best_d = d;
        }
    }
    return best;
}
