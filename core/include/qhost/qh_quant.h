/* qh_quant.h - the one quantized-tensor representation every consumer understands.
 *
 * codes holds one integer per weight element, unpacked, in the weight's shape (I8 / U8 for up to 8
 * bits, I16 up to 16, I32 for code-book indices or wider); sub-byte packing happens only at export
 * (two 4-bit codes per byte, low nibble first). The real value of element i in group g is
 *     scale[g] * (codes[i] - zero[g])          (zero absent = symmetric = 0), or
 *     codebook[codes[i]] * (scale ? scale[g] : 1)   when a code book is present.
 * Groups: the whole tensor, one per index of `axis`, blocks of `block` consecutive elements
 * along the last dimension within each row, or blocks of the flattened (optionally permuted) tensor.
 */
#ifndef QH_QUANT_H
#define QH_QUANT_H

#include <stdint.h>

#include "qh_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qh_qgran {
    QH_QG_TENSOR = 0, /* one group */
    QH_QG_CHANNEL,    /* one group per index along axis (0 = output channel / row) */
    QH_QG_BLOCK,      /* groups of `block` consecutive elements of each row */
    /* groups of `block` consecutive elements of the flattened tensor (row-major; the last group may be
     * partial), as bitsandbytes' block-wise quantization; with `perm`, of the permuted sequence */
    QH_QG_FLAT_BLOCK
} qh_qgran;

typedef struct qh_qtensor {
    int32_t bits;        /* code width in bits (2..16) */
    qh_qgran gran;
    int32_t axis;        /* QH_QG_CHANNEL */
    int32_t block;       /* QH_QG_BLOCK */
    qh_tensor *codes;    /* integer codes, weight's shape */
    qh_tensor *scale;    /* F32 [groups] or NULL */
    qh_tensor *zero;     /* I32 [groups] or NULL (symmetric) */
    qh_tensor *codebook; /* F32 [levels] or NULL */
    /* I32 [numel] or NULL. With QH_QG_FLAT_BLOCK: element i (row-major flat index) sits at position
     * perm[i] of the grouped sequence, so its group is perm[i] / block (stable embedding: the order by
     * magnitude). codes stay at the elements' own positions. Counted at ceil(log2(numel)) bits each. */
    qh_tensor *perm;
    /* 1: the code book is a fixed published table (OCP FP8, the bitsandbytes dynamic map) that a reader
     * rebuilds from the format's name, so qh_qtensor_bytes does not count it; 0: counted. */
    int32_t book_fixed;
} qh_qtensor;

/* Frees the tensors a qtensor owns and zeroes it. */
void qh_qtensor_clear(qh_qtensor *q);
/* Number of groups implied by gran/axis/block for weight w. */
int64_t qh_qtensor_groups(const qh_qtensor *q, const qh_tensor *w);
/* Bytes the quantized form needs: packed codes + scales + zero points + code book. */
int64_t qh_qtensor_bytes(const qh_qtensor *q);
/* Decodes q into out (F32, same shape as q->codes). Reference decoder used by reports and tests. */
qh_status qh_qtensor_dequantize(const qh_qtensor *q, qh_tensor *out, qh_error *err);

/* ---- analysis: error and size of one quantized tensor against its original weights, the same for
 * every quantizer (in-tree or third party). Sums are doubles accumulated in fixed chunks of elements,
 * combined in chunk order, so the numbers do not depend on the thread count. */
typedef struct qh_qanalysis {
    int64_t numel;
    double sum_sq_err;  /* sum (w - q)^2 */
    double sum_abs_err; /* sum |w - q| */
    double sum_sq;      /* sum w^2 */
    double mse, mae;    /* the two sums over numel (0 for an empty tensor) */
    double sqnr_db;     /* 10 log10(sum w^2 / sum (w - q)^2); +INFINITY when the error is 0 (exact),
                         * -INFINITY when the weights are all 0 but the error is not; JSON writes null */
    int64_t levels;     /* distinct code values used (at most 2^bits); for a total: the largest */
    int64_t bytes_codes, bytes_scales, bytes_zero, bytes_codebook; /* as qh_qtensor_bytes counts them */
    int64_t bytes_perm; /* the rest of qh_qtensor_bytes: permutation indices */
    int64_t bytes;      /* qh_qtensor_bytes(q), the sum of the five parts */
    double compression; /* fp32 bytes (4 * numel) / bytes; 0 when bytes is 0 */
} qh_qanalysis;

/* Analyses q against the original weights w (F32). deq: q's dequantized values (F32, w's shape), or
 * NULL to decode q with qh_qtensor_dequantize. */
qh_status qh_qanalysis_compute(const qh_tensor *w, const qh_qtensor *q, const qh_tensor *deq, qh_qanalysis *a,
                               qh_error *err);
/* Adds layer a into total (zero-initialized first) and recomputes total's derived fields. */
void qh_qanalysis_add(qh_qanalysis *total, const qh_qanalysis *a);

#ifdef __cplusplus
}
#endif
#endif /* QH_QUANT_H */
