/* fp8_fast.c - the fast OCP encoding loop of the fp8 quantizer (AVX2; the encoder is fp8_simd.h). */
#include "fp8_impl.h"
#include "fp8_simd.h"

#ifdef QQ_X86
QQ_AVX2 static int64_t encode_avx2(const float *x, int64_t n, float s, const fp8_format *fmt, uint8_t *codes,
                                   float *deq, int nt)
{
    fp8_vfmt f;
    fp8_vfmt_init(&f, fmt);
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i c[4];
        for (int k = 0; k < 4; k++) {
            __m256 val;
            c[k] = fp8_encode8(&f, _mm256_div_ps(_mm256_loadu_ps(x + i + 8 * k), vs), &val);
            if (!deq)
                continue;
            qq_store8(deq + i + 8 * k, _mm256_mul_ps(val, vs), nt);
        }
        _mm256_storeu_si256((__m256i *)(codes + i), qq_pack_u8x32(c[0], c[1], c[2], c[3]));
    }
    return i;
}
#endif

int64_t fp8_encode_ocp_fast(const float *x, int64_t n, float s, const fp8_format *f, uint8_t *codes, float *deq,
                            int nt)
{
#ifdef QQ_X86
    if (qq_have_avx2())
        return encode_avx2(x, n, s, f, codes, deq, nt);
#endif
    (void)x, (void)n, (void)s, (void)f, (void)codes, (void)deq, (void)nt;
    return 0;
}
