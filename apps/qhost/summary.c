/* summary.c - `qhost --summary MODEL`: builds the model plugin's graph for an input shape and
 * prints every layer with its output shape, parameters and MACs, the bytes per sample of the
 * executor's batch-sized buffers at inference and in training, then `params: N` and `macs: N`.
 * With `--set weights=FILE` the graph is the one the file loads into: a model whose channels were
 * removed (physical structured pruning) is shown at its compacted size. */
#include "summary.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_engine.h"

static int parse_input(const char *v, qh_model_input *in)
{
    int c, h, w;
    char extra;
    if (sscanf(v, "%dx%dx%d%c", &c, &h, &w, &extra) != 3 || c < 1 || h < 1 || w < 1 || c > 4096 || h > 65536 ||
        w > 65536)
        return -1;
    in->channels = c;
    in->height = h;
    in->width = w;
    return 0;
}

static int64_t node_params(qh_graph *g, int32_t node)
{
    int64_t n = 0;
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++) {
        const qh_weight *w = qh_graph_weight(g, i);
        if (w->node == node && !w->is_buffer)
            n += qh_tensor_numel(w->value);
    }
    return n;
}

int cli_summary(const qh_registry *reg, const char *model, const qh_override *ov, int n_ov, FILE *out,
                FILE *err_out)
{
    const qh_plugin *p = qh_registry_find(reg, QH_KIND_MODEL, model);
    if (!p) {
        char names[1024];
        qh_registry_names(reg, QH_KIND_MODEL, names, sizeof names);
        fprintf(err_out, "qhost: error: --summary: unknown model '%s'; available: %s\n", model, names);
        return 2;
    }
    qh_model_input in = {3, 32, 32, 10};
    void *cfg = qh_config_new(p->params, p->config_size);
    const char *weights = NULL;
    int rc = 0;
    for (int i = 0; i < n_ov && rc == 0; i++) {
        if (ov[i].section && strcmp(ov[i].section, "model") != 0) {
            fprintf(err_out, "qhost: error: --summary: --set %s.%s: only model keys apply\n", ov[i].section, ov[i].key);
            rc = 2;
        } else if (strcmp(ov[i].key, "input") == 0) {
            if (parse_input(ov[i].value, &in) != 0) {
                fprintf(err_out, "qhost: error: --summary: input '%s': expected CxHxW, e.g. 3x32x32\n", ov[i].value);
                rc = 2;
            }
        } else if (strcmp(ov[i].key, "classes") == 0) {
            char *end;
            long n = strtol(ov[i].value, &end, 10);
            if (*end || n < 1 || n > 1000000) {
                fprintf(err_out, "qhost: error: --summary: classes '%s': expected a positive count\n", ov[i].value);
                rc = 2;
            }
            in.num_classes = (int32_t)n;
        } else if (strcmp(ov[i].key, "weights") == 0) {
            weights = ov[i].value;
        } else {
            qh_error e = {{0}};
            if (qh_config_set(p->params, cfg, ov[i].key, ov[i].value, &e) != QH_OK) {
                fprintf(err_out, "qhost: error: --summary: model %s: %s\n", model, e.msg);
                rc = 2;
            }
        }
    }
    qh_error err = {{0}};
    qh_graph *g = rc ? NULL : qh_graph_new(in.channels, in.height, in.width, in.num_classes, &err);
    if (!rc && (!g || qh_model_build(p, cfg, &in, g, &err) != QH_OK || qh_graph_finalize(g, &err) != QH_OK)) {
        fprintf(err_out, "qhost: error: --summary: model %s on %dx%dx%d input: %s\n", model, in.channels, in.height,
                in.width, err.msg);
        rc = 2;
    }
    if (!rc && weights && qh_model_load(g, weights, &err) != QH_OK) {
        fprintf(err_out, "qhost: error: --summary: model %s: %s\n", model, err.msg);
        rc = 2;
    }
    if (!rc) {
        fprintf(out, "%s on %dx%dx%d input, %d classes%s%s\n", model, in.channels, in.height, in.width, in.num_classes,
                weights ? ", weights " : "", weights ? weights : "");
        fprintf(out, "%-4s %-32s %-18s %-20s %14s %16s\n", "#", "layer", "op", "output", "params", "macs");
        for (int32_t i = 0; i < qh_graph_n_nodes(g); i++) {
            int64_t shape[QH_MAX_DIMS];
            int32_t nd = qh_graph_node_shape(g, i, shape);
            char s[64];
            size_t used = 0;
            for (int k = 0; k < nd && used < sizeof s; k++)
                used += (size_t)snprintf(s + used, sizeof s - used, k ? "x%" PRId64 : "%" PRId64, shape[k]);
            fprintf(out, "%-4d %-32s %-18s %-20s %14" PRId64 " %16" PRId64 "\n", i, qh_graph_node_name(g, i),
                    qh_op_name(qh_graph_node_op(g, i)), s, node_params(g, i), qh_graph_node_macs(g, i));
        }
        int64_t infer_b, train_b;
        if (qh_graph_buffer_bytes(g, &infer_b, &train_b, &err) == QH_OK)
            fprintf(out, "buffers per sample: inference %.1f KiB, training %.1f KiB\n", (double)infer_b / 1024.0,
                    (double)train_b / 1024.0);
        fprintf(out, "params: %" PRId64 "\nmacs: %" PRId64 "\n", qh_graph_n_params(g), qh_graph_macs(g));
    }
    qh_graph_free(g);
    qh_config_free(p->params, cfg);
    return rc;
}
