/* qh_sweep_values.h - lists and ranges of stage keys (sweeps): parsing a value like `1..8`,
 * `1.0:2.0:0.05` or `tensor, channel` into its values, and the points of a stage's Cartesian
 * product (docs/pipeline-reference.md, "Sweeps"). Internal to libqhost (the loader and the runner). */
#ifndef QH_SWEEP_VALUES_H
#define QH_SWEEP_VALUES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qhost/qh_config.h"

/* At most this many values per key, and points per stage. */
#define QHI_SWEEP_MAX_POINTS 10000

/* Does `text`, a value of parameter p, ask for several values? A comma list for int, double, bool and
 * enum keys; `a..b` and `a:b:c` ranges for int and double keys. Never for string and path keys: their
 * commas belong to the value (targets = conv*, fc*). */
bool qhi_sweep_is_list(const qh_param *p, const char *text);

/* Expands text into ax->key (p->name) and ax->values: list items in order, each range expanded
 * (`a..b`: integers a to b; `a:b:c`: a + i*c for i = 0, 1, ... while within b, b included up to a
 * rounding tolerance of 1e-9 steps). Fails, with a message "<key>: ..." in err, on an empty item, a
 * range that is not numeric, has step 0, a step of the wrong sign or no value, a value listed twice,
 * or more than QHI_SWEEP_MAX_POINTS values. The caller checks each value with qh_config_set. */
qh_status qhi_sweep_expand(const qh_param *p, const char *text, qh_sweep_axis *ax, qh_error *err);
void qhi_sweep_axis_clear(qh_sweep_axis *ax);

/* Appends *ax to st's axes (taking its arrays; *ax is zeroed). */
qh_status qhi_sweep_add_axis(qh_stage *st, qh_sweep_axis *ax, qh_error *err);
void qhi_sweep_free_axes(qh_stage *st);

/* Points of st: the product of its axes' sizes (1 without axes), or -1 above QHI_SWEEP_MAX_POINTS. */
int64_t qhi_sweep_n_points(const qh_stage *st);
/* The value of axis i at point k (0-based): axes in file order, the last varies fastest. */
const char *qhi_sweep_value(const qh_stage *st, int64_t k, int32_t i);
/* Sets the values of point k into config blocks of st's tables (host_cfg: the stage type's,
 * plugin_cfg: its plugin's). */
qh_status qhi_sweep_apply(const qh_stage *st, int64_t k, void *host_cfg, void *plugin_cfg, qh_error *err);
/* "bits=4, scalar=1.05" for point k. */
void qhi_sweep_describe(const qh_stage *st, int64_t k, char *buf, size_t size);

#endif /* QH_SWEEP_VALUES_H */
