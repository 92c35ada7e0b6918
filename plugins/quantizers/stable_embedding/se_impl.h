/* se_impl.h - internals of the stable_embedding quantizer shared by its files:
 * stable_embedding.c (parameters, checks, outputs), se_run.c (the code of normalized values, the
 * reference sort and encoding, the choice of path), se_fast.c (the fast sort-free ranking and
 * encoding of canonical mode, byte-identical to the reference). */
#ifndef QH_SE_IMPL_H
#define QH_SE_IMPL_H

#include <stdint.h>

#include "../dynamic_tree/dtcode.h"
#include "../fp8/fp8code.h"
#include "qhost/qh_plugin.h"
#include "../common/qq_stepfn.h"

typedef struct se_cfg {
    int64_t bits;
    int code, mode;
    int64_t group;
} se_cfg;

enum { SE_CODE_DT = 0, SE_CODE_FP8 };
enum { SE_MODE_CANONICAL = 0, SE_MODE_SEED001 };

/* The code of normalized values: 0 bnb map, 1 OCP E4M3, 2 seed DT, 3 seed FP8. */
enum { SE_K_BNB = 0, SE_K_OCP, SE_K_SEED_DT, SE_K_SEED_FP8 };

typedef struct se_coder {
    int kind, bits, n;
    float book[DT_SEED_MAX];
    double mid[DT_SEED_MAX];
    const fp8_format *fmt;
    int fast_ok;       /* bnb with the step table built, or OCP: the fast encoders may run */
    qq_stepfn nearest; /* bnb: code of v in [-1, 1] = dt_nearest(mid, n, v) */
    qq_valtab table;   /* bnb: code and map value together, for most v */
} se_coder;

/* A coder for cfg, or NULL when out of memory. Free with free(). */
se_coder *se_coder_new(const se_cfg *cfg);
/* Scale of a group with absmax a; 0 only for seed FP8's all-zero groups (its book has no zero). */
float se_coder_scale(const se_coder *c, float a);
/* Code of v = w / scale (reference). */
int se_coder_encode(const se_coder *c, float v);

/* Sorting segments and group size: sort within segments of seg elements, groups of `group`
 * positions. Canonical mode: one segment; seed001: per conv slice, or groups of out_features. */
typedef struct se_plan {
    int64_t n, seg, group;
} se_plan;

se_plan se_make_plan(const se_cfg *cfg, const qh_tensor *w);

/* Where one tensor's results go: codes (U8, or I16 for seed001's dynamic tree), scale (one per
 * group), perm (one per element), deq (NULL: codes only). */
typedef struct se_out {
    void *codes;
    float *scale;
    int32_t *perm;
    float *deq;
} se_out;

/* Working memory the fast path keeps between calls (the plugin's state holds one). */
typedef struct se_scratch {
    uint16_t *low;
    uint32_t *rank;
    int64_t cap;
} se_scratch;

void se_scratch_free(se_scratch *s);

enum { SE_OK = 0, SE_NOT_FINITE, SE_NOMEM };
/* Quantizes w (F32, finite-checked here) into o: the reference (fast = 0) or the fast path where
 * it applies (one segment, canonical codes); same bytes. scratch may be NULL. */
int se_run(const se_cfg *cfg, const qh_tensor *w, const se_out *o, int fast, se_scratch *scratch);

/* The fast path (se_fast.c): one segment of n elements, groups of g. */
int se_fast(const se_coder *c, const float *x, int64_t n, int64_t g, const se_out *o, se_scratch *scratch);

#endif /* QH_SE_IMPL_H */
