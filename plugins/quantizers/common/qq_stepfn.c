/* qq_stepfn.c - building the look-up table of a monotone step function (see qq_stepfn.h).
 *
 * Thresholds: T_j = the largest key k in [klo, khi] with f(k) <= j (klo - 1 when f(xlo) > j), so
 * f(x) = #{j : key(x) > T_j} for every x in the domain. "Interior" thresholds (klo <= T_j < khi)
 * are the only ones a domain value can fall on either side of; the cells cover
 * [min interior T, max interior T] and keys outside are clamped to the first or last cell. That is
 * exact: below the first interior threshold no comparison can succeed, and every threshold at or
 * above the last cell's start is counted among that cell's comparisons.
 */
#include "qq_stepfn.h"

/* First key in [a, b] (b + 1 if none) whose f exceeds j; f is monotone in the key. */
static uint64_t first_above(uint64_t a, uint64_t b, int j, qq_monotone_fn f, const void *ctx)
{
    uint64_t lo = a, hi = b + 1;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (f(ctx, qq_okey_float((uint32_t)mid)) > j)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Fills the table for 2^cbits cells; returns the most thresholds found inside one cell. */
static int fill_cells(qq_stepfn *s, const uint32_t *t, uint32_t khi, int cbits)
{
    uint32_t span = s->hi - s->lo;
    int shift = 0;
    while (shift < 32 && (span >> shift) >= (1u << cbits))
        shift++;
    s->shift = shift;
    uint32_t cells = (span >> shift) + 1;
    int j = 0, most = 0;
    for (uint32_t i = 0; i < cells; i++) {
        uint64_t start = (uint64_t)s->lo + ((uint64_t)i << shift), end = start + ((uint64_t)1 << shift);
        while (j < s->m && t[j] < start)
            j++;
        s->lut[i] = (uint8_t)j;
        int in = 0;
        for (int k = j; k < s->m && t[k] < end; k++)
            in += t[k] < khi; /* T = khi is never exceeded by a domain key */
        most = in > most ? in : most;
    }
    for (uint32_t i = cells; i < QQ_STEP_CELLS + 4; i++)
        s->lut[i] = s->lut[cells - 1];
    return most;
}

int qq_stepfn_build(qq_stepfn *s, int m, float xlo, float xhi, qq_monotone_fn f, const void *ctx)
{
    uint32_t klo = qq_okey(xlo), khi = qq_okey(xhi), t[256];
    if (m < 0 || m > 255 || klo > khi)
        return -1;
    s->m = m;
    s->xlo = xlo;
    s->xhi = xhi;
    s->lo = khi;
    s->hi = klo;
    for (int j = 0; j < m; j++) {
        t[j] = (uint32_t)(first_above(klo, khi, j, f, ctx) - 1); /* klo - 1 or khi possible */
        s->thr[j] = (int32_t)(t[j] ^ 0x80000000u);
        if (t[j] >= klo && t[j] < khi) { /* interior */
            s->lo = t[j] < s->lo ? t[j] : s->lo;
            s->hi = t[j] > s->hi ? t[j] : s->hi;
        }
    }
    for (int j = m; j < (int)(sizeof s->thr / sizeof s->thr[0]); j++)
        s->thr[j] = INT32_MAX;
    if (s->lo > s->hi) /* no interior threshold: f is constant on the domain */
        s->lo = s->hi = klo;
    /* the smallest table whose cells hold at most two thresholds each, if one does */
    int most = 0;
    for (int cbits = 8; cbits <= 16; cbits++)
        if ((most = fill_cells(s, t, khi, cbits)) <= 2)
            break;
    s->steps = most;
    return most <= QQ_STEP_MAX ? 0 : -1;
}

/* One sign's cells: cell i covers |x| bits [mag_lo + i 2^shift, + 2^shift), the first also every
 * smaller magnitude and the last every larger one in the domain, so clamping is exact; f is
 * monotone in |x| within a sign, so a cell whose two ends have the same f has it throughout. The
 * ends are evaluated in the domain only; a cell (or sign) outside the domain is flagged. */
static void fill_sign(qq_valtab *t, const qq_stepfn *s, const float *values, uint32_t sign)
{
    float top = sign ? -s->xlo : s->xhi; /* the largest magnitude of this sign in the domain */
    for (uint32_t i = 0; i < (uint32_t)t->cells; i++) {
        uint64_t a = (uint64_t)t->mag_lo + ((uint64_t)i << t->shift), b = a + ((uint64_t)1 << t->shift) - 1;
        a = i == 0 ? 0 : a;
        b = i == (uint32_t)t->cells - 1 || b >= t->mag_hi ? 0x7F7FFFFFu : b;
        uint64_t *e = &t->e[sign * (uint32_t)t->cells + i];
        if (!(top >= 0.0f) || a > (uint64_t)qq_bits(top)) {
            *e = 1u << 8; /* never met: flagged */
            continue;
        }
        b = b < qq_bits(top) ? b : qq_bits(top);
        uint32_t sb = sign << 31;
        int fa = qq_stepfn_eval(s, qq_float(sb | (uint32_t)a)), fb = qq_stepfn_eval(s, qq_float(sb | (uint32_t)b));
        *e = (uint64_t)qq_bits(values[fa]) << 32 | (uint64_t)(fa != fb) << 8 | (uint64_t)fa;
    }
}

void qq_valtab_build(qq_valtab *t, const qq_stepfn *s, const float *values, int min_binades, int cells)
{
    t->cells = cells >= 2 && cells <= QQ_VAL_CELLS && !(cells & (cells - 1)) ? cells : QQ_VAL_CELLS;
    float top = s->xhi > -s->xlo ? s->xhi : -s->xlo;
    uint32_t hi = qq_bits(top), lo = hi > ((uint32_t)min_binades << 23) ? hi - ((uint32_t)min_binades << 23) : 0;
    t->mag_lo = lo;
    t->mag_hi = hi;
    t->shift = 0;
    while (t->shift < 31 && ((hi - lo) >> t->shift) >= (uint32_t)t->cells)
        t->shift++;
    fill_sign(t, s, values, 0);
    fill_sign(t, s, values, 1);
}
