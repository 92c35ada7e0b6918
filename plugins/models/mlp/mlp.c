/* mlp.c - a multi-layer perceptron over the flattened input: fc1 ... fcN, named as an nn.Module
 * with attributes fc1..fcN would name them in PyTorch. */
#include <qhost/qhost.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mlp_cfg {
    const char *hidden;
    int activation;
    double dropout;
} mlp_cfg;

static const char *const activations[] = {"relu", "tanh", NULL};

static const qh_param mlp_params[] = {
    QH_P_STRING("hidden", mlp_cfg, hidden, "256,128", "hidden layer widths, comma-separated (empty = linear model)"),
    QH_P_ENUM("activation", mlp_cfg, activation, 0, activations, "activation after each hidden layer"),
    QH_P_DOUBLE("dropout", mlp_cfg, dropout, 0.0, 0.0, 0.95, "fraction", "dropout after each hidden activation"),
    QH_P_END,
};

static qh_status mlp_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const mlp_cfg *cfg = cfg_;
    if (qh_graph_flatten(g, "flatten", QH_INPUT, err) < 0)
        return QH_E_INVAL;
    const char *p = cfg->hidden ? cfg->hidden : "";
    int layer = 1;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long width = strtol(p, &end, 10);
        if (end == p || errno || width < 1 || width > 1 << 20 || (*end && *end != ',' && *end != ' '))
            return qh_error_set(err, QH_E_INVAL, "hidden: '%s' is not a list of positive widths", cfg->hidden);
        char name[32];
        snprintf(name, sizeof name, "fc%d", layer++);
        if (qh_graph_linear(g, name, QH_PREV, (int32_t)width, true, err) < 0)
            return QH_E_INVAL;
        if ((cfg->activation == 1 ? qh_graph_tanh(g, NULL, QH_PREV, err) : qh_graph_relu(g, NULL, QH_PREV, err)) < 0)
            return QH_E_INVAL;
        if (cfg->dropout > 0.0 && qh_graph_dropout(g, NULL, QH_PREV, cfg->dropout, err) < 0)
            return QH_E_INVAL;
        p = end;
    }
    char name[32];
    snprintf(name, sizeof name, "fc%d", layer);
    return qh_graph_linear(g, name, QH_PREV, in->num_classes, true, err) < 0 ? QH_E_INVAL : QH_OK;
}

static const qh_model_ops mlp_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = mlp_build,
};

static const qh_plugin_desc mlp_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "mlp",
    .summary = "Multi-layer perceptron with configurable hidden widths",
    .params = mlp_params,
    .config_size = sizeof(mlp_cfg),
    .ops.model = &mlp_ops,
};

static const qh_plugin_desc *const plugins[] = {&mlp_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-mlp",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
