/* qh_sweep_values.c - lists and ranges of stage keys (see qh_sweep_values.h).
 *
 * Values are kept as text, so every one of them goes through qh_config_set exactly like a single
 * value would (types, ranges, choices). Float ranges are generated as start + i * step, never by
 * adding the step up, and printed with 15 significant digits: 1.0:2.0:0.05 gives "1.05", "1.1", ...,
 * "2", the numbers a person would have typed, with no accumulated error. */
#include "config/qh_sweep_values.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/qh_timing.h"

/* A range may end up to this fraction of a step short of its stop and still include it: (2.0 - 1.0)
 * / 0.05 is 19.999999999999996 in binary floating point. */
#define RANGE_TOLERANCE 1e-9

bool qhi_sweep_is_list(const qh_param *p, const char *text)
{
    if (!p || !text)
        return false;
    switch (p->type) {
    case QH_PARAM_INT:
    case QH_PARAM_DOUBLE: return strchr(text, ',') || strstr(text, "..") || strchr(text, ':');
    case QH_PARAM_BOOL:
    case QH_PARAM_ENUM: return strchr(text, ',') != NULL;
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: return false;
    }
    return false;
}

void qhi_sweep_axis_clear(qh_sweep_axis *ax)
{
    for (int32_t i = 0; ax->values && i < ax->n_values; i++)
        free(ax->values[i]);
    free(ax->values);
    free(ax->key);
    memset(ax, 0, sizeof *ax);
}

/* ---------------------------------------------------------------- building the value list */

typedef struct value_list {
    const qh_param *p;
    const char *text; /* the whole value, for messages */
    qh_sweep_axis *ax;
    int32_t cap;
} value_list;

static qh_status push(value_list *l, const char *v, qh_error *err)
{
    qh_sweep_axis *ax = l->ax;
    if (ax->n_values >= QHI_SWEEP_MAX_POINTS)
        return qh_error_set(err, QH_E_CONFIG, "%s: '%s' gives more than %d values", l->p->name, l->text,
                            QHI_SWEEP_MAX_POINTS);
    if (ax->n_values == l->cap) {
        int32_t cap = l->cap ? 2 * l->cap : 8;
        char **grown = realloc(ax->values, (size_t)cap * sizeof *grown);
        if (!grown)
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        ax->values = grown;
        l->cap = cap;
    }
    if (!(ax->values[ax->n_values] = strdup(v)))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    ax->n_values++;
    return QH_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static bool parse_int(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return end != s && *end == '\0' && errno == 0;
}

static bool parse_double(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*v);
}

/* ---------------------------------------------------------------- ranges */

static qh_status check_count(value_list *l, const char *item, double count, qh_error *err)
{
    int32_t before = l->ax->n_values;
    if (count <= (double)(QHI_SWEEP_MAX_POINTS - before))
        return QH_OK;
    if (before == 0)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' gives %.0f values; at most %d", l->p->name, item,
                            count, QHI_SWEEP_MAX_POINTS);
    return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' gives %.0f values, %.0f with the others of the list; at most "
                        "%d", l->p->name, item, count, count + before, QHI_SWEEP_MAX_POINTS);
}

/* a..b: the integers from a to b. */
static qh_status expand_dots(value_list *l, char *item, char *dots, qh_error *err)
{
    char shown[128];
    snprintf(shown, sizeof shown, "%s", item);
    *dots = '\0';
    char *a = trim(item), *b = trim(dots + 2);
    long long lo, hi;
    if (!parse_int(a, &lo) || !parse_int(b, &hi))
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s': '%s' is not an integer (a..b counts whole numbers; "
                            "use start:stop:step for fractions)", l->p->name, shown, parse_int(a, &lo) ? b : a);
    if (lo > hi)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' is empty: its start is above its stop (count down "
                            "with %lld:%lld:-1)", l->p->name, shown, lo, hi);
    double count = (double)hi - (double)lo + 1.0;
    qh_status st = check_count(l, shown, count, err);
    for (int64_t i = 0; st == QH_OK && i < (int64_t)count; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", lo + (long long)i);
        st = push(l, buf, err);
    }
    return st;
}

