/* qh_calib_impl.h - calibration capture for data-aware quantizers (internal to libqhost).
 *
 * A capture session runs the calibration images through two copies of one graph node by node:
 * the original network (float weights as they were when the stage began) and the network
 * quantized so far (the graph's current weights). Each node's output is computed once for the
 * whole calibration set, in chunks of `batch` images, and freed as soon as its last consumer has
 * run, so the cost of a stage is about one forward pass of each network and the memory is the
 * live activations plus one layer's samples. For target layer L the session hands out
 *   X  = L's inputs in the original network,
 *   X~ = L's inputs in the network quantized so far,
 * as m x cols row-major sample matrices (linear: one row per image; conv: unfolded patches in the
 * weight's (channel, kh, kw) order, sampled per image), and H = X~^T X~ (double).
 *
 * Order of use: qhi_calib_new; then for each target node in network order: qhi_calib_keep_original
 * (before its weights change), qhi_calib_capture (computes every node before it first) and the
 * quantizer; finally qhi_calib_free.
 */
#ifndef QH_CALIB_IMPL_H
#define QH_CALIB_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "graph/qh_graph_impl.h"
#include "qhost/qh_config.h"
#include "qhost/qh_plugin.h"

typedef struct qhi_calib_options {
    int64_t batch;      /* images per forward chunk */
    uint64_t seed;      /* patch sampling */
    int patch_stride;   /* qh_patch_stride */
    double retain_rate; /* (0, 1] */
} qhi_calib_options;

/* One target layer's captured data. x may point into the session's activations (linear layers):
 * valid until the next qhi_calib_capture or qhi_calib_free. */
typedef struct qhi_calib_data {
    int64_t rows, cols, m;
    const float *x, *xq; /* m x cols, or NULL when not asked for */
    double *h;           /* cols x cols, or NULL */
    bool is_conv;
    float *own_x, *own_xq; /* what this record allocated (freed by qhi_calib_data_free) */
} qhi_calib_data;

typedef struct qhi_calib qhi_calib;

/* A session over images (n x C x H x W, normalized; copied). with_original = false runs only the
 * network quantized so far (when no layer needs X). */
qh_status qhi_calib_new(qh_graph *g, const float *images, int64_t n, const qhi_calib_options *o, bool with_original,
                        qhi_calib **out, qh_error *err);
void qhi_calib_free(qhi_calib *s);
/* Keeps a copy of node's current (float) weight and bias for the original network. */
qh_status qhi_calib_keep_original(qhi_calib *s, int32_t node, qh_error *err);
/* Advances both networks up to node (a conv or linear node not computed yet) and captures what
 * `needs` (QH_CALIB_*) asks for; index (the layer's position among the targets) seeds the patches.
 * Groups > 1 are refused (the caller quantizes those data-free). */
qh_status qhi_calib_capture(qhi_calib *s, int32_t node, int32_t index, uint32_t needs, qhi_calib_data *out,
                            qh_error *err);
void qhi_calib_data_free(qhi_calib_data *d);

/* What a data-aware quantizer is handed for weight w (the target at `index`) from its data d. */
static inline qh_calib_layer qhi_calib_layer_of(const qhi_calib_data *d, const qh_weight *w, int32_t index)
{
    return (qh_calib_layer){.struct_size = sizeof(qh_calib_layer),
                            .name = w->value->name,
                            .w = w->value,
                            .rows = d->rows,
                            .cols = d->cols,
                            .m = d->m,
                            .x = d->x,
                            .xq = d->xq,
                            .h = d->h,
                            .is_conv = d->is_conv,
                            .index = index,
                            .mask = w->mask};
}
/* Largest number of activation bytes the session held at once (both networks, with the released
 * buffers it keeps for reuse). */
int64_t qhi_calib_peak_bytes(const qhi_calib *s);

/* ---- the pieces, exposed for tests ---- */

/* Patch grid of a conv node's input under the chosen stride: lh x lw positions. */
void qhi_calib_patch_grid(const qh_node *nd, int patch_stride, int64_t *lh, int64_t *lw);
/* Patches kept per image out of l: l when retain_rate >= 1, else int(retain_rate * l + 1) (the
 * GPFQ reference's count). */
int64_t qhi_calib_patches_per_image(int64_t l, double retain_rate);
/* Patch positions (indices into the l grid positions) of image `image` for target `index`, drawn
 * with replacement from a generator forked from seed, layer and image (k of them, or 0..l-1 in
 * order when k == l and retain_rate >= 1). */
void qhi_calib_patch_pick(uint64_t seed, int32_t index, int64_t image, int64_t l, int64_t k, bool all, int64_t *pos);
/* Writes the patches pos[0..k) of one image x (C x H x W) into rows (k x C*kh*kw), zero outside
 * the padded border. Grid position p = (p / lw, p % lw), top-left corner (py*sy - ph, px*sx - pw). */
void qhi_calib_unfold(const float *x, int64_t c, int64_t h, int64_t w, int32_t kh, int32_t kw, int32_t sy, int32_t sx,
                      int32_t ph, int32_t pw, int64_t lw, const int64_t *pos, int64_t k, float *rows);
/* h (cols x cols, double) += x^T x for x (m x cols, row-major): float products summed over blocks of
 * rows with the core GEMM, blocks added in double; only the upper block triangle is computed. */
qh_status qhi_calib_gram_add(const float *x, int64_t m, int64_t cols, double *h, qh_error *err);
/* Relative output error of a quantized layer, ||X W^T - X~ Q^T||_F / ||X W^T||_F: from x and xq when
 * both are given, with X~ for X when x is NULL, and from h alone (X~ for X) when both are NULL. */
qh_status qhi_calib_rel_error(const qhi_calib_data *d, const float *w, const float *q, double *rel, qh_error *err);
/* Folds every batch norm that is the only consumer of a conv whose weight index is in widx[0..n)
 * into that conv: w *= gamma / sqrt(var + eps) per output channel; the batch norm then keeps the
 * shift alone (gamma 1, mean 0, var 1 - eps, beta = beta - gamma * mean / sqrt(var + eps)). A conv
 * bias, if any, is folded too. Returns how many were folded. */
int32_t qhi_calib_fold_batchnorm(qh_graph *g, const int32_t *widx, int32_t n);

#endif /* QH_CALIB_IMPL_H */
