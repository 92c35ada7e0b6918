/* fp8_simd.h - the OCP FP8 encoder of fp8code.c, eight lanes at a time with AVX2 (header only,
 * shared by the fp8 and stable_embedding plugins).
 *
 * The three cases of fp8_encode become three results chosen by masks, without branches:
 *   saturation:  |v| >= max, or a normal that rounds past the largest finite code -> max_code;
 *   subnormal:   |v| < 2^emin -> round(|v| * 2^(M - emin)) with the current rounding mode (ties to
 *                even, as rintf), exact scaling by a power of two;
 *   normal:      the FP32 pattern rounded to M mantissa bits (add half - 1 + lsb), rebiased.
 * The decoded value needs no table: a normal code's value is the rounded FP32 pattern itself, a
 * subnormal's is the rounded integer times 2^(emin - M), a saturated one is +-max, each with the
 * sign of v; these are exactly fp8_decode's values, so book[code] * s is reproduced bit for bit.
 */
#ifndef QH_FP8_SIMD_H
#define QH_FP8_SIMD_H

#include "fp8code.h"
#include "../common/qq_simd.h"

#ifdef QQ_X86
typedef struct fp8_vfmt {
    __m256 max, min_normal, up, down; /* up = 2^(M - emin), down = 2^(emin - M) */
    __m256i half_m1, one, bias_shift, max_code, keep, absmask, signmask;
    __m128i shift;
} fp8_vfmt;

QQ_AVX2 static inline void fp8_vfmt_init(fp8_vfmt *v, const fp8_format *f)
{
    int emin = 1 - f->bias, shift = 23 - f->mbits;
    v->max = _mm256_set1_ps(f->max);
    v->min_normal = _mm256_set1_ps(f->min_normal);
    v->up = _mm256_set1_ps(qq_float((uint32_t)(127 + f->mbits - emin) << 23));
    v->down = _mm256_set1_ps(qq_float((uint32_t)(127 + emin - f->mbits) << 23));
    v->half_m1 = _mm256_set1_epi32((1 << (shift - 1)) - 1);
    v->one = _mm256_set1_epi32(1);
    v->bias_shift = _mm256_set1_epi32((127 - f->bias) << f->mbits);
    v->max_code = _mm256_set1_epi32(f->max_code);
    v->keep = _mm256_set1_epi32((int)(~0u << shift));
    v->absmask = _mm256_set1_epi32(0x7FFFFFFF);
    v->signmask = _mm256_set1_epi32((int)0x80000000u);
    v->shift = _mm_cvtsi32_si128(shift);
}

/* Codes (epi32, 0..255) of v and their decoded values. */
QQ_AVX2 static inline __m256i fp8_encode8(const fp8_vfmt *f, __m256 v, __m256 *val)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i sign = _mm256_and_si256(u, f->signmask), au = _mm256_and_si256(u, f->absmask);
    __m256 a = _mm256_castsi256_ps(au);
    __m256i lsb = _mm256_and_si256(_mm256_srl_epi32(au, f->shift), f->one);
    __m256i r = _mm256_add_epi32(au, _mm256_add_epi32(f->half_m1, lsb));
    __m256i mag = _mm256_sub_epi32(_mm256_srl_epi32(r, f->shift), f->bias_shift);
    __m256 value = _mm256_castsi256_ps(_mm256_and_si256(r, f->keep));
    /* subnormal lanes are rare after absmax scaling: their path only when present (saturated ones
     * are not rare: each group's absmax lands on max, so that blend stays unconditional) */
    __m256 sub = _mm256_cmp_ps(a, f->min_normal, _CMP_LT_OQ);
    if (_mm256_movemask_ps(sub)) {
        __m256 sr = _mm256_round_ps(_mm256_mul_ps(a, f->up), _MM_FROUND_CUR_DIRECTION);
        mag = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mag),
                                                   _mm256_castsi256_ps(_mm256_cvtps_epi32(sr)), sub));
        value = _mm256_blendv_ps(value, _mm256_mul_ps(sr, f->down), sub);
    }
    /* a subnormal's mag is at most 2^M by now, so only true normals can round past max_code */
    __m256 sat = _mm256_or_ps(_mm256_cmp_ps(a, f->max, _CMP_GE_OQ),
                              _mm256_castsi256_ps(_mm256_cmpgt_epi32(mag, f->max_code)));
    mag = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(mag), _mm256_castsi256_ps(f->max_code), sat));
    value = _mm256_blendv_ps(value, f->max, sat);
    *val = _mm256_or_ps(value, _mm256_castsi256_ps(sign));
    return _mm256_or_si256(mag, _mm256_srli_epi32(sign, 24));
}

#endif

#endif /* QH_FP8_SIMD_H */
