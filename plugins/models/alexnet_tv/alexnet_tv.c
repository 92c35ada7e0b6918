/* alexnet_tv.c - torchvision's AlexNet with the head of seed 001 (Eli838/CS-190-Project): names
 * features.0 ... features.10, classifier.1 / .4 / .6, classifier 9216 -> 4096 -> 1024 -> classes
 * (44,428,106 parameters for 3 channels and 10 classes), so an ImageNet-pretrained torchvision
 * state_dict loads with exclude = "classifier.4.*,classifier.6.*".
 *
 * The seed feeds 224 x 224 crops; inputs of another size are resized bilinearly to `resize` first. */
#include <qhost/qhost.h>

#include "../common/qm_resize_input.h"

#include <stdio.h>

/* conv 11x11 / 4 (pad 2) and three 3x3 / 2 max-pools need at least 63 x 63 pixels. */
#define ALEXNET_MIN_SIZE 63

typedef struct alexnet_tv_cfg {
    int64_t resize;
    double dropout;
} alexnet_tv_cfg;

static const qh_param alexnet_tv_params[] = {
    QH_P_INT("resize", alexnet_tv_cfg, resize, 224, 0, 4096, "pixels",
             "bilinear resize of other input sizes to resize x resize (0 = never; the seed uses 224)"),
    QH_P_DOUBLE("dropout", alexnet_tv_cfg, dropout, 0.5, 0.0, 0.95, "fraction",
                "classifier.0 and classifier.3 (torchvision's default 0.5)"),
    QH_P_END,
};

/* torchvision's features: index of the conv in the Sequential, its shape, and whether a 3x3 / 2
 * max-pool follows its ReLU. */
typedef struct tv_conv {
    int index, out, kernel, stride, pad;
    bool pool;
} tv_conv;

static const tv_conv convs[5] = {
    {0, 64, 11, 4, 2, true}, {3, 192, 5, 1, 2, true}, {6, 384, 3, 1, 1, false},
    {8, 256, 3, 1, 1, false}, {10, 256, 3, 1, 1, true},
};

static bool add_features(qh_graph *g, int32_t x, qh_error *err)
{
    const qh_pool2d_params pool = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2};
    for (int i = 0; i < 5; i++) {
        const tv_conv *t = &convs[i];
        const qh_conv2d_params c = {.out_channels = t->out, .kernel_h = t->kernel, .kernel_w = t->kernel,
                                    .stride_h = t->stride, .stride_w = t->stride, .pad_h = t->pad,
                                    .pad_w = t->pad, .bias = true};
        char name[32];
        snprintf(name, sizeof name, "features.%d", t->index);
        if (qh_graph_conv2d(g, name, x, &c, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
            (t->pool && qh_graph_maxpool2d(g, NULL, QH_PREV, &pool, err) < 0))
            return false;
        x = QH_PREV;
    }
    return true;
}

static qh_status alexnet_tv_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const alexnet_tv_cfg *cfg = cfg_;
    int32_t x;
    qh_status st = qm_resize_input(g, (int32_t)cfg->resize, ALEXNET_MIN_SIZE, in, &x, err);
    if (st != QH_OK)
        return st;
    if (!add_features(g, x, err) || qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 6, 6, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_dropout(g, "classifier.0", QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "classifier.1", QH_PREV, 4096, true, err) < 0 ||
        qh_graph_relu(g, "classifier.2", QH_PREV, err) < 0 ||
        qh_graph_dropout(g, "classifier.3", QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "classifier.4", QH_PREV, 1024, true, err) < 0 ||
        qh_graph_relu(g, "classifier.5", QH_PREV, err) < 0 ||
        qh_graph_linear(g, "classifier.6", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops alexnet_tv_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = alexnet_tv_build,
};

static const qh_plugin_desc alexnet_tv_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "alexnet_tv",
    .summary = "torchvision AlexNet with a 4096-1024-classes head, 224x224 (seed 001; 44,428,106 parameters)",
    .help = "Inputs of another size are resized bilinearly to `resize` first (0 = never; then at least 63x63).",
    .params = alexnet_tv_params,
    .config_size = sizeof(alexnet_tv_cfg),
    .ops.model = &alexnet_tv_ops,
};

static const qh_plugin_desc *const plugins[] = {&alexnet_tv_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-alexnet_tv",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
