/* linear_fast.c - AVX2 twins of lin_minmax and lin_encode_nearest (linear_grid.c, linear_encode.c).
 *
 * Same operations in the same order per element (w / scale, the two clamps, + copysign(0.5 - 2^-25),
 * truncation, + zero, the code clamp, scale * (code - zero)), eight lanes at a time, so the codes
 * and dequantized values are the reference's bytes; min and max are exact, so lanes change nothing.
 * 32 elements per step (one 32-byte store of 8-bit codes); the tail of a range goes through the
 * reference loop.
 */
#include <float.h>

#include "linear_impl.h"

#ifdef QQ_X86
QQ_AVX2 static int minmax_avx2(const float *w, int64_t n, float *lo, float *hi)
{
    float a = w[0], b = a;
    int64_t i = 0;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), big = _mm256_set1_ps(FLT_MAX);
    __m256 a0 = _mm256_set1_ps(a), a1 = a0, b0 = a0, b1 = a0, ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (; i + 16 <= n; i += 16) {
        __m256 x0 = _mm256_loadu_ps(w + i), x1 = _mm256_loadu_ps(w + i + 8);
        a0 = _mm256_min_ps(a0, x0);
        a1 = _mm256_min_ps(a1, x1);
        b0 = _mm256_max_ps(b0, x0);
        b1 = _mm256_max_ps(b1, x1);
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(x0, absmask), big, _CMP_LE_OQ));
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(x1, absmask), big, _CMP_LE_OQ));
    }
    /* across lanes by halving (exact; the sign a zero gets does not change any grid) */
    __m128 mn = _mm_min_ps(_mm256_castps256_ps128(_mm256_min_ps(a0, a1)), _mm256_extractf128_ps(_mm256_min_ps(a0, a1), 1));
    __m128 mx = _mm_max_ps(_mm256_castps256_ps128(_mm256_max_ps(b0, b1)), _mm256_extractf128_ps(_mm256_max_ps(b0, b1), 1));
    mn = _mm_min_ps(mn, _mm_movehl_ps(mn, mn));
    mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
    a = _mm_cvtss_f32(_mm_min_ss(mn, _mm_shuffle_ps(mn, mn, 1)));
    b = _mm_cvtss_f32(_mm_max_ss(mx, _mm_shuffle_ps(mx, mx, 1)));
    int bad = _mm256_movemask_ps(ok) != 0xFF;
    for (; i < n; i++) {
        a = w[i] < a ? w[i] : a;
        b = w[i] > b ? w[i] : b;
        bad |= !(w[i] <= FLT_MAX && w[i] >= -FLT_MAX);
    }
    *lo = a;
    *hi = b;
    return bad;
}

/* Eight codes (epi32) of x on the grid; the caller dequantizes. */
typedef struct vgrid {
    __m256 scale, lo, hi, half, sign;
    __m256i zero, qmin, qmax;
} vgrid;

QQ_AVX2 static inline __m256i codes8(const vgrid *g, __m256 x)
{
    __m256 v = _mm256_div_ps(x, g->scale);
    v = _mm256_max_ps(v, g->lo); /* v < lo ? lo : v, v finite */
    v = _mm256_min_ps(v, g->hi);
    v = _mm256_add_ps(v, _mm256_or_ps(g->half, _mm256_and_ps(v, g->sign)));
    __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(v), g->zero);
    return _mm256_min_epi32(_mm256_max_epi32(q, g->qmin), g->qmax);
}

QQ_AVX2 static inline void store_deq(const vgrid *g, __m256i q, float *p, int nt)
{
    qq_store8(p, _mm256_mul_ps(g->scale, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, g->zero))), nt);
}

/* 32 codes, narrowed to dt (the values are in range, so saturating packs change nothing). */
QQ_AVX2 static inline void store_codes32(const __m256i q[4], qh_dtype dt, void *codes)
{
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i a, b;
    switch (dt) {
    case QH_I8:
        a = _mm256_packs_epi32(q[0], q[1]);
        b = _mm256_packs_epi32(q[2], q[3]);
        _mm256_storeu_si256(codes, _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order));
        break;
    case QH_U8:
        _mm256_storeu_si256(codes, qq_pack_u8x32(q[0], q[1], q[2], q[3]));
        break;
    case QH_I16:
        _mm256_storeu_si256(codes, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)codes + 1, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8));
        break;
    default:
        _mm256_storeu_si256(codes, _mm256_permute4x64_epi64(_mm256_packus_epi32(q[0], q[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)codes + 1, _mm256_permute4x64_epi64(_mm256_packus_epi32(q[2], q[3]), 0xD8));
        break;
    }
}

QQ_AVX2 static int64_t encode_avx2(const float *w, int64_t n, const lin_grid *lg, qh_dtype dt, void *codes,
                                   float *deq, int nt)
{
    vgrid g = {_mm256_set1_ps(lg->scale),
               _mm256_set1_ps((float)(lg->qmin - lg->zero - 1)),
               _mm256_set1_ps((float)(lg->qmax - lg->zero + 1)),
               _mm256_set1_ps(0.49999997f),
               _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)),
               _mm256_set1_epi32(lg->zero),
               _mm256_set1_epi32(lg->qmin),
               _mm256_set1_epi32(lg->qmax)};
    size_t csize = qh_dtype_size(dt);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            q[k] = codes8(&g, _mm256_loadu_ps(w + i + 8 * k));
            if (deq)
                store_deq(&g, q[k], deq + i + 8 * k, nt);
        }
        store_codes32(q, dt, (char *)codes + (size_t)i * csize);
    }
    return i;
}
#endif

int lin_minmax_fast(const float *w, int64_t n, float *lo, float *hi)
{
#ifdef QQ_X86
    if (n >= 16 && qq_have_avx2())
        return minmax_avx2(w, n, lo, hi);
#endif
    return lin_minmax(w, n, lo, hi);
}

void lin_encode_nearest_fast(const float *w, int64_t n, const lin_grid *g, qh_dtype dt, void *codes, float *deq,
                             int nt)
{
    int64_t done = 0;
#ifdef QQ_X86
    if (qq_have_avx2())
        done = encode_avx2(w, n, g, dt, codes, deq, nt);
#endif
    (void)nt;
    if (done < n)
        lin_encode_nearest(w + done, n - done, g, dt, (char *)codes + (size_t)done * qh_dtype_size(dt),
                           deq ? deq + done : NULL);
}
