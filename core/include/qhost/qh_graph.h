/* qh_graph.h - the model graph: named layers whose parameters carry PyTorch state_dict names.
 *
 * A model plugin builds a graph by appending layers in topological order. Each layer takes the
 * output of an earlier node (QH_PREV = the node just before, QH_INPUT = the graph input) and gets
 * its output shape computed at once, so a wrong architecture fails while building, not while
 * training. Parameters are named "<layer>.weight" / "<layer>.bias" exactly as PyTorch names them,
 * so a state_dict saved as safetensors by PyTorch loads unchanged.
 */
#ifndef QH_GRAPH_H
#define QH_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "qh_rng.h"
#include "qh_status.h"
#include "qh_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qh_graph qh_graph;

#define QH_PREV (-1)  /* input = the node added just before */
#define QH_INPUT (-2) /* input = the graph input (N, C, H, W) */

typedef enum qh_op {
    QH_OP_CONV2D = 0,
    QH_OP_LINEAR,
    QH_OP_RELU,
    QH_OP_TANH,
    QH_OP_MAXPOOL2D,
    QH_OP_AVGPOOL2D,
    QH_OP_FLATTEN,
    QH_OP_DROPOUT,
    /* model-zoo layers */
    QH_OP_BATCHNORM2D,
    QH_OP_RELU6,
    QH_OP_ADD,
    QH_OP_ADAPTIVE_AVGPOOL2D,
    QH_OP_SHORTCUT_A,
    QH_OP_RESIZE_BILINEAR,
    QH_OP_COUNT
} qh_op;

typedef struct qh_conv2d_params {
    int32_t out_channels;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w; /* 0 = 1 */
    int32_t pad_h, pad_w;
    int32_t groups;             /* 0 = 1 */
    bool bias;
} qh_conv2d_params;

typedef struct qh_pool2d_params {
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w; /* 0 = kernel size, as in PyTorch */
    int32_t pad_h, pad_w;
} qh_pool2d_params;

/* A trainable parameter of the graph. */
typedef struct qh_weight {
    qh_tensor *value;  /* F32, name = state_dict name */
    qh_tensor *grad;   /* F32, same shape; filled by qh_graph_backward */
    uint8_t *mask;     /* NULL = dense; else numel bytes, 1 = kept, 0 = pruned (value stays exactly 0) */
    int32_t node;      /* owning node */
    bool is_bias;
    /* appended for the model zoo */
    bool is_buffer;    /* running statistics etc.: saved and loaded, never trained (grad NULL) */
    bool frozen;       /* excluded from optimizer updates (set by the host from `freeze` patterns) */
} qh_weight;

/* Building. name is the PyTorch module path ("conv1", "features.0"); layers without parameters may
 * pass NULL. Each returns the new node id (>= 0) or -1 with err set. */
int32_t qh_graph_conv2d(qh_graph *g, const char *name, int32_t input, const qh_conv2d_params *p,
                        qh_error *err);
int32_t qh_graph_linear(qh_graph *g, const char *name, int32_t input, int32_t out_features, bool bias,
                        qh_error *err);
int32_t qh_graph_relu(qh_graph *g, const char *name, int32_t input, qh_error *err);
int32_t qh_graph_tanh(qh_graph *g, const char *name, int32_t input, qh_error *err);
int32_t qh_graph_maxpool2d(qh_graph *g, const char *name, int32_t input, const qh_pool2d_params *p,
                           qh_error *err);
int32_t qh_graph_avgpool2d(qh_graph *g, const char *name, int32_t input, const qh_pool2d_params *p,
                           qh_error *err);
int32_t qh_graph_flatten(qh_graph *g, const char *name, int32_t input, qh_error *err);
int32_t qh_graph_dropout(qh_graph *g, const char *name, int32_t input, double p, qh_error *err);

/* --- model-zoo layers --- */
/* BatchNorm2d: parameters <name>.weight, <name>.bias; buffers <name>.running_mean, .running_var
 * (F32) and .num_batches_tracked (I64 scalar), in PyTorch's state_dict order. PyTorch defaults:
 * eps 1e-5, momentum 0.1. */
int32_t qh_graph_batchnorm2d(qh_graph *g, const char *name, int32_t input, double eps, double momentum,
                             qh_error *err);
int32_t qh_graph_relu6(qh_graph *g, const char *name, int32_t input, qh_error *err);
/* Residual add of two nodes of the same shape (QH_PREV, QH_INPUT or node ids). */
int32_t qh_graph_add(qh_graph *g, const char *name, int32_t a, int32_t b, qh_error *err);
/* nn.AdaptiveAvgPool2d((out_h, out_w)); 1 x 1 is global average pooling. */
int32_t qh_graph_adaptive_avgpool2d(qh_graph *g, const char *name, int32_t input, int32_t out_h, int32_t out_w,
                                    qh_error *err);
/* Option-A ResNet shortcut: x[:, :, ::stride, ::stride] with channels zero-padded to out_channels. */
int32_t qh_graph_shortcut_a(qh_graph *g, const char *name, int32_t input, int32_t stride, int32_t out_channels,
                            qh_error *err);
/* F.interpolate(size = (out_h, out_w), mode = 'bilinear', align_corners = False). */
int32_t qh_graph_resize_bilinear(qh_graph *g, const char *name, int32_t input, int32_t out_h, int32_t out_w,
                                 qh_error *err);

/* Input description the graph was created with (set by the host before the model plugin runs). */
int32_t qh_graph_in_channels(const qh_graph *g);
int32_t qh_graph_in_height(const qh_graph *g);
int32_t qh_graph_in_width(const qh_graph *g);

/* Inspection. */
int32_t qh_graph_n_nodes(const qh_graph *g);
qh_op qh_graph_node_op(const qh_graph *g, int32_t node);
const char *qh_graph_node_name(const qh_graph *g, int32_t node);
/* Per-sample output shape of a node (without the batch dimension); returns its rank. */
int32_t qh_graph_node_shape(const qh_graph *g, int32_t node, int64_t shape[QH_MAX_DIMS]);
const char *qh_op_name(qh_op op);
/* Multiply-accumulates per sample of one node (conv and linear; 0 for the others). */
int64_t qh_graph_node_macs(const qh_graph *g, int32_t node);

int32_t qh_graph_n_weights(const qh_graph *g);
qh_weight *qh_graph_weight(qh_graph *g, int32_t i);
/* By state_dict name; NULL when absent. */
qh_weight *qh_graph_find_weight(qh_graph *g, const char *name);
/* Elements of the trainable parameters (buffers excluded), as PyTorch counts parameters. */
int64_t qh_graph_n_params(const qh_graph *g);

#ifdef __cplusplus
}
#endif
#endif /* QH_GRAPH_H */
