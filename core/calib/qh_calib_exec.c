/* qh_calib_exec.c - the capture session: both networks advanced node by node over the whole
 * calibration set (see qh_calib_impl.h).
 *
 * Why not qh_graph_forward per layer: the GPFQ reference re-runs both networks up to every layer,
 * which costs O(layers^2) forward work (102 of its 106 s on ResNet-20). Here every node runs once
 * per network, with the inference arithmetic of qh_exec.c (batch norm as its per-channel affine
 * form, dropout as identity), each kernel called on chunks of `batch` images. */
#include "calib/qh_calib_session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- buffers */

static void pool_clear(qhi_calib *s)
{
    for (int k = 0; k < s->n_pool; k++) {
        qh_free_aligned(s->pool[k]->p);
        free(s->pool[k]);
    }
    s->n_pool = 0;
    s->pooled = 0;
}

/* Released buffers wait in a small pool for the next value of the same size (the two networks
 * alternate node by node, and a stage of a network keeps one size), which saves the kernel from
 * handing out and zeroing fresh pages for every node. A request of another size empties the pool,
 * so it never holds more than the current size class. */
static qhi_cbuf *pool_take(qhi_calib *s, int64_t bytes)
{
    for (int k = 0; k < s->n_pool; k++)
        if (s->pool[k]->bytes == bytes) {
            qhi_cbuf *b = s->pool[k];
            s->pool[k] = s->pool[--s->n_pool];
            s->pooled -= bytes;
            return b;
        }
    pool_clear(s);
    return NULL;
}

static void buf_release(qhi_calib *s, qhi_cbuf *b)
{
    if (s->n_pool < QHI_CALIB_POOL) {
        s->pool[s->n_pool++] = b;
        s->pooled += b->bytes;
        return;
    }
    qh_free_aligned(b->p);
    free(b);
}

static qhi_cbuf *buf_new(qhi_calib *s, int64_t floats, qh_error *err)
{
    int64_t bytes = floats * (int64_t)sizeof(float);
    qhi_cbuf *b = pool_take(s, bytes);
    if (!b && (b = calloc(1, sizeof *b)) && !(b->p = qh_alloc_aligned((size_t)(bytes > 0 ? bytes : 4)))) {
        free(b);
        b = NULL;
    }
    if (!b) {
        qh_error_set(err, QH_E_NOMEM, "out of memory for calibration activations (%lld floats)", (long long)floats);
        return NULL;
    }
    b->users = 1;
    b->bytes = bytes;
    s->bytes += bytes;
    if (s->bytes + s->pooled > s->peak)
        s->peak = s->bytes + s->pooled;
    return b;
}

static void buf_drop(qhi_calib *s, qhi_cbuf *b)
{
    if (b && --b->users == 0) {
        s->bytes -= b->bytes;
        buf_release(s, b);
    }
}

/* One consumer of (net, src) has run: the value goes once nobody else needs it. */
static void consume(qhi_calib *s, int net, int32_t src)
{
    qhi_cval *v = &s->val[net][qhi_slot(src)];
    if (--v->pending <= 0 && v->b) {
        buf_drop(s, v->b);
        v->b = NULL;
    }
}

static void share(qhi_cval *dst, qhi_cbuf *b, int32_t pending)
{
    b->users++;
    dst->b = b;
    dst->pending = pending;
}

/* ---------------------------------------------------------------- one node, one network */

static bool is_elementwise(qh_op op)
{
    return op == QH_OP_RELU || op == QH_OP_RELU6 || op == QH_OP_TANH || op == QH_OP_BATCHNORM2D || op == QH_OP_ADD;
}

static float *wdata(const qh_graph *g, int32_t idx)
{
    return idx >= 0 ? qh_tensor_f32(g->weights[idx].value) : NULL;
}

/* The batch norm's inference affine form, computed as qh_exec.c computes it. */
static void bn_affine(const qh_graph *g, const qh_node *nd, float *scale, float *shift)
{
    const float *gamma = wdata(g, nd->w_idx), *beta = wdata(g, nd->b_idx);
    const float *rmean = wdata(g, nd->buf_idx), *rvar = wdata(g, nd->buf_idx + 1);
    for (int64_t k = 0; k < nd->shape[0]; k++) {
        float inv = (float)(1.0 / sqrt((double)rvar[k] + nd->u.bn.eps));
        scale[k] = gamma[k] * inv;
        shift[k] = beta[k] - rmean[k] * gamma[k] * inv;
    }
}