static qh_status split_step(value_list *l, char *item, const char *shown, char **part, qh_error *err)
{
    int n = 0;
    for (char *s = item;; n++) {
        char *colon = strchr(s, ':');
        if (n < 3)
            part[n] = s;
        if (!colon)
            break;
        *colon = '\0';
        s = colon + 1;
    }
    if (n != 2)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' must be start:stop:step", l->p->name, shown);
    for (int i = 0; i < 3; i++)
        part[i] = trim(part[i]);
    return QH_OK;
}

static qh_status int_step(value_list *l, char **part, const char *shown, qh_error *err)
{
    long long v[3];
    for (int i = 0; i < 3; i++)
        if (!parse_int(part[i], &v[i]))
            return qh_error_set(err, QH_E_CONFIG, "%s: range '%s': '%s' is not an integer", l->p->name, shown,
                                part[i]);
    if (v[2] == 0)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s': the step is 0", l->p->name, shown);
    if ((v[1] - v[0] > 0 && v[2] < 0) || (v[1] - v[0] < 0 && v[2] > 0))
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' is empty: the step goes away from the stop",
                            l->p->name, shown);
    double count = floor(((double)v[1] - (double)v[0]) / (double)v[2]) + 1.0;
    qh_status st = check_count(l, shown, count, err);
    for (int64_t i = 0; st == QH_OK && i < (int64_t)count; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", v[0] + (long long)i * v[2]);
        st = push(l, buf, err);
    }
    return st;
}

static qh_status double_step(value_list *l, char **part, const char *shown, qh_error *err)
{
    double v[3];
    for (int i = 0; i < 3; i++)
        if (!parse_double(part[i], &v[i]))
            return qh_error_set(err, QH_E_CONFIG, "%s: range '%s': '%s' is not a finite number", l->p->name, shown,
                                part[i]);
    if (v[2] == 0.0)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s': the step is 0", l->p->name, shown);
    double q = (v[1] - v[0]) / v[2];
    if (q < -RANGE_TOLERANCE)
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' is empty: the step goes away from the stop",
                            l->p->name, shown);
    if (!isfinite(q))
        return qh_error_set(err, QH_E_CONFIG, "%s: range '%s' gives too many values; at most %d", l->p->name, shown,
                            QHI_SWEEP_MAX_POINTS);
    double count = floor(q + RANGE_TOLERANCE * fmax(1.0, q)) + 1.0;
    qh_status st = check_count(l, shown, count, err);
    for (int64_t i = 0; st == QH_OK && i < (int64_t)count; i++) {
        char buf[40];
        double x = v[0] + (double)i * v[2];
        snprintf(buf, sizeof buf, "%.15g", x == 0.0 ? 0.0 : x); /* no "-0" */
        st = push(l, buf, err);
    }
    return st;
}

static qh_status expand_step(value_list *l, char *item, qh_error *err)
{
    char shown[128], *part[3];
    snprintf(shown, sizeof shown, "%s", item);
    qh_status st = split_step(l, item, shown, part, err);
    if (st != QH_OK)
        return st;
    return l->p->type == QH_PARAM_INT ? int_step(l, part, shown, err) : double_step(l, part, shown, err);
}

static qh_status expand_item(value_list *l, char *item, qh_error *err)
{
    item = trim(item);
    if (!*item)
        return qh_error_set(err, QH_E_CONFIG, "%s: empty value in the list '%s'", l->p->name, l->text);
    if (l->p->type == QH_PARAM_INT || l->p->type == QH_PARAM_DOUBLE) {
        char *dots = strstr(item, "..");
        if (dots)
            return expand_dots(l, item, dots, err);
        if (strchr(item, ':'))
            return expand_step(l, item, err);
    }
    return push(l, item, err);
}

/* ---------------------------------------------------------------- duplicates */

/* A value twice is almost surely a typo, and would run the same point twice. Numbers compare by
 * value (4 and 4.0 are the same), other values by their text. */
