/* linear_encode.c - the reference element loops: value -> code -> dequantized value.
 *
 * Round to nearest is roundf (half away from zero), written as trunc(v + copysign(0.5 - 2^-25, v))
 * on v clamped to a few steps outside the code range: the same result for every float v, in a form
 * the compiler vectorizes (the clamp keeps the int conversion in range and changes no final code).
 * Codes are made in a small int32 tile, then narrowed to the code dtype, so one loop serves all
 * four code types. The dequantized value is always scale * (float)(code - zero), the expression of
 * qh_qtensor_dequantize.
 */
#include <math.h>

#include "linear_impl.h"

enum { TILE = 256 };

static void store_codes(const int32_t *c, int64_t n, qh_dtype dt, void *codes)
{
    switch (dt) {
    case QH_I8:
        for (int64_t i = 0; i < n; i++)
            ((int8_t *)codes)[i] = (int8_t)c[i];
        break;
    case QH_U8:
        for (int64_t i = 0; i < n; i++)
            ((uint8_t *)codes)[i] = (uint8_t)c[i];
        break;
    case QH_I16:
        for (int64_t i = 0; i < n; i++)
            ((int16_t *)codes)[i] = (int16_t)c[i];
        break;
    default:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)codes)[i] = (uint16_t)c[i];
        break;
    }
}

static void *code_at(void *codes, qh_dtype dt, int64_t i)
{
    return (char *)codes + i * (int64_t)qh_dtype_size(dt);
}

static void dequantize_tile(const int32_t *c, int64_t n, const lin_grid *g, float *deq)
{
    if (!deq) /* codes only */
        return;
    for (int64_t i = 0; i < n; i++)
        deq[i] = g->scale * (float)(c[i] - g->zero);
}

void lin_encode_nearest(const float *w, int64_t n, const lin_grid *g, qh_dtype dt, void *codes, float *deq)
{
    const float lo = (float)(g->qmin - g->zero - 1), hi = (float)(g->qmax - g->zero + 1);
    const float half = 0.49999997f; /* 0.5 - 2^-25: the largest float below one half */
    int32_t c[TILE];
    for (int64_t t = 0; t < n; t += TILE) {
        int64_t m = n - t < TILE ? n - t : TILE;
        for (int64_t i = 0; i < m; i++) {
            float v = w[t + i] / g->scale;
            v = v < lo ? lo : v; /* one select per statement: the form the vectorizer takes */
            v = v > hi ? hi : v;
            int32_t q = (int32_t)(v + copysignf(half, v)) + g->zero;
            q = q < g->qmin ? g->qmin : q;
            c[i] = q > g->qmax ? g->qmax : q;
        }
        store_codes(c, m, dt, code_at(codes, dt, t));
        dequantize_tile(c, m, g, deq ? deq + t : NULL);
    }
}

/* code = floor(v + u), u uniform in [0, 1): unbiased, E[code] = v inside the range. */
void lin_encode_stochastic(const float *w, int64_t n, const lin_grid *g, qh_rng *rng, qh_dtype dt, void *codes,
                           float *deq)
{
    const float lo = (float)(g->qmin - g->zero - 1), hi = (float)(g->qmax - g->zero + 1);
    int32_t c[TILE];
    for (int64_t t = 0; t < n; t += TILE) {
        int64_t m = n - t < TILE ? n - t : TILE;
        for (int64_t i = 0; i < m; i++) {
            float v = w[t + i] / g->scale;
            v = v < lo ? lo : v;
            v = v > hi ? hi : v;
            int32_t q = (int32_t)floor((double)v + qh_rng_uniform(rng)) + g->zero;
            q = q < g->qmin ? g->qmin : q;
            c[i] = q > g->qmax ? g->qmax : q;
        }
        store_codes(c, m, dt, code_at(codes, dt, t));
        dequantize_tile(c, m, g, deq ? deq + t : NULL);
    }
}

/* torch's float -> int8 cast on x86: truncate to int32 (cvttss2si; out of range gives INT32_MIN),
 * keep the low b bits, read them as a b-bit two's complement number. */
static int32_t seed_cast(float t, int bits, int *wrapped)
{
    float tt = truncf(t);
    int64_t r = fabsf(tt) < 2147483648.0f ? (int64_t)tt : (int64_t)INT32_MIN;
    uint32_t mask = (1u << bits) - 1u, u = (uint32_t)r & mask;
    int32_t c = u >= (1u << (bits - 1)) ? (int32_t)u - (int32_t)(1u << bits) : (int32_t)u;
    *wrapped = (int64_t)c != r;
    return c;
}

int64_t lin_encode_seed001(const float *w, int64_t n, float factor, float scale, int bits, qh_dtype dt, void *codes,
                           float *deq)
{
    lin_grid g = {scale, 0, 0, 0};
    int64_t wraps = 0;
    int32_t c[TILE];
    for (int64_t t = 0; t < n; t += TILE) {
        int64_t m = n - t < TILE ? n - t : TILE;
        for (int64_t i = 0; i < m; i++) {
            int wrapped;
            c[i] = seed_cast(w[t + i] * factor, bits, &wrapped);
            wraps += wrapped;
        }
        store_codes(c, m, dt, code_at(codes, dt, t));
        dequantize_tile(c, m, &g, deq ? deq + t : NULL);
    }
    return wraps;
}
