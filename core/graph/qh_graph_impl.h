/* qh_graph_impl.h - the graph's internal layout (core only). */
#ifndef QH_GRAPH_IMPL_H
#define QH_GRAPH_IMPL_H

#include "qhost/qh_engine.h"
#include "kernels/qh_kernels.h"

typedef struct qh_node {
    qh_op op;
    char name[QH_NAME_MAX];
    int32_t input;                 /* producing node, or QH_INPUT */
    int32_t input2;                /* second operand (add), else -3 */
    int32_t ndim;                  /* per-sample output rank (1 or 3) */
    int64_t shape[3];              /* per-sample output shape */
    int64_t numel;                 /* per-sample output elements */
    int64_t in_shape[3];           /* per-sample input shape */
    int32_t in_ndim;
    int64_t in_numel;
    union {
        qh_conv2d_params conv;
        struct {
            int64_t in, out;
        } lin;
        qh_pool2d_params pool;
        double drop_p;
        struct {
            double eps, momentum;
        } bn;
        struct {
            int64_t ho, wo;
        } size;                    /* adaptive pooling, resize */
        int32_t stride;            /* shortcut_a */
    } u;
    int32_t w_idx, b_idx;          /* weights, -1 if none */
    int32_t buf_idx;               /* batchnorm: running_mean; running_var and num_batches_tracked follow */
    float *save_mean, *save_invstd;/* batchnorm: batch statistics of the last training forward */
    /* execution state (sized for the current batch capacity) */
    float *out;                    /* n * numel, or an alias (flatten) */
    float *grad;                   /* n * numel, or an alias */
    int32_t *argmax;               /* max pooling, for the backward pass (none at inference) */
    uint8_t *drop_mask;            /* dropout */
    bool alias;                    /* out/grad belong to the input node (flatten) */
    const float *cur;              /* what consumers read after the last forward (out, or a fused producer's) */
    int32_t n_consumers;
    int8_t fuse_act;               /* batchnorm at inference: 0 none, 1 ReLU, 6 ReLU6 folded in */
    bool fused_away;               /* an activation folded into the batchnorm before it (inference only) */
    float *bn_scale, *bn_shift;    /* batchnorm at inference: per-channel affine from running statistics */
    bool grad_written;             /* during backward: grad holds a value (else overwrite) */
} qh_node;

struct qh_graph {
    int32_t in_c, in_h, in_w, num_classes;
    int32_t n_nodes, cap_nodes;
    qh_node *nodes;
    int32_t n_weights, cap_weights;
    qh_weight *weights;
    /* execution */
    int64_t batch_cap;             /* buffers are sized for this many samples */
    bool grads_allocated;
    /* Buffers shared by liveness (qh_exec.c): at inference node outputs point into slots (and max
     * pooling keeps no argmax), in training the gradients do. */
    bool shared_outs, shared_grads;
    float **slots;
    int32_t n_slots;
    bool private_buffers;          /* every node keeps its own output and gradient: an inner node's
                                    * value can be read after a pass (tests, debugging, benchmarks) */
    int64_t act_bytes;             /* bytes of activation (and gradient) buffers now allocated */
    int64_t batch_n;               /* samples of the last forward */
    bool last_training;
    const float *input;
    void *ws;                      /* kernel workspace */
    size_t ws_size;
    float *scratch;                /* gradient accumulation for nodes with several consumers */
    int64_t scratch_size;
    double *prof;                  /* NULL, or per node wall [fwd, bwd], thread CPU [fwd, bwd] seconds (bench) */
    bool compacted;                /* channels were removed (qh_surgery.c): model files record the counts */
};

/* Resolves QH_PREV/QH_INPUT/explicit ids to a node index or QH_INPUT; -3 when invalid. */
int32_t qhi_graph_resolve_input(const qh_graph *g, int32_t input);
/* Frees every execution buffer (activations, gradients, workspace). */
void qhi_graph_free_exec(qh_graph *g);
qh_conv2d_shape qhi_conv_shape(const qh_node *nd, int64_t n);
qh_pool2d_shape qhi_pool_shape(const qh_node *nd, int64_t n);

#endif /* QH_GRAPH_IMPL_H */
