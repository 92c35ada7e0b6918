/* resnet18_cifar.c - the ResNet-18 of seed 002 (sicily496/DSC180A-QuantizedNNs, ResNet18ForCIFAR10):
 * torchvision resnet18 with conv1 replaced by a 3x3 / 1 convolution (pad 1, no bias), the 3x3 / 2
 * max-pool kept, and fc 512 -> classes; 11,173,962 parameters for 3 channels and 10 classes.
 * Names are torchvision's (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0 / .1, fc), so the
 * seed's pretrained_cifar10/resnet18_cifar10.pt state_dict loads unchanged. Maps for 32x32:
 * 32 -> 16 (max-pool) -> 16 -> 8 -> 4 -> 2 -> global average. */
#include <qhost/qhost.h>

#include <stdio.h>

static int32_t conv_bn(qh_graph *g, const char *block, const char *conv, const char *bn, int32_t x,
                       const qh_conv2d_params *c, qh_error *err)
{
    char cn[64], bnn[64];
    snprintf(cn, sizeof cn, "%s.%s", block, conv);
    snprintf(bnn, sizeof bnn, "%s.%s", block, bn);
    if (qh_graph_conv2d(g, cn, x, c, err) < 0)
        return -1;
    return qh_graph_batchnorm2d(g, bnn, QH_PREV, 1e-5, 0.1, err);
}

/* torchvision BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)). x is a node id;
 * downsample = 1x1 conv + BN where the shape changes. */
static int32_t basic_block(qh_graph *g, const char *name, int32_t x, int32_t cin, int32_t planes, int32_t stride,
                           qh_error *err)
{
    const qh_conv2d_params c1 = {.out_channels = planes, .kernel_h = 3, .kernel_w = 3, .stride_h = stride,
                                 .stride_w = stride, .pad_h = 1, .pad_w = 1};
    const qh_conv2d_params c2 = {.out_channels = planes, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    const qh_conv2d_params down = {.out_channels = planes, .kernel_h = 1, .kernel_w = 1, .stride_h = stride,
                                   .stride_w = stride};
    int32_t out;
    if (conv_bn(g, name, "conv1", "bn1", x, &c1, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
        (out = conv_bn(g, name, "conv2", "bn2", QH_PREV, &c2, err)) < 0)
        return -1;
    int32_t sc = x;
    if ((stride != 1 || cin != planes) && (sc = conv_bn(g, name, "downsample.0", "downsample.1", x, &down, err)) < 0)
        return -1;
    if (qh_graph_add(g, NULL, out, sc, err) < 0)
        return -1;
    return qh_graph_relu(g, NULL, QH_PREV, err);
}

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
            x = basic_block(g, name, x, cin, planes, stage > 0 && b == 0 ? 2 : 1, err);
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
