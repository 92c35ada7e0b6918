/* lenet5.c - LeNet-5 (LeCun et al. 1998) with PyTorch state_dict names conv1, conv2, fc1, fc2, fc3.
 *
 * variant = modern (default): conv 6@5x5 pad 2 -> ReLU -> max-pool 2 -> conv 16@5x5 -> ReLU ->
 * max-pool 2 -> fc 120 -> ReLU -> fc 84 -> ReLU -> fc classes (the anchors' reference model).
 * variant = classic: the same with tanh and average pooling, as in the original paper's spirit.
 * The 5x5 padding-2 first conv keeps 28x28 inputs at 28x28, so a 32x32 input works too.
 * variant = gpfq: the LeNet-5 of the GPFQ reference (YixuanSeanZhou/Quantized_Neural_Nets,
 * quantization_scripts/my_models.py) on 1x32x32: conv 6@5x5 (no padding) -> tanh -> avg-pool 2 ->
 * conv 16@5x5 -> tanh -> avg-pool 2 -> conv 120@5x5 -> tanh -> fc 84 -> tanh -> fc classes, with
 * that class's names feature_extractor.0 / .3 / .6 and classifier.0 / .2 (61,706 parameters).
 */
#include <qhost/qhost.h>

typedef struct lenet5_cfg {
    int variant;
} lenet5_cfg;

static const char *const variants[] = {"modern", "classic", "gpfq", NULL};

static const qh_param lenet5_params[] = {
    QH_P_ENUM("variant", lenet5_cfg, variant, 0, variants,
              "modern = ReLU + max-pool; classic = tanh + average pool; gpfq = the GPFQ reference's 32x32 LeNet"),
    QH_P_END,
};

/* The GPFQ reference's nn.Sequential layout; its classifier expects exactly 120 features, i.e. a
 * 1x1 map after the third conv, so the input must be 32x32. */
static qh_status lenet5_gpfq_build(const qh_model_input *in, qh_graph *g, qh_error *err)
{
    if (in->height != 32 || in->width != 32)
        return qh_error_set(err, QH_E_INVAL,
                            "variant gpfq needs a 32x32 input, got %dx%d (the idx dataset pads 28x28 images "
                            "with pad_to = 32)", in->height, in->width);
    const qh_conv2d_params c1 = {.out_channels = 6, .kernel_h = 5, .kernel_w = 5, .bias = true};
    const qh_conv2d_params c2 = {.out_channels = 16, .kernel_h = 5, .kernel_w = 5, .bias = true};
    const qh_conv2d_params c3 = {.out_channels = 120, .kernel_h = 5, .kernel_w = 5, .bias = true};
    const qh_pool2d_params p2 = {.kernel_h = 2, .kernel_w = 2};
    if (qh_graph_conv2d(g, "feature_extractor.0", QH_INPUT, &c1, err) < 0 || qh_graph_tanh(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_avgpool2d(g, NULL, QH_PREV, &p2, err) < 0 ||
        qh_graph_conv2d(g, "feature_extractor.3", QH_PREV, &c2, err) < 0 || qh_graph_tanh(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_avgpool2d(g, NULL, QH_PREV, &p2, err) < 0 ||
        qh_graph_conv2d(g, "feature_extractor.6", QH_PREV, &c3, err) < 0 || qh_graph_tanh(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_flatten(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_linear(g, "classifier.0", QH_PREV, 84, true, err) < 0 || qh_graph_tanh(g, NULL, QH_PREV, err) < 0 ||
        qh_graph_linear(g, "classifier.2", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static qh_status lenet5_build(const void *cfg_, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    const lenet5_cfg *cfg = cfg_;
    if (cfg->variant == 2)
        return lenet5_gpfq_build(in, g, err);
    bool classic = cfg->variant == 1;
    int32_t (*act)(qh_graph *, const char *, int32_t, qh_error *) = classic ? qh_graph_tanh : qh_graph_relu;
    int32_t (*pool)(qh_graph *, const char *, int32_t, const qh_pool2d_params *, qh_error *) =
        classic ? qh_graph_avgpool2d : qh_graph_maxpool2d;
    const qh_conv2d_params c1 = {.out_channels = 6, .kernel_h = 5, .kernel_w = 5, .pad_h = 2, .pad_w = 2, .bias = true};
    const qh_conv2d_params c2 = {.out_channels = 16, .kernel_h = 5, .kernel_w = 5, .bias = true};
    const qh_pool2d_params p2 = {.kernel_h = 2, .kernel_w = 2};
    if (qh_graph_conv2d(g, "conv1", QH_INPUT, &c1, err) < 0 || act(g, "relu1", QH_PREV, err) < 0 ||
        pool(g, "pool1", QH_PREV, &p2, err) < 0 || qh_graph_conv2d(g, "conv2", QH_PREV, &c2, err) < 0 ||
        act(g, "relu2", QH_PREV, err) < 0 || pool(g, "pool2", QH_PREV, &p2, err) < 0 ||
        qh_graph_flatten(g, "flatten", QH_PREV, err) < 0 || qh_graph_linear(g, "fc1", QH_PREV, 120, true, err) < 0 ||
        act(g, "relu3", QH_PREV, err) < 0 || qh_graph_linear(g, "fc2", QH_PREV, 84, true, err) < 0 ||
        act(g, "relu4", QH_PREV, err) < 0 ||
        qh_graph_linear(g, "fc3", QH_PREV, in->num_classes, true, err) < 0)
        return QH_E_INVAL;
    return QH_OK;
}

static const qh_model_ops lenet5_ops = {
    .struct_size = sizeof(qh_model_ops),
    .build = lenet5_build,
};

static const qh_plugin_desc lenet5_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_MODEL,
    .name = "lenet5",
    .summary = "LeNet-5: two 5x5 convolutions and three fully connected layers (61,706 parameters on 1x28x28)",
    .params = lenet5_params,
    .config_size = sizeof(lenet5_cfg),
    .ops.model = &lenet5_ops,
};

static const qh_plugin_desc *const plugins[] = {&lenet5_desc};

static const qh_library lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-model-lenet5",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = plugins,
};

QH_PLUGIN_LIBRARY(lib)
