/* qh_exec.c - forward and backward passes over a graph; buffers sized once per batch capacity.
 *
 * A batchnorm whose only consumer is a ReLU/ReLU6 folds that activation into one pass (at inference
 * scale/shift from the running statistics, in training the batch-statistics kernel with the
 * activation), and the activation node is skipped: consumers read each node's `cur` pointer, which
 * names whichever buffer holds its value after the forward pass. In training the activation's
 * backward reads its mask from that folded output, which keeps exactly the values the unfolded
 * activation would pass (0 < x < 6, or x > 0). */
#include "graph/qh_graph_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/qh_timing.h"

/* The node whose buffers an alias (flatten) node shares, or QH_INPUT. */
static int32_t owner_of(const qh_graph *g, int32_t i)
{
    while (i >= 0 && g->nodes[i].alias)
        i = g->nodes[i].input;
    return i;
}

static void *alloc_floats(int64_t n) { return qh_alloc_aligned((size_t)(n > 0 ? n : 1) * sizeof(float)); }

/* A batch-sized buffer of `bytes`, counted in g->act_bytes (what the passes hold now; reset by
 * qhi_graph_free_exec). */
static void *batch_buffer(qh_graph *g, int64_t bytes)
{
    void *p = qh_alloc_aligned((size_t)(bytes > 0 ? bytes : 1));
    if (p)
        g->act_bytes += bytes;
    return p;
}

static float *batch_floats(qh_graph *g, int64_t n) { return batch_buffer(g, n * (int64_t)sizeof(float)); }

static void plan_fusion(qh_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        g->nodes[i].n_consumers = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        if (nd->input >= 0)
            g->nodes[nd->input].n_consumers++;
        if (nd->input2 >= 0)
            g->nodes[nd->input2].n_consumers++;
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_node *nd = &g->nodes[i];
        nd->alias = nd->op == QH_OP_FLATTEN;
        nd->fuse_act = 0;
        nd->fused_away = false;
        if ((nd->op == QH_OP_RELU || nd->op == QH_OP_RELU6) && nd->input >= 0 &&
            g->nodes[nd->input].op == QH_OP_BATCHNORM2D && g->nodes[nd->input].n_consumers == 1) {
            g->nodes[nd->input].fuse_act = nd->op == QH_OP_RELU ? 1 : 6;
            nd->fused_away = true;
        }
    }
}

/* The node whose own buffer holds node i's value after an inference pass: flatten, a folded
 * activation and dropout (the identity at inference) hand their input's on. QH_INPUT: the input. */
static int32_t holder_of(const qh_graph *g, int32_t i)
{
    while (i >= 0 && (g->nodes[i].op == QH_OP_FLATTEN || g->nodes[i].op == QH_OP_DROPOUT || g->nodes[i].fused_away))
        i = g->nodes[i].input;
    return i;
}

/* Interval colouring of buffers: item k holds a buffer of need[k] floats per sample from step
 * start[k] to step end[k], both included, items in ascending start order. An item takes the
 * smallest free slot that fits, else grows the largest free one, else opens a new one; a slot is
 * free once its last holder's end is past, so no two items live at the same step share one.
 * Fills slot_of[k] and slot_numel[slot]; returns the number of slots. */
static int32_t assign_slots(int32_t m, const int32_t *start, const int32_t *end, const int64_t *need, int32_t *slot_of,
                            int64_t *slot_numel, int32_t *busy)
{
    int32_t n_slots = 0;
    for (int32_t k = 0; k < m; k++) {
        int32_t fit = -1, grow = -1;
        for (int32_t j = 0; j < n_slots; j++) {
            if (busy[j] >= start[k])
                continue;
            if (slot_numel[j] >= need[k] && (fit < 0 || slot_numel[j] < slot_numel[fit]))
                fit = j;
            if (slot_numel[j] < need[k] && (grow < 0 || slot_numel[j] > slot_numel[grow]))
                grow = j;
        }
        int32_t j = fit >= 0 ? fit : grow;
        if (j < 0) {
            j = n_slots++;
            slot_numel[j] = 0;
        }
        if (slot_numel[j] < need[k])
            slot_numel[j] = need[k];
        busy[j] = end[k];
        slot_of[k] = j;
    }
    return n_slots;
}

