/* probe-bigalloc.c - one allocation the size of the device's headroom, and
 * one past it, with the CUDA backend (a measuring/debugging tool). Prints a
 * backtrace on a crash. */
#define _GNU_SOURCE
#include "cuarena.h"

#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static void on_crash(int sig)
{
    void *bt[64];
    int n = backtrace(bt, 64);
    fprintf(stderr, "signal %d\n", sig);
    backtrace_symbols_fd(bt, n, 2);
    _exit(1);
}

int main(void)
{
    signal(SIGSEGV, on_crash);
    cua_arena *def, *kv;
    void *p;
    if (cua_arena_default(0, &def) != CUA_OK) return 77;
    printf("default: %s\n", cua_status_name(cua_arena_alloc(def, (size_t)2 << 30, 0, &p)));
    cua_free(p);
    if (cua_arena_create_conf("kv", NULL, &kv) != CUA_OK) return 1;
    size_t h = 0;
    cua_headroom(0, &h);
    size_t sizes[] = {h - ((size_t)64 << 20), h, h + ((size_t)1 << 30)};
    for (int i = 0; i < 3; i++) {
        cua_status st = cua_arena_alloc(kv, sizes[i], 0, &p);
        printf("kv %zu bytes (headroom %zu): %s %.200s\n", sizes[i], h, cua_status_name(st),
               st ? cua_last_error() : "");
        fflush(stdout);
        if (st == CUA_OK) cua_free(p);
        size_t r;
        cua_arena_trim(kv, 0, &r);
    }
    cua_arena_destroy(kv, CUA_DESTROY_FORCE);
    cua_arena_destroy(def, CUA_DESTROY_FORCE);
    return 0;
}
