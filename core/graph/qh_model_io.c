/* qh_model_io.c - a graph's parameters to and from safetensors, with PyTorch state_dict names. */
#include "graph/qh_graph_impl.h"
#include "graph/qh_surgery.h"
#include "qhost/qh_safetensors.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MASK_SUFFIX "_mask"

/* A compacted graph's file also records its channel counts (QHI_CHANNELS_META), so a load can
 * rebuild the graph to them. */
static qh_status write_with_channels(const qh_graph *g, const char *path, const qh_tensor **list, int32_t n,
                                     const char *const *keys, const char *const *values, int32_t n_meta,
                                     qh_error *err)
{
    char *channels = qhi_channels_meta(g);
    if (!channels)
        return g->compacted ? qh_error_set(err, QH_E_NOMEM, "out of memory")
                            : qh_safetensors_write(path, list, n, keys, values, n_meta, err);
    const char **k = calloc((size_t)n_meta + 1, sizeof *k), **v = calloc((size_t)n_meta + 1, sizeof *v);
    qh_status st = k && v ? QH_OK : qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t i = 0; st == QH_OK && i < n_meta; i++) {
        k[i] = keys[i];
        v[i] = values[i];
    }
    if (st == QH_OK) {
        k[n_meta] = QHI_CHANNELS_META;
        v[n_meta] = channels;
        st = qh_safetensors_write(path, list, n, k, v, n_meta + 1, err);
    }
    free(k);
    free(v);
    free(channels);
    return st;
}

qh_status qh_model_save(const qh_graph *g, const char *path, bool with_masks, const char *const *meta_keys,
                        const char *const *meta_values, int32_t n_meta, qh_error *err)
{
    int32_t n = 0;
    const qh_tensor **list = calloc((size_t)(2 * g->n_weights + 1), sizeof *list);
    qh_tensor **masks = calloc((size_t)(g->n_weights + 1), sizeof *masks);
    qh_status st = QH_OK;
    if (!list || !masks) {
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
        goto out;
    }
    for (int32_t i = 0; i < g->n_weights; i++)
        list[n++] = g->weights[i].value;
    for (int32_t i = 0; with_masks && i < g->n_weights; i++) {
        const qh_weight *w = &g->weights[i];
        if (!w->mask)
            continue;
        masks[i] = qh_tensor_new(QH_U8, w->value->ndim, w->value->shape, err);
        if (!masks[i]) {
            st = QH_E_NOMEM;
            goto out;
        }
        char name[QH_NAME_MAX + 8];
        snprintf(name, sizeof name, "%s" MASK_SUFFIX, w->value->name);
        qh_tensor_set_name(masks[i], name);
        memcpy(masks[i]->data, w->mask, (size_t)qh_tensor_numel(w->value));
        list[n++] = masks[i];
    }
    st = write_with_channels(g, path, list, n, meta_keys, meta_values, n_meta, err);
out:
    for (int32_t i = 0; masks && i < g->n_weights; i++)
        qh_tensor_free(masks[i]);
    free(masks);
    free(list);
    return st;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), (int)exp - 25);
    return sign ? -v : v;
}

static void convert_into(const qh_tensor *src, qh_tensor *dst_t)
{
    int64_t n = qh_tensor_numel(src);
    if (dst_t->dtype == QH_I64) {
        int64_t *d = dst_t->data;
        for (int64_t i = 0; i < n; i++)
            d[i] = src->dtype == QH_I64 ? ((const int64_t *)src->data)[i] : ((const int32_t *)src->data)[i];
        return;
    }
    float *dst = dst_t->data;
    switch (src->dtype) {
    case QH_F32:
        memcpy(dst, src->data, (size_t)n * sizeof(float));
        break;
    case QH_F64:
        for (int64_t i = 0; i < n; i++)
            dst[i] = (float)((const double *)src->data)[i];
        break;
    case QH_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = half_to_float(((const uint16_t *)src->data)[i]);
        break;
    case QH_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)((const uint16_t *)src->data)[i] << 16;
            memcpy(&dst[i], &bits, sizeof bits);
        }
        break;
    default:
        break;
    }
}

static bool same_shape(const qh_tensor *a, const qh_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* Checks one file tensor against the graph; sets *target / *mask_of. */
static qh_status match_tensor(qh_graph *g, const char *path, const qh_tensor *t, qh_weight **target,
                              qh_weight **mask_of, qh_error *err)
{
    char sa[96], sb[96];
    *target = qh_graph_find_weight(g, t->name);
    *mask_of = NULL;
    if (!*target) {
        size_t len = strlen(t->name), sl = strlen(MASK_SUFFIX);
        if (len > sl && strcmp(t->name + len - sl, MASK_SUFFIX) == 0) {
            char base[QH_NAME_MAX];
            snprintf(base, sizeof base, "%.*s", (int)(len - sl), t->name);
            *mask_of = qh_graph_find_weight(g, base);
        }
        if (!*mask_of)
            return qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' is not a parameter of this model", path, t->name);
        if (t->dtype != QH_U8 && t->dtype != QH_BOOL)
            return qh_error_set(err, QH_E_FORMAT, "%s: mask '%s' must be U8 or BOOL, not %s", path, t->name,
                                qh_dtype_name(t->dtype));
        if (!same_shape(t, (*mask_of)->value))
            return qh_error_set(err, QH_E_FORMAT, "%s: mask '%s' has shape %s, the parameter %s", path, t->name,
                                qh_shape_str(t, sa, sizeof sa), qh_shape_str((*mask_of)->value, sb, sizeof sb));
        return QH_OK;
    }
    if ((*target)->value->dtype == QH_I64) { /* num_batches_tracked */
        if (t->dtype != QH_I64 && t->dtype != QH_I32)
            return qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' has dtype %s; expected an integer", path, t->name,
                                qh_dtype_name(t->dtype));
    } else if (t->dtype != QH_F32 && t->dtype != QH_F64 && t->dtype != QH_F16 && t->dtype != QH_BF16) {
        return qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' has dtype %s; parameters must be floating point", path,
                            t->name, qh_dtype_name(t->dtype));
    }
    if (!same_shape(t, (*target)->value))
        return qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' has shape %s, the model expects %s", path, t->name,
                            qh_shape_str(t, sa, sizeof sa), qh_shape_str((*target)->value, sb, sizeof sb));
    return QH_OK;
}

