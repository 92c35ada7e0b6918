/* qh_surgery.c - coupled channel groups and physical channel removal (see qh_surgery.h).
 *
 * Removal keeps the network function of the masked network exactly (up to the order of float
 * additions): a class is removed only when every element of it is identically 0 there, which holds
 * when each conv / linear filter in it and its bias are 0, each batch norm channel in it has weight
 * and bias 0 (then its output is 0 whatever the statistics), and the class reaches neither the
 * model's input nor its output. Every other layer maps 0 to 0 (activations, pooling, add,
 * shortcut), and the consumers of a removed channel (the next conv's input channels, a depthwise
 * conv's group, a linear layer's inputs after flatten) only ever multiplied it by their weights. */
#include "graph/qh_surgery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_engine.h"

/* ---------------------------------------------------------------- union-find over channel elements */

static int64_t uf_find(int64_t *p, int64_t x)
{
    while (p[x] != x) {
        p[x] = p[p[x]];
        x = p[x];
    }
    return x;
}

/* The root stays the smaller element, so numbering classes in element order is one pass. */
static void uf_union(int64_t *p, int64_t a, int64_t b)
{
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a < b)
        p[b] = a;
    else if (b < a)
        p[a] = b;
}

static int32_t slot(int32_t node) { return node == QH_INPUT ? 0 : node + 1; }

static bool is_depthwise(const qh_node *nd)
{
    const qh_conv2d_params *p = &nd->u.conv;
    return p->groups > 1 && p->groups == nd->in_shape[0] && nd->shape[0] == nd->in_shape[0];
}

static void tie_same(int64_t *p, int64_t o, int64_t s, int64_t n)
{
    for (int64_t c = 0; c < n; c++)
        uf_union(p, o + c, s + c);
}

/* The unions one node makes between its output elements (at o) and its inputs'. */
static qh_status tie_node(const qh_graph *g, const qhi_chmap *m, int64_t *p, int32_t i, qh_error *err)
{
    const qh_node *nd = &g->nodes[i];
    int64_t out = nd->shape[0], in = nd->in_shape[0], o = m->base[i + 1], s = m->base[slot(nd->input)];
    switch (nd->op) {
    case QH_OP_CONV2D:
        if (nd->u.conv.groups == 1)
            return QH_OK;
        if (!is_depthwise(nd))
            return qh_error_set(err, QH_E_UNSUPPORTED, "conv2d '%s': grouped convolution (groups = %d) cannot lose "
                                "channels; only depthwise convolutions (groups = channels) can", nd->name,
                                nd->u.conv.groups);
        tie_same(p, o, s, out); /* a depthwise conv's output c is computed from its input c alone */
        return QH_OK;
    case QH_OP_RELU:
    case QH_OP_TANH:
    case QH_OP_RELU6:
    case QH_OP_DROPOUT:
    case QH_OP_BATCHNORM2D:
    case QH_OP_MAXPOOL2D:
    case QH_OP_AVGPOOL2D:
    case QH_OP_ADAPTIVE_AVGPOOL2D:
    case QH_OP_RESIZE_BILINEAR:
        tie_same(p, o, s, out);
        return QH_OK;
    case QH_OP_LINEAR:
        return QH_OK;
    case QH_OP_FLATTEN: {
        int64_t hw = nd->in_ndim == 3 ? nd->in_shape[1] * nd->in_shape[2] : 1;
        for (int64_t f = 0; f < out; f++)
            uf_union(p, o + f, s + f / hw);
        return QH_OK;
    }
    case QH_OP_ADD: {
        int64_t s2 = m->base[slot(nd->input2)];
        for (int64_t c = 0; c < out; c++) {
            uf_union(p, o + c, s + c);
            uf_union(p, o + c, s2 + c);
        }
        return QH_OK;
    }
    case QH_OP_SHORTCUT_A: {
        int64_t front = (out - in) / 2; /* as qh_k_shortcut_a_fwd_f32 pads */
        for (int64_t c = 0; c < in; c++)
            uf_union(p, o + front + c, s + c);
        for (int64_t k = 0; k < front; k++) /* low pad k with high pad k: removed in pairs, still centred */
            uf_union(p, o + k, o + front + in + k);
        return QH_OK;
    }
    case QH_OP_COUNT:
        break;
    }
    return qh_error_set(err, QH_E_UNSUPPORTED, "layer '%s': op %s is not supported by channel removal", nd->name,
                        qh_op_name(nd->op));
}

