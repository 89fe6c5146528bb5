/*
 * options.c - cuarena-replay's command line: the usage text, the options
 * parsed into an options struct (replay.h), and the backends this build has.
 */
#include "replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: cuarena-replay [options] FILE...\n"
    "Replay .catrace / .catrace.gz files through a cuarena arena; one JSON line per file.\n"
    "  --backend host|cuda   memory provider (default host)\n"
    "  --repeat N            timed warm runs after one warm-up (default 5; 0: no timing)\n"
    "  --budget-search       bisect the smallest arena limit that completes the trace\n"
    "  --budget-step B       ... to within B bytes (default: one granularity page)\n"
    "  --trim-at PREFIX      trim(keep 0) at markers starting with PREFIX (default teardown)\n"
    "  --check               run cua_arena_check after every event of the metrics run\n"
    "  --check-every N       ... after every Nth event and at every marker\n"
    "  --fault KIND:N        fail the Nth backend call of KIND (map, create, ...) in the\n"
    "                        metrics run, and report how the arena coped\n"
    "  --timeline N          sample live and mapped bytes of the metrics run about N\n"
    "                        times, and at every marker (before and after its trim)\n"
    "  --table               print a Markdown table after the JSON lines\n"
    "  --split-arenas        an arena per arena name of the trace (its fifth field), with\n"
    "                        the same options; peak mapped is then the device's (metrics\n"
    "                        and timing runs; not with --budget-search or --fault)\n"
    "  --backends            list the backends this build has, one a line\n"
    "  --help                this text\n"
    "Arena options come from CUARENA_CONF (see cua_config_parse).\n";

/* The backends this build can create. */
#if CUA_HAVE_CUDA
static const char *const built_backends[] = { "host", "cuda" };
#else
static const char *const built_backends[] = { "host" };
#endif

int options_backend_built(const char *kind)
{
    for (size_t i = 0; i < sizeof built_backends / sizeof built_backends[0]; i++)
        if (strcmp(kind, built_backends[i]) == 0) return 1;
    return 0;
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "cuarena-replay: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage_text);
    exit(2);
}

/* "KIND:N" with KIND a cua_call_name and N >= 1. */
static void parse_fault(options *o, const char *text)
{
    const char *colon = strchr(text, ':');
    char *end;
    o->fault = text;
    if (!colon) usage_error("--fault wants KIND:N, not '%s'", text);
    int k;
    for (k = 0; k < CUA_CALL_COUNT; k++) {
        const char *name = cua_call_name((cua_call)k);
        if (strlen(name) == (size_t)(colon - text) && strncmp(name, text, strlen(name)) == 0) break;
    }
    if (k == CUA_CALL_COUNT) usage_error("--fault: unknown call kind in '%s'", text);
    o->fault_call = (cua_call)k;
    errno = 0;
    o->fault_nth = strtoull(colon + 1, &end, 10);
    /* (strtoull answers ULLONG_MAX and ERANGE past 64 bits: refused, not taken) */
    if (colon[1] < '0' || colon[1] > '9' || *end || o->fault_nth == 0 || errno == ERANGE)
        usage_error("--fault: N must be a number from 1 to 2^64-1 in '%s'", text);
}

/* The value of option argv[*i] ("--opt value" or "--opt=value"). */
static const char *opt_value(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (*i + 1 >= argc) usage_error("%s needs a value", opt);
    return argv[++*i];
}

static int is_opt(const char *arg, const char *opt)
{
    size_t n = strlen(opt);
    return strncmp(arg, opt, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

void options_parse(int argc, char **argv, options *o)
{
    *o = (options){ .backend = "host", .repeat = 5, .trim_at = "teardown" };
    o->files = calloc((size_t)argc, sizeof *o->files);
    if (!o->files) exit(2);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            exit(0);
        } else if (strcmp(a, "--backends") == 0) {
            for (size_t k = 0; k < sizeof built_backends / sizeof built_backends[0]; k++) puts(built_backends[k]);
            exit(0);
        } else if (is_opt(a, "--backend")) {
            o->backend = opt_value(argc, argv, &i, "--backend");
            if (strcmp(o->backend, "host") && strcmp(o->backend, "cuda"))
                usage_error("unknown backend '%s' (host or cuda)", o->backend);
        } else if (is_opt(a, "--repeat")) {
            const char *v = opt_value(argc, argv, &i, "--repeat");
            long n = strtol(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || n < 0 || n > 1000000) usage_error("bad --repeat '%s'", v);
            o->repeat = (int)n;
        } else if (is_opt(a, "--timeline")) {
            const char *v = opt_value(argc, argv, &i, "--timeline");
            unsigned long long n = strtoull(v, &end, 10);
            if (*v < '0' || *v > '9' || *end || n > 100000000) usage_error("bad --timeline '%s'", v);
            o->timeline = n;
        } else if (is_opt(a, "--trim-at")) {
            o->trim_at = opt_value(argc, argv, &i, "--trim-at");
        } else if (is_opt(a, "--fault")) {
            parse_fault(o, opt_value(argc, argv, &i, "--fault"));
        } else if (strcmp(a, "--budget-search") == 0) {
            o->budget_search = 1;
        } else if (is_opt(a, "--budget-step")) {
            const char *v = opt_value(argc, argv, &i, "--budget-step");
            unsigned long long n = strtoull(v, &end, 10);
            if (*v < '0' || *v > '9' || *end) usage_error("bad --budget-step '%s'", v);
            o->budget_step = n;
        } else if (strcmp(a, "--check") == 0) {
            o->check = 1;
        } else if (is_opt(a, "--check-every")) {
            const char *v = opt_value(argc, argv, &i, "--check-every");
            long n = strtol(v, &end, 10);
            if (*v < '1' || *v > '9' || *end || n < 1 || n > 100000000) usage_error("bad --check-every '%s'", v);
            o->check = (int)n;
        } else if (strcmp(a, "--table") == 0) {
            o->table = 1;
        } else if (strcmp(a, "--split-arenas") == 0) {
            o->split_arenas = 1;
        } else if (a[0] == '-' && a[1]) {
            usage_error("unknown option '%s'", a);
        } else {
            o->files[o->n_files++] = argv[i];
        }
    }
    if (o->n_files == 0) usage_error("%s", "no trace file given");
    if (o->split_arenas && (o->budget_search || o->fault))
        usage_error("%s", "--split-arenas replays the metrics and timing runs; not with "
                    "--budget-search or --fault");
}
