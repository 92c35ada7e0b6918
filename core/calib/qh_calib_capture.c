/* qh_calib_capture.c - one target layer's samples: linear inputs as they are, conv inputs as
 * unfolded patches sampled per image, and H = X~^T X~.
 *
 * Conv patches follow the GPFQ reference (Quantized_Neural_Nets, SaveInputConv2d): nn.Unfold with
 * the layer's padding and stride = kernel size (patch_stride = kernel; `stride` uses the layer's own
 * stride), then int(retain_rate * L + 1) of each image's L patches drawn with replacement, the same
 * rows for X and X~. The draws come from a generator forked from (seed, layer, image), so they do
 * not depend on chunking or threads. */
#include "calib/qh_calib_session.h"

#include <stdlib.h>
#include <string.h>

void qhi_calib_patch_grid(const qh_node *nd, int patch_stride, int64_t *lh, int64_t *lw)
{
    const qh_conv2d_params *p = &nd->u.conv;
    int32_t sy = patch_stride == QH_PATCH_STRIDE ? p->stride_h : p->kernel_h;
    int32_t sx = patch_stride == QH_PATCH_STRIDE ? p->stride_w : p->kernel_w;
    *lh = (nd->in_shape[1] + 2 * p->pad_h - p->kernel_h) / sy + 1;
    *lw = (nd->in_shape[2] + 2 * p->pad_w - p->kernel_w) / sx + 1;
}

int64_t qhi_calib_patches_per_image(int64_t l, double retain_rate)
{
    if (retain_rate >= 1.0)
        return l;
    return (int64_t)(retain_rate * (double)l + 1.0);
}

void qhi_calib_patch_pick(uint64_t seed, int32_t index, int64_t image, int64_t l, int64_t k, bool all, int64_t *pos)
{
    if (all) {
        for (int64_t i = 0; i < k; i++)
            pos[i] = i;
        return;
    }
    qh_rng base, layer, r;
    qh_rng_seed(&base, seed);
    layer = qh_rng_fork(&base, (uint64_t)index + 1u);
    r = qh_rng_fork(&layer, (uint64_t)image);
    for (int64_t i = 0; i < k; i++)
        pos[i] = (int64_t)qh_rng_below(&r, (uint64_t)l);
}

void qhi_calib_unfold(const float *x, int64_t c, int64_t h, int64_t w, int32_t kh, int32_t kw, int32_t sy, int32_t sx,
                      int32_t ph, int32_t pw, int64_t lw, const int64_t *pos, int64_t k, float *rows)
{
    int64_t cols = c * kh * kw;
    for (int64_t p = 0; p < k; p++) {
        int64_t y0 = pos[p] / lw * sy - ph, x0 = pos[p] % lw * sx - pw;
        bool inside = x0 >= 0 && x0 + kw <= w; /* every column of the patch: copy whole kernel rows */
        float *row = rows + p * cols;
        for (int64_t ch = 0; ch < c; ch++) {
            const float *plane = x + ch * h * w;
            for (int32_t i = 0; i < kh; i++, row += kw) {
                int64_t y = y0 + i;
                if (y < 0 || y >= h) {
                    for (int32_t j = 0; j < kw; j++) /* kernel rows are short: loops, not library calls */
                        row[j] = 0.0f;
                } else if (inside) {
                    const float *src = plane + y * w + x0;
                    for (int32_t j = 0; j < kw; j++)
                        row[j] = src[j];
                } else {
                    for (int32_t j = 0; j < kw; j++)
                        row[j] = x0 + j >= 0 && x0 + j < w ? plane[y * w + x0 + j] : 0.0f;
                }
            }
        }
    }
}

/* The patch layout of conv node nd under the session's options. */
typedef struct patch_plan {
    int64_t l, lw, k, cols;
    int32_t sy, sx;
    bool all;
} patch_plan;

static patch_plan plan_of(const qhi_calib *s, const qh_node *nd)
{
    patch_plan pp;
    int64_t lh;
    qhi_calib_patch_grid(nd, s->o.patch_stride, &lh, &pp.lw);
    pp.l = lh * pp.lw;
    pp.all = s->o.retain_rate >= 1.0;
    pp.k = qhi_calib_patches_per_image(pp.l, s->o.retain_rate);
    pp.cols = nd->in_shape[0] * nd->u.conv.kernel_h * nd->u.conv.kernel_w;
    bool own = s->o.patch_stride == QH_PATCH_STRIDE;
    pp.sy = own ? nd->u.conv.stride_h : nd->u.conv.kernel_h;
    pp.sx = own ? nd->u.conv.stride_w : nd->u.conv.kernel_w;
    return pp;
}

/* Rows of images [i0, i1) from the activations src (n x C x H x W) into dst (row 0 = image i0). */
static void unfold_images(const qh_node *nd, const patch_plan *pp, const int64_t *pos, const float *src, int64_t i0,
                          int64_t i1, float *dst)
{
    int64_t c = nd->in_shape[0], h = nd->in_shape[1], w = nd->in_shape[2];
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (i1 - i0 > 8)
    for (int64_t i = i0; i < i1; i++)
        qhi_calib_unfold(src + i * nd->in_numel, c, h, w, nd->u.conv.kernel_h, nd->u.conv.kernel_w, pp->sy, pp->sx,
                         nd->u.conv.pad_h, nd->u.conv.pad_w, pp->lw, pos + i * pp->k, pp->k,
                         dst + (i - i0) * pp->k * pp->cols);
}