/* Images [i0, i0 + cn) of node nd: in/in2/out already point at image i0. */
static void run_chunk(qhi_calib *s, int net, int32_t j, int64_t cn, const float *in, const float *in2, float *out,
                      const float *bn)
{
    const qh_graph *g = s->g;
    const qh_node *nd = &g->nodes[j];
    const float *w = net == QHI_NET_ORIG && s->orig_w[j] ? s->orig_w[j] : wdata(g, nd->w_idx);
    const float *b = wdata(g, nd->b_idx);
    int64_t total = cn * nd->numel;
    switch (nd->op) {
    case QH_OP_CONV2D: {
        qh_conv2d_shape cs = qhi_conv_shape(nd, cn);
        qh_k_conv2d_fwd_f32(&cs, in, w, b, out, s->ws);
        break;
    }
    case QH_OP_LINEAR:
        qh_k_linear_fwd_f32(cn, nd->u.lin.in, nd->u.lin.out, in, w, b, out);
        break;
    case QH_OP_RELU:
        qh_k_relu_fwd_f32(total, in, out);
        break;
    case QH_OP_RELU6:
        qh_k_relu6_fwd_f32(total, in, out);
        break;
    case QH_OP_TANH:
        qh_k_tanh_fwd_f32(total, in, out);
        break;
    case QH_OP_MAXPOOL2D: {
        qh_pool2d_shape ps = qhi_pool_shape(nd, cn);
        qh_k_maxpool2d_fwd_f32(&ps, in, out, s->argmax);
        break;
    }
    case QH_OP_AVGPOOL2D: {
        qh_pool2d_shape ps = qhi_pool_shape(nd, cn);
        qh_k_avgpool2d_fwd_f32(&ps, in, out);
        break;
    }
    case QH_OP_BATCHNORM2D:
        qh_k_scale_shift_act_f32(cn, nd->shape[0], nd->shape[1] * nd->shape[2], in, bn, bn + nd->shape[0], 0, out);
        break;
    case QH_OP_ADD:
        qh_k_add_f32(total, in, in2, out);
        break;
    case QH_OP_ADAPTIVE_AVGPOOL2D:
        qh_k_adaptive_avgpool2d_fwd_f32(cn, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                        nd->u.size.wo, in, out);
        break;
    case QH_OP_SHORTCUT_A:
        qh_k_shortcut_a_fwd_f32(cn, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.stride, nd->shape[0], in,
                                out);
        break;
    case QH_OP_RESIZE_BILINEAR:
        qh_k_resize_bilinear_fwd_f32(cn, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], nd->u.size.ho,
                                     nd->u.size.wo, in, out);
        break;
    case QH_OP_FLATTEN:
    case QH_OP_DROPOUT:
    case QH_OP_COUNT:
        break;
    }
}

/* The buffer node j writes in net: its input's when it may overwrite it in place, else a new one. */
static qhi_cbuf *out_buffer(qhi_calib *s, int net, const qh_node *nd, qh_error *err)
{
    qhi_cval *in = &s->val[net][qhi_slot(nd->input)];
    if (is_elementwise(nd->op) && in->pending == 1 && in->b->users == 1 && nd->input2 != nd->input) {
        in->b->users++;
        return in->b;
    }
    return buf_new(s, s->n * nd->numel, err);
}

static qh_status run_node(qhi_calib *s, int net, int32_t j, qh_error *err)
{
    const qh_node *nd = &s->g->nodes[j];
    qhi_cval *out = &s->val[net][j + 1];
    out->pending = s->consumers[j + 1];
    const qhi_cval *in = &s->val[net][qhi_slot(nd->input)];
    if (net == QHI_NET_QUANT && s->with_original && !s->differs[j + 1]) {
        share(out, s->val[QHI_NET_ORIG][j + 1].b, out->pending); /* nothing before j changed yet */
    } else if (nd->op == QH_OP_FLATTEN || nd->op == QH_OP_DROPOUT) {
        share(out, in->b, out->pending); /* the same values (dropout is the identity at inference) */
    } else {
        qhi_cbuf *b = out_buffer(s, net, nd, err);
        if (!b)
            return QH_E_NOMEM;
        out->b = b;
        float *aff = NULL;
        if (nd->op == QH_OP_BATCHNORM2D) {
            if (!(aff = malloc(sizeof(float) * 2 * (size_t)nd->shape[0])))
                return qh_error_set(err, QH_E_NOMEM, "out of memory");
            bn_affine(s->g, nd, aff, aff + nd->shape[0]);
        }
        const float *x = in->b->p;
        const float *x2 = nd->input2 >= -2 ? s->val[net][qhi_slot(nd->input2)].b->p : NULL;
        for (int64_t i0 = 0; i0 < s->n; i0 += s->o.batch) {
            int64_t cn = s->n - i0 < s->o.batch ? s->n - i0 : s->o.batch;
            run_chunk(s, net, j, cn, x + i0 * nd->in_numel, x2 ? x2 + i0 * nd->in_numel : NULL, b->p + i0 * nd->numel,
                      aff);
        }
        free(aff);
    }
    consume(s, net, nd->input);
    if (nd->input2 >= -2)
        consume(s, net, nd->input2);
    return QH_OK;
}

