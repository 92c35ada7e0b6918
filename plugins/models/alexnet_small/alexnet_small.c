/* alexnet_small.c - AlexNetSmall of seed 004 (jarvis08/PerClusterQuantization models/alexnet.py) for
 * 32 x 32 inputs: five convolutions (96/256/384/384/256), three 3x3 / 2 max-pools, global average
 * pooling and a 256 -> 4096 -> 4096 -> classes head, no BatchNorm; 21,594,506 parameters for 3
 * channels and 10 classes. Names as that nn.Sequential names them: features.0 ... features.10,
 * classifier.1 / .4 / .6. Maps 32 -> 15 -> 7 -> 3 -> 1. */
#include <qhost/qhost.h>

#include <stdio.h>

/* Each 3x3 / 2 max-pool maps n to (n - 3) / 2 + 1 and needs n >= 3; the convolutions keep the
 * size, so the third pool needs 3, the second 7 and the first 15 pixels. */
#define ALEXNET_SMALL_MIN_SIZE 15

typedef struct alexnet_small_cfg {
    double dropout;
} alexnet_small_cfg;

static const qh_param alexnet_small_params[] = {
    QH_P_DOUBLE("dropout", alexnet_small_cfg, dropout, 0.5, 0.0, 0.95, "fraction",
                "classifier.0 and classifier.3 (nn.Dropout's default 0.5, as in the seed)"),
    QH_P_END,
};

typedef struct small_conv {
    int index, out, kernel, pad;
    bool pool;
} small_conv;

static const small_conv convs[5] = {
    {0, 96, 5, 2, true}, {3, 256, 5, 2, true}, {6, 384, 3, 1, false}, {8, 384, 3, 1, false}, {10, 256, 3, 1, true},
};

static bool add_features(qh_graph *g, qh_error *err)
{
    const qh_pool2d_params pool = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2};
    int32_t x = QH_INPUT;
    for (int i = 0; i < 5; i++) {
        const small_conv *s = &convs[i];
        const qh_conv2d_params c = {.out_channels = s->out, .kernel_h = s->kernel, .kernel_w = s->kernel,
                                    .pad_h = s->pad, .pad_w = s->pad, .bias = true};
        char name[32];
        snprintf(name, sizeof name, "features.%d", s->index);
        if (qh_graph_conv2d(g, name, x, &c, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
            (s->pool && qh_graph_maxpool2d(g, NULL, QH_PREV, &pool, err) < 0))
            return false;
        x = QH_PREV;
    }
    return true;
}

static qh_status alexnet_small_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const alexnet_small_cfg *cfg = cfg_;
    if (in->height < ALEXNET_SMALL_MIN_SIZE || in->width < ALEXNET_SMALL_MIN_SIZE)
        return qh_error_set(err, QH_E_INVAL, "a %dx%d input is too small (at least %dx%d; made for 32x32)",
                            in->height, in->width, ALEXNET_SMALL_MIN_SIZE, ALEXNET_SMALL_MIN_SIZE);
    if (!add_features(g, err) || qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 1, 1, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_dropout(g, "classifier.0", QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "classifier.1", QH_PREV, 4096, true, err) < 0 ||
        qh_graph_relu(g, "classifier.2", QH_PREV, err) < 0 ||
        qh_graph_dropout(g, "classifier.3", QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "classifier.4", QH_PREV, 4096, true, err) < 0 ||
        qh_graph_relu(g, "classifier.5", QH_PREV, err) < 0 ||
        qh_graph_linear(g, "classifier.6", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops alexnet_small_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = alexnet_small_build,
};

static const qh_plugin_desc alexnet_small_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "alexnet_small",
    .summary = "AlexNetSmall for 32x32 inputs (seed 004; 21,594,506 parameters on 3ch/10 classes)",
    .params = alexnet_small_params,
    .config_size = sizeof(alexnet_small_cfg),
    .ops.model = &alexnet_small_ops,
};

static const qh_plugin_desc *const plugins[] = {&alexnet_small_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-alexnet_small",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
