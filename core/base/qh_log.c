/* qh_log.c - the logging sink. QHOST_LOG=error|warn|info|debug overrides the level set by -q/-v. */
#include "qhost/qh_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static qh_log_level g_level = QH_LOG_INFO;
static int g_env_checked;
static qh_log_fn g_sink;
static void *g_sink_user;

static const char *level_name[] = {"error", "warning", "info", "debug"};

static void check_env(void)
{
    if (g_env_checked)
        return;
    g_env_checked = 1;
    const char *e = getenv("QHOST_LOG");
    if (!e)
        return;
    for (int i = 0; i <= QH_LOG_DEBUG; i++)
        if (strcmp(e, level_name[i]) == 0 || (i == 1 && strcmp(e, "warn") == 0))
            g_level = (qh_log_level)i;
}

void qh_log_set_level(qh_log_level level)
{
    g_level = level;
    g_env_checked = 0;
    check_env();
}

qh_log_level qh_log_get_level(void)
{
    check_env();
    return g_level;
}

void qh_log_set_sink(qh_log_fn fn, void *user)
{
    g_sink = fn;
    g_sink_user = user;
}

void qh_log(qh_log_level level, const char *component, const char *fmt, ...)
{
    check_env();
    if (level > g_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_sink) {
        g_sink(level, component, msg, g_sink_user);
        return;
    }
    if (level <= QH_LOG_WARN)
        fprintf(stderr, "qhost: %s: %s%s%s\n", level_name[level], component ? component : "",
                component ? ": " : "", msg);
    else
        fprintf(stderr, "%s%s%s\n", component ? component : "", component ? ": " : "", msg);
}
