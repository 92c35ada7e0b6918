/* list.c - plugin listings generated entirely from the plugins' descriptors and parameter tables. */
#include "list.h"

#include <stdlib.h>
#include <string.h>

#include "qhost/qh_config.h"

static const qh_kind kind_order[] = {QH_KIND_MODEL, QH_KIND_DATASET, QH_KIND_PRUNER, QH_KIND_QUANTIZER};

static int by_name(const void *a, const void *b)
{
    const qh_plugin *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static void param_range(const qh_param *p, char *buf, size_t size)
{
    buf[0] = '\0';
    if (p->type == QH_PARAM_ENUM && p->choices) {
        size_t used = (size_t)snprintf(buf, size, "{");
        for (int i = 0; p->choices[i] && used < size; i++)
            used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", p->choices[i]);
        if (used < size)
            snprintf(buf + used, size - used, "}");
    } else if (p->type == QH_PARAM_INT || p->type == QH_PARAM_DOUBLE) {
        char lo[32] = "-inf", hi[32] = "inf";
        if (p->flags & QH_PF_HAS_MIN)
            snprintf(lo, sizeof lo, "%g", p->min);
        if (p->flags & QH_PF_HAS_MAX)
            snprintf(hi, sizeof hi, "%g", p->max);
        if (p->flags & (QH_PF_HAS_MIN | QH_PF_HAS_MAX))
            snprintf(buf, size, "[%s, %s]", lo, hi);
    } else if (p->type == QH_PARAM_BOOL) {
        snprintf(buf, size, "{true, false}");
    }
}

static void print_params(const qh_plugin *pl, FILE *out)
{
    if (!pl->params[0].name) {
        fprintf(out, "      (no parameters)\n");
        return;
    }
    for (const qh_param *p = pl->params; p->name; p++) {
        char def[128], range[256];
        if (p->flags & QH_PF_REQUIRED)
            snprintf(def, sizeof def, "(required)");
        else
            qh_param_format_default(p, def, sizeof def);
        param_range(p, range, sizeof range);
        fprintf(out, "      %-14s %-7s %-22s %-22s %-9s %s\n", p->name, qh_param_type_name(p->type), def, range,
                p->unit ? p->unit : "-", p->help ? p->help : "");
    }
}

static void print_plugin_line(const qh_plugin *p, FILE *out)
{
    char abi[16];
    snprintf(abi, sizeof abi, "%u.%u", p->abi_major, p->abi_minor);
    fprintf(out, "%-10s %-12s %-8s %-4s %s\n", qh_kind_name(p->kind), p->name, p->version ? p->version : "-", abi,
            p->path);
    fprintf(out, "           %s\n", p->summary);
}

void cli_list_plugins(const qh_registry *reg, bool verbose, FILE *out)
{
    int n = qh_registry_count(reg);
    const qh_plugin **all = calloc((size_t)n + 1, sizeof *all);
    if (!all)
        return;
    fprintf(out, "%-10s %-12s %-8s %-4s %s\n", "KIND", "NAME", "VERSION", "ABI", "FILE / SUMMARY");
    for (size_t k = 0; k < sizeof kind_order / sizeof kind_order[0]; k++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (qh_registry_get(reg, i)->kind == kind_order[k])
                all[m++] = qh_registry_get(reg, i);
        qsort(all, (size_t)m, sizeof *all, by_name);
        for (int i = 0; i < m; i++) {
            print_plugin_line(all[i], out);
            if (verbose) {
                fprintf(out, "      %-14s %-7s %-22s %-22s %-9s %s\n", "PARAMETER", "TYPE", "DEFAULT",
                        "RANGE / CHOICES", "UNIT", "HELP");
                print_params(all[i], out);
            }
        }
    }
    free(all);
}

int cli_describe(const qh_registry *reg, const char *name, FILE *out, FILE *err_out)
{
    const char *slash = strchr(name, '/');
    qh_kind want = 0;
    const char *base = name;
    if (slash) {
        char kind[32];
        snprintf(kind, sizeof kind, "%.*s", (int)(slash - name), name);
        if (!qh_kind_from_name(kind, &want)) {
            fprintf(err_out, "qhost: error: --describe %s: unknown kind '%s' (model, dataset, pruner, quantizer)\n",
                    name, kind);
            return 2;
        }
        base = slash + 1;
    }
    const qh_plugin *found = NULL;
    int matches = 0;
    for (int i = 0; i < qh_registry_count(reg); i++) {
        const qh_plugin *p = qh_registry_get(reg, i);
        if (strcmp(p->name, base) == 0 && (!want || p->kind == want)) {
            found = p;
            matches++;
        }
    }
    if (matches == 0) {
        fprintf(err_out, "qhost: error: --describe: no plugin named '%s' (see qhost --list-plugins)\n", name);
        return 2;
    }
    if (matches > 1) {
        fprintf(err_out, "qhost: error: --describe: '%s' names plugins of several kinds; write KIND/%s\n", name, base);
        return 2;
    }
    fprintf(out, "%s %s %s (ABI %u.%u, library %s)\n", qh_kind_name(found->kind), found->name,
            found->version ? found->version : "", found->abi_major, found->abi_minor,
            found->lib_name ? found->lib_name : "?");
    fprintf(out, "file: %s\n%s\n", found->path, found->summary);
    if (found->help)
        fprintf(out, "\n%s\n", found->help);
    fprintf(out, "\nparameters:\n");
    fprintf(out, "      %-14s %-7s %-22s %-22s %-9s %s\n", "PARAMETER", "TYPE", "DEFAULT", "RANGE / CHOICES", "UNIT",
            "HELP");
    print_params(found, out);
    return 0;
}
