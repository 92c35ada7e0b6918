/* qq_simd.h - small helpers shared by the data-free quantizers' fast kernels (header only, internal).
 *
 * The fast kernels use AVX2 through target attributes and a runtime check, as core's kernels do,
 * so the plugins still load (and run the reference loops) on a CPU without AVX2. Every fast loop
 * has a plain reference twin and gives the same bytes; the tests compare the two.
 *
 * Large outputs are written with non-temporal stores: the dequantized weights of a tensor larger
 * than the last-level cache would otherwise be read into the cache before being overwritten
 * (write-allocate), which costs as much memory traffic as the store itself. Below QQ_NT_MIN bytes
 * the output is left in the cache, where its consumer (the host's analysis) finds it.
 */
#ifndef QQ_SIMD_H
#define QQ_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QQ_X86 1
#define QQ_AVX2 __attribute__((target("avx2,fma")))
static inline int qq_have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define QQ_AVX2
static inline int qq_have_avx2(void) { return 0; }
#endif

/* Outputs at least this large are streamed past the cache (see above). */
#define QQ_NT_MIN ((int64_t)8 << 20)

/* Orders a thread's streamed stores before what follows (the end of its parallel work, which the
 * next reader of the output synchronizes with); once per thread, not per store loop. */
static inline void qq_sfence(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#endif
}

static inline uint32_t qq_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline float qq_float(uint32_t u)
{
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* A finite float's |v| bits are below this (the pattern of +infinity). */
#define QQ_INF_BITS 0x7F800000u

/* max over i of (bits(x[i]) & 0x7FFFFFFF), starting from `acc`: for finite floats this orders as
 * |x| does, so the result read as a float is the absmax, and a result >= QQ_INF_BITS means that
 * some element is infinite or NaN. One pass gives both the scale and the finiteness check. */
static inline uint32_t qq_absbits_max_ref(const float *x, int64_t n, uint32_t acc)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t a = qq_bits(x[i]) & 0x7FFFFFFFu;
        acc = a > acc ? a : acc;
    }
    return acc;
}

#ifdef QQ_X86
QQ_AVX2 static inline uint32_t qq_hmax_epu32(__m256i m)
{
    __m128i v = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    v = _mm_max_epu32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_max_epu32(v, _mm_shuffle_epi32(v, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(v);
}

QQ_AVX2 static inline uint32_t qq_absbits_max_avx2(const float *x, int64_t n, uint32_t acc)
{
    const __m256i mask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i m0 = _mm256_set1_epi32((int)acc), m1 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), mask));
        m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i + 8)), mask));
    }
    acc = qq_hmax_epu32(_mm256_max_epu32(m0, m1));
    return qq_absbits_max_ref(x + i, n - i, acc);
}

/* 32 values in 0..255 (four epi32 vectors, in order) as 32 bytes, in order. */
QQ_AVX2 static inline __m256i qq_pack_u8x32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i lo = _mm256_packus_epi32(a, b), hi = _mm256_packus_epi32(c, d); /* lane-interleaved */
    return _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Stores 8 floats, past the cache when nt and the address allows it. */
QQ_AVX2 static inline void qq_store8(float *p, __m256 v, int nt)
{
    if (nt && ((uintptr_t)p & 31) == 0)
        _mm256_stream_ps(p, v);
    else
        _mm256_storeu_ps(p, v);
}
#endif

/* The fast version when the CPU has AVX2 (same result: max is exact). */
static inline uint32_t qq_absbits_max(const float *x, int64_t n, uint32_t acc)
{
#ifdef QQ_X86
    if (qq_have_avx2())
        return qq_absbits_max_avx2(x, n, acc);
#endif
    return qq_absbits_max_ref(x, n, acc);
}

/* Index of the first element of x[0..n) that is not finite (n if none). */
static inline int64_t qq_first_nonfinite(const float *x, int64_t n)
{
    int64_t i = 0;
    while (i < n && (qq_bits(x[i]) & 0x7FFFFFFFu) < QQ_INF_BITS)
        i++;
    return i;
}

/* Monotone map of a float to an unsigned key: a < b (as floats, -0 before +0) iff key(a) < key(b). */
static inline uint32_t qq_okey(float v)
{
    uint32_t u = qq_bits(v);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static inline float qq_okey_float(uint32_t k)
{
    return qq_float(k & 0x80000000u ? k & 0x7FFFFFFFu : ~k);
}

#endif /* QQ_SIMD_H */