void qhi_chmap_free(qhi_chmap *m)
{
    free(m->base);
    free(m->cls);
    free(m->pinned);
    memset(m, 0, sizeof *m);
}

int32_t qhi_chmap_class(const qhi_chmap *m, int32_t node, int64_t c) { return m->cls[m->base[slot(node)] + c]; }

/* A root is its class's smallest element, so it is numbered before any other member is read. */
static void number_classes(qhi_chmap *m, int64_t *p)
{
    m->n_classes = 0;
    for (int64_t e = 0; e < m->n_elems; e++) {
        int64_t r = uf_find(p, e);
        m->cls[e] = r == e ? m->n_classes++ : m->cls[r];
    }
}

qh_status qhi_chmap_build(const qh_graph *g, qhi_chmap *m, qh_error *err)
{
    memset(m, 0, sizeof *m);
    m->n_nodes = g->n_nodes;
    if (!(m->base = malloc(sizeof *m->base * ((size_t)g->n_nodes + 2))))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    m->base[0] = 0;
    m->base[1] = g->in_c;
    for (int32_t i = 0; i < g->n_nodes; i++)
        m->base[i + 2] = m->base[i + 1] + g->nodes[i].shape[0];
    m->n_elems = m->base[g->n_nodes + 1];
    int64_t *p = malloc(sizeof *p * ((size_t)m->n_elems + 1));
    m->cls = malloc(sizeof *m->cls * ((size_t)m->n_elems + 1));
    if (!p || !m->cls) {
        free(p);
        qhi_chmap_free(m);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    for (int64_t e = 0; e < m->n_elems; e++)
        p[e] = e;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        qh_status st = tie_node(g, m, p, i, err);
        if (st != QH_OK) {
            free(p);
            qhi_chmap_free(m);
            return st;
        }
    }
    number_classes(m, p);
    free(p);
    if (!(m->pinned = calloc((size_t)m->n_classes + 1, 1))) {
        qhi_chmap_free(m);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    for (int64_t e = 0; e < m->base[1]; e++)
        m->pinned[m->cls[e]] = 1;
    for (int64_t e = m->base[g->n_nodes]; e < m->n_elems; e++)
        m->pinned[m->cls[e]] = 1;
    return QH_OK;
}

/* ---------------------------------------------------------------- groups for a structured pruner */

static bool has_filters(const qh_node *nd) { return nd->op == QH_OP_CONV2D || nd->op == QH_OP_LINEAR; }

void qhi_groups_free(qhi_groups *gr)
{
    free(gr->groups);
    free(gr->cls);
    free(gr->tgt);
    free(gr->ch);
    memset(gr, 0, sizeof *gr);
}

static bool slice_alive(const uint8_t *mask, int64_t c, int64_t len)
{
    if (!mask)
        return true;
    for (int64_t i = 0; i < len; i++)
        if (mask[c * len + i])
            return true;
    return false;
}

/* Families: groups whose member target sequences are equal (same layers, same multiplicity). */
static void assign_families(qhi_groups *gr)
{
    gr->n_families = 0;
    for (int32_t a = 0; a < gr->n; a++) {
        qh_channel_group *x = &gr->groups[a];
        x->family = -1;
        for (int32_t b = 0; b < a && x->family < 0; b++) {
            const qh_channel_group *y = &gr->groups[b];
            if (y->n_members == x->n_members &&
                memcmp(y->target, x->target, sizeof *x->target * (size_t)x->n_members) == 0)
                x->family = y->family;
        }
        if (x->family < 0)
            x->family = gr->n_families++;
    }
}

/* Per class: -1 not a group, else its group index; *n_members per group counted in cnt. */
static int32_t number_groups(const qh_graph *g, const qhi_chmap *m, const int32_t *tix, int32_t *gid,
                             int64_t *cnt)
{
    uint8_t *bad = calloc((size_t)m->n_classes + 1, 1);
    if (!bad)
        return -1;
    memset(cnt, 0, sizeof *cnt * ((size_t)m->n_classes + 1));
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        if (!has_filters(nd))
            continue;
        for (int64_t c = 0; c < nd->shape[0]; c++) {
            int32_t k = qhi_chmap_class(m, i, c);
            if (tix[nd->w_idx] < 0)
                bad[k] = 1;
            cnt[k]++;
        }
    }
    int32_t n = 0;
    for (int32_t k = 0; k < m->n_classes; k++)
        gid[k] = !m->pinned[k] && !bad[k] && cnt[k] > 0 ? n++ : -1;
    free(bad);
    return n;
}

