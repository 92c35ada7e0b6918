/* main.c - the qhost command line: argument parsing, plugin listings, inspect, running pipelines.
 * Exit codes: 0 success, 1 run-time failure, 2 usage or configuration error. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "list.h"
#include "progress.h"
#include "summary.h"
#include "qh_version.h"
#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_safetensors.h"

enum { EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
    "usage: qhost [OPTIONS] PIPELINE.ini      run a pipeline\n"
    "       qhost --list-plugins [-v]          list plugins (with -v: every parameter)\n"
    "       qhost --describe [KIND/]NAME       one plugin in full\n"
    "       qhost inspect FILE.safetensors     tensors, dtypes, shapes, sparsity, metadata\n"
    "       qhost --summary MODEL [--set KEY=VALUE ...]\n"
    "                                          layers, output shapes, parameters, MACs, buffer memory\n"
    "                                          per sample for inference and training (input=CxHxW,\n"
    "                                          classes=N and the model's parameters; default 3x32x32, 10;\n"
    "                                          weights=FILE: as loaded from FILE, e.g. a compacted model)\n"
    "\n"
    "options:\n"
    "  -j, --threads N          threads for kernels (overrides [pipeline] threads)\n"
    "  -o, --output DIR         output directory (overrides [pipeline] output)\n"
    "      --set SEC.KEY=VALUE  override a pipeline key (repeatable), e.g. --set train.epochs=2\n"
    "      --check              validate the pipeline and exit\n"
    "      --resume             continue an interrupted run in its output directory (same options)\n"
    "      --plugin-dir DIR     search DIR for plugins first (repeatable)\n"
    "  -q, --quiet              only errors\n"
    "  -v, --verbose            every parameter with --list-plugins; -vv: debug logs\n"
    "  -h, --help               this text\n"
    "      --version            version and plugin ABI\n"
    "\n"
    "Plugins are searched in: --plugin-dir, $QHOST_PLUGIN_PATH (':'-separated), the installed plugin\n"
    "directory, and <directory of the qhost executable>/plugins.\n"
    "Pipeline reference: docs/pipeline-reference.md. Exit status: 0 ok, 1 run-time failure, 2 usage or\n"
    "configuration error.\n";

typedef struct cli {
    int threads;
    const char *output;
    bool quiet, list, check, resume;
    int verbose; /* -v: parameters in listings; -vv: debug logs */
    const char *describe;
    const char *summary;
    const char **plugin_dirs;
    int n_plugin_dirs;
    qh_override *ov;
    char **ov_storage;
    int n_ov;
    const char **args;
    int n_args;
} cli;

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "qhost: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(run 'qhost --help' for usage)\n");
    return EXIT_USAGE;
}

/* "section.key=value" -> override; the string is copied and split in place. */
static int add_override(cli *c, const char *arg)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (dot && eq && dot > eq)
        dot = NULL; /* a dot in the value */
    if (!eq || eq == arg || (dot && (dot == arg || dot + 1 == eq)))
        return usage_error("--set '%s': expected SECTION.KEY=VALUE", arg);
    char *copy = strdup(arg);
    qh_override *ov = realloc(c->ov, sizeof *ov * (size_t)(c->n_ov + 1));
    char **st = realloc(c->ov_storage, sizeof *st * (size_t)(c->n_ov + 1));
    if (!copy || !ov || !st) {
        free(copy);
        if (ov)
            c->ov = ov;
        if (st)
            c->ov_storage = st;
        return usage_error("%s", "out of memory");
    }
    c->ov = ov;
    c->ov_storage = st;
    char *e = copy + (eq - arg);
    *e = '\0';
    if (dot) {
        char *d = copy + (dot - arg);
        *d = '\0';
        c->ov[c->n_ov] = (qh_override){copy, d + 1, e + 1};
    } else {
        c->ov[c->n_ov] = (qh_override){NULL, copy, e + 1}; /* KEY=VALUE: only with --summary */
    }
    c->ov_storage[c->n_ov++] = copy;
    return 0;
}