/* The work arrays of a plan over g's nodes. */
typedef struct plan {
    int32_t *node, *start, *end, *slot_of, *busy;
    int32_t *root, *low; /* gradients: the node whose buffer a node's gradient is, that group's lowest node */
    int64_t *need, *slot_numel;
    int32_t m; /* items */
} plan;

static bool plan_alloc(plan *p, int32_t n)
{
    size_t k = (size_t)n + 1;
    p->node = malloc(7 * k * sizeof(int32_t));
    p->need = malloc(2 * k * sizeof(int64_t));
    if (!p->node || !p->need)
        return false;
    p->start = p->node + k, p->end = p->node + 2 * k, p->slot_of = p->node + 3 * k, p->busy = p->node + 4 * k;
    p->root = p->node + 5 * k, p->low = p->node + 6 * k;
    p->slot_numel = p->need + k;
    p->m = 0;
    return true;
}

static void plan_free(plan *p)
{
    free(p->node);
    free(p->need);
}

/* last[i] = the last node reading the buffer node i's value lives in (at least i itself; the
 * graph's output: n, past the end); resolve() names that buffer's node (holder_of at inference,
 * owner_of for gradients). */
static void last_readers(const qh_graph *g, int32_t (*resolve)(const qh_graph *, int32_t), int32_t *last)
{
    int32_t n = g->n_nodes;
    for (int32_t i = 0; i < n; i++)
        last[i] = i;
    for (int32_t j = 0; j < n; j++) {
        const qh_node *nd = &g->nodes[j];
        int32_t h[2] = {resolve(g, nd->input), nd->input2 >= 0 ? resolve(g, nd->input2) : QH_INPUT};
        for (int k = 0; k < 2; k++)
            if (h[k] >= 0 && last[h[k]] < j)
                last[h[k]] = j;
    }
    if (resolve(g, n - 1) >= 0)
        last[resolve(g, n - 1)] = n;
}

/* Inference: a node that writes a value holds it from its own step to the last step that reads
 * it (the graph's output: to the end). */
static void plan_outputs(const qh_graph *g, plan *p)
{
    int32_t *last = p->busy; /* borrowed before assign_slots uses it */
    last_readers(g, holder_of, last);
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (holder_of(g, i) == i) {
            p->node[p->m] = i, p->start[p->m] = i, p->end[p->m] = last[i], p->need[p->m] = g->nodes[i].numel;
            p->m++;
        }
}

/* Training: the backward pass runs nodes from the last to the first. A node's gradient is written
 * first at the step of its last consumer (the output node's: before the first step) and read last
 * at its own step; in backward time (n - index) that is the interval [n - last consumer, n - node].
 * A residual add that is the last consumer of its first operand hands that operand its own buffer:
 * the operand's gradient starts as exactly the add's, so the backward pass copies nothing there,
 * and the two share one interval, from the add's first write to the operand's step (root[] names
 * the node whose item holds a node's gradient, low[] that group's first node). */
static void plan_grads(const qh_graph *g, plan *p)
{
    int32_t n = g->n_nodes;
    int32_t *first = p->busy; /* the last consumer, borrowed before assign_slots uses it */
    last_readers(g, owner_of, first);
    for (int32_t i = 0; i < n; i++)
        p->root[i] = i;
    for (int32_t j = n - 1; j >= 0; j--) {
        const qh_node *nd = &g->nodes[j];
        int32_t a = nd->op == QH_OP_ADD ? owner_of(g, nd->input) : QH_INPUT;
        if (a >= 0 && a != owner_of(g, nd->input2) && first[a] == j && g->nodes[a].numel == nd->numel)
            p->root[a] = p->root[j];
    }
    for (int32_t i = n - 1; i >= 0; i--)
        p->low[p->root[i]] = i; /* ends at the lowest */
    for (int32_t i = n - 1; i >= 0; i--) /* by last consumer, latest first (insertion, stable) */
        if (!g->nodes[i].alias && p->root[i] == i) {
            int32_t k = p->m++;
            for (; k > 0 && first[p->node[k - 1]] < first[i]; k--)
                p->node[k] = p->node[k - 1];
            p->node[k] = i;
        }
    for (int32_t k = 0; k < p->m; k++) {
        int32_t i = p->node[k];
        p->start[k] = n - first[i], p->end[k] = n - p->low[i], p->need[k] = g->nodes[i].numel;
    }
}

