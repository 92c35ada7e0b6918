/* gpfq_impl.h - GPFQ's pieces: the alphabet and its scalar quantizers (gpfq_alphabet.c) and the
 * greedy path-following loop (gpfq_kernel.c). Internal to the gpfq plugin and its tests.
 *
 * Codes are signed level numbers c: the real value is
 *   none, L1, stochastic:  step * c,                        c in [-K, K];
 *   L0:                    0 for c = 0, else sign(c) * (lambda + step * (|c| - 1)),  c in [-(K+1), K+1].
 * gpfq_value() is the one expression for it; the loop's error feedback and the stored code book
 * both use it, so the dequantized weights are exactly what the loop assumed.
 */
#ifndef GPFQ_IMPL_H
#define GPFQ_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "qhost/qh_plugin.h"

typedef enum gpfq_reg { GPFQ_REG_NONE = 0, GPFQ_REG_L0, GPFQ_REG_L1 } gpfq_reg;
typedef enum gpfq_levels { GPFQ_LEVELS_SEED = 0, GPFQ_LEVELS_STRICT } gpfq_levels;

typedef struct gpfq_alphabet {
    float step;     /* delta */
    int32_t k;      /* K: 2^(b-1) (seed) or 2^(b-1) - 1 (strict) */
    float lambda;   /* L0 / L1 threshold */
    int reg;        /* gpfq_reg */
    int stochastic; /* round down with probability 1 - frac(z / step), else up */
} gpfq_alphabet;

/* Mean over the rows of w (rows x cols) of the p-quantile of |w_row| (p in (0, 1]; linear
 * interpolation between order statistics, as torch.quantile; p = 1 is the row maximum). */
double gpfq_radius(const float *w, int64_t rows, int64_t cols, double p);

/* The alphabet for `bits` (seed: 2^b + 1 levels, strict: 2^b - 1) with radius scalar * rad:
 * step = scalar * rad / K, or (scalar * rad - lambda) / K for L0 (seed 002, section 3.1). */
qh_status gpfq_alphabet_make(int bits, int levels, double scalar, double rad, int reg, double lambda, int stochastic,
                             gpfq_alphabet *a, qh_error *err);

/* The level number of z (MSQ; soft / hard thresholding first for L1 / L0; stochastic rounding
 * draws one uniform from r, which may be NULL otherwise). */
int32_t gpfq_code(const gpfq_alphabet *a, float z, qh_rng *r);
/* The real value of level number c. */
float gpfq_value(const gpfq_alphabet *a, int32_t c);
/* Storage: signed levels 2K + 1 (L0: 2K + 3 as a code book); bits to address them. */
int32_t gpfq_levels_count(const gpfq_alphabet *a);
int32_t gpfq_storage_bits(const gpfq_alphabet *a);

/* ---------------------------------------------------------------- the loop */

/* One layer: W (rows x cols) and the samples transposed, column t of X at xt + t * mpad (m samples,
 * zero-padded to mpad, a multiple of 16). */
typedef struct gpfq_problem {
    int64_t rows, cols, m, mpad;
    const float *w;
    const float *xt, *xqt;
    const float *nrm;    /* [cols]: ||X~_t||^2 */
    const uint8_t *mask; /* rows x cols, 0 = pruned (code forced to 0); NULL = dense */
    gpfq_alphabet a;
    qh_rng rng; /* stochastic: neuron n draws from qh_rng_fork(&rng, n) */
} gpfq_problem;

/* For t = 0..cols-1 and every neuron n (Zhang, Zhou & Saab 2023, eq. (3); seed 002, 3.1):
 *   u += w[n,t] X_t;  c = Q(<u, X~_t> / ||X~_t||^2) (0 when the norm is 0);  u -= value(c) X~_t.
 * Writes codes (rows x cols) and returns ||U||_F^2 of the final errors. The reference runs neuron
 * by neuron in scalar code (sums in double); the fast one runs blocks of neurons with AVX2/FMA
 * (sums in float lanes) under OpenMP. Each neuron's arithmetic does not depend on its block or
 * thread, so both give the same codes for any thread count. */
double gpfq_run_ref(const gpfq_problem *p, int32_t *codes);
double gpfq_run(const gpfq_problem *p, int32_t *codes);

/* X (m x cols, row-major) into xt (cols x mpad), zero-padded, and ||column t||^2 into nrm (may be
 * NULL). The fast one moves 8 x 8 blocks through AVX2 registers; both give the same bytes. */
void gpfq_transpose(const float *x, int64_t m, int64_t cols, int64_t mpad, float *xt, float *nrm);
void gpfq_transpose_ref(const float *x, int64_t m, int64_t cols, int64_t mpad, float *xt);
/* m rounded up to the loop's vector width. */
static inline int64_t gpfq_mpad(int64_t m)
{
    return (m + 15) / 16 * 16;
}

#endif /* GPFQ_IMPL_H */