qh_status qhi_groups_build(const qh_graph *g, const qhi_chmap *m, const int32_t *targets, int32_t n_targets,
                           const uint8_t *const *masks, qhi_groups *out, qh_error *err)
{
    memset(out, 0, sizeof *out);
    int32_t *tix = malloc(sizeof *tix * ((size_t)g->n_weights + 1));
    int32_t *gid = malloc(sizeof *gid * ((size_t)m->n_classes + 1));
    int64_t *cnt = malloc(sizeof *cnt * ((size_t)m->n_classes + 1)), *off = NULL;
    qh_status st = QH_OK;
    if (!tix || !gid || !cnt)
        goto nomem;
    for (int32_t i = 0; i < g->n_weights; i++)
        tix[i] = -1;
    for (int32_t k = 0; k < n_targets; k++)
        tix[targets[k]] = k;
    if ((out->n = number_groups(g, m, tix, gid, cnt)) < 0)
        goto nomem;
    off = calloc((size_t)out->n + 1, sizeof *off);
    out->groups = calloc((size_t)out->n + 1, sizeof *out->groups);
    out->cls = malloc(sizeof *out->cls * ((size_t)out->n + 1));
    if (!off || !out->groups || !out->cls)
        goto nomem;
    for (int32_t k = 0; k < m->n_classes; k++)
        if (gid[k] >= 0) {
            out->cls[gid[k]] = k;
            off[gid[k] + 1] = cnt[k];
        }
    for (int32_t a = 0; a < out->n; a++)
        off[a + 1] += off[a];
    out->tgt = malloc(sizeof *out->tgt * ((size_t)off[out->n] + 1));
    out->ch = malloc(sizeof *out->ch * ((size_t)off[out->n] + 1));
    if (!out->tgt || !out->ch)
        goto nomem;
    for (int32_t a = 0; a < out->n; a++)
        out->groups[a] = (qh_channel_group){0, 0, out->tgt + off[a], out->ch + off[a], 0};
    for (int32_t i = 0; i < g->n_nodes; i++) { /* members in node order: the family signature is canonical */
        const qh_node *nd = &g->nodes[i];
        if (!has_filters(nd) || tix[nd->w_idx] < 0)
            continue;
        int32_t t = tix[nd->w_idx];
        int64_t len = qh_tensor_numel(g->weights[nd->w_idx].value) / nd->shape[0];
        for (int64_t c = 0; c < nd->shape[0]; c++) {
            int32_t a = gid[qhi_chmap_class(m, i, c)];
            if (a < 0)
                continue;
            qh_channel_group *gp = &out->groups[a];
            ((int32_t *)gp->target)[gp->n_members] = t;
            ((int64_t *)gp->channel)[gp->n_members++] = c;
            gp->keep |= slice_alive(masks ? masks[t] : NULL, c, len);
        }
    }
    assign_families(out);
    goto done;
nomem:
    qhi_groups_free(out);
    st = qh_error_set(err, QH_E_NOMEM, "out of memory");
done:
    free(tix);
    free(gid);
    free(cnt);
    free(off);
    return st;
}

