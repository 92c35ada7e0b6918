/* fp8_impl.h - internals of the fp8 quantizer shared by its files: fp8.c (parameters, checks,
 * outputs), fp8_run.c (groups, scales, threading, the reference element loop), fp8_fast.c (the
 * AVX2 OCP encoder, byte-identical to fp8_encode), fp8code.c (the scalar codes). */
#ifndef QH_FP8_IMPL_H
#define QH_FP8_IMPL_H

#include <stdint.h>

#include "fp8code.h"
#include "qhost/qh_plugin.h"
#include "../common/qq_simd.h"

typedef struct fp8_cfg {
    int format, granularity, mode;
    int64_t block;
} fp8_cfg;

enum { FP8_GRAN_TENSOR = 0, FP8_GRAN_CHANNEL, FP8_GRAN_ROW, FP8_GRAN_BLOCK };
enum { FP8_MODE_OCP = 0, FP8_MODE_SEED001 };

/* Contiguous groups: group g covers [start(g), start(g) + len(g)). nblk == 0: equal groups of len. */
typedef struct fp8_layout {
    int64_t groups, len, cols, nblk, block;
} fp8_layout;

/* The layout for w, and q's gran / axis / block to match. */
fp8_layout fp8_make_layout(const fp8_cfg *cfg, const qh_tensor *w, qh_qtensor *q);
/* The code book of cfg's mode into book[256]; returns its length (256, or the seed's 240 / 248). */
int fp8_make_book(const fp8_cfg *cfg, float *book);

/* Where one tensor's results go: codes (one per element), scale (one per group), deq (NULL: codes
 * only); book: fp8_make_book's table (deq = book[code] * scale). */
typedef struct fp8_out {
    uint8_t *codes;
    float *scale, *deq;
    const float *book;
    int nbook;
} fp8_out;

/* Quantizes w (F32) into o with the reference loops (fast = 0) or the fast ones (same bytes).
 * Returns 0, or 1 if some element is not finite (the outputs are then meaningless). */
int fp8_run(const fp8_cfg *cfg, const fp8_layout *L, const qh_tensor *w, const fp8_out *o, int fast);

/* OCP encoding of x[0..n) / s (s > 0): codes and, if deq, book[code] * s. Returns how many
 * leading elements it did (a multiple of 32; the caller finishes the rest). nt: stream deq. */
int64_t fp8_encode_ocp_fast(const float *x, int64_t n, float s, const fp8_format *f, uint8_t *codes, float *deq,
                            int nt);

#endif /* QH_FP8_IMPL_H */
