/* qh_rng.h - the seeded random generator (xoshiro256**), always passed explicitly.
 * There is no global generator: every consumer receives a qh_rng * or derives one with qh_rng_fork. */
#ifndef QH_RNG_H
#define QH_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qh_rng {
    uint64_t s[4];
} qh_rng;

/* Seeds the four state words from splitmix64(seed). */
void qh_rng_seed(qh_rng *r, uint64_t seed);
uint64_t qh_rng_next(qh_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double qh_rng_uniform(qh_rng *r);
/* Uniform integer in [0, n) without modulo bias; n > 0. */
uint64_t qh_rng_below(qh_rng *r, uint64_t n);
/* Standard normal (Box-Muller, one value per call; deterministic). */
double qh_rng_normal(qh_rng *r);
/* Fisher-Yates shuffle of a[0..n). */
void qh_rng_shuffle_i64(qh_rng *r, int64_t *a, int64_t n);
/* An independent generator derived from r's current state and a stream id; r is not advanced. */
qh_rng qh_rng_fork(const qh_rng *r, uint64_t stream);

#ifdef __cplusplus
}
#endif
#endif /* QH_RNG_H */
