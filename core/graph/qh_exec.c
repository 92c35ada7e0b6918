/* qh_exec.c - forward and backward passes over a graph; buffers sized once per batch capacity. */
#include "graph/qh_graph_impl.h"

#include <stdlib.h>
#include <string.h>

/* The node whose buffers an alias (flatten) node shares, or QH_INPUT. */
static int32_t owner_of(const qh_graph *g, int32_t i)
{
    while (i >= 0 && g->nodes[i].alias)
        i = g->nodes[i].input;
    return i;
}

static void *alloc_floats(int64_t n) { return qh_alloc_aligned((size_t)n * sizeof(float)); }

static qh_status ensure_buffers(qh_graph *g, int64_t n, bool training, qh_error *err)
{
    if (n <= g->batch_cap && (!training || g->grads_allocated))
        return QH_OK;
    int64_t cap = n > g->batch_cap ? n : g->batch_cap;
    bool with_grads = training || g->grads_allocated;
    qhi_graph_free_exec(g);
    size_t ws = 0;
    int64_t max_numel = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_node *nd = &g->nodes[i];
        nd->alias = nd->op == QH_OP_FLATTEN;
        if (nd->in_numel > max_numel)
            max_numel = nd->in_numel;
        if (nd->alias)
            continue;
        nd->out = alloc_floats(cap * nd->numel);
        if (!nd->out)
            goto nomem;
        if (with_grads && !(nd->grad = alloc_floats(cap * nd->numel)))
            goto nomem;
        if (nd->op == QH_OP_MAXPOOL2D &&
            !(nd->argmax = qh_alloc_aligned((size_t)(cap * nd->numel) * sizeof(int32_t))))
            goto nomem;
        if (nd->op == QH_OP_DROPOUT && !(nd->drop_mask = qh_alloc_aligned((size_t)(cap * nd->numel))))
            goto nomem;
        if (nd->op == QH_OP_CONV2D) {
            qh_conv2d_shape s = qhi_conv_shape(nd, cap);
            size_t need = qh_k_conv2d_ws_size(&s);
            if (need > ws)
                ws = need;
        }
    }
    if (ws && !(g->ws = qh_alloc_aligned(ws)))
        goto nomem;
    g->ws_size = ws;
    if (with_grads && !(g->scratch = alloc_floats(cap * max_numel)))
        goto nomem;
    g->scratch_size = cap * max_numel;
    g->batch_cap = cap;
    g->grads_allocated = with_grads;
    return QH_OK;
nomem:
    g->batch_cap = 0;
    g->grads_allocated = false;
    return qh_error_set(err, QH_E_NOMEM, "out of memory for activations of a batch of %lld", (long long)n);
}

static const float *input_of(const qh_graph *g, const qh_node *nd)
{
    int32_t o = owner_of(g, nd->input);
    return o == QH_INPUT ? g->input : g->nodes[o].out;
}

const float *qh_graph_forward(qh_graph *g, const float *x, int64_t n, bool training, qh_rng *rng, qh_error *err)
{
    if (n < 1) {
        qh_error_set(err, QH_E_INVAL, "empty batch");
        return NULL;
    }
    if (ensure_buffers(g, n, training, err) != QH_OK)
        return NULL;
    g->input = x;
    g->batch_n = n;
    g->last_training = training;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_node *nd = &g->nodes[i];
        const float *in = input_of(g, nd);
        int64_t total = n * nd->numel;
        const float *w = nd->w_idx >= 0 ? qh_tensor_f32(g->weights[nd->w_idx].value) : NULL;
        const float *b = nd->b_idx >= 0 ? qh_tensor_f32(g->weights[nd->b_idx].value) : NULL;
        switch (nd->op) {
        case QH_OP_CONV2D: {
            qh_conv2d_shape s = qhi_conv_shape(nd, n);
            qh_k_conv2d_fwd_f32(&s, in, w, b, nd->out, g->ws);
            break;
        }
        case QH_OP_LINEAR:
            qh_k_linear_fwd_f32(n, nd->u.lin.in, nd->u.lin.out, in, w, b, nd->out);
            break;
        case QH_OP_RELU:
            qh_k_relu_fwd_f32(total, in, nd->out);
            break;
        case QH_OP_TANH:
            qh_k_tanh_fwd_f32(total, in, nd->out);
            break;
        case QH_OP_MAXPOOL2D: {
            qh_pool2d_shape s = qhi_pool_shape(nd, n);
            qh_k_maxpool2d_fwd_f32(&s, in, nd->out, nd->argmax);
            break;
        }
        case QH_OP_AVGPOOL2D: {
            qh_pool2d_shape s = qhi_pool_shape(nd, n);
            qh_k_avgpool2d_fwd_f32(&s, in, nd->out);
            break;
        }
        case QH_OP_FLATTEN:
            break; /* shares its input's buffers */
        case QH_OP_DROPOUT:
            if (training && nd->u.drop_p > 0.0) {
                qh_k_dropout_mask(total, nd->u.drop_p, rng, nd->drop_mask);
                qh_k_dropout_fwd_f32(total, nd->u.drop_p, nd->drop_mask, in, nd->out);
            } else {
                memcpy(nd->out, in, (size_t)total * sizeof(float));
            }
            break;
        case QH_OP_COUNT:
            break;
        }
    }
    int32_t last = owner_of(g, g->n_nodes - 1);
    return last == QH_INPUT ? g->input : g->nodes[last].out;
}

