/* qh_calib_session.h - the capture session's layout, shared by the files of core/calib only.
 *
 * Values are addressed by slot: 0 = the graph input, j + 1 = node j's output, one array per network
 * (net 0 original, net 1 quantized so far). A value points at a reference-counted buffer holding
 * the whole calibration set (n x numel); aliases (flatten, dropout at inference, a quantized-network
 * value equal to the original's) and in-place elementwise ops share buffers. */
#ifndef QH_CALIB_SESSION_H
#define QH_CALIB_SESSION_H

#include "calib/qh_calib_impl.h"

typedef struct qhi_cbuf {
    float *p;
    int32_t users; /* values pointing here */
    int64_t bytes;
} qhi_cbuf;

typedef struct qhi_cval {
    qhi_cbuf *b;     /* NULL: not computed, or released */
    int32_t pending; /* consumers not computed yet */
} qhi_cval;

enum { QHI_NET_ORIG = 0, QHI_NET_QUANT = 1 };
enum { QHI_CALIB_POOL = 8 };

struct qhi_calib {
    qh_graph *g;
    int64_t n; /* calibration images */
    qhi_calib_options o;
    bool with_original;
    int32_t next;        /* first node not computed yet */
    int32_t n_slots;     /* n_nodes + 1 */
    qhi_cval *val[2];    /* [net][slot] */
    int32_t *consumers;  /* [slot] */
    uint8_t *differs;    /* [slot]: the quantized network's value differs from the original's */
    float **orig_w;      /* [node]: the original network's weight, kept before quantization */
    void *ws;            /* conv workspace for `batch` images */
    int32_t *argmax;     /* max pooling scratch for `batch` images */
    int64_t bytes, peak; /* activation bytes held now (values) / at most (values and pool) */
    qhi_cbuf *pool[QHI_CALIB_POOL]; /* released buffers, for reuse */
    int n_pool;
    int64_t pooled;
};

static inline int32_t qhi_slot(int32_t src)
{
    return src == QH_INPUT ? 0 : src + 1;
}

/* The value (whole calibration set) of src in net; NULL if not computed. */
static inline const float *qhi_calib_value(const qhi_calib *s, int net, int32_t src)
{
    const qhi_cval *v = &s->val[net][qhi_slot(src)];
    return v->b ? v->b->p : NULL;
}

/* Computes nodes s->next .. node - 1 in both networks. */
qh_status qhi_calib_advance(qhi_calib *s, int32_t node, qh_error *err);

#endif /* QH_CALIB_SESSION_H */
