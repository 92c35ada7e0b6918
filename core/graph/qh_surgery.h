/* qh_surgery.h - which output channels of a graph are tied together, and physical channel removal
 * (core only; the public entry is qh_graph_compact in qh_engine.h).
 *
 * A channel element is (node, c): output channel c of a node (feature c of a rank-1 output); the
 * graph input has elements too. Union-find ties the elements that must be kept or removed
 * together: a layer that keeps channels (batch norm, activations, pooling, dropout, resizing) ties
 * its output c to its input c; an add ties both operands and its output; a depthwise conv ties its
 * output c to its input c; flatten ties feature f to input channel f / (H W); an option-A shortcut
 * ties its output c + front to its input c, and pairs its padding channels (low i with high
 * front + in + i) so that what is left stays a centred zero-pad. A class that reaches the model's
 * input or output is pinned. A conv or linear layer starts new classes (its filters). Grouped
 * convolutions other than depthwise, and unknown ops, are refused with the layer's name. */
#ifndef QH_SURGERY_H
#define QH_SURGERY_H

#include "graph/qh_graph_impl.h"
#include "qhost/qh_plugin.h"

typedef struct qhi_chmap {
    int32_t n_nodes;
    int64_t *base;     /* [n_nodes + 2]: node n's elements start at base[n + 1]; the input's at base[0] = 0 */
    int64_t n_elems;
    int32_t *cls;      /* [n_elems]: class 0 .. n_classes - 1, numbered in order of first element */
    int32_t n_classes;
    uint8_t *pinned;   /* [n_classes]: tied to the model input or output */
} qhi_chmap;

qh_status qhi_chmap_build(const qh_graph *g, qhi_chmap *m, qh_error *err);
void qhi_chmap_free(qhi_chmap *m);
/* Class of channel c of node (QH_INPUT: the graph input). */
int32_t qhi_chmap_class(const qhi_chmap *m, int32_t node, int64_t c);

/* The coupled groups a structured pruner ranks: the unpinned classes holding at least one filter
 * (output channel of a conv or linear layer), every one of them a filter of a targeted weight. */
typedef struct qhi_groups {
    int32_t n;                 /* groups */
    qh_channel_group *groups;  /* for the pruner; member arrays point into tgt / ch */
    int32_t *cls;              /* class of each group */
    int32_t *tgt;              /* all members: index into the targets */
    int64_t *ch;
    int32_t n_families;
} qhi_groups;

/* targets[k] is the index of a conv or linear weight in g; masks[k] its current mask (numel bytes)
 * or NULL (dense). A group is alive (keep = 1) unless every member filter is fully masked. */
qh_status qhi_groups_build(const qh_graph *g, const qhi_chmap *m, const int32_t *targets, int32_t n_targets,
                           const uint8_t *const *masks, qhi_groups *out, qh_error *err);
void qhi_groups_free(qhi_groups *gr);
/* Masks, in g, every filter and bias of the groups with keep == 0 and the batch norm weight and
 * bias of their channels, so each of their channels is exactly 0 everywhere in the network. */
qh_status qhi_groups_apply(qh_graph *g, const qhi_chmap *m, const qhi_groups *gr, qh_error *err);

/* A new graph like g whose conv, linear and option-A shortcut nodes have out[n] output channels
 * (out[n] < 0: as in g); every other shape follows. Parameters are zero; g is unchanged. */
qh_graph *qhi_graph_replay(const qh_graph *g, const int64_t *out, qh_error *err);

/* Model files of a compacted graph carry its channel counts under this metadata key, as
 * "conv1=8,layer1.0.conv1=5,...,fc=10" (every conv, linear and option-A shortcut layer). */
#define QHI_CHANNELS_META "qhost_channels"
/* The value for g (malloc'ed), or NULL when g is not compacted or out of memory. */
char *qhi_channels_meta(const qh_graph *g);
/* The graph g rebuilt with the counts of a QHI_CHANNELS_META value (what a model file needs). */
qh_graph *qhi_graph_from_channels(const qh_graph *g, const char *value, const char *path, qh_error *err);
/* Exchanges the two graphs' contents (each keeps its own profiling table). */
void qhi_graph_swap(qh_graph *a, qh_graph *b);

#endif /* QH_SURGERY_H */