/* The shared buffers of outputs (inference) or gradients (training): their number, and in p the
 * slot of each node and the size of each slot. */
static int32_t plan_shared(const qh_graph *g, bool grads, plan *p)
{
    if (grads)
        plan_grads(g, p);
    else
        plan_outputs(g, p);
    return assign_slots(p->m, p->start, p->end, p->need, p->slot_of, p->slot_numel, p->busy);
}

/* Shares the buffers of g's nodes by liveness: outputs at inference, gradients in training. */
static qh_status share_buffers(qh_graph *g, int64_t cap, bool grads)
{
    plan p;
    qh_status st = plan_alloc(&p, g->n_nodes) ? QH_OK : QH_E_NOMEM;
    if (st == QH_OK) {
        g->n_slots = plan_shared(g, grads, &p);
        if (!(g->slots = calloc((size_t)g->n_slots + 1, sizeof *g->slots)))
            st = QH_E_NOMEM;
    }
    if (st == QH_OK) {
        if (grads)
            g->shared_grads = true;
        else
            g->shared_outs = true;
    }
    for (int32_t j = 0; st == QH_OK && j < g->n_slots; j++)
        if (!(g->slots[j] = batch_floats(g, cap * p.slot_numel[j])))
            st = QH_E_NOMEM;
    for (int32_t k = 0; st == QH_OK && k < p.m; k++) {
        qh_node *nd = &g->nodes[p.node[k]];
        *(grads ? &nd->grad : &nd->out) = g->slots[p.slot_of[k]];
    }
    for (int32_t i = 0; st == QH_OK && grads && i < g->n_nodes; i++)
        if (!g->nodes[i].alias && p.root[i] != i)
            g->nodes[i].grad = g->nodes[p.root[i]].grad; /* a residual add's operand: the add's buffer */
    plan_free(&p);
    return st;
}

/* Bytes per sample of the batch-sized buffers ensure_buffers allocates (after plan_fusion): node
 * outputs, and with gradients the gradients, max-pool indices, dropout masks and the gradient
 * scratch; outputs (inference) or gradients (training) shared unless g->private_buffers. -1: out
 * of memory for the plan. */
static int64_t bytes_per_sample(const qh_graph *g, bool with_grads)
{
    bool share = !g->private_buffers;
    int64_t b = 0, max_in = 0;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        max_in = nd->in_numel > max_in ? nd->in_numel : max_in;
        if (nd->alias)
            continue;
        if (with_grads || !share)
            b += (int64_t)sizeof(float) * nd->numel * (!nd->fused_away + (with_grads && !share));
        if (with_grads && nd->op == QH_OP_MAXPOOL2D)
            b += (int64_t)sizeof(int32_t) * nd->numel;
        if (with_grads && nd->op == QH_OP_DROPOUT)
            b += nd->numel;
    }
    if (with_grads)
        b += (int64_t)sizeof(float) * max_in;
    if (share) {
        plan p;
        if (!plan_alloc(&p, g->n_nodes)) {
            plan_free(&p);
            return -1;
        }
        int32_t n_slots = plan_shared(g, with_grads, &p);
        for (int32_t j = 0; j < n_slots; j++)
            b += (int64_t)sizeof(float) * p.slot_numel[j];
        plan_free(&p);
    }
    return b;
}

qh_status qh_graph_buffer_bytes(qh_graph *g, int64_t *inference, int64_t *training, qh_error *err)
{
    if (g->batch_cap == 0)
        plan_fusion(g); /* with buffers, the plan they were laid out by stands */
    *inference = bytes_per_sample(g, false);
    *training = bytes_per_sample(g, true);
    if (*inference < 0 || *training < 0)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    return QH_OK;
}

/* Buffers for batches of up to n samples. In training every node keeps its output, which the
 * backward pass reads, and gradients share buffers by liveness; at inference outputs share them.
 * g->private_buffers gives every node its own. */
