/*
 * pin.h - pin the calling thread of a benchmark to one CPU, named by the
 * environment variable CUA_BENCH_PIN (unset or "none": not pinned).
 *
 * The timed tools call it after the CUDA context exists, so that only the
 * thread that calls the allocator is pinned: the driver's own threads, created
 * with the context, keep every CPU and do not compete with it for that one.
 * (taskset on the whole process pins those threads to the same CPU.)
 */
#ifndef CUA_BENCH_PIN_H
#define CUA_BENCH_PIN_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cpu_set_t bench_pin_saved;
static int bench_pin_active;

/* 0: pinned or nothing asked; -1: the CPU is not valid or not allowed. */
static inline int bench_pin_thread(const char *tool)
{
    const char *v = getenv("CUA_BENCH_PIN");
    if (!v || !*v || !strcmp(v, "none")) return 0;
    char *end;
    long cpu = strtol(v, &end, 10);
    cpu_set_t set;
    CPU_ZERO(&set);
    if (*end || cpu < 0 || cpu >= CPU_SETSIZE) {
        fprintf(stderr, "%s: CUA_BENCH_PIN='%s' is not a CPU number\n", tool, v);
        return -1;
    }
    CPU_SET((int)cpu, &set);
    if (!bench_pin_active && sched_getaffinity(0, sizeof bench_pin_saved, &bench_pin_saved) == 0)
        bench_pin_active = 1;
    if (sched_setaffinity(0, sizeof set, &set)) { /* 0: the calling thread */
        fprintf(stderr, "%s: cannot pin to CPU %ld\n", tool, cpu);
        return -1;
    }
    return 0;
}

/* Give the thread its CPUs of before bench_pin_thread back, so that threads a
 * later CUDA context starts are not pinned with it. */
static inline void bench_unpin_thread(void)
{
    if (bench_pin_active) sched_setaffinity(0, sizeof bench_pin_saved, &bench_pin_saved);
    bench_pin_active = 0;
}

#endif /* CUA_BENCH_PIN_H */