/* Where a node's input gradient goes: straight into the owner's buffer the first time, else into
 * scratch and then added (a node read by several consumers). NULL when the input is the graph input. */
static float *dx_target(qh_graph *g, const qh_node *nd, bool *accumulate)
{
    int32_t o = owner_of(g, nd->input);
    *accumulate = false;
    if (o == QH_INPUT)
        return NULL;
    if (g->nodes[o].grad_written) {
        *accumulate = true;
        return g->scratch;
    }
    return g->nodes[o].grad;
}

static void dx_commit(qh_graph *g, const qh_node *nd, bool accumulate)
{
    int32_t o = owner_of(g, nd->input);
    if (o == QH_INPUT)
        return;
    qh_node *src = &g->nodes[o];
    if (accumulate) {
        int64_t total = g->batch_n * src->numel;
        for (int64_t k = 0; k < total; k++)
            src->grad[k] += g->scratch[k];
    }
    src->grad_written = true;
}

static void zero_weight_grads(qh_graph *g, const qh_node *nd)
{
    if (nd->w_idx >= 0)
        memset(g->weights[nd->w_idx].grad->data, 0, qh_tensor_nbytes(g->weights[nd->w_idx].grad));
    if (nd->b_idx >= 0)
        memset(g->weights[nd->b_idx].grad->data, 0, qh_tensor_nbytes(g->weights[nd->b_idx].grad));
}

qh_status qh_graph_backward(qh_graph *g, const float *dlogits, qh_error *err)
{
    if (!g->last_training || !g->grads_allocated || g->batch_n < 1)
        return qh_error_set(err, QH_E_INTERNAL, "backward without a training forward pass");
    int64_t n = g->batch_n;
    for (int32_t i = 0; i < g->n_nodes; i++)
        g->nodes[i].grad_written = false;
    int32_t last = owner_of(g, g->n_nodes - 1);
    if (last == QH_INPUT)
        return QH_OK;
    memcpy(g->nodes[last].grad, dlogits, (size_t)(n * g->num_classes) * sizeof(float));
    g->nodes[last].grad_written = true;

    for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
        qh_node *nd = &g->nodes[i];
        if (nd->alias)
            continue;
        if (!nd->grad_written) { /* output does not reach the loss */
            zero_weight_grads(g, nd);
            continue;
        }
        bool acc;
        float *dx = dx_target(g, nd, &acc);
        const float *x = input_of(g, nd);
        const float *dy = nd->grad;
        int64_t total = n * nd->numel;
        switch (nd->op) {
        case QH_OP_CONV2D: {
            qh_conv2d_shape s = qhi_conv_shape(nd, n);
            qh_k_conv2d_bwd_f32(&s, x, qh_tensor_f32(g->weights[nd->w_idx].value), dy, dx,
                                qh_tensor_f32(g->weights[nd->w_idx].grad),
                                nd->b_idx >= 0 ? qh_tensor_f32(g->weights[nd->b_idx].grad) : NULL, g->ws);
            break;
        }
        case QH_OP_LINEAR:
            qh_k_linear_bwd_f32(n, nd->u.lin.in, nd->u.lin.out, x, qh_tensor_f32(g->weights[nd->w_idx].value), dy,
                                dx, qh_tensor_f32(g->weights[nd->w_idx].grad),
                                nd->b_idx >= 0 ? qh_tensor_f32(g->weights[nd->b_idx].grad) : NULL);
            break;
        case QH_OP_RELU:
            if (dx)
                qh_k_relu_bwd_f32(total, nd->out, dy, dx);
            break;
        case QH_OP_TANH:
            if (dx)
                qh_k_tanh_bwd_f32(total, nd->out, dy, dx);
            break;
        case QH_OP_MAXPOOL2D:
            if (dx) {
                qh_pool2d_shape s = qhi_pool_shape(nd, n);
                qh_k_maxpool2d_bwd_f32(&s, dy, nd->argmax, dx);
            }
            break;
        case QH_OP_AVGPOOL2D:
            if (dx) {
                qh_pool2d_shape s = qhi_pool_shape(nd, n);
                qh_k_avgpool2d_bwd_f32(&s, dy, dx);
            }
            break;
        case QH_OP_DROPOUT:
            if (dx) {
                if (nd->u.drop_p > 0.0)
                    qh_k_dropout_bwd_f32(total, nd->u.drop_p, nd->drop_mask, dy, dx);
                else
                    memcpy(dx, dy, (size_t)total * sizeof(float));
            }
            break;
        case QH_OP_FLATTEN:
        case QH_OP_COUNT:
            break;
        }
        if (dx)
            dx_commit(g, nd, acc);
    }
    return QH_OK;
}