static qh_status ensure_buffers(qh_graph *g, int64_t n, bool training, qh_error *err)
{
    bool shared = g->shared_outs || g->shared_grads;
    if (n <= g->batch_cap && (!training || g->grads_allocated) && !(shared && g->private_buffers))
        return QH_OK;
    int64_t cap = n > g->batch_cap ? n : g->batch_cap;
    bool with_grads = training || g->grads_allocated;
    qhi_graph_free_exec(g);
    plan_fusion(g);
    size_t ws = 0;
    int64_t max_numel = 0;
    bool share_outs = !with_grads && !g->private_buffers, share_grads = with_grads && !g->private_buffers;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_node *nd = &g->nodes[i];
        if (nd->in_numel > max_numel)
            max_numel = nd->in_numel;
        if (nd->op == QH_OP_CONV2D) {
            qh_conv2d_shape s = qhi_conv_shape(nd, cap);
            size_t need = qh_k_conv2d_ws_size(&s);
            if (need > ws)
                ws = need;
        }
        if (nd->op == QH_OP_BATCHNORM2D &&
            (!(nd->save_mean = alloc_floats(nd->shape[0])) || !(nd->save_invstd = alloc_floats(nd->shape[0])) ||
             !(nd->bn_scale = alloc_floats(nd->shape[0])) || !(nd->bn_shift = alloc_floats(nd->shape[0]))))
            goto nomem;
        if (nd->alias || share_outs)
            continue;
        /* a folded activation reads and writes no buffer of its own (only its gradient) */
        if (!nd->fused_away && !(nd->out = batch_floats(g, cap * nd->numel)))
            goto nomem;
        if (with_grads && !share_grads && !(nd->grad = batch_floats(g, cap * nd->numel)))
            goto nomem;
        if (with_grads && nd->op == QH_OP_MAXPOOL2D &&
            !(nd->argmax = batch_buffer(g, cap * nd->numel * (int64_t)sizeof(int32_t))))
            goto nomem;
        if (with_grads && nd->op == QH_OP_DROPOUT && !(nd->drop_mask = batch_buffer(g, cap * nd->numel)))
            goto nomem;
    }
    if ((share_outs || share_grads) && share_buffers(g, cap, share_grads) != QH_OK)
        goto nomem;
    if (ws && !(g->ws = qh_alloc_aligned(ws)))
        goto nomem;
    g->ws_size = ws;
    if (with_grads && !(g->scratch = batch_floats(g, cap * max_numel)))
        goto nomem;
    g->scratch_size = cap * max_numel;
    g->batch_cap = cap;
    g->grads_allocated = with_grads;
    return QH_OK;
nomem:
    qhi_graph_free_exec(g);
    return qh_error_set(err, QH_E_NOMEM, "out of memory for activations of a batch of %lld", (long long)n);
}

/* Per-node timing, only while g->prof is set (bench-models --profile): wall seconds, and the
 * calling thread's CPU seconds (which other processes on a shared machine do not inflate). */
typedef struct prof_mark {
    double wall, cpu;
} prof_mark;

static prof_mark prof_now(const qh_graph *g)
{
    prof_mark m = {0.0, 0.0};
    if (g->prof)
        m = (prof_mark){qh_clock_s(CLOCK_MONOTONIC), qh_clock_s(CLOCK_THREAD_CPUTIME_ID)};
    return m;
}

static void prof_add(qh_graph *g, int32_t i, int pass, prof_mark t0)
{
    if (!g->prof)
        return;
    prof_mark t = prof_now(g);
    g->prof[4 * i + pass] += t.wall - t0.wall;
    g->prof[4 * i + 2 + pass] += t.cpu - t0.cpu;
}

static const float *value_of(const qh_graph *g, int32_t src)
{
    return src == QH_INPUT ? g->input : g->nodes[src].cur;
}

static float *wdata(qh_graph *g, int32_t idx) { return idx >= 0 ? qh_tensor_f32(g->weights[idx].value) : NULL; }

