/* alexnet.c - the AlexNet of seed 000 (mattiav90/AlexNet, main.py class AlexNet): torchvision's
 * AlexNet with BatchNorm after each ReLU (after the max-pool in blocks 1 and 2), named as that
 * class names its attributes: conv1..conv5, bn1..bn5, fc1..fc3 (57,047,114 parameters for 3
 * channels and 10 classes).
 *
 * The seed upscales CIFAR to 224 x 224; here a bilinear resize to `resize` x `resize` is the first
 * layer whenever the input has another size, so 32 x 32 data works unchanged. PyTorch registers
 * conv*, fc* before bn*, so its state_dict lists bn* last; names and shapes are what matter for
 * loading (safetensors is keyed by name), and this graph orders them as the forward pass runs. */
#include <qhost/qhost.h>

#include "../common/qm_resize_input.h"

#include <stdio.h>

/* conv1 (11x11 / 4, pad 2) and three 3x3 / 2 max-pools need at least 63 x 63 pixels. */
#define ALEXNET_MIN_SIZE 63

typedef struct alexnet_cfg {
    int64_t resize;
    double dropout;
} alexnet_cfg;

static const qh_param alexnet_params[] = {
    QH_P_INT("resize", alexnet_cfg, resize, 224, 0, 4096, "pixels",
             "bilinear resize of other input sizes to resize x resize (0 = never; the seed uses 224)"),
    QH_P_DOUBLE("dropout", alexnet_cfg, dropout, 0.5, 0.0, 0.95, "fraction", "dropout before fc1 and fc2"),
    QH_P_END,
};

typedef struct conv_block {
    int32_t out, kernel, stride, pad;
    bool pool; /* max-pool 3x3 / 2: before the BN in blocks 1-2, after it in block 5 */
} conv_block;

static const conv_block blocks[5] = {
    {64, 11, 4, 2, true}, {192, 5, 1, 2, true}, {384, 3, 1, 1, false}, {256, 3, 1, 1, false}, {256, 3, 1, 1, true},
};

static bool add_features(qh_graph *g, int32_t x, qh_error *err)
{
    const qh_pool2d_params pool = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2};
    for (int i = 0; i < 5; i++) {
        const conv_block *b = &blocks[i];
        const qh_conv2d_params c = {.out_channels = b->out, .kernel_h = b->kernel, .kernel_w = b->kernel,
                                    .stride_h = b->stride, .stride_w = b->stride, .pad_h = b->pad,
                                    .pad_w = b->pad, .bias = true};
        char conv[16], bn[16];
        snprintf(conv, sizeof conv, "conv%d", i + 1);
        snprintf(bn, sizeof bn, "bn%d", i + 1);
        bool pool_first = b->pool && i < 2;
        if (qh_graph_conv2d(g, conv, x, &c, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
            (pool_first && qh_graph_maxpool2d(g, NULL, QH_PREV, &pool, err) < 0) ||
            qh_graph_batchnorm2d(g, bn, QH_PREV, 1e-5, 0.1, err) < 0 ||
            (b->pool && !pool_first && qh_graph_maxpool2d(g, NULL, QH_PREV, &pool, err) < 0))
            return false;
        x = QH_PREV;
    }
    return true;
}

static qh_status alexnet_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const alexnet_cfg *cfg = cfg_;
    int32_t x;
    qh_status st = qm_resize_input(g, (int32_t)cfg->resize, ALEXNET_MIN_SIZE, in, &x, err);
    if (st != QH_OK)
        return st;
    if (!add_features(g, x, err) || qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 6, 6, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 || qh_graph_dropout(g, NULL, QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "fc1", QH_PREV, 4096, true, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_dropout(g, NULL, QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "fc2", QH_PREV, 4096, true, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_linear(g, "fc3", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops alexnet_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = alexnet_build,
};

static const qh_plugin_desc alexnet_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "alexnet",
    .summary = "AlexNet with BatchNorm after each ReLU, 224x224 (seed 000; 57,047,114 parameters on 3ch/10 classes)",
    .help = "Inputs of another size are resized bilinearly to `resize` first (0 = never; then at least 63x63).",
    .params = alexnet_params,
    .config_size = sizeof(alexnet_cfg),
    .ops.model = &alexnet_ops,
};

static const qh_plugin_desc *const plugins[] = {&alexnet_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-alexnet",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