static qh_status check_duplicates(const value_list *l, qh_error *err)
{
    const qh_sweep_axis *ax = l->ax;
    bool numeric = l->p->type == QH_PARAM_INT || l->p->type == QH_PARAM_DOUBLE;
    if (!numeric) {
        for (int32_t i = 0; i < ax->n_values; i++)
            for (int32_t j = 0; j < i; j++)
                if (strcmp(ax->values[i], ax->values[j]) == 0)
                    return qh_error_set(err, QH_E_CONFIG, "%s: '%s' appears twice in '%s'", l->p->name,
                                        ax->values[i], l->text);
        return QH_OK;
    }
    double *v = malloc(sizeof(double) * (size_t)(ax->n_values + 1));
    if (!v)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    int32_t n = 0;
    for (int32_t i = 0; i < ax->n_values; i++)
        if (parse_double(ax->values[i], &v[n])) /* what does not parse is reported by qh_config_set */
            n++;
    qsort(v, (size_t)n, sizeof *v, qh_cmp_double);
    qh_status st = QH_OK;
    for (int32_t i = 1; i < n && st == QH_OK; i++)
        if (v[i] == v[i - 1])
            st = qh_error_set(err, QH_E_CONFIG, "%s: %.15g appears twice in '%s'", l->p->name, v[i], l->text);
    free(v);
    return st;
}

qh_status qhi_sweep_expand(const qh_param *p, const char *text, qh_sweep_axis *ax, qh_error *err)
{
    memset(ax, 0, sizeof *ax);
    value_list l = {.p = p, .text = text, .ax = ax};
    char *work = strdup(text);
    if (!work || !(ax->key = strdup(p->name))) {
        free(work);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    qh_status st = QH_OK;
    for (char *item = work; st == QH_OK;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        st = expand_item(&l, item, err);
        if (!comma)
            break;
        item = comma + 1;
    }
    free(work);
    if (st == QH_OK)
        st = check_duplicates(&l, err);
    if (st != QH_OK)
        qhi_sweep_axis_clear(ax);
    return st;
}

/* ---------------------------------------------------------------- a stage's axes and points */

qh_status qhi_sweep_add_axis(qh_stage *st, qh_sweep_axis *ax, qh_error *err)
{
    qh_sweep_axis *grown = realloc(st->axes, (size_t)(st->n_axes + 1) * sizeof *grown);
    if (!grown)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    st->axes = grown;
    st->axes[st->n_axes++] = *ax;
    memset(ax, 0, sizeof *ax);
    return QH_OK;
}

void qhi_sweep_free_axes(qh_stage *st)
{
    for (int32_t i = 0; st->axes && i < st->n_axes; i++)
        qhi_sweep_axis_clear(&st->axes[i]);
    free(st->axes);
    st->axes = NULL;
    st->n_axes = 0;
}

int64_t qhi_sweep_n_points(const qh_stage *st)
{
    int64_t n = 1;
    for (int32_t i = 0; i < st->n_axes; i++) {
        n *= st->axes[i].n_values; /* each factor <= the maximum, so this cannot overflow */
        if (n > QHI_SWEEP_MAX_POINTS)
            return -1;
    }
    return n;
}

const char *qhi_sweep_value(const qh_stage *st, int64_t k, int32_t i)
{
    for (int32_t j = st->n_axes - 1; j > i; j--)
        k /= st->axes[j].n_values;
    return st->axes[i].values[k % st->axes[i].n_values];
}

qh_status qhi_sweep_apply(const qh_stage *st, int64_t k, void *host_cfg, void *plugin_cfg, qh_error *err)
{
    for (int32_t i = 0; i < st->n_axes; i++) {
        const qh_sweep_axis *ax = &st->axes[i];
        const qh_param *table = ax->host ? qh_stage_params(st->type) : st->plugin ? st->plugin->params : NULL;
        void *cfg = ax->host ? host_cfg : plugin_cfg;
        qh_status s = qh_config_set(table, cfg, ax->key, qhi_sweep_value(st, k, i), err);
        if (s != QH_OK)
            return s;
    }
    return QH_OK;
}

void qhi_sweep_describe(const qh_stage *st, int64_t k, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < st->n_axes && used + 1 < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s=%s", i ? ", " : "", st->axes[i].key,
                                 qhi_sweep_value(st, k, i));
}