static void bn_forward(qh_graph *g, qh_node *nd, const float *in, int64_t n, bool training)
{
    int64_t c = nd->shape[0], hw = nd->shape[1] * nd->shape[2];
    float *gamma = wdata(g, nd->w_idx), *beta = wdata(g, nd->b_idx);
    float *rmean = wdata(g, nd->buf_idx), *rvar = wdata(g, nd->buf_idx + 1);
    if (training) {
        qh_k_bn2d_fwd_train_act_f32(n, c, hw, in, gamma, beta, nd->u.bn.eps, nd->u.bn.momentum, rmean, rvar,
                                    nd->fuse_act, nd->out, nd->save_mean, nd->save_invstd);
        ((int64_t *)g->weights[nd->buf_idx + 2].value->data)[0] += 1;
        nd->cur = nd->out;
        return;
    }
    if (!nd->fuse_act) {
        qh_k_bn2d_fwd_eval_f32(n, c, hw, in, gamma, beta, rmean, rvar, nd->u.bn.eps, nd->out);
        nd->cur = nd->out;
        return;
    }
    for (int64_t k = 0; k < c; k++) { /* the same arithmetic as the unfused eval kernel's affine form */
        float inv = (float)(1.0 / sqrt((double)rvar[k] + nd->u.bn.eps));
        nd->bn_scale[k] = gamma[k] * inv;
        nd->bn_shift[k] = beta[k] - rmean[k] * gamma[k] * inv;
    }
    qh_k_scale_shift_act_f32(n, c, hw, in, nd->bn_scale, nd->bn_shift, nd->fuse_act, nd->out);
    nd->cur = nd->out;
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
        const float *in = value_of(g, nd->input);
        int64_t total = n * nd->numel;
        const float *w = wdata(g, nd->w_idx), *b = wdata(g, nd->b_idx);
        prof_mark t0 = prof_now(g);
        nd->cur = nd->out;
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
        case QH_OP_RELU6:
            if (nd->fused_away) {
                nd->cur = in; /* the batchnorm before already applied it */
                break;
            }
            if (nd->op == QH_OP_RELU)
                qh_k_relu_fwd_f32(total, in, nd->out);
            else
                qh_k_relu6_fwd_f32(total, in, nd->out);
            break;
        case QH_OP_TANH:
            qh_k_tanh_fwd_f32(total, in, nd->out);
            break;
        case QH_OP_MAXPOOL2D: {
            qh_pool2d_shape s = qhi_pool_shape(nd, n);
            qh_k_maxpool2d_fwd_f32(&s, in, nd->out, training ? nd->argmax : NULL); /* argmax: for backward */
            break;
        }
        case QH_OP_AVGPOOL2D: {
            qh_pool2d_shape s = qhi_pool_shape(nd, n);
            qh_k_avgpool2d_fwd_f32(&s, in, nd->out);
            break;
        }
        case QH_OP_FLATTEN:
            nd->cur = in; /* shares its input's buffers */
            break;
        case QH_OP_DROPOUT:
            if (training && nd->u.drop_p > 0.0) {
                qh_k_dropout_mask(total, nd->u.drop_p, rng, nd->drop_mask);
                qh_k_dropout_fwd_f32(total, nd->u.drop_p, nd->drop_mask, in, nd->out);
            } else {
                nd->cur = in; /* identity at inference */
            }
            break;
        case QH_OP_BATCHNORM2D:
            bn_forward(g, nd, in, n, training);
            break;
        case QH_OP_ADD:
            qh_k_add_f32(total, in, value_of(g, nd->input2), nd->out);
            break;
        case QH_OP_ADAPTIVE_AVGPOOL2D:
            qh_k_adaptive_avgpool2d_fwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                            nd->u.size.wo, in, nd->out);
            break;
        case QH_OP_SHORTCUT_A:
            qh_k_shortcut_a_fwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.stride, nd->shape[0],
                                    in, nd->out);
            break;
        case QH_OP_RESIZE_BILINEAR:
            qh_k_resize_bilinear_fwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                         nd->u.size.wo, in, nd->out);
            break;
        case QH_OP_COUNT:
            break;
        }
        prof_add(g, i, 0, t0);
    }
    return g->nodes[g->n_nodes - 1].cur;
}

/* Where the gradient for source node `src` goes: straight into its owner's buffer the first time,
 * else into scratch and then added (a node read by several consumers). NULL for the graph input. */
static float *dx_target(qh_graph *g, int32_t src, bool *accumulate)
{
    int32_t o = owner_of(g, src);
    *accumulate = false;
    if (o == QH_INPUT)
        return NULL;
    if (g->nodes[o].grad_written) {
        *accumulate = true;
        return g->scratch;
    }
    return g->nodes[o].grad;
}

