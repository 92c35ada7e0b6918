/* qh_rng.c - xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64. */
#include "qhost/qh_rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void qh_rng_seed(qh_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t qh_rng_next(qh_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double qh_rng_uniform(qh_rng *r) { return (double)(qh_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t qh_rng_below(qh_rng *r, uint64_t n)
{
    /* Lemire's nearly-divisionless method would do; rejection keeps it obviously unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = qh_rng_next(r);
    while (x >= limit);
    return x % n;
}

double qh_rng_normal(qh_rng *r)
{
    double u1 = qh_rng_uniform(r), u2 = qh_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void qh_rng_shuffle_i64(qh_rng *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)qh_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

qh_rng qh_rng_fork(const qh_rng *r, uint64_t stream)
{
    uint64_t x = r->s[0] ^ rotl(r->s[1], 13) ^ rotl(r->s[2], 29) ^ rotl(r->s[3], 47);
    x ^= splitmix64(&stream);
    qh_rng out;
    qh_rng_seed(&out, x);
    return out;
}
