/* dtcode.c - the bitsandbytes dynamic map, nearest-code lookup, and seed 001's decimal-exponent rule.
 *
 * bitsandbytes builds its map in float32 with torch.linspace, whose rounding depends on the torch
 * build (1.13 on AVX2 rounds some boundaries differently from a scalar loop). Here every entry is the
 * exact value of the construction, 10^(i - (N-2)) * (b[j] + b[j+1]) / 2 with b = linspace(0.1, 1, 2^i + 1),
 * evaluated in double and rounded once to float; tests/golden/gen_dynamic_map.py shows the torch
 * map agrees to 1 ulp.
 */
#include "dtcode.h"

#include <math.h>
#include <stdlib.h>

typedef struct entry {
    float v;
    int8_t e;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    float x = ((const entry *)a)->v, y = ((const entry *)b)->v;
    return (x > y) - (x < y);
}

int dt_bnb_book(int bits, float *book, int8_t *expo)
{
    if (bits < 2 || bits > 8)
        return 0;
    int max_exp = bits - 1, n = 0;
    entry t[256];
    for (int i = 0; i < max_exp; i++) {
        int items = (1 << i) + 1; /* signed: 2^(i + non_sign_bits - max_exp) + 1 boundaries */
        double scale = pow(10.0, (double)(i - (max_exp - 1)));
        int8_t e = (int8_t)(max_exp - 1 - i);
        for (int j = 0; j + 1 < items; j++) {
            double mean = 0.1 + 0.9 * (2.0 * j + 1.0) / (2.0 * (items - 1));
            t[n++] = (entry){(float)(scale * mean), e};
            t[n++] = (entry){(float)(-scale * mean), e};
        }
    }
    /* additional_items = 2^(non_sign_bits - max_exp) - 1 = 0 for max_exp = N - 1 */
    t[n++] = (entry){0.0f, -1};
    t[n++] = (entry){1.0f, 0};
    qsort(t, (size_t)n, sizeof *t, cmp_entry);
    for (int k = 0; k < n; k++) {
        book[k] = t[k].v;
        if (expo)
            expo[k] = t[k].e;
    }
    return n;
}

void dt_midpoints(const float *book, int n, double *mid)
{
    for (int k = 0; k + 1 < n; k++)
        mid[k] = 0.5 * ((double)book[k] + (double)book[k + 1]); /* exact in double */
}

int dt_nearest(const double *mid, int n, float v)
{
    /* count the midpoints below v (v >= 0) or at or below v (v < 0): ties go toward zero */
    double x = v;
    int lo = 0, hi = n - 1; /* answer in [0, n-1] */
    while (lo < hi) {
        int m = (lo + hi) / 2;
        int below = x >= 0.0 ? mid[m] < x : mid[m] <= x;
        if (below)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

/* Greedy binary expansion with f bits: floor to a multiple of 2^-f, capped at 1 - 2^-f. */
static double greedy(double a, int f)
{
    double k = floor(ldexp(a, f)), top = ldexp(1.0, f) - 1.0;
    return ldexp(k < top ? k : top, -f);
}

static const double pow10_tab[9] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8};

float dt_seed_round(float v, int bits, int *e_out)
{
    double a = fabs((double)v);
    if (a == 0.0) {
        *e_out = -1;
        return 0.0f;
    }
    int E = 0;
    double t = a;
    while (t < 0.1) { /* terminates: a > 0 */
        t *= 10.0;
        E++;
    }
    int f = bits - 2 - E > 0 ? bits - 2 - E : 0;
    int e = E < bits - 1 ? E : bits - 1;
    double q;
    if (e == 0)
        q = greedy(a, 7); /* the seed always keeps 7 bits here, whatever N */
    else if (e >= bits - 2)
        q = 0.0;
    else
        q = greedy(t, f);
    *e_out = e;
    /* dividing by an exact power of ten rounds once, so equal rationals from different buckets
     * (e.g. 12/128 and 30/32 / 10) give equal values, as in the seed's measured level counts */
    float r = (float)(q / pow10_tab[e]);
    return v < 0.0f ? -r : r;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int dt_seed_book(int bits, float *book)
{
    int n = 0;
    book[n++] = 0.0f;
    /* bucket e = 0: 7-bit expansion of a in [0.1, 1]; buckets 1..N-3: f = N-2-e bits of a*10^e */
    for (int e = 0; e <= bits - 3 || e == 0; e++) {
        int f = e == 0 ? 7 : bits - 2 - e;
        int kmin = (int)floor(0.1 * ldexp(1.0, f)), kmax = (1 << f) - 1;
        for (int k = kmin > 1 ? kmin : 1; k <= kmax; k++) {
            float r = (float)(ldexp((double)k, -f) / pow10_tab[e]);
            book[n++] = r;
            book[n++] = -r;
        }
    }
    qsort(book, (size_t)n, sizeof *book, cmp_float);
    int m = 0;
    for (int k = 0; k < n; k++)
        if (m == 0 || book[k] != book[m - 1])
            book[m++] = book[k];
    return m;
}

int dt_book_find(const float *book, int n, float v)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (book[mid] < v)
            lo = mid + 1;
        else if (book[mid] > v)
            hi = mid - 1;
        else
            return mid;
    }
    return -1;
}
