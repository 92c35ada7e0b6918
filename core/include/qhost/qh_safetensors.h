/* qh_safetensors.h - read and write the safetensors format (every dtype it defines).
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
 * then the data buffer. Reading validates everything before trusting it: header length within the
 * file, JSON well formed, known dtypes, offsets inside the buffer, begin <= end, no overlaps,
 * end - begin == numel * dtype size. Errors name the file and what is wrong (tensor, offset).
 */
#ifndef QH_SAFETENSORS_H
#define QH_SAFETENSORS_H

#include <stdio.h>

#include "qh_tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qh_safetensors {
    int32_t n_tensors;
    qh_tensor **tensors; /* in file (data offset) order; name set; data copied out of the file */
    int32_t n_meta;
    char **meta_keys;
    char **meta_values;
    int64_t header_bytes; /* N */
    int64_t file_bytes;
} qh_safetensors;

qh_status qh_safetensors_read(const char *path, qh_safetensors **out, qh_error *err);
void qh_safetensors_free(qh_safetensors *st);
const qh_tensor *qh_safetensors_find(const qh_safetensors *st, const char *name);
/* NULL when the key is absent. */
const char *qh_safetensors_meta(const qh_safetensors *st, const char *key);

/* Writes tensors (in the given order) and string metadata atomically (temporary file + rename). */
qh_status qh_safetensors_write(const char *path, const qh_tensor *const *tensors, int32_t n_tensors,
                               const char *const *meta_keys, const char *const *meta_values, int32_t n_meta,
                               qh_error *err);

/* `qhost inspect`: tensors, dtypes, shapes, per-tensor and total sparsity, metadata. */
qh_status qh_safetensors_inspect(const char *path, FILE *out, qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_SAFETENSORS_H */
