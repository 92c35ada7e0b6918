/* qq_sort.h - sorting the ordered keys of a float tensor (internal, shared by the quantizers).
 *
 * qq_sort_keys writes the ordered keys (qq_okey) of the selected elements of x in ascending order,
 * and the start of every 16-bit bucket (key >> 16) in that output, which later searches use to
 * narrow a lower_bound to one bucket. An MSD counting partition on the top 16 bits (per-thread
 * histograms over contiguous ranges, then a scatter) is followed by an in-cache LSD radix sort of
 * each bucket on the low 16 bits; the output is a sorted array, so it is the same for any thread
 * count.
 */
#ifndef QQ_SORT_H
#define QQ_SORT_H

#include <stdint.h>

#define QQ_SORT_BUCKETS 65536

typedef struct qq_sorted {
    uint32_t *key;     /* ascending, count entries */
    int64_t count;
    int64_t *start;    /* [QQ_SORT_BUCKETS + 1]: bucket b's keys are key[start[b] .. start[b + 1]) */
} qq_sorted;

/* Sorts the keys of x[0..n) (skip_zero: leaving out +0 and -0). Returns 0, or -1 out of memory. */
int qq_sort_keys(const float *x, int64_t n, int skip_zero, qq_sorted *out);
void qq_sorted_free(qq_sorted *s);
/* Number of sorted keys below k. */
int64_t qq_sorted_lower_bound(const qq_sorted *s, uint32_t k);

#endif /* QQ_SORT_H */
