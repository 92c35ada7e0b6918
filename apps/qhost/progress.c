/* progress.c - terminal progress bar (rate and ETA) or plain log lines when not on a terminal. */
#include "progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fmt_time(double s, char *buf, size_t size)
{
    if (s < 0 || s > 359999)
        snprintf(buf, size, "--:--");
    else if (s >= 3600)
        snprintf(buf, size, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(buf, size, "%02d:%02d", (int)s / 60, (int)s % 60);
}

static void update(void *user, const char *label, int64_t done, int64_t total, const char *extra)
{
    cli_progress *p = user;
    double t = now_s();
    if (strcmp(label, p->label) != 0) {
        snprintf(p->label, sizeof p->label, "%s", label);
        p->t_start = t;
        p->t_last = 0;
    }
    if (p->quiet || !p->tty)
        return;
    if (t - p->t_last < 0.1 && done < total)
        return;
    p->t_last = t;
    double el = t - p->t_start, rate = el > 0 ? (double)done / el : 0.0;
    double frac = total > 0 ? (double)done / (double)total : 1.0;
    char eta[16], elapsed[16];
    fmt_time(rate > 0 ? (double)(total - done) / rate : -1, eta, sizeof eta);
    fmt_time(el, elapsed, sizeof elapsed);
    enum { W = 24 };
    char bar[W + 1];
    int fill = (int)(frac * W + 0.5);
    for (int i = 0; i < W; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[W] = '\0';
    fprintf(p->out, "\r\033[K%-22s [%s] %3.0f%% %lld/%lld %.0f/s %s<%s %s", label, bar, 100.0 * frac, (long long)done, (long long)total,
            rate, elapsed, eta, extra ? extra : "");
    fflush(p->out);
    p->drawn = 1;
}

static void finish(void *user, const char *label, const char *summary)
{
    cli_progress *p = user;
    if (p->quiet)
        return;
    if (p->tty && p->drawn)
        fprintf(p->out, "\r\033[K");
    p->drawn = 0;
    fprintf(p->out, "%s: %s\n", label, summary ? summary : "done");
    fflush(p->out);
    p->label[0] = '\0';
}

void cli_progress_init(cli_progress *p, FILE *out, bool quiet)
{
    memset(p, 0, sizeof *p);
    p->out = out;
    p->quiet = quiet;
    p->tty = isatty(fileno(out)) != 0;
}

qh_progress cli_progress_hooks(cli_progress *p)
{
    qh_progress h = {.update = update, .finish = finish, .user = p};
    return h;
}
