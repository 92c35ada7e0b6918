/* fp8code.h - FP8 encoders shared by the fp8 and stable_embedding plugins (compiled into both).
 *
 * OCP 8-bit floating point (OFP8, 2023): E4M3 (bias 7, max 448, no infinities, S.1111.111 = NaN) and
 * E5M2 (bias 15, max 57344, IEEE-like infinities and NaNs). Codes are the raw FP8 bytes.
 * The seed-001 variant is a different, sign-magnitude code book; see fp8_seed_*.
 */
#ifndef QH_FP8CODE_H
#define QH_FP8CODE_H

#include <stdint.h>

typedef enum fp8_kind { FP8_E4M3 = 0, FP8_E5M2 } fp8_kind;

typedef struct fp8_format {
    int ebits, mbits, bias;
    float max;        /* largest finite magnitude */
    uint8_t max_code; /* code of +max (0x7E / 0x7B) */
    float min_normal; /* 2^(1 - bias) */
} fp8_format;

const fp8_format *fp8_format_get(fp8_kind k);
/* Round to nearest, ties to even; magnitudes past max (including what would round to infinity)
 * saturate to +-max. v must be finite. -0.0 keeps its sign (code 0x80). */
uint8_t fp8_encode(float v, const fp8_format *f);
/* The value of any code, NaN and infinities included. */
float fp8_decode(uint8_t c, const fp8_format *f);

/* Seed 001's round_fp8(v, exp): FP32 bit pattern, mantissa truncated to (7 - exp) bits, unbiased
 * exponent clamped to [2 - 2^exp, 2^exp - 1], value +-(1 + m) * 2^e (no zero, no subnormals). */
float fp8_seed_round(float v, int exp_bits);
/* Its code book for |v| <= 1 (exponents up to 0), sorted ascending: 2 * (2^exp - 1) * 2^(7 - exp)
 * entries (240 for exp 4, 248 for exp 5). Returns the count; book must hold 256. */
int fp8_seed_book(int exp_bits, float *book);
/* Index of v in a sorted book holding it exactly, or -1. */
int fp8_book_find(const float *book, int n, float v);

#endif /* QH_FP8CODE_H */