static float *alloc_rows(int64_t rows, int64_t cols, qh_error *err)
{
    float *p = qh_alloc_aligned((size_t)(rows * cols > 0 ? rows * cols : 1) * sizeof(float));
    if (!p)
        qh_error_set(err, QH_E_NOMEM, "out of memory for %lld x %lld calibration samples", (long long)rows,
                     (long long)cols);
    return p;
}

/* H from X~ without keeping X~: patches of `batch` images at a time. */
static qh_status gram_streamed(const qhi_calib *s, const qh_node *nd, const patch_plan *pp, const int64_t *pos,
                               const float *src, double *h, qh_error *err)
{
    float *tmp = alloc_rows(s->o.batch * pp->k, pp->cols, err);
    if (!tmp)
        return QH_E_NOMEM;
    qh_status st = QH_OK;
    for (int64_t i0 = 0; st == QH_OK && i0 < s->n; i0 += s->o.batch) {
        int64_t i1 = i0 + s->o.batch < s->n ? i0 + s->o.batch : s->n;
        unfold_images(nd, pp, pos, src, i0, i1, tmp);
        st = qhi_calib_gram_add(tmp, (i1 - i0) * pp->k, pp->cols, h, err);
    }
    qh_free_aligned(tmp);
    return st;
}

static qh_status capture_conv(qhi_calib *s, const qh_node *nd, int32_t index, uint32_t needs, qhi_calib_data *d,
                              qh_error *err)
{
    patch_plan pp = plan_of(s, nd);
    d->cols = pp.cols;
    d->m = s->n * pp.k;
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)d->m);
    if (!pos)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int64_t i = 0; i < s->n; i++)
        qhi_calib_patch_pick(s->o.seed, index, i, pp.l, pp.k, pp.all, pos + i * pp.k);
    const float *orig = qhi_calib_value(s, QHI_NET_ORIG, nd->input),
                *quant = qhi_calib_value(s, QHI_NET_QUANT, nd->input);
    bool same = orig == quant; /* nothing before this layer was quantized: X~ = X */
    qh_status st = QH_OK;
    if ((needs & QH_CALIB_X) && !(d->x = d->own_x = alloc_rows(d->m, d->cols, err)))
        st = QH_E_NOMEM;
    if (st == QH_OK && (needs & QH_CALIB_XQ) && !(same && d->own_x) &&
        !(d->xq = d->own_xq = alloc_rows(d->m, d->cols, err)))
        st = QH_E_NOMEM;
    if (st == QH_OK && d->own_x)
        unfold_images(nd, &pp, pos, orig, 0, s->n, d->own_x);
    if (st == QH_OK && d->own_xq)
        unfold_images(nd, &pp, pos, quant, 0, s->n, d->own_xq);
    if (st == QH_OK && (needs & QH_CALIB_XQ) && !d->own_xq)
        d->xq = d->own_x;
    if (st == QH_OK && d->h)
        st = d->xq ? qhi_calib_gram_add(d->xq, d->m, d->cols, d->h, err)
                   : gram_streamed(s, nd, &pp, pos, quant, d->h, err);
    free(pos);
    return st;
}

qh_status qhi_calib_capture(qhi_calib *s, int32_t node, int32_t index, uint32_t needs, qhi_calib_data *d, qh_error *err)
{
    memset(d, 0, sizeof *d);
    if (node < 0 || node >= s->g->n_nodes)
        return qh_error_set(err, QH_E_INTERNAL, "calibration: no node %d", node);
    const qh_node *nd = &s->g->nodes[node];
    if (nd->op != QH_OP_CONV2D && nd->op != QH_OP_LINEAR)
        return qh_error_set(err, QH_E_INTERNAL, "calibration: node '%s' is a %s, not a conv or linear layer", nd->name,
                            qh_op_name(nd->op));
    if (nd->op == QH_OP_CONV2D && nd->u.conv.groups != 1)
        return qh_error_set(err, QH_E_UNSUPPORTED, "calibration: conv '%s' has %d groups", nd->name, nd->u.conv.groups);
    if ((needs & QH_CALIB_X) && !s->with_original)
        return qh_error_set(err, QH_E_INTERNAL, "calibration: X asked for, but the session runs no original network");
    qh_status st = qhi_calib_advance(s, node, err);
    if (st != QH_OK)
        return st;
    d->is_conv = nd->op == QH_OP_CONV2D;
    d->rows = nd->shape[0];
    if ((needs & QH_CALIB_H)) {
        int64_t cols = d->is_conv ? nd->in_shape[0] * nd->u.conv.kernel_h * nd->u.conv.kernel_w : nd->u.lin.in;
        if (!(d->h = calloc((size_t)(cols * cols), sizeof(double))))
            return qh_error_set(err, QH_E_NOMEM, "out of memory for a %lld x %lld Gram matrix", (long long)cols,
                                (long long)cols);
    }
    if (d->is_conv)
        return capture_conv(s, nd, index, needs, d, err);
    d->cols = nd->u.lin.in;
    d->m = s->n;
    d->x = needs & QH_CALIB_X ? qhi_calib_value(s, QHI_NET_ORIG, nd->input) : NULL;
    const float *xq = qhi_calib_value(s, QHI_NET_QUANT, nd->input);
    d->xq = needs & QH_CALIB_XQ ? xq : NULL;
    return d->h ? qhi_calib_gram_add(xq, d->m, d->cols, d->h, err) : QH_OK;
}

void qhi_calib_data_free(qhi_calib_data *d)
{
    if (!d)
        return;
    qh_free_aligned(d->own_x);
    qh_free_aligned(d->own_xq);
    free(d->h);
    memset(d, 0, sizeof *d);
}