qh_status qhi_calib_advance(qhi_calib *s, int32_t node, qh_error *err)
{
    if (node < s->next)
        return qh_error_set(err, QH_E_INTERNAL, "calibration: node %d already passed (at %d)", node, s->next);
    for (; s->next < node; s->next++) {
        int32_t j = s->next;
        const qh_node *nd = &s->g->nodes[j];
        s->differs[j + 1] |=
            s->differs[qhi_slot(nd->input)] | (nd->input2 >= -2 ? s->differs[qhi_slot(nd->input2)] : 0);
        qh_status st = QH_OK;
        if (s->with_original)
            st = run_node(s, QHI_NET_ORIG, j, err);
        if (st == QH_OK)
            st = run_node(s, QHI_NET_QUANT, j, err);
        if (st != QH_OK)
            return st;
    }
    return QH_OK;
}

/* ---------------------------------------------------------------- lifecycle */

static qh_status alloc_scratch(qhi_calib *s, qh_error *err)
{
    size_t ws = 0;
    int64_t pool = 0;
    for (int32_t j = 0; j < s->g->n_nodes; j++) {
        const qh_node *nd = &s->g->nodes[j];
        if (nd->op == QH_OP_CONV2D) {
            qh_conv2d_shape cs = qhi_conv_shape(nd, s->o.batch);
            size_t need = qh_k_conv2d_ws_size(&cs);
            ws = need > ws ? need : ws;
        } else if (nd->op == QH_OP_MAXPOOL2D && nd->numel > pool) {
            pool = nd->numel;
        }
    }
    if ((ws && !(s->ws = qh_alloc_aligned(ws))) ||
        (pool && !(s->argmax = qh_alloc_aligned((size_t)(pool * s->o.batch) * sizeof(int32_t)))))
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the calibration workspace");
    return QH_OK;
}

qh_status qhi_calib_new(qh_graph *g, const float *images, int64_t n, const qhi_calib_options *o, bool with_original,
                        qhi_calib **out, qh_error *err)
{
    *out = NULL;
    if (n < 1 || o->batch < 1 || !(o->retain_rate > 0.0))
        return qh_error_set(err, QH_E_INVAL, "calibration: %lld images, batch %lld, retain_rate %g", (long long)n,
                            (long long)o->batch, o->retain_rate);
    qhi_calib *s = calloc(1, sizeof *s);
    if (!s)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    s->g = g;
    s->n = n;
    s->o = *o;
    if (s->o.batch > n)
        s->o.batch = n;
    s->with_original = with_original;
    s->n_slots = g->n_nodes + 1;
    s->val[0] = calloc((size_t)s->n_slots, sizeof(qhi_cval));
    s->val[1] = calloc((size_t)s->n_slots, sizeof(qhi_cval));
    s->consumers = calloc((size_t)s->n_slots, sizeof(int32_t));
    s->differs = calloc((size_t)s->n_slots, 1);
    s->orig_w = calloc((size_t)g->n_nodes + 1, sizeof(float *));
    *out = s;
    if (!s->val[0] || !s->val[1] || !s->consumers || !s->differs || !s->orig_w)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t j = 0; j < g->n_nodes; j++) {
        s->consumers[qhi_slot(g->nodes[j].input)]++;
        if (g->nodes[j].input2 >= -2)
            s->consumers[qhi_slot(g->nodes[j].input2)]++;
    }
    qh_status st = alloc_scratch(s, err);
    if (st != QH_OK)
        return st;
    int64_t per = (int64_t)g->in_c * g->in_h * g->in_w;
    qhi_cbuf *in = buf_new(s, n * per, err);
    if (!in)
        return QH_E_NOMEM;
    memcpy(in->p, images, (size_t)(n * per) * sizeof(float));
    s->val[QHI_NET_QUANT][0] = (qhi_cval){in, s->consumers[0]};
    if (with_original)
        share(&s->val[QHI_NET_ORIG][0], in, s->consumers[0]);
    return QH_OK;
}

void qhi_calib_free(qhi_calib *s)
{
    if (!s)
        return;
    for (int net = 0; net < 2; net++)
        for (int32_t k = 0; s->val[net] && k < s->n_slots; k++)
            buf_drop(s, s->val[net][k].b);
    for (int32_t j = 0; s->orig_w && j < s->g->n_nodes; j++)
        free(s->orig_w[j]);
    pool_clear(s);
    free(s->val[0]);
    free(s->val[1]);
    free(s->consumers);
    free(s->differs);
    free(s->orig_w);
    qh_free_aligned(s->ws);
    qh_free_aligned(s->argmax);
    free(s);
}

qh_status qhi_calib_keep_original(qhi_calib *s, int32_t node, qh_error *err)
{
    const qh_node *nd = &s->g->nodes[node];
    if (node < s->next || nd->w_idx < 0)
        return qh_error_set(err, QH_E_INTERNAL, "calibration: cannot keep the weights of node %d", node);
    s->differs[node + 1] = 1;
    if (!s->with_original || s->orig_w[node])
        return QH_OK;
    const qh_tensor *w = s->g->weights[nd->w_idx].value;
    if (!(s->orig_w[node] = malloc(qh_tensor_nbytes(w))))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    memcpy(s->orig_w[node], w->data, qh_tensor_nbytes(w));
    return QH_OK;
}

int64_t qhi_calib_peak_bytes(const qhi_calib *s)
{
    return s ? s->peak : 0;
}