/* Zeroes (masks) rows c of weight idx (rows of `len` elements) where dead[class of (node, c)]. */
static qh_status mask_rows(qh_graph *g, const qhi_chmap *m, int32_t node, int32_t idx, const uint8_t *dead,
                           qh_error *err)
{
    if (idx < 0)
        return QH_OK;
    qh_weight *w = &g->weights[idx];
    int64_t rows = g->nodes[node].shape[0], n = qh_tensor_numel(w->value), len = n / rows;
    bool any = false;
    for (int64_t c = 0; c < rows && !any; c++)
        any = dead[qhi_chmap_class(m, node, c)];
    if (!any)
        return QH_OK;
    uint8_t *mask = malloc((size_t)n + 1);
    if (!mask)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int64_t c = 0; c < rows; c++) {
        uint8_t keep = !dead[qhi_chmap_class(m, node, c)];
        for (int64_t e = c * len; e < (c + 1) * len; e++)
            mask[e] = keep && (!w->mask || w->mask[e]);
    }
    qh_status st = qh_weight_set_mask(w, mask, err);
    free(mask);
    return st;
}

qh_status qhi_groups_apply(qh_graph *g, const qhi_chmap *m, const qhi_groups *gr, qh_error *err)
{
    uint8_t *dead = calloc((size_t)m->n_classes + 1, 1);
    if (!dead)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t a = 0; a < gr->n; a++)
        dead[gr->cls[a]] = !gr->groups[a].keep;
    qh_status st = QH_OK;
    for (int32_t i = 0; i < g->n_nodes && st == QH_OK; i++) {
        const qh_node *nd = &g->nodes[i];
        if (has_filters(nd) || nd->op == QH_OP_BATCHNORM2D) /* filter + bias, or BN weight + bias */
            if ((st = mask_rows(g, m, i, nd->w_idx, dead, err)) == QH_OK)
                st = mask_rows(g, m, i, nd->b_idx, dead, err);
    }
    free(dead);
    return st;
}

/* ---------------------------------------------------------------- rebuilding with other channel counts */

static int64_t replay_channels(const qh_graph *ng, int32_t input)
{
    return input == QH_INPUT ? ng->in_c : ng->nodes[input].shape[0];
}

static int32_t replay_node(qh_graph *ng, const qh_node *nd, int64_t out, qh_error *err)
{
    const char *name = nd->name;
    int32_t in = nd->input;
    switch (nd->op) {
    case QH_OP_CONV2D: {
        qh_conv2d_params p = nd->u.conv;
        if (out >= 0)
            p.out_channels = (int32_t)out;
        if (is_depthwise(nd))
            p.groups = p.out_channels = (int32_t)replay_channels(ng, in);
        return qh_graph_conv2d(ng, name, in, &p, err);
    }
    case QH_OP_LINEAR:
        return qh_graph_linear(ng, name, in, (int32_t)(out >= 0 ? out : nd->u.lin.out), nd->b_idx >= 0, err);
    case QH_OP_RELU: return qh_graph_relu(ng, name, in, err);
    case QH_OP_TANH: return qh_graph_tanh(ng, name, in, err);
    case QH_OP_MAXPOOL2D: return qh_graph_maxpool2d(ng, name, in, &nd->u.pool, err);
    case QH_OP_AVGPOOL2D: return qh_graph_avgpool2d(ng, name, in, &nd->u.pool, err);
    case QH_OP_FLATTEN: return qh_graph_flatten(ng, name, in, err);
    case QH_OP_DROPOUT: return qh_graph_dropout(ng, name, in, nd->u.drop_p, err);
    case QH_OP_BATCHNORM2D: return qh_graph_batchnorm2d(ng, name, in, nd->u.bn.eps, nd->u.bn.momentum, err);
    case QH_OP_RELU6: return qh_graph_relu6(ng, name, in, err);
    case QH_OP_ADD: return qh_graph_add(ng, name, in, nd->input2, err);
    case QH_OP_ADAPTIVE_AVGPOOL2D:
        return qh_graph_adaptive_avgpool2d(ng, name, in, (int32_t)nd->u.size.ho, (int32_t)nd->u.size.wo, err);
    case QH_OP_SHORTCUT_A:
        return qh_graph_shortcut_a(ng, name, in, nd->u.stride, (int32_t)(out >= 0 ? out : nd->shape[0]), err);
    case QH_OP_RESIZE_BILINEAR:
        return qh_graph_resize_bilinear(ng, name, in, (int32_t)nd->u.size.ho, (int32_t)nd->u.size.wo, err);
    case QH_OP_COUNT:
        break;
    }
    qh_error_set(err, QH_E_UNSUPPORTED, "layer '%s': op %s cannot be rebuilt", name, qh_op_name(nd->op));
    return -1;
}

