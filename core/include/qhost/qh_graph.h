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

int32_t qh_graph_n_weights(const qh_graph *g);
qh_weight *qh_graph_weight(qh_graph *g, int32_t i);
/* By state_dict name; NULL when absent. */
qh_weight *qh_graph_find_weight(qh_graph *g, const char *name);
int64_t qh_graph_n_params(const qh_graph *g);

#ifdef __cplusplus
}
#endif
#endif /* QH_GRAPH_H */
