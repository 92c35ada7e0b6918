/* qh_qtensor.c - the quantized-tensor representation: group counting, storage size, reference decoder.
 *
 * Group of element i (row-major flat index) for each granularity:
 *   TENSOR:  0
 *   CHANNEL: (i / inner) % shape[axis], inner = product of the dimensions after `axis`
 *   BLOCK:   row * ceil(cols / block) + (i % cols) / block, cols = the last dimension
 *   FLAT_BLOCK: i / block, or perm[i] / block when a permutation is present
 * A trailing partial block counts as a group of its own, so the formula also covers shapes whose
 * last dimension is not a multiple of `block` (quantizers may still refuse such shapes).
 */
#include "qhost/qh_quant.h"

#include <stdlib.h>
#include <string.h>

void qh_qtensor_clear(qh_qtensor *q)
{
    if (!q)
        return;
    qh_tensor_free(q->codes);
    qh_tensor_free(q->scale);
    qh_tensor_free(q->zero);
    qh_tensor_free(q->codebook);
    qh_tensor_free(q->perm);
    memset(q, 0, sizeof *q);
}

/* Elements in one row (the last dimension); a scalar is one row of one element. */
static int64_t last_dim(const qh_tensor *w) { return w->ndim > 0 ? w->shape[w->ndim - 1] : 1; }

static int64_t inner_size(const qh_tensor *w, int32_t axis)
{
    int64_t inner = 1;
    for (int32_t d = axis + 1; d < w->ndim; d++)
        inner *= w->shape[d];
    return inner;
}

int64_t qh_qtensor_groups(const qh_qtensor *q, const qh_tensor *w)
{
    if (!q)
        return 0;
    if (!w)
        w = q->codes;
    if (!w)
        return 0;
    switch (q->gran) {
    case QH_QG_TENSOR:
        return 1;
    case QH_QG_CHANNEL:
        if (q->axis < 0 || q->axis >= w->ndim)
            return 0;
        return w->shape[q->axis];
    case QH_QG_BLOCK: {
        int64_t cols = last_dim(w);
        if (q->block <= 0 || cols <= 0)
            return 0;
        int64_t rows = qh_tensor_numel(w) / cols;
        return rows * ((cols + q->block - 1) / q->block);
    }
    case QH_QG_FLAT_BLOCK:
        if (q->block <= 0)
            return 0;
        return (qh_tensor_numel(w) + q->block - 1) / q->block;
    }
    return 0;
}

/* Bits needed to address n positions: ceil(log2(n)), 0 for n <= 1. */
static int64_t index_bits(int64_t n)
{
    int64_t b = 0;
    while (b < 63 && ((int64_t)1 << b) < n)
        b++;
    return b;
}

/* Codes are counted packed at `bits` per element, rounded up to whole bytes once per tensor (the
 * export layout); scales, zero points and code-book entries are 4 bytes each (F32 / I32), whatever
 * dtype the in-memory tensor uses, so every quantizer is measured on the same scale. A fixed
 * (published) code book is not counted; permutation indices are packed at ceil(log2(numel)) bits,
 * rounded up to whole bytes once per tensor. */
int64_t qh_qtensor_bytes(const qh_qtensor *q)
{
    if (!q)
        return 0;
    int64_t bytes = 0;
    if (q->codes)
        bytes += (qh_tensor_numel(q->codes) * q->bits + 7) / 8;
    if (q->scale)
        bytes += 4 * qh_tensor_numel(q->scale);
    if (q->zero)
        bytes += 4 * qh_tensor_numel(q->zero);
    if (q->codebook && !q->book_fixed)
        bytes += 4 * qh_tensor_numel(q->codebook);
    if (q->perm) {
        int64_t n = qh_tensor_numel(q->perm);
        bytes += (n * index_bits(n) + 7) / 8;
    }
    return bytes;
}

static int code_dtype_ok(qh_dtype dt)
{
    return dt == QH_I8 || dt == QH_U8 || dt == QH_I16 || dt == QH_U16 || dt == QH_I32;
}

static int64_t code_at(const qh_tensor *c, int64_t i)
{
    switch (c->dtype) {
    case QH_I8: return ((const int8_t *)c->data)[i];
    case QH_U8: return ((const uint8_t *)c->data)[i];
    case QH_I16: return ((const int16_t *)c->data)[i];
    case QH_U16: return ((const uint16_t *)c->data)[i];
    default: return ((const int32_t *)c->data)[i];
    }
}

static int64_t group_of(const qh_qtensor *q, int64_t i, int64_t inner, int64_t cols, int64_t nblk,
                        const int32_t *perm)
{
    switch (q->gran) {
    case QH_QG_CHANNEL: return (i / inner) % q->codes->shape[q->axis];
    case QH_QG_BLOCK: return (i / cols) * nblk + (i % cols) / q->block;
    case QH_QG_FLAT_BLOCK: return (perm ? perm[i] : i) / q->block;
    default: return 0;
    }
}