static int parse_args(cli *c, int argc, char **argv)
{
    enum { OPT_SET = 256, OPT_VERSION, OPT_LIST, OPT_DESCRIBE, OPT_PLUGIN_DIR, OPT_CHECK, OPT_SUMMARY, OPT_RESUME };
    static const struct option longopts[] = {
        {"threads", required_argument, NULL, 'j'},   {"output", required_argument, NULL, 'o'},
        {"set", required_argument, NULL, OPT_SET},   {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION}, {"list-plugins", no_argument, NULL, OPT_LIST},
        {"describe", required_argument, NULL, OPT_DESCRIBE},
        {"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
        {"check", no_argument, NULL, OPT_CHECK},     {"summary", required_argument, NULL, OPT_SUMMARY},
        {"resume", no_argument, NULL, OPT_RESUME},   {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":j:o:qvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'j': {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 1 || n > 1024)
                return usage_error("-j '%s': expected a thread count from 1 to 1024", optarg);
            c->threads = (int)n;
            break;
        }
        case 'o':
            c->output = optarg;
            break;
        case OPT_SET:
            if (add_override(c, optarg))
                return EXIT_USAGE;
            break;
        case 'q':
            c->quiet = true;
            break;
        case 'v':
            c->verbose++;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case OPT_VERSION:
            printf("qhost %s (plugin ABI %d.%d)\n", QH_VERSION, QH_ABI_MAJOR, QH_ABI_MINOR);
            exit(0);
        case OPT_LIST:
            c->list = true;
            break;
        case OPT_DESCRIBE:
            c->describe = optarg;
            break;
        case OPT_CHECK:
            c->check = true;
            break;
        case OPT_SUMMARY:
            c->summary = optarg;
            break;
        case OPT_RESUME:
            c->resume = true;
            break;
        case OPT_PLUGIN_DIR: {
            const char **d = realloc(c->plugin_dirs, sizeof *d * (size_t)(c->n_plugin_dirs + 1));
            if (!d)
                return usage_error("%s", "out of memory");
            c->plugin_dirs = d;
            c->plugin_dirs[c->n_plugin_dirs++] = optarg;
            break;
        }
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    c->args = (const char **)argv + optind;
    c->n_args = argc - optind;
    return 0;
}

static void exe_path(const char *argv0, char *buf, size_t size)
{
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n > 0) {
        buf[n] = '\0';
        return;
    }
    snprintf(buf, size, "%s", argv0);
}

static int run_pipeline(cli *c, qh_registry *reg, const char *path, const char *exe)
{
    for (int i = 0; i < c->n_ov; i++)
        if (!c->ov[i].section) {
            fprintf(stderr, "qhost: error: --set '%s=%s': expected SECTION.KEY=VALUE\n", c->ov[i].key, c->ov[i].value);
            return EXIT_USAGE;
        }
    qh_diag d = {.out = stderr};
    qh_pipeline_config *pc = qh_pipeline_config_load(path, reg, c->ov, c->n_ov, &d);
    if (!pc) {
        if (d.n_errors > 1)
            fprintf(stderr, "qhost: %d errors in %s; nothing was run\n", d.n_errors, path);
        return EXIT_USAGE;
    }
    if (c->check) {
        if (!c->quiet)
            printf("%s: OK (%d stages)\n", path, pc->n_stages);
        qh_pipeline_config_free(pc);
        return 0;
    }
    cli_progress prog;
    cli_progress_init(&prog, stderr, c->quiet);
    qh_progress hooks = cli_progress_hooks(&prog);
    qh_run_options opt = {.output_dir = c->output, .threads = c->threads, .progress = &hooks, .exe_path = exe,
                          .resume = c->resume};
    qh_error err = {{0}};
    qh_status st = qh_pipeline_run(pc, reg, &opt, &err);
    qh_pipeline_config_free(pc);
    if (st == QH_E_CONFIG) { /* found once the model exists; the message carries file:line */
        fprintf(stderr, "%s\n", err.msg);
        return EXIT_USAGE;
    }
    if (st != QH_OK) {
        fprintf(stderr, "qhost: error: %s: %s\n", path, err.msg);
        return EXIT_RUNTIME;
    }
    return 0;
}

static void free_cli(cli *c)
{
    for (int i = 0; i < c->n_ov; i++)
        free(c->ov_storage[i]);
    free(c->ov_storage);
    free(c->ov);
    free(c->plugin_dirs);
}

int main(int argc, char **argv)
{
    cli c = {0};
    int rc = parse_args(&c, argc, argv);
    if (rc) {
        free_cli(&c);
        return rc;
    }
    qh_log_set_level(c.quiet ? QH_LOG_WARN : c.verbose >= 2 ? QH_LOG_DEBUG : QH_LOG_INFO);

    if (c.n_args >= 1 && strcmp(c.args[0], "inspect") == 0) {
        if (c.n_args != 2) {
            free_cli(&c);
            return usage_error("%s", "inspect takes exactly one FILE.safetensors");
        }
        qh_error err = {{0}};
        qh_status st = qh_safetensors_inspect(c.args[1], stdout, &err);
        if (st != QH_OK)
            fprintf(stderr, "qhost: error: %s\n", err.msg);
        free_cli(&c);
        return st == QH_OK ? 0 : EXIT_RUNTIME;
    }
    if (!c.list && !c.describe && !c.summary && c.n_args != 1) {
        free_cli(&c);
        if (c.n_args == 0)
            return usage_error("%s", "no pipeline given");
        return usage_error("unexpected argument '%s' (one pipeline at a time)", c.args[1]);
    }
    if ((c.list || c.describe || c.summary) && c.n_args) {
        free_cli(&c);
        return usage_error("unexpected argument '%s'", c.args[0]);
    }

    char exe[PATH_MAX];
    exe_path(argv[0], exe, sizeof exe);
    qh_registry *reg = qh_registry_new();
    qh_error err = {{0}};
    if (!reg || qh_registry_scan(reg, c.plugin_dirs, c.n_plugin_dirs, exe, &err) != QH_OK) {
        fprintf(stderr, "qhost: error: plugin search failed: %s\n", err.msg);
        qh_registry_free(reg);
        free_cli(&c);
        return EXIT_RUNTIME;
    }
    /* A rejected plugin is a warning here; it becomes an error only when a pipeline names it. */
    if (!c.quiet)
        for (int i = 0; i < qh_registry_n_rejections(reg); i++)
            fprintf(stderr, "qhost: warning: plugin rejected: %s\n", qh_registry_rejection(reg, i));
    if (c.list)
        cli_list_plugins(reg, c.verbose > 0, stdout);
    else if (c.describe)
        rc = cli_describe(reg, c.describe, stdout, stderr);
    else if (c.summary)
        rc = cli_summary(reg, c.summary, c.ov, c.n_ov, stdout, stderr);
    else
        rc = run_pipeline(&c, reg, c.args[0], exe);
    qh_registry_free(reg);
    free_cli(&c);
    return rc;
}