qh_graph *qhi_graph_replay(const qh_graph *g, const int64_t *out, qh_error *err)
{
    qh_graph *ng = qh_graph_new(g->in_c, g->in_h, g->in_w, g->num_classes, err);
    if (!ng)
        return NULL;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        int32_t id = replay_node(ng, &g->nodes[i], out ? out[i] : -1, err);
        if (id != i) {
            if (id >= 0)
                qh_error_set(err, QH_E_INTERNAL, "layer '%s' rebuilt as node %d, not %d", g->nodes[i].name, id, i);
            qh_graph_free(ng);
            return NULL;
        }
    }
    if (qh_graph_finalize(ng, err) != QH_OK || ng->n_weights != g->n_weights) {
        if (ng->n_weights != g->n_weights)
            qh_error_set(err, QH_E_INTERNAL, "rebuilt graph has %d parameters, not %d", ng->n_weights, g->n_weights);
        qh_graph_free(ng);
        return NULL;
    }
    ng->compacted = g->compacted;
    return ng;
}

/* ---------------------------------------------------------------- compaction */

/* The kept channels of every node, ascending, for the gathers. */
typedef struct kept {
    int64_t *base; /* [n_nodes + 2], as qhi_chmap.base */
    int64_t *idx;
    int64_t *n;    /* per slot */
} kept;

static void kept_free(kept *k)
{
    free(k->base);
    free(k->idx);
    free(k->n);
}

static const int64_t *kept_of(const kept *k, int32_t node, int64_t *n)
{
    *n = k->n[slot(node)];
    return k->idx + k->base[slot(node)];
}

static bool all_zero(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return false;
    return true;
}

/* alive[k]: some element of class k can be nonzero in g (see the top of this file). */
static void find_alive(const qh_graph *g, const qhi_chmap *m, uint8_t *alive)
{
    for (int32_t k = 0; k < m->n_classes; k++)
        alive[k] = m->pinned[k];
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        if (!has_filters(nd) && nd->op != QH_OP_BATCHNORM2D)
            continue;
        const float *w = qh_tensor_f32(g->weights[nd->w_idx].value);
        const float *b = nd->b_idx >= 0 ? qh_tensor_f32(g->weights[nd->b_idx].value) : NULL;
        int64_t rows = nd->shape[0], len = qh_tensor_numel(g->weights[nd->w_idx].value) / rows;
        for (int64_t c = 0; c < rows; c++) {
            bool zero = (b == NULL || b[c] == 0.0f) && (nd->op == QH_OP_BATCHNORM2D ? w[c] == 0.0f
                                                                                      : all_zero(w + c * len, len));
            alive[qhi_chmap_class(m, i, c)] |= !zero;
        }
    }
}

