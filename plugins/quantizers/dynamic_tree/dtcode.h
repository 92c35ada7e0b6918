/* dtcode.h - dynamic tree code books and lookups shared by the dynamic_tree and stable_embedding
 * plugins (compiled into both).
 */
#ifndef QH_DTCODE_H
#define QH_DTCODE_H

#include <stdint.h>

#define DT_SEED_MAX 512 /* seed-001 books have at most 337 levels (N = 8) */

/* The signed dynamic map of bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=N-1,
 * total_bits=N), without its zero padding to 256: exactly 2^N distinct values in [-1, 1] (+1.0 but
 * not -1.0), sorted ascending. expo[k] = decimal exponent of book[k] (0: magnitudes in [0.1, 1],
 * 1: [0.01, 0.1), ...), -1 for the zero. Returns 2^N, or 0 for bits outside 2..8. */
int dt_bnb_book(int bits, float *book, int8_t *expo);
/* Index of the entry nearest to v in a sorted book of n entries, whose n-1 midpoints (in double)
 * are mid[]; a v exactly halfway goes to the entry nearer to zero. */
int dt_nearest(const double *mid, int n, float v);
void dt_midpoints(const float *book, int n, double *mid);

/* Seed 001's round_dt8(v, N) for |v| <= 1 (seeds.md 2.4), except that v = 0 gives 0 (the seed loops
 * forever). *e = the seed's bucket min(N - 1, E) for the decimal exponent E, or -1 for v = 0. */
float dt_seed_round(float v, int bits, int *e);
/* Every value dt_seed_round can return for bits N, sorted and distinct (337, 281, 255, 241, 235,
 * 233, 233 for N = 8..2). Returns the count; book must hold DT_SEED_MAX. */
int dt_seed_book(int bits, float *book);
/* Index of v in a sorted book that holds it exactly, or -1. */
int dt_book_find(const float *book, int n, float v);

#endif /* QH_DTCODE_H */