static void dx_commit(qh_graph *g, int32_t src, bool accumulate)
{
    int32_t o = owner_of(g, src);
    if (o == QH_INPUT)
        return;
    qh_node *s = &g->nodes[o];
    if (accumulate) {
        int64_t total = g->batch_n * s->numel;
        for (int64_t k = 0; k < total; k++)
            s->grad[k] += g->scratch[k];
    }
    s->grad_written = true;
}

/* Gradient that passes unchanged to a source (residual add); nothing to copy where the source's
 * gradient buffer is the add's own (plan_grads). */
static void pass_grad(qh_graph *g, int32_t src, const float *dy, int64_t total)
{
    bool acc;
    float *dx = dx_target(g, src, &acc);
    if (!dx)
        return;
    if (dx != dy)
        memcpy(dx, dy, (size_t)total * sizeof(float));
    dx_commit(g, src, acc);
}

static void zero_weight_grads(qh_graph *g, const qh_node *nd)
{
    if (nd->w_idx >= 0)
        memset(g->weights[nd->w_idx].grad->data, 0, qh_tensor_nbytes(g->weights[nd->w_idx].grad));
    if (nd->b_idx >= 0)
        memset(g->weights[nd->b_idx].grad->data, 0, qh_tensor_nbytes(g->weights[nd->b_idx].grad));
}

static float *gdata(qh_graph *g, int32_t idx) { return idx >= 0 ? qh_tensor_f32(g->weights[idx].grad) : NULL; }

/* Backward of one node into dx (the input's gradient buffer or scratch; NULL = not needed). */
static void node_backward(qh_graph *g, qh_node *nd, float *dx)
{
    int64_t n = g->batch_n, total = n * nd->numel;
    const float *x = value_of(g, nd->input), *dy = nd->grad;
    switch (nd->op) {
    case QH_OP_CONV2D: {
        qh_conv2d_shape s = qhi_conv_shape(nd, n);
        qh_k_conv2d_bwd_f32(&s, x, wdata(g, nd->w_idx), dy, dx, gdata(g, nd->w_idx), gdata(g, nd->b_idx), g->ws);
        break;
    }
    case QH_OP_LINEAR:
        qh_k_linear_bwd_f32(n, nd->u.lin.in, nd->u.lin.out, x, wdata(g, nd->w_idx), dy, dx, gdata(g, nd->w_idx),
                            gdata(g, nd->b_idx));
        break;
    case QH_OP_BATCHNORM2D:
        qh_k_bn2d_bwd_f32(n, nd->shape[0], nd->shape[1] * nd->shape[2], x, dy, wdata(g, nd->w_idx), nd->save_mean,
                          nd->save_invstd, dx, gdata(g, nd->w_idx), gdata(g, nd->b_idx));
        break;
    case QH_OP_RELU:
        if (dx)
            qh_k_relu_bwd_f32(total, nd->fused_away ? x : nd->out, dy, dx); /* folded: out was not written */
        break;
    case QH_OP_RELU6:
        if (dx)
            qh_k_relu6_bwd_f32(total, x, dy, dx);
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
    case QH_OP_ADAPTIVE_AVGPOOL2D:
        if (dx)
            qh_k_adaptive_avgpool2d_bwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                            nd->u.size.wo, dy, dx);
        break;
    case QH_OP_SHORTCUT_A:
        if (dx)
            qh_k_shortcut_a_bwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.stride, nd->shape[0],
                                    dy, dx);
        break;
    case QH_OP_RESIZE_BILINEAR:
        if (dx)
            qh_k_resize_bilinear_bwd_f32(n, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                         nd->u.size.wo, dy, dx);
        break;
    case QH_OP_ADD:
    case QH_OP_FLATTEN:
    case QH_OP_COUNT:
        break;
    }
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
        prof_mark t0 = prof_now(g);
        if (nd->op == QH_OP_ADD) {
            pass_grad(g, nd->input, nd->grad, n * nd->numel);
            pass_grad(g, nd->input2, nd->grad, n * nd->numel);
            prof_add(g, i, 1, t0);
            continue;
        }
        bool acc;
        float *dx = dx_target(g, nd->input, &acc);
        node_backward(g, nd, dx);
        if (dx)
            dx_commit(g, nd->input, acc);
        prof_add(g, i, 1, t0);
    }
    return QH_OK;
}
