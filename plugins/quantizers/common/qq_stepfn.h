/* qq_stepfn.h - a monotone step function of a float, evaluated by table look-up (internal).
 *
 * Nearest-code search in a sorted code book (dynamic tree) and nearest-centroid assignment
 * (k-means) are both f(x) = the number of thresholds below x, for a function f that a plain
 * reference computes by binary search. qq_stepfn_build finds those thresholds exactly from the
 * reference itself (binary search over the ordered float keys, so ties, -0 / +0 and rounding of the
 * reference's own arithmetic are inherited, not re-derived), then tabulates f over the high bits
 * of the key: a cell gives the value of f at its first key, and at most `steps` thresholds lie
 * inside a cell, so f(x) = lut[cell(x)] plus `steps` comparisons with the next thresholds. Every
 * answer equals the reference's for every float in [xlo, xhi]; the tests check this densely.
 */
#ifndef QQ_STEPFN_H
#define QQ_STEPFN_H

#include <stdint.h>

#include "qq_simd.h"

#define QQ_STEP_MAX 8        /* more comparisons than this: use the reference instead */
#define QQ_STEP_CELLS 65536  /* the largest table */

/* A reference f: monotone non-decreasing in x over [xlo, xhi], values 0..m. */
typedef int (*qq_monotone_fn)(const void *ctx, float x);

typedef struct qq_stepfn {
    int m, steps, shift;
    float xlo, xhi; /* the domain */
    uint32_t lo, hi; /* ordered keys covered by the cells; keys outside are clamped (exact: see .c) */
    /* thr[j]: signed ordered key of the largest float with f <= j; INT32_MAX from m on */
    int32_t thr[256 + QQ_STEP_MAX + 1];
    uint8_t lut[QQ_STEP_CELLS + 4]; /* + 4: the AVX2 path reads 4 bytes per cell */
} qq_stepfn;

/* Builds s for f with m <= 255 steps over [xlo, xhi] (finite, xlo <= xhi). Returns 0, or -1 when
 * thresholds are too crowded for QQ_STEP_MAX comparisons (callers then use f itself). */
int qq_stepfn_build(qq_stepfn *s, int m, float xlo, float xhi, qq_monotone_fn f, const void *ctx);

static inline int32_t qq_skey(float x) { return (int32_t)(qq_okey(x) ^ 0x80000000u); }

/* f(x) for x in [xlo, xhi]. */
static inline int qq_stepfn_eval(const qq_stepfn *s, float x)
{
    uint32_t k = qq_okey(x), c = k < s->lo ? s->lo : k > s->hi ? s->hi : k;
    int v = s->lut[(c - s->lo) >> s->shift];
    int32_t sk = (int32_t)(k ^ 0x80000000u);
    for (int i = 0; i < s->steps; i++)
        v += sk > s->thr[v];
    return v;
}

#ifdef QQ_X86
/* Ordered keys of 8 floats, as unsigned (for the cell) and signed (for comparisons). */
QQ_AVX2 static inline __m256i qq_okey8(__m256 x)
{
    __m256i u = _mm256_castps_si256(x);
    __m256i neg = _mm256_srai_epi32(u, 31); /* all ones for a negative sign */
    return _mm256_xor_si256(u, _mm256_or_si256(neg, _mm256_set1_epi32((int)0x80000000u)));
}

/* f of 8 floats (epi32 lanes). */
QQ_AVX2 static inline __m256i qq_stepfn_avx2(const qq_stepfn *s, __m256 x)
{
    __m256i k = qq_okey8(x);
    __m256i c = _mm256_min_epu32(_mm256_max_epu32(k, _mm256_set1_epi32((int)s->lo)), _mm256_set1_epi32((int)s->hi));
    __m256i cell = _mm256_srl_epi32(_mm256_sub_epi32(c, _mm256_set1_epi32((int)s->lo)), _mm_cvtsi32_si128(s->shift));
    __m256i v = _mm256_and_si256(_mm256_i32gather_epi32((const int *)s->lut, cell, 1), _mm256_set1_epi32(0xFF));
    __m256i sk = _mm256_xor_si256(k, _mm256_set1_epi32((int)0x80000000u));
    for (int i = 0; i < s->steps; i++)
        v = _mm256_sub_epi32(v, _mm256_cmpgt_epi32(sk, _mm256_i32gather_epi32(s->thr, v, 4)));
    return v;
}
#endif

