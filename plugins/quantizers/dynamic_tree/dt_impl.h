/* dt_impl.h - internals of the dynamic_tree quantizer shared by its files: dynamic_tree.c
 * (parameters, checks, outputs, the exponent log), dt_run.c (groups, threading, the reference and
 * fast element loops), dtcode.c (code books and the scalar nearest-code search). */
#ifndef QH_DT_IMPL_H
#define QH_DT_IMPL_H

#include <stdint.h>

#include "dtcode.h"
#include "qhost/qh_plugin.h"
#include "../common/qq_stepfn.h"

typedef struct dt_cfg {
    int64_t bits;
    int granularity, mode;
    int64_t block;
} dt_cfg;

enum { DT_GRAN_BLOCK = 0, DT_GRAN_ROW, DT_GRAN_CHANNEL, DT_GRAN_TENSOR };
enum { DT_MODE_BNB = 0, DT_MODE_SEED001 };

#define DT_MAX_E 8 /* exponent buckets 0..N-1; cnt[DT_MAX_E] counts zero codes */

/* The table of one run: the book plus what lookups need. */
typedef struct dt_coder {
    int bits, mode, n;
    float book[DT_SEED_MAX];
    int8_t expo[256];
    double mid[DT_SEED_MAX];
    /* bnb: codes 0..n-1 form runs of one exponent bucket; run r starts at code run_start[r] */
    int nruns, run_start[2 * DT_MAX_E + 2], run_cat[2 * DT_MAX_E + 2];
    int fast_ok;       /* bnb and the step table built: the fast loop may run */
    qq_stepfn nearest; /* code of v in [-1, 1] = dt_nearest(mid, n, v) */
    qq_valtab table;   /* code and map value together, for most v */
} dt_coder;

/* A coder for cfg (bits 2..8, mode valid), or NULL when out of memory. Free with free(). */
dt_coder *dt_coder_new(const dt_cfg *cfg);

/* Groups: count groups of len elements of the flattened tensor, the last possibly shorter. */
typedef struct dt_groups {
    int64_t n, count, len;
} dt_groups;

/* The groups for w, and q's gran / axis / block to match. */
dt_groups dt_make_groups(const dt_cfg *cfg, const qh_tensor *w, qh_qtensor *q);

/* Where one tensor's results go: codes (U8 for bnb, I16 for seed001), scale (one per group), deq
 * (NULL: codes only), cnt[DT_MAX_E + 1] (codes by exponent bucket, zero codes last). */
typedef struct dt_out {
    void *codes;
    float *scale, *deq;
    int64_t *cnt;
} dt_out;

/* Quantizes w (F32) into o with the reference loops (fast = 0) or the fast ones (same bytes and
 * counts). Returns 0, or 1 if some element is not finite (the outputs are then meaningless). */
int dt_run(const dt_coder *c, const dt_groups *G, const qh_tensor *w, const dt_out *o, int fast);

#endif /* QH_DT_IMPL_H */
