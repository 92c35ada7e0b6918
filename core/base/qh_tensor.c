/* qh_tensor.c - dense tensor allocation and dtype tables. */
#include "qhost/qh_tensor.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [QH_F32] = {"F32", 4},     [QH_F64] = {"F64", 8},         [QH_F16] = {"F16", 2},
    [QH_BF16] = {"BF16", 2},   [QH_F8_E4M3] = {"F8_E4M3", 1}, [QH_F8_E5M2] = {"F8_E5M2", 1},
    [QH_I64] = {"I64", 8},     [QH_I32] = {"I32", 4},         [QH_I16] = {"I16", 2},
    [QH_I8] = {"I8", 1},       [QH_U64] = {"U64", 8},         [QH_U32] = {"U32", 4},
    [QH_U16] = {"U16", 2},     [QH_U8] = {"U8", 1},           [QH_BOOL] = {"BOOL", 1},
};
static_assert(sizeof dtype_table / sizeof dtype_table[0] == QH_DTYPE_COUNT, "every dtype needs a name");

size_t qh_dtype_size(qh_dtype dt) { return (unsigned)dt < QH_DTYPE_COUNT ? dtype_table[dt].size : 0; }

const char *qh_dtype_name(qh_dtype dt) { return (unsigned)dt < QH_DTYPE_COUNT ? dtype_table[dt].name : "?"; }

qh_status qh_dtype_from_name(const char *name, qh_dtype *out)
{
    for (int i = 0; i < QH_DTYPE_COUNT; i++) {
        if (strcmp(dtype_table[i].name, name) == 0) {
            *out = (qh_dtype)i;
            return QH_OK;
        }
    }
    return QH_E_INVAL;
}

void *qh_alloc_aligned(size_t size)
{
    size_t rounded = (size + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    return aligned_alloc(64, rounded);
}

void qh_free_aligned(void *p) { free(p); }

qh_tensor *qh_tensor_new(qh_dtype dt, int32_t ndim, const int64_t *shape, qh_error *err)
{
    if ((unsigned)dt >= QH_DTYPE_COUNT) {
        qh_error_set(err, QH_E_INVAL, "unknown dtype %d", (int)dt);
        return NULL;
    }
    if (ndim < 0 || ndim > QH_MAX_DIMS) {
        qh_error_set(err, QH_E_INVAL, "rank %d outside [0, %d]", ndim, QH_MAX_DIMS);
        return NULL;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && numel > INT64_MAX / 16 / shape[i])) {
            qh_error_set(err, QH_E_INVAL, "bad dimension %lld", (long long)shape[i]);
            return NULL;
        }
        numel *= shape[i];
    }
    qh_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        qh_error_set(err, QH_E_NOMEM, "out of memory");
        return NULL;
    }
    t->dtype = dt;
    t->ndim = ndim;
    int64_t stride = (int64_t)qh_dtype_size(dt);
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = stride;
        stride *= shape[i];
    }
    size_t bytes = (size_t)numel * qh_dtype_size(dt);
    t->data = qh_alloc_aligned(bytes);
    if (!t->data) {
        free(t);
        qh_error_set(err, QH_E_NOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(t->data, 0, bytes);
    return t;
}

qh_tensor *qh_tensor_clone(const qh_tensor *t, qh_error *err)
{
    qh_tensor *c = qh_tensor_new(t->dtype, t->ndim, t->shape, err);
    if (!c)
        return NULL;
    memcpy(c->data, t->data, qh_tensor_nbytes(t));
    qh_tensor_set_name(c, t->name);
    return c;
}

void qh_tensor_free(qh_tensor *t)
{
    if (!t)
        return;
    qh_free_aligned(t->data);
    free(t);
}

void qh_tensor_set_name(qh_tensor *t, const char *name)
{
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

int64_t qh_tensor_numel(const qh_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t qh_tensor_nbytes(const qh_tensor *t) { return (size_t)qh_tensor_numel(t) * qh_dtype_size(t->dtype); }

const char *qh_shape_str(const qh_tensor *t, char *buf, size_t size)
{
    size_t used = 0;
    used += (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

int64_t qh_tensor_count_zeros(const qh_tensor *t)
{
    int64_t n = qh_tensor_numel(t), zeros = 0;
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case QH_F32:
        for (int64_t i = 0; i < n; i++)
            zeros += ((const float *)p)[i] == 0.0f;
        return zeros;
    case QH_F64:
        for (int64_t i = 0; i < n; i++)
            zeros += ((const double *)p)[i] == 0.0;
        return zeros;
    case QH_F16:
    case QH_BF16: /* +0 and -0: all bits but the sign are zero */
        for (int64_t i = 0; i < n; i++)
            zeros += (((const uint16_t *)p)[i] & 0x7fffu) == 0;
        return zeros;
    case QH_F8_E4M3:
    case QH_F8_E5M2:
        for (int64_t i = 0; i < n; i++)
            zeros += (p[i] & 0x7fu) == 0;
        return zeros;
    default: {
        size_t es = qh_dtype_size(t->dtype);
        for (int64_t i = 0; i < n; i++) {
            int nz = 0;
            for (size_t b = 0; b < es; b++)
                nz |= p[(size_t)i * es + b];
            zeros += !nz;
        }
        return zeros;
    }
    }
}
