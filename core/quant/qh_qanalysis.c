/* qh_qanalysis.c - error and size analysis of a quantized tensor, for every quantizer.
 *
 * Error sums run over fixed chunks of CHUNK elements (each summed in element order, in double) that
 * are then added in chunk order: the same bits for any thread count. Levels are the distinct code
 * values present in the codes tensor (raw element values, so it works for any code dtype). The
 * byte split follows qh_qtensor_bytes; what it counts beyond codes, scales, zero points and a code
 * book is the permutation, so the five parts always add up to the total.
 */
#include "qhost/qh_quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK = 1 << 15 };

typedef struct part {
    double sq_err, abs_err, sq;
} part;

static part chunk_sums(const float *w, const float *q, int64_t n)
{
    part p = {0.0, 0.0, 0.0};
    for (int64_t i = 0; i < n; i++) {
        double d = (double)w[i] - (double)q[i];
        p.sq_err += d * d;
        p.abs_err += fabs(d);
        p.sq += (double)w[i] * (double)w[i];
    }
    return p;
}

static qh_status error_sums(const float *w, const float *q, int64_t n, qh_qanalysis *a, qh_error *err)
{
    int64_t nch = (n + CHUNK - 1) / CHUNK;
    part *parts = malloc(sizeof(part) * (size_t)(nch + 1));
    if (!parts)
        return qh_error_set(err, QH_E_NOMEM, "out of memory analysing %lld elements", (long long)n);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < nch; c++)
        parts[c] = chunk_sums(w + c * CHUNK, q + c * CHUNK, n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK);
    for (int64_t c = 0; c < nch; c++) {
        a->sum_sq_err += parts[c].sq_err;
        a->sum_abs_err += parts[c].abs_err;
        a->sum_sq += parts[c].sq;
    }
    free(parts);
    return QH_OK;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return (a > b) - (a < b);
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Distinct values among n elements of `size` bytes: a table for 1 and 2 bytes, a sort otherwise. */
static int64_t distinct(const void *data, int64_t n, size_t size, qh_error *err, qh_status *st)
{
    *st = QH_OK;
    if (n == 0)
        return 0;
    if (size <= 2) {
        uint8_t *seen = calloc(size == 1 ? 256 : 65536, 1);
        if (!seen) {
            *st = qh_error_set(err, QH_E_NOMEM, "out of memory counting levels");
            return 0;
        }
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = size == 1 ? ((const uint8_t *)data)[i] : ((const uint16_t *)data)[i];
            count += !seen[v];
            seen[v] = 1;
        }
        free(seen);
        return count;
    }
    if (size != 4 && size != 8) {
        *st = qh_error_set(err, QH_E_UNSUPPORTED, "codes of %zu-byte elements", size);
        return 0;
    }
    char *copy = malloc(size * (size_t)n);
    if (!copy) {
        *st = qh_error_set(err, QH_E_NOMEM, "out of memory counting levels");
        return 0;
    }
    memcpy(copy, data, size * (size_t)n);
    qsort(copy, (size_t)n, size, size == 4 ? cmp_u32 : cmp_u64);
    int64_t count = 1;
    for (int64_t i = 1; i < n; i++)
        count += memcmp(copy + (size_t)i * size, copy + (size_t)(i - 1) * size, size) != 0;
    free(copy);
    return count;
}

static void byte_split(const qh_qtensor *q, qh_qanalysis *a)
{
    a->bytes_codes = q->codes ? (qh_tensor_numel(q->codes) * q->bits + 7) / 8 : 0;
    a->bytes_scales = q->scale ? 4 * qh_tensor_numel(q->scale) : 0;
    a->bytes_zero = q->zero ? 4 * qh_tensor_numel(q->zero) : 0;
    a->bytes_codebook = q->codebook && !q->book_fixed ? 4 * qh_tensor_numel(q->codebook) : 0;
    a->bytes = qh_qtensor_bytes(q);
    a->bytes_perm = a->bytes - a->bytes_codes - a->bytes_scales - a->bytes_zero - a->bytes_codebook;
}

/* mse, mae, sqnr and compression from the sums and sizes. */
static void derive(qh_qanalysis *a)
{
    a->mse = a->numel ? a->sum_sq_err / (double)a->numel : 0.0;
    a->mae = a->numel ? a->sum_abs_err / (double)a->numel : 0.0;
    if (a->sum_sq_err == 0.0)
        a->sqnr_db = INFINITY;
    else if (a->sum_sq == 0.0)
        a->sqnr_db = -INFINITY;
    else
        a->sqnr_db = 10.0 * log10(a->sum_sq / a->sum_sq_err);
    a->compression = a->bytes > 0 ? 4.0 * (double)a->numel / (double)a->bytes : 0.0;
}

static qh_status check(const qh_tensor *w, const qh_qtensor *q, const qh_tensor *deq, qh_error *err)
{
    if (!w || !q || !q->codes || w->dtype != QH_F32)
        return qh_error_set(err, QH_E_INVAL, "analysis needs F32 weights and a qtensor with codes");
    int64_t n = qh_tensor_numel(w);
    if (qh_tensor_numel(q->codes) != n)
        return qh_error_set(err, QH_E_INVAL, "analysis of %s: %lld codes for %lld weights", w->name,
                            (long long)qh_tensor_numel(q->codes), (long long)n);
    if (deq && (deq->dtype != QH_F32 || qh_tensor_numel(deq) != n))
        return qh_error_set(err, QH_E_INVAL, "analysis of %s: dequantized values must be F32 with %lld elements",
                            w->name, (long long)n);
    return QH_OK;
}

qh_status qh_qanalysis_compute(const qh_tensor *w, const qh_qtensor *q, const qh_tensor *deq, qh_qanalysis *a,
                               qh_error *err)
{
    memset(a, 0, sizeof *a);
    qh_status st = check(w, q, deq, err);
    if (st != QH_OK)
        return st;
    qh_tensor *own = NULL;
    if (!deq) {
        if (!(own = qh_tensor_new(QH_F32, q->codes->ndim, q->codes->shape, err)))
            return QH_E_NOMEM;
        if ((st = qh_qtensor_dequantize(q, own, err)) != QH_OK) {
            qh_tensor_free(own);
            return st;
        }
        deq = own;
    }
    a->numel = qh_tensor_numel(w);
    st = error_sums(qh_tensor_f32(w), qh_tensor_f32(deq), a->numel, a, err);
    qh_tensor_free(own);
    if (st == QH_OK)
        a->levels = distinct(q->codes->data, a->numel, qh_dtype_size(q->codes->dtype), err, &st);
    if (st != QH_OK)
        return st;
    byte_split(q, a);
    derive(a);
    return QH_OK;
}

void qh_qanalysis_add(qh_qanalysis *total, const qh_qanalysis *a)
{
    total->numel += a->numel;
    total->sum_sq_err += a->sum_sq_err;
    total->sum_abs_err += a->sum_abs_err;
    total->sum_sq += a->sum_sq;
    total->levels = a->levels > total->levels ? a->levels : total->levels;
    total->bytes_codes += a->bytes_codes;
    total->bytes_scales += a->bytes_scales;
    total->bytes_zero += a->bytes_zero;
    total->bytes_codebook += a->bytes_codebook;
    total->bytes_perm += a->bytes_perm;
    total->bytes += a->bytes;
    derive(total);
}
