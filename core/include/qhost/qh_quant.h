/* qh_quant.h - the one quantized-tensor representation every consumer understands.
 *
 * codes holds one integer per weight element, unpacked, in the weight's shape (I8 / U8 for up to 8
 * bits, I16 up to 16, I32 for code-book indices or wider); sub-byte packing happens only at export
 * (two 4-bit codes per byte, low nibble first). The real value of element i in group g is
 *     scale[g] * (codes[i] - zero[g])          (zero absent = symmetric = 0), or
 *     codebook[codes[i]] * (scale ? scale[g] : 1)   when a code book is present.
 * Groups: the whole tensor, one per index of `axis`, or blocks of `block` consecutive elements
 * along the last dimension within each row.
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
    QH_QG_BLOCK       /* groups of `block` consecutive elements of each row */
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
} qh_qtensor;

/* Frees the tensors a qtensor owns and zeroes it. */
void qh_qtensor_clear(qh_qtensor *q);
/* Number of groups implied by gran/axis/block for weight w. */
int64_t qh_qtensor_groups(const qh_qtensor *q, const qh_tensor *w);
/* Bytes the quantized form needs: packed codes + scales + zero points + code book. */
int64_t qh_qtensor_bytes(const qh_qtensor *q);
/* Decodes q into out (F32, same shape as q->codes). Reference decoder used by reports and tests. */
qh_status qh_qtensor_dequantize(const qh_qtensor *q, qh_tensor *out, qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_QUANT_H */