static qh_status plan_kept(const qh_graph *g, const qhi_chmap *m, const uint8_t *alive, kept *k, qh_error *err)
{
    k->base = malloc(sizeof *k->base * ((size_t)g->n_nodes + 2));
    k->idx = malloc(sizeof *k->idx * ((size_t)m->n_elems + 1));
    k->n = calloc((size_t)g->n_nodes + 2, sizeof *k->n);
    if (!k->base || !k->idx || !k->n)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    memcpy(k->base, m->base, sizeof *k->base * ((size_t)g->n_nodes + 2));
    for (int32_t s = 0; s <= g->n_nodes; s++) {
        for (int64_t e = m->base[s]; e < m->base[s + 1]; e++)
            if (alive[m->cls[e]])
                k->idx[m->base[s] + k->n[s]++] = e - m->base[s];
        if (k->n[s] == 0 && m->base[s + 1] > m->base[s])
            return qh_error_set(err, QH_E_INVAL, "channel removal would leave layer '%s' without channels",
                                g->nodes[s - 1].name);
    }
    return QH_OK;
}

/* dst[a, b, :] = src[r0[a], r1[b], :] for a < n0, b < n1 (r = NULL: identity); elements of es bytes. */
static void gather(const void *src, void *dst, size_t es, int64_t d1, int64_t inner, const int64_t *r0, int64_t n0,
                   const int64_t *r1, int64_t n1)
{
    const char *s = src;
    char *d = dst;
    size_t run = es * (size_t)inner;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            memcpy(d + (size_t)(a * n1 + b) * run, s + (size_t)((r0 ? r0[a] : a) * d1 + (r1 ? r1[b] : b)) * run, run);
}

static qh_status copy_weight(const qh_graph *g, qh_graph *ng, const kept *k, int32_t i, qh_error *err)
{
    const qh_weight *w = &g->weights[i];
    qh_weight *nw = &ng->weights[i];
    if (strcmp(w->value->name, nw->value->name) != 0)
        return qh_error_set(err, QH_E_INTERNAL, "rebuilt parameter %d is %s, not %s", i, nw->value->name,
                            w->value->name);
    if (w->value->dtype != QH_F32) { /* num_batches_tracked */
        memcpy(nw->value->data, w->value->data, qh_tensor_nbytes(w->value));
        return QH_OK;
    }
    const qh_node *nd = &g->nodes[w->node];
    int64_t n0, n1 = 1, d1 = 1, inner = 1;
    const int64_t *r0 = kept_of(k, w->node, &n0), *r1 = NULL;
    if (has_filters(nd) && !w->is_bias) {
        d1 = w->value->shape[1];
        inner = qh_tensor_numel(w->value) / (w->value->shape[0] * d1);
        n1 = d1;
        if (!(nd->op == QH_OP_CONV2D && is_depthwise(nd)))
            r1 = kept_of(k, nd->input, &n1);
    }
    gather(w->value->data, nw->value->data, sizeof(float), d1, inner, r0, n0, r1, n1);
    if (!w->mask)
        return QH_OK;
    int64_t n = qh_tensor_numel(nw->value);
    uint8_t *mask = malloc((size_t)n + 1);
    if (!mask)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    gather(w->mask, mask, 1, d1, inner, r0, n0, r1, n1);
    qh_status st = memchr(mask, 0, (size_t)n) ? qh_weight_set_mask(nw, mask, err) : QH_OK;
    free(mask);
    return st;
}

qh_graph *qh_graph_compact(const qh_graph *g, qh_error *err)
{
    qhi_chmap m;
    kept k = {0};
    qh_graph *ng = NULL;
    int64_t *out = NULL;
    uint8_t *alive = NULL;
    if (qhi_chmap_build(g, &m, err) != QH_OK)
        return NULL;
    if (!(alive = malloc((size_t)m.n_classes + 1)) || !(out = malloc(sizeof *out * ((size_t)g->n_nodes + 1)))) {
        qh_error_set(err, QH_E_NOMEM, "out of memory");
        goto out;
    }
    find_alive(g, &m, alive);
    if (plan_kept(g, &m, alive, &k, err) != QH_OK)
        goto out;
    bool removed = false;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const qh_node *nd = &g->nodes[i];
        bool counted = has_filters(nd) || nd->op == QH_OP_SHORTCUT_A;
        out[i] = counted ? k.n[i + 1] : -1;
        removed |= k.n[i + 1] != nd->shape[0];
    }
    if (!(ng = qhi_graph_replay(g, out, err)))
        goto out;
    for (int32_t i = 0; i < g->n_weights; i++)
        if (copy_weight(g, ng, &k, i, err) != QH_OK) {
            qh_graph_free(ng);
            ng = NULL;
            goto out;
        }
    ng->compacted = g->compacted || removed;
