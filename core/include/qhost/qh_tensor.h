/* qh_tensor.h - dense tensors in PyTorch dimension order (shape[0] outermost, row-major).
 *
 * Tensors made by qh_tensor_new() are contiguous, zero-filled and 64-byte aligned; stride[] is in
 * bytes and always describes that contiguous layout (views may use other strides later). The dtype
 * list covers every dtype of the safetensors format; compute kernels use F32, I32, I16, I8 and U8.
 */
#ifndef QH_TENSOR_H
#define QH_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "qh_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QH_MAX_DIMS 8
#define QH_NAME_MAX 128

typedef enum qh_dtype {
    QH_F32 = 0,
    QH_F64,
    QH_F16,
    QH_BF16,
    QH_F8_E4M3,
    QH_F8_E5M2,
    QH_I64,
    QH_I32,
    QH_I16,
    QH_I8,
    QH_U64,
    QH_U32,
    QH_U16,
    QH_U8,
    QH_BOOL,
    QH_DTYPE_COUNT
} qh_dtype;

typedef struct qh_tensor {
    qh_dtype dtype;
    int32_t ndim;
    int64_t shape[QH_MAX_DIMS];
    int64_t stride[QH_MAX_DIMS]; /* bytes */
    void *data;
    char name[QH_NAME_MAX];      /* state_dict name when the tensor belongs to a model, else "" */
} qh_tensor;

/* Element size in bytes (1 for BOOL and the FP8 types). */
size_t qh_dtype_size(qh_dtype dt);
/* The safetensors spelling: "F32", "BF16", "F8_E4M3", "BOOL", ... */
const char *qh_dtype_name(qh_dtype dt);
/* Parses a safetensors dtype name; returns QH_E_INVAL (err untouched) if unknown. */
qh_status qh_dtype_from_name(const char *name, qh_dtype *out);

/* New zero-filled contiguous tensor; NULL (and err set) on bad shape or out of memory. ndim may be 0 (scalar). */
qh_tensor *qh_tensor_new(qh_dtype dt, int32_t ndim, const int64_t *shape, qh_error *err);
/* Deep copy with the same name. */
qh_tensor *qh_tensor_clone(const qh_tensor *t, qh_error *err);
void qh_tensor_free(qh_tensor *t);
void qh_tensor_set_name(qh_tensor *t, const char *name);

int64_t qh_tensor_numel(const qh_tensor *t);
size_t qh_tensor_nbytes(const qh_tensor *t);
/* "[6, 1, 5, 5]" into buf. */
const char *qh_shape_str(const qh_tensor *t, char *buf, size_t size);
/* Number of exact zeros (float types compare to 0.0, -0.0 counts; integers to 0). */
int64_t qh_tensor_count_zeros(const qh_tensor *t);

static inline float *qh_tensor_f32(const qh_tensor *t) { return (float *)t->data; }

/* Aligned allocation used for every tensor buffer (64-byte alignment); free with qh_free_aligned. */
void *qh_alloc_aligned(size_t size);
void qh_free_aligned(void *p);

#ifdef __cplusplus
}
#endif
#endif /* QH_TENSOR_H */
