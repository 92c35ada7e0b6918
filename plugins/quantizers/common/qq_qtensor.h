/* qq_qtensor.h - output tensors of a grid quantizer (internal to the quantizer plugins).
 *
 * linear and gptq both emit integer codes on a uniform grid per group (tensor, channel or block):
 * codes in w's shape, one F32 scale per group and, for an asymmetric grid, one I32 zero point per
 * group (qh_quant.h describes the representation). */
#ifndef QQ_QTENSOR_H
#define QQ_QTENSOR_H

#include <stdbool.h>

#include <qhost/qhost.h>

/* Allocates q's codes (code_dtype, w's shape), scales and, with zero, zero points for `groups`
 * groups; on failure clears q and returns QH_E_NOMEM (err says what could not be allocated). */
static inline qh_status qq_alloc_grid(qh_qtensor *q, qh_dtype code_dtype, const qh_tensor *w, int64_t groups, bool zero,
                                      qh_error *err)
{
    q->codes = qh_tensor_new(code_dtype, w->ndim, w->shape, err);
    q->scale = q->codes ? qh_tensor_new(QH_F32, 1, &groups, err) : NULL;
    if (q->scale && zero)
        q->zero = qh_tensor_new(QH_I32, 1, &groups, err);
    if (!q->codes || !q->scale || (zero && !q->zero)) {
        qh_qtensor_clear(q);
        return QH_E_NOMEM;
    }
    return QH_OK;
}

#endif /* QQ_QTENSOR_H */