out:
    kept_free(&k);
    free(out);
    free(alive);
    qhi_chmap_free(&m);
    return ng;
}

/* ---------------------------------------------------------------- model files */

static bool counted_op(qh_op op) { return op == QH_OP_CONV2D || op == QH_OP_LINEAR || op == QH_OP_SHORTCUT_A; }

char *qhi_channels_meta(const qh_graph *g)
{
    if (!g->compacted)
        return NULL;
    size_t size = 1, used = 0;
    for (int32_t i = 0; i < g->n_nodes; i++)
        size += strlen(g->nodes[i].name) + 24;
    char *s = malloc(size);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (counted_op(g->nodes[i].op))
            used += (size_t)snprintf(s + used, size - used, "%s%s=%lld", used ? "," : "", g->nodes[i].name,
                                     (long long)g->nodes[i].shape[0]);
    return s;
}

static int32_t find_counted(const qh_graph *g, const char *name, size_t len)
{
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (counted_op(g->nodes[i].op) && strlen(g->nodes[i].name) == len && strncmp(g->nodes[i].name, name, len) == 0)
            return i;
    return -1;
}

/* One "name=count" item into out[]; *end is where it stops. */
static qh_status parse_item(const qh_graph *g, const char *s, const char **end, int64_t *out, const char *path,
                            qh_error *err)
{
    size_t len = strcspn(s, ",");
    const char *eq = memchr(s, '=', len);
    *end = s + len;
    char *stop;
    long long v = eq ? strtoll(eq + 1, &stop, 10) : 0;
    if (!eq || stop != s + len || v < 1 || v > INT32_MAX)
        return qh_error_set(err, QH_E_FORMAT, "%s: metadata %s: '%.*s' is not layer=channels", path,
                            QHI_CHANNELS_META, (int)len, s);
    int32_t node = find_counted(g, s, (size_t)(eq - s));
    if (node < 0)
        return qh_error_set(err, QH_E_FORMAT, "%s: metadata %s: '%.*s' is not a conv, linear or shortcut layer of "
                            "this model", path, QHI_CHANNELS_META, (int)(eq - s), s);
    out[node] = v;
    return QH_OK;
}

qh_graph *qhi_graph_from_channels(const qh_graph *g, const char *value, const char *path, qh_error *err)
{
    int64_t *out = malloc(sizeof *out * ((size_t)g->n_nodes + 1));
    if (!out) {
        qh_error_set(err, QH_E_NOMEM, "out of memory");
        return NULL;
    }
    for (int32_t i = 0; i < g->n_nodes; i++)
        out[i] = -1;
    qh_graph *ng = NULL;
    for (const char *s = value; *s;) {
        const char *end;
        if (parse_item(g, s, &end, out, path, err) != QH_OK)
            goto done;
        s = *end ? end + 1 : end;
    }
    if (!(ng = qhi_graph_replay(g, out, err))) {
        qh_error_prefix(err, "%s: the channel counts of its metadata %s do not fit this model", path,
                        QHI_CHANNELS_META);
        goto done;
    }
    ng->compacted = true;
done:
    free(out);
    return ng;
}

void qhi_graph_swap(qh_graph *a, qh_graph *b)
{
    qh_graph t = *a;
    *a = *b;
    *b = t;
    double *p = a->prof;
    a->prof = b->prof;
    b->prof = p;
}
