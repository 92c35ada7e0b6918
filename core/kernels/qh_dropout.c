/* qh_dropout.c - inverted dropout: y = x * mask / (1 - p), so evaluation needs no rescaling.
 *
 * The mask is the only random part and is drawn serially, one uniform per element, so a seed gives
 * the same mask for any thread count; applying it is elementwise and runs over threads. */
#include "qh_kernels.h"

#include <string.h>

#include "qhost/qh_parallel.h"

#define PAR_MIN 32768

/* Element i is kept with probability 1 - p. Drawing even when p == 0 keeps the generator's stream
 * position independent of p. */
void qh_k_dropout_mask(int64_t n, double p, qh_rng *rng, uint8_t *mask)
{
    for (int64_t i = 0; i < n; i++)
        mask[i] = qh_rng_uniform(rng) >= p;
}

/* The select (not a multiply by 0/1) keeps an Inf or NaN in a dropped element from leaking out. */
static void apply(int64_t n, double p, const uint8_t *mask, const float *in, float *out)
{
    if (p == 0.0) {
        if (out != in)
            memmove(out, in, (size_t)n * sizeof *out);
        return;
    }
    float scale = (float)(1.0 / (1.0 - p));
    int nt = n < PAR_MIN ? 1 : qh_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t i = 0; i < n; i++)
        out[i] = mask[i] ? in[i] * scale : 0.0f;
}

void qh_k_dropout_fwd_f32(int64_t n, double p, const uint8_t *mask, const float *x, float *y)
{
    apply(n, p, mask, x, y);
}

/* d(x * m / (1-p)) / dx = m / (1-p): the backward pass is the forward map applied to dy. */
void qh_k_dropout_bwd_f32(int64_t n, double p, const uint8_t *mask, const float *dy, float *dx)
{
    apply(n, p, mask, dy, dx);
}
