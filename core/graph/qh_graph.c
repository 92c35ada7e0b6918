/* qh_graph.c - building a model graph: layers, output shapes, parameters with state_dict names. */
#include "graph/qh_graph_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
    [QH_OP_CONV2D] = "conv2d",     [QH_OP_LINEAR] = "linear",       [QH_OP_RELU] = "relu",
    [QH_OP_TANH] = "tanh",         [QH_OP_MAXPOOL2D] = "maxpool2d", [QH_OP_AVGPOOL2D] = "avgpool2d",
    [QH_OP_FLATTEN] = "flatten",   [QH_OP_DROPOUT] = "dropout",     [QH_OP_BATCHNORM2D] = "batchnorm2d",
    [QH_OP_RELU6] = "relu6",       [QH_OP_ADD] = "add",             [QH_OP_ADAPTIVE_AVGPOOL2D] = "adaptive_avgpool2d",
    [QH_OP_SHORTCUT_A] = "shortcut_a", [QH_OP_RESIZE_BILINEAR] = "resize_bilinear",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == QH_OP_COUNT, "every op needs a name");

const char *qh_op_name(qh_op op) { return (unsigned)op < QH_OP_COUNT ? op_names[op] : "?"; }

qh_graph *qh_graph_new(int32_t channels, int32_t height, int32_t width, int32_t num_classes, qh_error *err)
{
    if (channels < 1 || height < 1 || width < 1 || num_classes < 1) {
        qh_error_set(err, QH_E_INVAL, "bad model input %dx%dx%d with %d classes", channels, height, width,
                     num_classes);
        return NULL;
    }
    qh_graph *g = calloc(1, sizeof *g);
    if (!g) {
        qh_error_set(err, QH_E_NOMEM, "out of memory");
        return NULL;
    }
    g->in_c = channels;
    g->in_h = height;
    g->in_w = width;
    g->num_classes = num_classes;
    return g;
}

void qhi_graph_free_exec(qh_graph *g)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_node *nd = &g->nodes[i];
        if (!nd->alias && !g->shared_outs)
            qh_free_aligned(nd->out);
        if (!nd->alias && !g->shared_grads)
            qh_free_aligned(nd->grad);
        qh_free_aligned(nd->argmax);
        qh_free_aligned(nd->drop_mask);
        qh_free_aligned(nd->save_mean);
        qh_free_aligned(nd->save_invstd);
        qh_free_aligned(nd->bn_scale);
        qh_free_aligned(nd->bn_shift);
        nd->bn_scale = nd->bn_shift = NULL;
        nd->out = nd->grad = NULL;
        nd->argmax = NULL;
        nd->drop_mask = NULL;
        nd->save_mean = nd->save_invstd = NULL;
    }
    for (int32_t k = 0; k < g->n_slots; k++)
        qh_free_aligned(g->slots[k]);
    free(g->slots);
    g->slots = NULL;
    g->n_slots = 0;
    g->shared_outs = g->shared_grads = false;
    g->act_bytes = 0;
    qh_free_aligned(g->ws);
    qh_free_aligned(g->scratch);
    g->ws = NULL;
    g->scratch = NULL;
    g->ws_size = 0;
    g->scratch_size = 0;
    g->batch_cap = 0;
    g->grads_allocated = false;
}

void qh_graph_free(qh_graph *g)
{
    if (!g)
        return;
    qhi_graph_free_exec(g);
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_tensor_free(g->weights[i].value);
        qh_tensor_free(g->weights[i].grad);
        free(g->weights[i].mask);
    }
    free(g->weights);
    free(g->nodes);
    free(g);
}

int32_t qh_graph_in_channels(const qh_graph *g) { return g->in_c; }
int32_t qh_graph_in_height(const qh_graph *g) { return g->in_h; }
int32_t qh_graph_in_width(const qh_graph *g) { return g->in_w; }
int32_t qh_graph_num_classes(const qh_graph *g) { return g->num_classes; }
int32_t qh_graph_n_nodes(const qh_graph *g) { return g->n_nodes; }
qh_op qh_graph_node_op(const qh_graph *g, int32_t node) { return g->nodes[node].op; }
const char *qh_graph_node_name(const qh_graph *g, int32_t node) { return g->nodes[node].name; }
int32_t qh_graph_n_weights(const qh_graph *g) { return g->n_weights; }
qh_weight *qh_graph_weight(qh_graph *g, int32_t i) { return (i >= 0 && i < g->n_weights) ? &g->weights[i] : NULL; }