/* A code book's values along with the step function, for most lanes in one load. Cells split the
 * magnitudes of each sign on a log-like scale (the high bits of |x|), covering [mag_lo, mag_hi]:
 * entry = value[f] bits << 32 | flag << 8 | f where f is constant over the cell (magnitudes
 * clamped into a first or last cell included), flag = 1 where it is not: those lanes take the full
 * qq_stepfn path and a gather of the value. Magnitudes are what a normalized code book resolves
 * (dynamic tree: steps per binade), so few lanes are flagged. */
#define QQ_VAL_CELLS 32768 /* per sign at most: 512 KiB in all (L2), ~2730 cells per binade over 12 binades */

typedef struct qq_valtab {
    uint32_t mag_lo, mag_hi; /* |x| bits covered; clamping outside is exact (see .c) */
    int shift;
    int cells;                    /* per sign, a power of two <= QQ_VAL_CELLS */
    uint64_t e[2 * QQ_VAL_CELLS]; /* [sign][cell] */
} qq_valtab;

/* values[f] for f = 0..m in `cells` cells per sign (a power of two up to QQ_VAL_CELLS: more cells
 * flag fewer lanes, fewer keep the table in a smaller cache); magnitudes below 2^-min_binades of
 * the largest in the domain share the
 * first cell of their sign. */
void qq_valtab_build(qq_valtab *t, const qq_stepfn *s, const float *values, int min_binades, int cells);

#ifdef QQ_X86
/* Codes (epi32) of 8 floats and their values. */
QQ_AVX2 static inline __m256i qq_valtab_avx2(const qq_valtab *t, const qq_stepfn *s, const float *values, __m256 x,
                                             __m256 *val)
{
    __m256i u = _mm256_castps_si256(x), a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
    a = _mm256_min_epu32(_mm256_max_epu32(a, _mm256_set1_epi32((int)t->mag_lo)), _mm256_set1_epi32((int)t->mag_hi));
    __m256i cell = _mm256_srl_epi32(_mm256_sub_epi32(a, _mm256_set1_epi32((int)t->mag_lo)), _mm_cvtsi32_si128(t->shift));
    cell = _mm256_or_si256(cell, _mm256_and_si256(_mm256_srai_epi32(u, 31), _mm256_set1_epi32(t->cells)));
    /* eight scalar loads, not two vpgatherdq: AMD's microcoded gathers were 1.15-1.2x slower here
     * (dynamic tree 8 bit, alternating builds in one session; docs/performance.md) */
    int32_t ci[8] __attribute__((aligned(32)));
    _mm256_store_si256((__m256i *)ci, cell);
    const long long *te = (const long long *)t->e;
    __m256i e0 = _mm256_set_epi64x(te[ci[3]], te[ci[2]], te[ci[1]], te[ci[0]]);
    __m256i e1 = _mm256_set_epi64x(te[ci[7]], te[ci[6]], te[ci[5]], te[ci[4]]);
    /* low halves (code | flag) to lanes 0..7, high halves (value bits) likewise */
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    __m256i p = _mm256_permutevar8x32_epi32(e0, even), q = _mm256_permutevar8x32_epi32(e1, even);
    __m256i lo = _mm256_permute2x128_si256(p, q, 0x20), hi = _mm256_permute2x128_si256(p, q, 0x31);
    int flagged = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(lo, 23)));
    __m256i code = _mm256_and_si256(lo, _mm256_set1_epi32(0xFF));
    if (!flagged) {
        *val = _mm256_castsi256_ps(hi);
        return code;
    }
    if (__builtin_popcount((unsigned)flagged) > 2) { /* many: all lanes through the step table */
        __m256i v = qq_stepfn_avx2(s, x);
        *val = _mm256_i32gather_ps(values, v, 4);
        return v;
    }
    int32_t c8[8], v8[8]; /* one or two: patch them one by one */
    float x8[8];
    _mm256_storeu_si256((__m256i *)c8, code);
    _mm256_storeu_si256((__m256i *)v8, hi);
    _mm256_storeu_ps(x8, x);
    for (; flagged; flagged &= flagged - 1) {
        int l = __builtin_ctz((unsigned)flagged);
        c8[l] = qq_stepfn_eval(s, x8[l]);
        v8[l] = (int32_t)qq_bits(values[c8[l]]);
    }
    *val = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)v8));
    return _mm256_loadu_si256((const __m256i *)c8);
}
#endif

#endif /* QQ_STEPFN_H */
