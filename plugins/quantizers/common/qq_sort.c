/* qq_sort.c - parallel sort of ordered float keys (see qq_sort.h). */
#include "qq_sort.h"

#include <stdlib.h>
#include <string.h>

#include "qhost/qh_parallel.h"
#include "qq_mem.h"
#include "qq_simd.h"
#include "qq_threads.h"

enum { NB = QQ_SORT_BUCKETS, SMALL = 48 };

static int skipped(uint32_t key, int skip_zero) { return skip_zero && (key == 0x7FFFFFFFu || key == 0x80000000u); }

/* Stable LSD radix sort of v[0..c) on the low 16 bits (two 8-bit passes through tmp). */
static void sort_low16(uint32_t *v, uint32_t *tmp, int64_t c)
{
    if (c <= SMALL) {
        for (int64_t i = 1; i < c; i++) {
            uint32_t t = v[i];
            int64_t j = i;
            for (; j > 0 && v[j - 1] > t; j--)
                v[j] = v[j - 1];
            v[j] = t;
        }
        return;
    }
    int64_t ca[257] = {0}, cb[257] = {0};
    for (int64_t i = 0; i < c; i++) {
        ca[(v[i] & 0xFF) + 1]++;
        cb[((v[i] >> 8) & 0xFF) + 1]++;
    }
    for (int i = 0; i < 256; i++) {
        ca[i + 1] += ca[i];
        cb[i + 1] += cb[i];
    }
    for (int64_t i = 0; i < c; i++)
        tmp[ca[v[i] & 0xFF]++] = v[i];
    for (int64_t i = 0; i < c; i++)
        v[cb[(tmp[i] >> 8) & 0xFF]++] = tmp[i];
}

int qq_sort_keys(const float *x, int64_t n, int skip_zero, qq_sorted *out)
{
    int T = qh_threads();
    memset(out, 0, sizeof *out);
    int64_t *hist = malloc(sizeof(int64_t) * NB * (size_t)T);
    out->start = malloc(sizeof(int64_t) * (NB + 1));
    out->key = qq_alloc_huge(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1)); /* scattered into by bucket */
    uint32_t **tmp = calloc((size_t)T, sizeof *tmp);
    int64_t most = 0;
    int ok = hist && out->start && out->key && tmp;
#pragma omp parallel num_threads(T) if (ok && T > 1)
    if (ok) {
        int t = qq_thread_id(), nt = qq_thread_count();
        int64_t a = n * t / nt, b = n * (t + 1) / nt, *h = hist + (size_t)t * NB;
        memset(h, 0, sizeof(int64_t) * NB);
        for (int64_t i = a; i < b; i++) {
            uint32_t k = qq_okey(x[i]);
            h[k >> 16] += !skipped(k, skip_zero);
        }
#pragma omp barrier
#pragma omp single
        { /* bucket starts; each thread's offsets, threads in index order */
            int64_t pos = 0;
            for (int bk = 0; bk < NB; bk++) {
                out->start[bk] = pos;
                for (int u = 0; u < nt; u++) {
                    int64_t c = hist[(size_t)u * NB + bk];
                    hist[(size_t)u * NB + bk] = pos;
                    pos += c;
                }
                most = pos - out->start[bk] > most ? pos - out->start[bk] : most;
            }
            out->start[NB] = out->count = pos;
        }
        for (int64_t i = a; i < b; i++) {
            uint32_t k = qq_okey(x[i]);
            if (!skipped(k, skip_zero))
                out->key[h[k >> 16]++] = k;
        }
        tmp[t] = malloc(sizeof(uint32_t) * (size_t)(most > 0 ? most : 1));
        if (!tmp[t]) {
#pragma omp atomic write
            ok = 0;
        }
#pragma omp barrier
        if (ok) {
#pragma omp for schedule(dynamic, 64)
            for (int bk = 0; bk < NB; bk++)
                sort_low16(out->key + out->start[bk], tmp[t], out->start[bk + 1] - out->start[bk]);
        }
    }
    for (int t = 0; tmp && t < T; t++)
        free(tmp[t]);
    free(tmp);
    free(hist);
    if (!ok) {
        qq_sorted_free(out);
        return -1;
    }
    return 0;
}

void qq_sorted_free(qq_sorted *s)
{
    free(s->key);
    free(s->start);
    memset(s, 0, sizeof *s);
}

int64_t qq_sorted_lower_bound(const qq_sorted *s, uint32_t k)
{
    int64_t lo = s->start[k >> 16], hi = s->start[(k >> 16) + 1]; /* every earlier bucket is below k */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->key[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}