int32_t qh_graph_node_shape(const qh_graph *g, int32_t node, int64_t shape[QH_MAX_DIMS])
{
    const qh_node *nd = &g->nodes[node];
    for (int i = 0; i < nd->ndim; i++)
        shape[i] = nd->shape[i];
    return nd->ndim;
}

qh_weight *qh_graph_find_weight(qh_graph *g, const char *name)
{
    for (int32_t i = 0; i < g->n_weights; i++)
        if (strcmp(g->weights[i].value->name, name) == 0)
            return &g->weights[i];
    return NULL;
}

int64_t qh_graph_n_params(const qh_graph *g)
{
    int64_t n = 0;
    for (int32_t i = 0; i < g->n_weights; i++)
        if (!g->weights[i].is_buffer)
            n += qh_tensor_numel(g->weights[i].value);
    return n;
}

int64_t qh_graph_node_macs(const qh_graph *g, int32_t node)
{
    const qh_node *nd = &g->nodes[node];
    if (nd->op == QH_OP_CONV2D) {
        const qh_conv2d_params *p = &nd->u.conv;
        return nd->numel * (nd->in_shape[0] / p->groups) * p->kernel_h * p->kernel_w;
    }
    if (nd->op == QH_OP_LINEAR)
        return nd->u.lin.in * nd->u.lin.out;
    return 0;
}

int64_t qh_graph_macs(const qh_graph *g)
{
    int64_t macs = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        macs += qh_graph_node_macs(g, i);
    return macs;
}

int32_t qhi_graph_resolve_input(const qh_graph *g, int32_t input)
{
    if (input == QH_PREV)
        return g->n_nodes > 0 ? g->n_nodes - 1 : QH_INPUT;
    if (input == QH_INPUT)
        return QH_INPUT;
    if (input >= 0 && input < g->n_nodes)
        return input;
    return -3;
}

