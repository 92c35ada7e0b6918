/* resnet18_cifar.c - the ResNet-18 of seed 002 (sicily496/DSC180A-QuantizedNNs, ResNet18ForCIFAR10):
 * torchvision resnet18 with conv1 replaced by a 3x3 / 1 convolution (pad 1, no bias), the 3x3 / 2
 * max-pool kept, and fc 512 -> classes; 11,173,962 parameters for 3 channels and 10 classes.
 * Names are torchvision's (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0 / .1, fc), so the
 * seed's pretrained_cifar10/resnet18_cifar10.pt state_dict loads unchanged. Maps for 32x32:
 * 32 -> 16 (max-pool) -> 16 -> 8 -> 4 -> 2 -> global average. */
#include <qhost/qhost.h>

#include <stdio.h>

#include "../common/qm_basic_block.h"

static qh_status resnet18_cifar_build(const void *cfg, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    (void)cfg;
    const qh_conv2d_params stem = {.out_channels = 64, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    const qh_pool2d_params pool = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    if (qh_graph_conv2d(g, "conv1", QH_INPUT, &stem, err) < 0 ||
        qh_graph_batchnorm2d(g, "bn1", QH_PREV, 1e-5, 0.1, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0)
        return QH_E_INVAL;
    int32_t x = qh_graph_maxpool2d(g, "maxpool", QH_PREV, &pool, err), cin = 64;
    for (int stage = 0; stage < 4 && x >= 0; stage++) {
        int32_t planes = 64 << stage;
        for (int b = 0; b < 2 && x >= 0; b++) {
            char name[32];
            snprintf(name, sizeof name, "layer%d.%d", stage + 1, b);
            x = qm_basic_block(g, name, x, cin, planes, stage > 0 && b == 0 ? 2 : 1, false, err);
            cin = planes;
        }
    }
    if (x < 0 || qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 1, 1, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_linear(g, "fc", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops resnet18_cifar_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = resnet18_cifar_build,
};

static const qh_plugin_desc resnet18_cifar_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "resnet18_cifar",
    .summary = "ResNet-18 with a 3x3 stem and the max-pool kept, for 32x32 inputs (seed 002; 11,173,962 parameters)",
    .params = NULL,
    .config_size = 0,
    .ops.model = &resnet18_cifar_ops,
};

static const qh_plugin_desc *const plugins[] = {&resnet18_cifar_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-resnet18_cifar",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
