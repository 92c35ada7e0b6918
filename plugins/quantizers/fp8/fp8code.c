/* fp8code.c - OCP FP8 encode/decode and the seed-001 FP8 variant.
 *
 * Encoding works on the magnitude. Subnormals: scaling by a power of two is exact, so
 * rintf(a / 2^(emin - M)) (ties to even in the default rounding mode) is the code. Normals: the
 * FP32 bit pattern is rounded to M mantissa bits with the usual add-half-minus-one-plus-lsb trick;
 * a mantissa that rounds up carries into the exponent field by plain integer addition.
 */
#include "fp8code.h"

#include <math.h>
#include <string.h>

static const fp8_format formats[2] = {
    {4, 3, 7, 448.0f, 0x7E, 0x1p-6f},
    {5, 2, 15, 57344.0f, 0x7B, 0x1p-14f},
};

const fp8_format *fp8_format_get(fp8_kind k) { return &formats[k == FP8_E5M2]; }

uint8_t fp8_encode(float v, const fp8_format *f)
{
    uint8_t sign = signbit(v) ? 0x80 : 0x00;
    float a = fabsf(v);
    int emin = 1 - f->bias; /* exponent of the smallest normal */
    uint32_t mag;
    if (a >= f->max) {
        mag = f->max_code;
    } else if (a < f->min_normal) {
        /* subnormal: units of 2^(emin - M); rounding up to 2^M gives the smallest normal's code */
        mag = (uint32_t)rintf(ldexpf(a, f->mbits - emin));
    } else {
        /* normal: round the FP32 pattern to M mantissa bits, ties to even, then rebias; a carry out
         * of the mantissa moves into the exponent field */
        uint32_t u;
        memcpy(&u, &a, sizeof u);
        int shift = 23 - f->mbits;
        u += ((1u << (shift - 1)) - 1u) + ((u >> shift) & 1u);
        mag = (u >> shift) - ((uint32_t)(127 - f->bias) << f->mbits);
        if (mag > f->max_code)
            mag = f->max_code; /* rounded past the largest finite value: saturate */
    }
    return (uint8_t)(sign | mag);
}

float fp8_decode(uint8_t c, const fp8_format *f)
{
    int s = c >> 7;
    int ef = (c & 0x7F) >> f->mbits;
    int m = c & ((1 << f->mbits) - 1);
    int emax_field = (1 << f->ebits) - 1;
    float v;
    if (f->ebits == 4 && ef == emax_field && m == (1 << f->mbits) - 1)
        v = NAN; /* E4M3: only S.1111.111 is special */
    else if (f->ebits == 5 && ef == emax_field)
        v = m ? NAN : INFINITY;
    else if (ef == 0)
        v = ldexpf((float)m, 1 - f->bias - f->mbits);
    else
        v = ldexpf((float)((1 << f->mbits) + m), ef - f->bias - f->mbits);
    return s ? -v : v;
}

float fp8_seed_round(float v, int exp_bits)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    int mbits = 7 - exp_bits;
    int e = (int)((u >> 23) & 0xFF) - 127;
    int lo = 2 - (1 << exp_bits), hi = (1 << exp_bits) - 1;
    e = e < lo ? lo : e > hi ? hi : e;
    uint32_t m = (u & 0x7FFFFF) >> (23 - mbits); /* truncation */
    float r = ldexpf(1.0f + ldexpf((float)m, -mbits), e);
    return (u >> 31) ? -r : r;
}

int fp8_seed_book(int exp_bits, float *book)
{
    int mbits = 7 - exp_bits, lo = 2 - (1 << exp_bits), n = 0;
    /* negatives from the largest magnitude down, then positives upward: ascending order */
    for (int e = 0; e >= lo; e--)
        for (int m = (1 << mbits) - 1; m >= 0; m--)
            book[n++] = -ldexpf(1.0f + ldexpf((float)m, -mbits), e);
    for (int e = lo; e <= 0; e++)
        for (int m = 0; m < (1 << mbits); m++)
            book[n++] = ldexpf(1.0f + ldexpf((float)m, -mbits), e);
    return n;
}

int fp8_book_find(const float *book, int n, float v)
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
