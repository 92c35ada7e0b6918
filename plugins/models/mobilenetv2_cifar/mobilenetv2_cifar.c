/* mobilenetv2_cifar.c - the MobileNetV2 of seed 003 (rahulak-cs-iitm/cs6886-jul-nov-2025-assignment-3):
 * torchvision mobilenet_v2(width 1.0, dropout 0.2) with stride 1 at features[0][0] (stem),
 * features[2].conv[1][0] and features[4].conv[1][0] (first depthwise convs of the 24- and 32-channel
 * stages), and classifier[1] = Linear(1280, classes); 2,236,682 parameters for 3 channels and 10
 * classes. Names are torchvision's: features.0.0 / .0.1 (stem conv + BN), features.N.conv.0.0 ...
 * inside the inverted residuals, features.18.0 / .18.1, classifier.1. Maps for 32x32:
 * 32 -> 32 -> 16 (features.7) -> 8 (features.14) -> global average. */
#include <qhost/qhost.h>

#include <stdbool.h>
#include <stdio.h>

typedef struct mobilenetv2_cfg {
    double dropout;
    int cifar_strides;
} mobilenetv2_cfg;

static const qh_param mobilenetv2_params[] = {
    QH_P_DOUBLE("dropout", mobilenetv2_cfg, dropout, 0.2, 0.0, 0.95, "fraction", "classifier.0 (seed: 0.2)"),
    QH_P_BOOL("cifar_strides", mobilenetv2_cfg, cifar_strides, true,
              "stride 1 at features.0, 2 and 4 as seed 003 does (false = torchvision's strides for 224x224)"),
    QH_P_END,
};

/* torchvision's inverted_residual_setting: expansion t, channels c, repeats n, first stride s. */
static const int settings[7][4] = {
    {1, 16, 1, 1}, {6, 24, 2, 2}, {6, 32, 3, 2}, {6, 64, 4, 2}, {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1},
};

/* Conv2dNormActivation: <prefix>.0 conv (no bias), <prefix>.1 BatchNorm, ReLU6 unless linear. */
static int32_t conv_bn(qh_graph *g, const char *prefix, int32_t x, int32_t out, int32_t kernel, int32_t stride,
                       int32_t groups, bool relu6, qh_error *err)
{
    const qh_conv2d_params c = {.out_channels = out, .kernel_h = kernel, .kernel_w = kernel, .stride_h = stride,
                                .stride_w = stride, .pad_h = (kernel - 1) / 2, .pad_w = (kernel - 1) / 2,
                                .groups = groups};
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "%s.0", prefix);
    snprintf(bn, sizeof bn, "%s.1", prefix);
    int32_t id;
    if (qh_graph_conv2d(g, conv, x, &c, err) < 0 || (id = qh_graph_batchnorm2d(g, bn, QH_PREV, 1e-5, 0.1, err)) < 0)
        return -1;
    return relu6 ? qh_graph_relu6(g, NULL, QH_PREV, err) : id;
}

/* torchvision InvertedResidual: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection (conv.J,
 * conv.J+1 = BN), plus x when the block keeps the shape. use_res follows torchvision, which decides
 * it with the block's original stride before the seed edits the strides. */
static int32_t inverted_residual(qh_graph *g, int index, int32_t x, int32_t inp, int32_t oup, int32_t stride,
                                 int32_t t, bool use_res, qh_error *err)
{
    int32_t hidden = inp * t, j = 0, y = x;
    char p[64];
    if (t != 1) {
        snprintf(p, sizeof p, "features.%d.conv.0", index);
        if ((y = conv_bn(g, p, y, hidden, 1, 1, 1, true, err)) < 0)
            return -1;
        j = 1;
    }
    snprintf(p, sizeof p, "features.%d.conv.%d", index, j);
    if (conv_bn(g, p, y, hidden, 3, stride, hidden, true, err) < 0)
        return -1;
    const qh_conv2d_params proj = {.out_channels = oup, .kernel_h = 1, .kernel_w = 1};
    char conv[64], bn[64];
    snprintf(conv, sizeof conv, "features.%d.conv.%d", index, j + 1);
    snprintf(bn, sizeof bn, "features.%d.conv.%d", index, j + 2);
    int32_t out;
    if (qh_graph_conv2d(g, conv, QH_PREV, &proj, err) < 0 ||
        (out = qh_graph_batchnorm2d(g, bn, QH_PREV, 1e-5, 0.1, err)) < 0)
        return -1;
    return use_res ? qh_graph_add(g, NULL, out, x, err) : out;
}

static qh_status mobilenetv2_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const mobilenetv2_cfg *cfg = cfg_;
    bool cifar = cfg->cifar_strides;
    int32_t x = conv_bn(g, "features.0", QH_INPUT, 32, 3, cifar ? 1 : 2, 1, true, err), inp = 32;
    int index = 1;
    for (int s = 0; s < 7 && x >= 0; s++) {
        for (int i = 0; i < settings[s][2] && x >= 0; i++, index++) {
            int32_t oup = settings[s][1], stride = i == 0 ? settings[s][3] : 1;
            bool use_res = stride == 1 && inp == oup;
            if (cifar && (index == 2 || index == 4))
                stride = 1;
            x = inverted_residual(g, index, x, inp, oup, stride, settings[s][0], use_res, err);
            inp = oup;
        }
    }
    char last[32];
    snprintf(last, sizeof last, "features.%d", index);
    if (x < 0 || conv_bn(g, last, x, 1280, 1, 1, 1, true, err) < 0 ||
        qh_graph_adaptive_avgpool2d(g, "avgpool", QH_PREV, 1, 1, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_dropout(g, "classifier.0", QH_PREV, cfg->dropout, err) < 0 ||
        qh_graph_linear(g, "classifier.1", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops mobilenetv2_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = mobilenetv2_build,
};

static const qh_plugin_desc mobilenetv2_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "mobilenetv2_cifar",
    .summary = "MobileNetV2 with CIFAR strides for 32x32 inputs (seed 003; 2,236,682 parameters on 3ch/10 classes)",
    .params = mobilenetv2_params,
    .config_size = sizeof(mobilenetv2_cfg),
    .ops.model = &mobilenetv2_ops,
};

static const qh_plugin_desc *const plugins[] = {&mobilenetv2_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-mobilenetv2_cifar",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