qh_status qh_model_load(qh_graph *g, const char *path, qh_error *err)
{
    return qh_model_load_ex(g, path, NULL, err);
}

/* A file tensor that belongs to an excluded parameter (or its mask). */
static bool excluded(const char *exclude, const char *name)
{
    if (!exclude)
        return false;
    if (qh_name_match_list(exclude, name))
        return true;
    size_t len = strlen(name), sl = strlen(MASK_SUFFIX);
    if (len > sl && strcmp(name + len - sl, MASK_SUFFIX) == 0) {
        char base[QH_NAME_MAX];
        snprintf(base, sizeof base, "%.*s", (int)(len - sl), name);
        return qh_name_match_list(exclude, base);
    }
    return false;
}

/* A file of a compacted model: the graph g rebuilt with its channel counts (NULL and *s = QH_OK
 * when the file records none). Excluded parameters keep their values, so their shape must not change. */
static qh_graph *rebuilt_for(const qh_graph *g, const qh_safetensors *st, const char *path, const char *exclude,
                             qh_status *s, qh_error *err)
{
    const char *channels = qh_safetensors_meta(st, QHI_CHANNELS_META);
    *s = QH_OK;
    if (!channels)
        return NULL;
    qh_graph *ng = qhi_graph_from_channels(g, channels, path, err);
    if (!ng) {
        *s = QH_E_FORMAT;
        return NULL;
    }
    for (int32_t i = 0; i < g->n_weights; i++)
        if (excluded(exclude, g->weights[i].value->name) && !same_shape(g->weights[i].value, ng->weights[i].value)) {
            *s = qh_error_set(err, QH_E_FORMAT, "%s: parameter '%s' is excluded from loading but the file's channel "
                              "counts change its shape", path, g->weights[i].value->name);
            qh_graph_free(ng);
            return NULL;
        }
    for (int32_t i = 0; i < g->n_weights; i++)
        if (excluded(exclude, g->weights[i].value->name))
            memcpy(ng->weights[i].value->data, g->weights[i].value->data, qh_tensor_nbytes(g->weights[i].value));
    return ng;
}

qh_status qh_model_load_ex(qh_graph *g, const char *path, const char *exclude, qh_error *err)
{
    qh_safetensors *st = NULL;
    qh_status s = qh_safetensors_read(path, &st, err);
    if (s != QH_OK)
        return s;
    qh_graph *ng = rebuilt_for(g, st, path, exclude, &s, err), *shape_of = ng ? ng : g;
    if (s != QH_OK)
        goto out;
    /* Validate everything before touching the model, so a bad file leaves it unchanged. */
    for (int32_t i = 0; i < st->n_tensors; i++) {
        qh_weight *t, *mask_of;
        if (excluded(exclude, st->tensors[i]->name))
            continue;
        if ((s = match_tensor(shape_of, path, st->tensors[i], &t, &mask_of, err)) != QH_OK)
            goto out;
    }
    for (int32_t i = 0; i < g->n_weights; i++) {
        if (excluded(exclude, g->weights[i].value->name))
            continue;
        if (!qh_safetensors_find(st, g->weights[i].value->name)) {
            s = qh_error_set(err, QH_E_FORMAT, "%s: parameter '%s' is missing", path, g->weights[i].value->name);
            goto out;
        }
    }
    if (ng)
        qhi_graph_swap(g, ng); /* the caller's graph now has the file's channel counts */
    for (int32_t i = 0; i < g->n_weights; i++) {
        if (excluded(exclude, g->weights[i].value->name))
            continue;
        free(g->weights[i].mask);
        g->weights[i].mask = NULL;
    }
    for (int32_t i = 0; i < st->n_tensors; i++) {
        qh_weight *target, *mask_of;
        if (excluded(exclude, st->tensors[i]->name))
            continue;
        match_tensor(g, path, st->tensors[i], &target, &mask_of, NULL);
        if (target)
            convert_into(st->tensors[i], target->value);
    }
    for (int32_t i = 0; i < st->n_tensors; i++) {
        qh_weight *target, *mask_of;
        if (excluded(exclude, st->tensors[i]->name))
            continue;
        match_tensor(g, path, st->tensors[i], &target, &mask_of, NULL);
        if (mask_of && (s = qh_weight_set_mask(mask_of, st->tensors[i]->data, err)) != QH_OK)
            goto out;
    }
out:
    qh_graph_free(ng);
    qh_safetensors_free(st);
    return s;
}
