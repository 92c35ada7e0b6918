/* qh_log.h - one logging sink for host and plugins. Diagnostics go to stderr; results to stdout. */
#ifndef QH_LOG_H
#define QH_LOG_H

#include "qh_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qh_log_level { QH_LOG_ERROR = 0, QH_LOG_WARN, QH_LOG_INFO, QH_LOG_DEBUG } qh_log_level;

typedef void (*qh_log_fn)(qh_log_level level, const char *component, const char *msg, void *user);

/* component: "pipeline", "registry", a plugin name, ... (may be NULL). */
void qh_log(qh_log_level level, const char *component, const char *fmt, ...) QH_PRINTF(3, 4);
void qh_log_set_level(qh_log_level level);
qh_log_level qh_log_get_level(void);
/* Replace the sink (NULL restores the default stderr sink). */
void qh_log_set_sink(qh_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* QH_LOG_H */
