/* qh_calib_fold.c - batch-norm folding before quantization (seed 002's --fusion).
 *
 * The seed folds BN into the conv (w <- w gamma / sqrt(var + eps), bias <- beta - gamma mean /
 * sqrt(var + eps)) and resets the BN to the identity, so the quantizer sees the weights the
 * network really applies. Our ResNet convs have no bias parameter and state_dict names must not
 * change, so the shift stays in the BN: gamma 1, mean 0, var 1 - eps (its inference scale
 * (float)(1 / sqrt(var + eps)) is then exactly 1.0f for any eps well below 1), beta = the shift. */
#include "calib/qh_calib_impl.h"

#include <math.h>

static float *wdata(qh_graph *g, int32_t idx)
{
    return idx >= 0 ? qh_tensor_f32(g->weights[idx].value) : NULL;
}

/* The batch norm that is conv node j's only consumer, or -1. */
static int32_t sole_bn_after(const qh_graph *g, int32_t j)
{
    int32_t found = -1, uses = 0;
    for (int32_t k = j + 1; k < g->n_nodes; k++) {
        const qh_node *nd = &g->nodes[k];
        uses += (nd->input == j) + (nd->input2 == j);
        if (nd->input == j && nd->op == QH_OP_BATCHNORM2D)
            found = k;
    }
    return uses == 1 ? found : -1;
}

static void fold_pair(qh_graph *g, const qh_node *conv, const qh_node *bn)
{
    float *w = wdata(g, conv->w_idx), *cb = wdata(g, conv->b_idx);
    float *gamma = wdata(g, bn->w_idx), *beta = wdata(g, bn->b_idx);
    float *mean = wdata(g, bn->buf_idx), *var = wdata(g, bn->buf_idx + 1);
    int64_t per = qh_tensor_numel(g->weights[conv->w_idx].value) / conv->shape[0];
    for (int64_t c = 0; c < conv->shape[0]; c++) {
        double s = (double)gamma[c] / sqrt((double)var[c] + bn->u.bn.eps);
        for (int64_t i = 0; i < per; i++)
            w[c * per + i] = (float)(w[c * per + i] * s);
        double shift = (double)beta[c] - s * mean[c];
        if (cb)
            cb[c] = (float)(cb[c] * s);
        gamma[c] = 1.0f;
        beta[c] = (float)shift;
        mean[c] = 0.0f;
        var[c] = (float)(1.0 - bn->u.bn.eps);
    }
}

int32_t qhi_calib_fold_batchnorm(qh_graph *g, const int32_t *widx, int32_t n)
{
    int32_t folded = 0;
    for (int32_t k = 0; k < n; k++) {
        int32_t j = g->weights[widx[k]].node;
        if (j < 0 || g->nodes[j].op != QH_OP_CONV2D || g->nodes[j].w_idx != widx[k])
            continue;
        int32_t b = sole_bn_after(g, j);
        if (b < 0)
            continue;
        fold_pair(g, &g->nodes[j], &g->nodes[b]);
        folded++;
    }
    qh_graph_apply_masks(g);
    return folded;
}
