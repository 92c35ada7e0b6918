/* fake_registry.h - a qh_registry filled from in-memory plugin libraries through qh_dl_ops, so the
 * config tests depend on no shared object (SQLite VFS style seam).
 *
 *   model     tiny       hidden (int, required, [1, 4096]), act (enum relu|tanh), dropout (double [0, 1)),
 *                        bias (bool), init (string)
 *   model     wide       width (int, default 64)
 *   dataset   toy        root (path), n (int, default 100), noise (double [0, 1]), train_limit (int; shadowed
 *                        by the host key of the same name)
 *   pruner    magnitude  scope (enum layer|global)
 *   quantizer linear     bits (int [2, 8], default 8), granularity (enum tensor|channel), symmetric (bool)
 */
#ifndef FAKE_REGISTRY_H
#define FAKE_REGISTRY_H

#include <stdint.h>

#include "qhost/qh_registry.h"

typedef struct tiny_cfg {
    int64_t hidden;
    int act;
    double dropout;
    int bias;
    const char *init;
} tiny_cfg;

typedef struct wide_cfg {
    int64_t width;
} wide_cfg;

typedef struct toy_cfg {
    const char *root;
    int64_t n;
    double noise;
    int64_t train_limit;
} toy_cfg;

typedef struct magnitude_cfg {
    int scope;
} magnitude_cfg;

typedef struct linear_cfg {
    int64_t bits;
    int granularity;
    int symmetric;
} linear_cfg;

/* A registry holding the plugins above; NULL when a fake library was rejected (the test fails). */
qh_registry *fake_registry_new(void);

#endif /* FAKE_REGISTRY_H */