static int same_shape(const qh_tensor *a, const qh_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int32_t d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

static qh_status check_param(const qh_tensor *t, qh_dtype dt, int64_t want, const char *what, qh_error *err)
{
    if (t->dtype != dt)
        return qh_error_set(err, QH_E_INVAL, "qtensor %s has dtype %s, expected %s", what,
                            qh_dtype_name(t->dtype), qh_dtype_name(dt));
    if (qh_tensor_numel(t) != want)
        return qh_error_set(err, QH_E_INVAL, "qtensor %s has %lld entries, expected %lld", what,
                            (long long)qh_tensor_numel(t), (long long)want);
    return QH_OK;
}

/* A permutation only makes sense with flat blocks and must be a bijection of [0, numel). */
static qh_status check_perm(const qh_qtensor *q, qh_error *err)
{
    int64_t n = qh_tensor_numel(q->codes);
    if (q->gran != QH_QG_FLAT_BLOCK)
        return qh_error_set(err, QH_E_INVAL, "qtensor permutation needs flat-block granularity");
    qh_status st = check_param(q->perm, QH_I32, n, "perm", err);
    if (st != QH_OK)
        return st;
    uint8_t *seen = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!seen)
        return qh_error_set(err, QH_E_NOMEM, "out of memory checking a permutation of %lld", (long long)n);
    const int32_t *p = q->perm->data;
    for (int64_t i = 0; i < n && st == QH_OK; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]])
            st = qh_error_set(err, QH_E_INVAL, "qtensor perm[%lld] = %d is not a permutation entry", (long long)i,
                              p[i]);
        else
            seen[p[i]] = 1;
    }
    free(seen);
    return st;
}

static qh_status check_qtensor(const qh_qtensor *q, const qh_tensor *out, qh_error *err)
{
    if (!q || !q->codes || !out)
        return qh_error_set(err, QH_E_INVAL, "qtensor without codes");
    if (!code_dtype_ok(q->codes->dtype))
        return qh_error_set(err, QH_E_INVAL, "qtensor codes have unsupported dtype %s",
                            qh_dtype_name(q->codes->dtype));
    if (out->dtype != QH_F32 || !same_shape(out, q->codes))
        return qh_error_set(err, QH_E_INVAL, "dequantize output must be F32 of the codes' shape");
    int64_t groups = qh_qtensor_groups(q, q->codes);
    if (groups <= 0 && qh_tensor_numel(q->codes) > 0)
        return qh_error_set(err, QH_E_INVAL, "qtensor has an invalid granularity (axis %d, block %d)",
                            q->axis, q->block);
    if (!q->scale && !q->codebook)
        return qh_error_set(err, QH_E_INVAL, "qtensor has neither scales nor a code book");
    qh_status st = QH_OK;
    if (q->scale)
        st = check_param(q->scale, QH_F32, groups, "scale", err);
    if (st == QH_OK && q->zero)
        st = check_param(q->zero, QH_I32, groups, "zero", err);
    if (st == QH_OK && q->codebook && q->codebook->dtype != QH_F32)
        st = qh_error_set(err, QH_E_INVAL, "qtensor code book must be F32");
    if (st == QH_OK && q->perm)
        st = check_perm(q, err);
    return st;
}

/* Code-book indices must fall inside the book; checked before decoding so out is untouched on error. */
static qh_status check_indices(const qh_qtensor *q, qh_error *err)
{
    int64_t n = qh_tensor_numel(q->codes), levels = qh_tensor_numel(q->codebook);
    for (int64_t i = 0; i < n; i++) {
        int64_t c = code_at(q->codes, i);
        if (c < 0 || c >= levels)
            return qh_error_set(err, QH_E_INVAL, "code %lld at element %lld outside the %lld-entry code book",
                                (long long)c, (long long)i, (long long)levels);
    }
    return QH_OK;
}

/* The decode expressions below are the definition of "the real value": quantizers that also write
 * dequantized values must use exactly scale * (float)(code - zero) so both agree bit for bit. */
qh_status qh_qtensor_dequantize(const qh_qtensor *q, qh_tensor *out, qh_error *err)
{
    qh_status st = check_qtensor(q, out, err);
    if (st == QH_OK && q->codebook)
        st = check_indices(q, err);
    if (st != QH_OK)
        return st;
    const qh_tensor *c = q->codes;
    int64_t n = qh_tensor_numel(c);
    int64_t inner = q->gran == QH_QG_CHANNEL ? inner_size(c, q->axis) : 1;
    int64_t cols = last_dim(c);
    int64_t nblk = q->gran == QH_QG_BLOCK ? (cols + q->block - 1) / q->block : 1;
    const int32_t *perm = q->perm ? (const int32_t *)q->perm->data : NULL;
    const float *scale = q->scale ? qh_tensor_f32(q->scale) : NULL;
    const int32_t *zero = q->zero ? (const int32_t *)q->zero->data : NULL;
    const float *book = q->codebook ? qh_tensor_f32(q->codebook) : NULL;
    float *o = qh_tensor_f32(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        int64_t g = group_of(q, i, inner, cols, nblk, perm);
        int64_t code = code_at(c, i);
        if (book)
            o[i] = scale ? book[code] * scale[g] : book[code];
        else
            o[i] = scale[g] * (float)(code - (zero ? zero[g] : 0));
    }
    return QH_OK;
}