/* Appends a node reading `input`; fills its input shape. NULL (err set) on bad input. */
static qh_node *add_node(qh_graph *g, qh_op op, const char *name, int32_t input, qh_error *err)
{
    int32_t src = qhi_graph_resolve_input(g, input);
    if (src == -3) {
        qh_error_set(err, QH_E_INVAL, "%s '%s': input node %d does not exist", qh_op_name(op), name ? name : "",
                     input);
        return NULL;
    }
    if (g->batch_cap) {
        qh_error_set(err, QH_E_INVAL, "graph already executed: cannot add layers");
        return NULL;
    }
    if (name && strlen(name) + 8 >= QH_NAME_MAX) {
        qh_error_set(err, QH_E_INVAL, "layer name '%.40s...' too long", name);
        return NULL;
    }
    if (g->n_nodes == g->cap_nodes) {
        int32_t cap = g->cap_nodes ? 2 * g->cap_nodes : 16;
        qh_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            qh_error_set(err, QH_E_NOMEM, "out of memory");
            return NULL;
        }
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    qh_node *nd = &g->nodes[g->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->input = src;
    nd->input2 = -3;
    nd->w_idx = nd->b_idx = nd->buf_idx = -1;
    if (name && *name)
        snprintf(nd->name, sizeof nd->name, "%s", name);
    else
        snprintf(nd->name, sizeof nd->name, "%s%d", qh_op_name(op), g->n_nodes);
    if (src == QH_INPUT) {
        nd->in_ndim = 3;
        nd->in_shape[0] = g->in_c;
        nd->in_shape[1] = g->in_h;
        nd->in_shape[2] = g->in_w;
    } else {
        const qh_node *s = &g->nodes[src];
        nd->in_ndim = s->ndim;
        for (int i = 0; i < s->ndim; i++)
            nd->in_shape[i] = s->shape[i];
    }
    nd->in_numel = 1;
    for (int i = 0; i < nd->in_ndim; i++)
        nd->in_numel *= nd->in_shape[i];
    return nd;
}

static int32_t commit_node(qh_graph *g, qh_node *nd)
{
    nd->numel = 1;
    for (int i = 0; i < nd->ndim; i++)
        nd->numel *= nd->shape[i];
    return g->n_nodes++;
}

static int32_t add_tensor(qh_graph *g, const char *layer, const char *suffix, qh_dtype dt, int32_t ndim,
                          const int64_t *shape, bool is_bias, bool is_buffer, qh_error *err)
{
    char name[QH_NAME_MAX];
    snprintf(name, sizeof name, "%s.%s", layer, suffix);
    if (qh_graph_find_weight(g, name)) {
        qh_error_set(err, QH_E_INVAL, "duplicate parameter name '%s'", name);
        return -1;
    }
    if (g->n_weights == g->cap_weights) {
        int32_t cap = g->cap_weights ? 2 * g->cap_weights : 16;
        qh_weight *w = realloc(g->weights, (size_t)cap * sizeof *w);
        if (!w) {
            qh_error_set(err, QH_E_NOMEM, "out of memory");
            return -1;
        }
        g->weights = w;
        g->cap_weights = cap;
    }
    qh_weight *w = &g->weights[g->n_weights];
    memset(w, 0, sizeof *w);
    w->value = qh_tensor_new(dt, ndim, shape, err);
    if (!w->value)
        return -1;
    if (!is_buffer && !(w->grad = qh_tensor_new(QH_F32, ndim, shape, err))) {
        qh_tensor_free(w->value);
        return -1;
    }
    qh_tensor_set_name(w->value, name);
    if (w->grad)
        qh_tensor_set_name(w->grad, name);
    w->node = g->n_nodes;
    w->is_bias = is_bias;
    w->is_buffer = is_buffer;
    return g->n_weights++;
}

static int32_t add_weight(qh_graph *g, const char *layer, const char *suffix, int32_t ndim, const int64_t *shape,
                          bool is_bias, qh_error *err)
{
    return add_tensor(g, layer, suffix, QH_F32, ndim, shape, is_bias, false, err);
}

int32_t qh_graph_conv2d(qh_graph *g, const char *name, int32_t input, const qh_conv2d_params *p, qh_error *err)
{
    if (!name || !*name)
        return qh_error_set(err, QH_E_INVAL, "conv2d needs a name"), -1;
    qh_node *nd = add_node(g, QH_OP_CONV2D, name, input, err);
    if (!nd)
        return -1;
    qh_conv2d_params c = *p;
    if (c.stride_h == 0)
        c.stride_h = 1;
    if (c.stride_w == 0)
        c.stride_w = 1;
    if (c.groups == 0)
        c.groups = 1;
    if (nd->in_ndim != 3)
        return qh_error_set(err, QH_E_INVAL, "conv2d '%s': input must be C x H x W, got rank %d", name,
                            nd->in_ndim), -1;
    int64_t cin = nd->in_shape[0];
    if (c.out_channels < 1 || c.kernel_h < 1 || c.kernel_w < 1 || c.stride_h < 1 || c.stride_w < 1 || c.pad_h < 0 ||
        c.pad_w < 0 || c.groups < 1)
        return qh_error_set(err, QH_E_INVAL, "conv2d '%s': bad parameters", name), -1;
    if (cin % c.groups || c.out_channels % c.groups)
        return qh_error_set(err, QH_E_INVAL, "conv2d '%s': channels %lld -> %d not divisible by groups %d", name,
                            (long long)cin, c.out_channels, c.groups), -1;
    int64_t ho = (nd->in_shape[1] + 2 * c.pad_h - c.kernel_h) / c.stride_h + 1;
    int64_t wo = (nd->in_shape[2] + 2 * c.pad_w - c.kernel_w) / c.stride_w + 1;
    if (nd->in_shape[1] + 2 * c.pad_h < c.kernel_h || nd->in_shape[2] + 2 * c.pad_w < c.kernel_w || ho < 1 ||
        wo < 1)
        return qh_error_set(err, QH_E_INVAL, "conv2d '%s': kernel %dx%d larger than padded input %lldx%lld", name,
                            c.kernel_h, c.kernel_w, (long long)(nd->in_shape[1] + 2 * c.pad_h),
                            (long long)(nd->in_shape[2] + 2 * c.pad_w)), -1;
    nd->u.conv = c;
    nd->ndim = 3;
    nd->shape[0] = c.out_channels;
    nd->shape[1] = ho;
    nd->shape[2] = wo;
    int64_t ws[4] = {c.out_channels, cin / c.groups, c.kernel_h, c.kernel_w};
    nd->w_idx = add_weight(g, name, "weight", 4, ws, false, err);
    if (nd->w_idx < 0)
        return -1;
    if (c.bias) {
        int64_t bs[1] = {c.out_channels};
        nd->b_idx = add_weight(g, name, "bias", 1, bs, true, err);
        if (nd->b_idx < 0)
            return -1;
    }
    return commit_node(g, nd);
}

int32_t qh_graph_linear(qh_graph *g, const char *name, int32_t input, int32_t out_features, bool bias, qh_error *err)
{
    if (!name || !*name)
        return qh_error_set(err, QH_E_INVAL, "linear needs a name"), -1;
    qh_node *nd = add_node(g, QH_OP_LINEAR, name, input, err);
    if (!nd)
        return -1;
    if (nd->in_ndim != 1)
        return qh_error_set(err, QH_E_INVAL, "linear '%s': input must be flat (add a flatten layer), got rank %d",
                            name, nd->in_ndim), -1;
    if (out_features < 1)
        return qh_error_set(err, QH_E_INVAL, "linear '%s': out_features %d < 1", name, out_features), -1;
    nd->u.lin.in = nd->in_shape[0];
    nd->u.lin.out = out_features;
    nd->ndim = 1;
    nd->shape[0] = out_features;
    int64_t ws[2] = {out_features, nd->u.lin.in};
    nd->w_idx = add_weight(g, name, "weight", 2, ws, false, err);
    if (nd->w_idx < 0)
        return -1;
    if (bias) {
        int64_t bs[1] = {out_features};
        nd->b_idx = add_weight(g, name, "bias", 1, bs, true, err);
        if (nd->b_idx < 0)
            return -1;
    }
    return commit_node(g, nd);
}

static int32_t add_same_shape(qh_graph *g, qh_op op, const char *name, int32_t input, qh_error *err)
{
    qh_node *nd = add_node(g, op, name, input, err);
    if (!nd)
        return -1;
    nd->ndim = nd->in_ndim;
    for (int i = 0; i < nd->ndim; i++)
        nd->shape[i] = nd->in_shape[i];
    return commit_node(g, nd);
}

int32_t qh_graph_relu(qh_graph *g, const char *name, int32_t input, qh_error *err)
{
    return add_same_shape(g, QH_OP_RELU, name, input, err);
}

int32_t qh_graph_tanh(qh_graph *g, const char *name, int32_t input, qh_error *err)
{
    return add_same_shape(g, QH_OP_TANH, name, input, err);
}

int32_t qh_graph_dropout(qh_graph *g, const char *name, int32_t input, double p, qh_error *err)
{
    if (!(p >= 0.0 && p < 1.0))
        return qh_error_set(err, QH_E_INVAL, "dropout '%s': p = %g outside [0, 1)", name ? name : "", p), -1;
    int32_t id = add_same_shape(g, QH_OP_DROPOUT, name, input, err);
    if (id >= 0)
        g->nodes[id].u.drop_p = p;
    return id;
}

int32_t qh_graph_flatten(qh_graph *g, const char *name, int32_t input, qh_error *err)
{
    qh_node *nd = add_node(g, QH_OP_FLATTEN, name, input, err);
    if (!nd)
        return -1;
    nd->ndim = 1;
    nd->shape[0] = nd->in_numel;
    return commit_node(g, nd);
}

static int32_t add_pool(qh_graph *g, qh_op op, const char *name, int32_t input, const qh_pool2d_params *p,
                        qh_error *err)
{
    qh_node *nd = add_node(g, op, name, input, err);
    if (!nd)
        return -1;
    qh_pool2d_params c = *p;
    if (c.stride_h == 0)
        c.stride_h = c.kernel_h;
    if (c.stride_w == 0)
        c.stride_w = c.kernel_w;
    if (nd->in_ndim != 3)
        return qh_error_set(err, QH_E_INVAL, "%s '%s': input must be C x H x W", qh_op_name(op), nd->name), -1;
    if (c.kernel_h < 1 || c.kernel_w < 1 || c.stride_h < 1 || c.stride_w < 1 || c.pad_h < 0 || c.pad_w < 0 ||
        2 * c.pad_h > c.kernel_h || 2 * c.pad_w > c.kernel_w)
        return qh_error_set(err, QH_E_INVAL, "%s '%s': bad parameters (padding must be at most half the kernel)",
                            qh_op_name(op), nd->name), -1;
    int64_t ho = (nd->in_shape[1] + 2 * c.pad_h - c.kernel_h) / c.stride_h + 1;
    int64_t wo = (nd->in_shape[2] + 2 * c.pad_w - c.kernel_w) / c.stride_w + 1;
    if (nd->in_shape[1] + 2 * c.pad_h < c.kernel_h || nd->in_shape[2] + 2 * c.pad_w < c.kernel_w)
        return qh_error_set(err, QH_E_INVAL, "%s '%s': kernel %dx%d larger than input %lldx%lld", qh_op_name(op),
                            nd->name, c.kernel_h, c.kernel_w, (long long)nd->in_shape[1],
                            (long long)nd->in_shape[2]), -1;
    nd->u.pool = c;
    nd->ndim = 3;
    nd->shape[0] = nd->in_shape[0];
    nd->shape[1] = ho;
    nd->shape[2] = wo;
    return commit_node(g, nd);
}

int32_t qh_graph_maxpool2d(qh_graph *g, const char *name, int32_t input, const qh_pool2d_params *p, qh_error *err)
{
    return add_pool(g, QH_OP_MAXPOOL2D, name, input, p, err);
}

int32_t qh_graph_avgpool2d(qh_graph *g, const char *name, int32_t input, const qh_pool2d_params *p, qh_error *err)
{
    return add_pool(g, QH_OP_AVGPOOL2D, name, input, p, err);
}

int32_t qh_graph_relu6(qh_graph *g, const char *name, int32_t input, qh_error *err)
{
    return add_same_shape(g, QH_OP_RELU6, name, input, err);
}

int32_t qh_graph_batchnorm2d(qh_graph *g, const char *name, int32_t input, double eps, double momentum,
                             qh_error *err)
{
    if (!name || !*name)
        return qh_error_set(err, QH_E_INVAL, "batchnorm2d needs a name"), -1;
    if (!(eps > 0.0) || !(momentum >= 0.0 && momentum <= 1.0))
        return qh_error_set(err, QH_E_INVAL, "batchnorm2d '%s': eps %g must be > 0, momentum %g in [0, 1]", name, eps,
                            momentum), -1;
    qh_node *nd = add_node(g, QH_OP_BATCHNORM2D, name, input, err);
    if (!nd)
        return -1;
    if (nd->in_ndim != 3)
        return qh_error_set(err, QH_E_INVAL, "batchnorm2d '%s': input must be C x H x W, got rank %d", name,
                            nd->in_ndim), -1;
    nd->ndim = 3;
    for (int i = 0; i < 3; i++)
        nd->shape[i] = nd->in_shape[i];
    nd->u.bn.eps = eps;
    nd->u.bn.momentum = momentum;
    int64_t c[1] = {nd->in_shape[0]};
    if ((nd->w_idx = add_weight(g, name, "weight", 1, c, false, err)) < 0 ||
        (nd->b_idx = add_weight(g, name, "bias", 1, c, true, err)) < 0 ||
        (nd->buf_idx = add_tensor(g, name, "running_mean", QH_F32, 1, c, false, true, err)) < 0 ||
        add_tensor(g, name, "running_var", QH_F32, 1, c, false, true, err) < 0 ||
        add_tensor(g, name, "num_batches_tracked", QH_I64, 0, NULL, false, true, err) < 0)
        return -1;
    return commit_node(g, nd);
}

int32_t qh_graph_add(qh_graph *g, const char *name, int32_t a, int32_t b, qh_error *err)
{
    int32_t rb = qhi_graph_resolve_input(g, b);
    if (rb == -3)
        return qh_error_set(err, QH_E_INVAL, "add '%s': input node %d does not exist", name ? name : "", b), -1;
    qh_node *nd = add_node(g, QH_OP_ADD, name, a, err);
    if (!nd)
        return -1;
    int64_t bs[3] = {g->in_c, g->in_h, g->in_w};
    int32_t bnd = 3;
    if (rb != QH_INPUT) {
        bnd = g->nodes[rb].ndim;
        for (int i = 0; i < bnd; i++)
            bs[i] = g->nodes[rb].shape[i];
    }
    bool same = bnd == nd->in_ndim;
    for (int i = 0; same && i < bnd; i++)
        same = bs[i] == nd->in_shape[i];
    if (!same)
        return qh_error_set(err, QH_E_INVAL, "add '%s': operands have different shapes", nd->name), -1;
    nd->input2 = rb;
    nd->ndim = nd->in_ndim;
    for (int i = 0; i < nd->ndim; i++)
        nd->shape[i] = nd->in_shape[i];
    return commit_node(g, nd);
}

/* A node that maps each C x H x W plane to out_h x out_w (adaptive pooling, resize). */
static int32_t resample_node(qh_graph *g, qh_op op, const char *name, int32_t input, int32_t out_h, int32_t out_w,
                             qh_error *err)
{
    qh_node *nd = add_node(g, op, name, input, err);
    if (!nd)
        return -1;
    if (nd->in_ndim != 3 || out_h < 1 || out_w < 1)
        return qh_error_set(err, QH_E_INVAL, "%s '%s': needs a C x H x W input and a positive size", qh_op_name(op),
                            nd->name), -1;
    nd->u.size.ho = out_h;
    nd->u.size.wo = out_w;
    nd->ndim = 3;
    nd->shape[0] = nd->in_shape[0];
    nd->shape[1] = out_h;
    nd->shape[2] = out_w;
    return commit_node(g, nd);
}

int32_t qh_graph_adaptive_avgpool2d(qh_graph *g, const char *name, int32_t input, int32_t out_h, int32_t out_w,
                                    qh_error *err)
{
    return resample_node(g, QH_OP_ADAPTIVE_AVGPOOL2D, name, input, out_h, out_w, err);
}

int32_t qh_graph_shortcut_a(qh_graph *g, const char *name, int32_t input, int32_t stride, int32_t out_channels,
                            qh_error *err)
{
    qh_node *nd = add_node(g, QH_OP_SHORTCUT_A, name, input, err);
    if (!nd)
        return -1;
    if (nd->in_ndim != 3 || stride < 1 || out_channels < nd->in_shape[0])
        return qh_error_set(err, QH_E_INVAL, "shortcut_a '%s': needs a C x H x W input, stride >= 1 and at least "
                            "as many output channels as input channels", nd->name), -1;
    nd->u.stride = stride;
    nd->ndim = 3;
    nd->shape[0] = out_channels;
    nd->shape[1] = (nd->in_shape[1] + stride - 1) / stride;
    nd->shape[2] = (nd->in_shape[2] + stride - 1) / stride;
    return commit_node(g, nd);
}

int32_t qh_graph_resize_bilinear(qh_graph *g, const char *name, int32_t input, int32_t out_h, int32_t out_w,
                                 qh_error *err)
{
    return resample_node(g, QH_OP_RESIZE_BILINEAR, name, input, out_h, out_w, err);
}

qh_status qh_graph_finalize(qh_graph *g, qh_error *err)
{
    if (g->n_nodes == 0)
        return qh_error_set(err, QH_E_INVAL, "the model has no layers");
    const qh_node *last = &g->nodes[g->n_nodes - 1];
    if (last->ndim != 1 || last->shape[0] != g->num_classes)
        return qh_error_set(err, QH_E_INVAL, "the last layer '%s' gives %lld values per sample, expected %d classes",
                            last->name, (long long)last->numel, g->num_classes);
    return QH_OK;
}

void qh_graph_init_params(qh_graph *g, qh_rng *rng)
{
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        if (nd->op == QH_OP_BATCHNORM2D) { /* gamma 1, beta 0, running mean 0, running var 1, count 0 */
            float *gm = qh_tensor_f32(g->weights[nd->w_idx].value), *rv = qh_tensor_f32(g->weights[nd->buf_idx + 1].value);
            for (int64_t k = 0; k < nd->shape[0]; k++)
                gm[k] = rv[k] = 1.0f;
            memset(g->weights[nd->b_idx].value->data, 0, qh_tensor_nbytes(g->weights[nd->b_idx].value));
            memset(g->weights[nd->buf_idx].value->data, 0, qh_tensor_nbytes(g->weights[nd->buf_idx].value));
            memset(g->weights[nd->buf_idx + 2].value->data, 0, qh_tensor_nbytes(g->weights[nd->buf_idx + 2].value));
            continue;
        }
        if (nd->w_idx < 0)
            continue;
        qh_tensor *w = g->weights[nd->w_idx].value;
        int64_t fan_in = qh_tensor_numel(w) / w->shape[0];
        /* kaiming_uniform_(a = sqrt(5)) gives bound = 1/sqrt(fan_in); the bias uses the same bound. */
        double bound = 1.0 / sqrt((double)fan_in);
        float *wd = qh_tensor_f32(w);
        for (int64_t k = 0; k < qh_tensor_numel(w); k++)
            wd[k] = (float)((2.0 * qh_rng_uniform(rng) - 1.0) * bound);
        if (nd->b_idx >= 0) {
            qh_tensor *b = g->weights[nd->b_idx].value;
            float *bd = qh_tensor_f32(b);
            for (int64_t k = 0; k < qh_tensor_numel(b); k++)
                bd[k] = (float)((2.0 * qh_rng_uniform(rng) - 1.0) * bound);
        }
    }
    qh_graph_apply_masks(g);
}

