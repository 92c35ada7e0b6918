/* augment_impl.h - the training augmentation shared by the image datasets (cifar10, cifar100, idx):
 * torchvision's RandomCrop(size, padding=p) followed by RandomHorizontalFlip(0.5), on normalized CHW floats.
 *
 * Crop: the image is padded by p on every side and a window of the original size is cut at a uniform
 * offset, so output(r, c) = input(r + dy, c + dx) with dy, dx uniform in [-p, p], and `fill` where that
 * lies outside the image. The fill of channel k is the normalized value of pixel 0, -mean_k / std_k:
 * torchvision's recipe crops the uint8 image before ToTensor/Normalize, so its zero padding is black.
 * Flip: each row reversed with probability 1/2, after the crop.
 *
 * Determinism: every random number comes from the qh_rng the host passes, drawn serially per sample in
 * batch order (dy, then dx, then the flip bit; a disabled step draws nothing, and augment = false draws
 * nothing at all). Only then is the pixel work split over threads, so any thread count gives the same
 * bytes. Header-only because each dataset is its own shared object.
 */
#ifndef QH_DATASETS_AUGMENT_IMPL_H
#define QH_DATASETS_AUGMENT_IMPL_H

#include <stdlib.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct aug_opts {
    int enabled;     /* the `augment` parameter */
    int64_t padding; /* the `crop_padding` parameter; 0 = no crop */
    int hflip;       /* the `hflip` parameter */
} aug_opts;

typedef struct aug_draw {
    int32_t dy, dx; /* crop offset, each in [-padding, padding] */
    int32_t flip;   /* 1 = reverse the rows */
} aug_draw;

enum { AUG_MAX_PADDING = 64 };

static inline int aug_active(const aug_opts *o) { return o->enabled && (o->padding > 0 || o->hflip); }

static inline void aug_draw_batch(const aug_opts *o, qh_rng *rng, int64_t n, aug_draw *d)
{
    uint64_t span = 2 * (uint64_t)o->padding + 1;
    for (int64_t b = 0; b < n; b++) {
        d[b] = (aug_draw){0, 0, 0};
        if (o->padding > 0) {
            d[b].dy = (int32_t)qh_rng_below(rng, span) - (int32_t)o->padding;
            d[b].dx = (int32_t)qh_rng_below(rng, span) - (int32_t)o->padding;
        }
        if (o->hflip)
            d[b].flip = (int32_t)qh_rng_below(rng, 2);
    }
}

static inline void aug_fill(float *p, int64_t n, float v)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = v;
}

/* Shifts one h x w plane in place: out(r, c) = in(r + dy, c + dx). Rows are visited away from the
 * direction they read from (ascending when dy >= 0), so a source row is never overwritten before it is
 * read; within a row memmove handles the overlap. */
static inline void aug_shift_plane(float *x, int64_t h, int64_t w, int32_t dy, int32_t dx, float fill)
{
    int64_t adx = dx < 0 ? -dx : dx, keep = w - adx;
    for (int64_t k = 0; k < h; k++) {
        int64_t r = dy >= 0 ? k : h - 1 - k, src = r + dy;
        float *row = x + r * w;
        if (src < 0 || src >= h || keep <= 0) {
            aug_fill(row, w, fill);
            continue;
        }
        if (dx >= 0) {
            memmove(row, x + src * w + dx, (size_t)keep * sizeof *row);
            aug_fill(row + keep, adx, fill);
        } else {
            memmove(row + adx, x + src * w, (size_t)keep * sizeof *row);
            aug_fill(row, adx, fill);
        }
    }
}

static inline void aug_flip_plane(float *x, int64_t h, int64_t w)
{
    for (int64_t r = 0; r < h; r++)
        for (float *a = x + r * w, *b = a + w - 1; a < b; a++, b--) {
            float t = *a;
            *a = *b;
            *b = t;
        }
}

/* Augments x (n samples of c x h x w floats) in place; fill[c] is each channel's padding value. */
static inline qh_status aug_batch(const aug_opts *o, qh_rng *rng, float *x, int64_t n, int64_t c, int64_t h,
                                  int64_t w, const float *fill, const char *who, qh_error *err)
{
    if (!aug_active(o) || n <= 0)
        return QH_OK;
    aug_draw *d = malloc((size_t)n * sizeof *d);
    if (!d)
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory for %lld augmentation draws", who, (long long)n);
    aug_draw_batch(o, rng, n, d);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n; b++)
        for (int64_t k = 0; k < c; k++) {
            float *plane = x + (b * c + k) * h * w;
            if (d[b].dy != 0 || d[b].dx != 0)
                aug_shift_plane(plane, h, w, d[b].dy, d[b].dx, fill[k]);
            if (d[b].flip)
                aug_flip_plane(plane, h, w);
        }
    free(d);
    return QH_OK;
}

#endif /* QH_DATASETS_AUGMENT_IMPL_H */
