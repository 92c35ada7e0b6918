/* qm_basic_block.h - torchvision's BasicBlock, shared by the CIFAR ResNets (internal to the model
 * plugins): relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), with torchvision's names
 * (<block>.conv1, <block>.bn2, <block>.downsample.0 / .1). */
#ifndef QM_BASIC_BLOCK_H
#define QM_BASIC_BLOCK_H

#include <qhost/qhost.h>

#include <stdbool.h>
#include <stdio.h>

/* <block>.<conv> then <block>.<bn> (PyTorch's eps 1e-5, momentum 0.1); the BN's node id, or -1. */
static inline int32_t qm_conv_bn(qh_graph *g, const char *block, const char *conv, const char *bn, int32_t x,
                                 const qh_conv2d_params *c, qh_error *err)
{
    char cn[64], bnn[64];
    snprintf(cn, sizeof cn, "%s.%s", block, conv);
    snprintf(bnn, sizeof bnn, "%s.%s", block, bn);
    if (qh_graph_conv2d(g, cn, x, c, err) < 0)
        return -1;
    return qh_graph_batchnorm2d(g, bnn, QH_PREV, 1e-5, 0.1, err);
}

/* One block on node x (cin channels) with `planes` outputs. Where the shape changes the shortcut is
 * a 1x1 conv + BN (downsample), or with option_a a strided identity with zero-padded channels
 * (He et al.'s CIFAR ResNets, no parameters). Returns the block's output node, or -1. */
static inline int32_t qm_basic_block(qh_graph *g, const char *name, int32_t x, int32_t cin, int32_t planes,
                                     int32_t stride, bool option_a, qh_error *err)
{
    const qh_conv2d_params c1 = {.out_channels = planes, .kernel_h = 3, .kernel_w = 3, .stride_h = stride,
                                 .stride_w = stride, .pad_h = 1, .pad_w = 1};
    const qh_conv2d_params c2 = {.out_channels = planes, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    const qh_conv2d_params down = {.out_channels = planes, .kernel_h = 1, .kernel_w = 1, .stride_h = stride,
                                   .stride_w = stride};
    int32_t out;
    if (qm_conv_bn(g, name, "conv1", "bn1", x, &c1, err) < 0 || qh_graph_relu(g, NULL, QH_PREV, err) < 0 ||
        (out = qm_conv_bn(g, name, "conv2", "bn2", QH_PREV, &c2, err)) < 0)
        return -1;
    int32_t sc = x;
    if (stride != 1 || cin != planes) {
        char sn[64];
        snprintf(sn, sizeof sn, "%s.shortcut", name);
        sc = option_a ? qh_graph_shortcut_a(g, sn, x, stride, planes, err)
                      : qm_conv_bn(g, name, "downsample.0", "downsample.1", x, &down, err);
        if (sc < 0)
            return -1;
    }
    if (qh_graph_add(g, NULL, out, sc, err) < 0)
        return -1;
    return qh_graph_relu(g, NULL, QH_PREV, err);
}

#endif /* QM_BASIC_BLOCK_H */