qh_status qh_weight_set_mask(qh_weight *w, const uint8_t *mask, qh_error *err)
{
    int64_t n = qh_tensor_numel(w->value);
    if (!w->mask) {
        w->mask = malloc((size_t)n);
        if (!w->mask)
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    float *v = qh_tensor_f32(w->value);
    for (int64_t i = 0; i < n; i++) {
        w->mask[i] = mask[i] ? 1 : 0;
        if (!w->mask[i])
            v[i] = 0.0f;
    }
    return QH_OK;
}

void qh_graph_apply_masks(qh_graph *g)
{
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        if (!w->mask)
            continue;
        float *v = qh_tensor_f32(w->value);
        int64_t n = qh_tensor_numel(w->value);
        for (int64_t k = 0; k < n; k++)
            if (!w->mask[k])
                v[k] = 0.0f;
    }
}

qh_conv2d_shape qhi_conv_shape(const qh_node *nd, int64_t n)
{
    const qh_conv2d_params *p = &nd->u.conv;
    qh_conv2d_shape s = {
        .n = n, .c_in = nd->in_shape[0], .h_in = nd->in_shape[1], .w_in = nd->in_shape[2],
        .c_out = nd->shape[0], .h_out = nd->shape[1], .w_out = nd->shape[2],
        .kh = p->kernel_h, .kw = p->kernel_w, .sh = p->stride_h, .sw = p->stride_w,
        .ph = p->pad_h, .pw = p->pad_w, .groups = p->groups,
    };
    return s;
}

qh_pool2d_shape qhi_pool_shape(const qh_node *nd, int64_t n)
{
    const qh_pool2d_params *p = &nd->u.pool;
    qh_pool2d_shape s = {
        .n = n, .c = nd->in_shape[0], .h_in = nd->in_shape[1], .w_in = nd->in_shape[2],
        .h_out = nd->shape[1], .w_out = nd->shape[2],
        .kh = p->kernel_h, .kw = p->kernel_w, .sh = p->stride_h, .sw = p->stride_w, .ph = p->pad_h, .pw = p->pad_w,
    };
    return s;
}
