/* qm_resize_input.h - the input stage the AlexNets share (internal to the model plugins).
 *
 * The seeds feed 224 x 224 images; qhost's AlexNets put a bilinear resize to `resize` x `resize`
 * first whenever the input has another size, so 32 x 32 (CIFAR) or 28 x 28 data works unchanged.
 * resize = 0 keeps the input as it is, which must then be at least min_size on each side. */
#ifndef QM_RESIZE_INPUT_H
#define QM_RESIZE_INPUT_H

#include <qhost/qhost.h>

/* *x = the node the features start from: QH_INPUT, or QH_PREV after the resize. Refuses a
 * requested or given size below min_size. */
static inline qh_status qm_resize_input(qh_graph *g, int32_t size, int32_t min_size, const qh_model_input *in,
                                        int32_t *x, qh_error *err)
{
    *x = QH_INPUT;
    if (size > 0 && size < min_size)
        return qh_error_set(err, QH_E_INVAL, "resize = %d is below the smallest size it can take, %d", size, min_size);
    if (size == 0 && (in->height < min_size || in->width < min_size))
        return qh_error_set(err, QH_E_INVAL,
                            "a %dx%d input is too small (at least %dx%d); set resize = 224 as the seed does",
                            in->height, in->width, min_size, min_size);
    if (size > 0 && (in->height != size || in->width != size)) {
        if (qh_graph_resize_bilinear(g, "resize", QH_INPUT, size, size, err) < 0)
            return QH_E_INVAL;
        *x = QH_PREV;
    }
    return QH_OK;
}

#endif /* QM_RESIZE_INPUT_H */
