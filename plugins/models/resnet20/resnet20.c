/* resnet20.c - ResNet-20 for CIFAR (He et al. 2016) as seed 004 defines it
 * (jarvis08/PerClusterQuantization models/resnet.py ResNet20 with torchvision's BasicBlock):
 * conv1 3x3 16 (no bias) + bn1 + ReLU, layer1..layer3 of three BasicBlocks (16, 32 / 2, 64 / 2),
 * average pooling and fc 64 -> classes. Names are torchvision's: layer2.0.conv1, layer2.0.bn2,
 * layer2.0.downsample.0 / .1, fc.
 *
 * shortcut = B (the seed, 272,474 parameters): 1x1 conv + BN where the shape changes.
 * shortcut = A (He et al.'s CIFAR net and the anchors, 269,722 parameters): x[:, :, ::2, ::2] with
 * zero-padded channels, no parameters.
 * The seed pools with AvgPool2d(8) over the 8x8 map of a 32x32 input; global average pooling is
 * the same there and also serves other sizes (7x7 maps of 28x28 inputs). */
#include <qhost/qhost.h>

#include <stdio.h>

#include "../common/qm_basic_block.h"

typedef struct resnet20_cfg {
    int shortcut;
} resnet20_cfg;

static const char *const shortcuts[] = {"B", "A", NULL};

static const qh_param resnet20_params[] = {
    QH_P_ENUM("shortcut", resnet20_cfg, shortcut, 0, shortcuts,
              "B = 1x1 conv + BN where the shape changes (seed 004); A = strided identity, zero-padded channels"),
    QH_P_END,
};

static qh_status resnet20_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const resnet20_cfg *cfg = cfg_;
    const qh_conv2d_params stem = {.out_channels = 16, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    if (qh_graph_conv2d(g, "conv1", QH_INPUT, &stem, err) < 0 ||
        qh_graph_batchnorm2d(g, "bn1", QH_PREV, 1e-5, 0.1, err) < 0)
        return QH_E_INVAL;
    int32_t x = qh_graph_relu(g, NULL, QH_PREV, err), cin = 16;
    for (int stage = 0; stage < 3 && x >= 0; stage++) {
        int32_t planes = 16 << stage;
        for (int b = 0; b < 3 && x >= 0; b++) {
            char name[32];
            snprintf(name, sizeof name, "layer%d.%d", stage + 1, b);
            x = qm_basic_block(g, name, x, cin, planes, stage > 0 && b == 0 ? 2 : 1, cfg->shortcut == 1, err);
            cin = planes;
        }
    }
    if (x < 0 || qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 1, 1, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_linear(g, "fc", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops resnet20_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = resnet20_build,
};

static const qh_plugin_desc resnet20_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "resnet20",
    .summary = "ResNet-20 for 32x32 inputs (seed 004; 272,474 parameters, 269,722 with shortcut = A)",
    .params = resnet20_params,
    .config_size = sizeof(resnet20_cfg),
    .ops.model = &resnet20_ops,
};

static const qh_plugin_desc *const plugins[] = {&resnet20_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-resnet20",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
