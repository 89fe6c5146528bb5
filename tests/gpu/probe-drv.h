/* probe-drv.h - what the driver-API probes (probe-copy.c, probe-vmm-overlap.c)
 * share: a check that exits with the driver's words on a failed call, and a
 * monotonic clock in seconds. Header only: each probe is one cc command. */
#ifndef CUA_PROBE_DRV_H
#define CUA_PROBE_DRV_H

#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CK(x)                                                                                   \
    do {                                                                                        \
        CUresult r_ = (x);                                                                      \
        if (r_ != CUDA_SUCCESS) {                                                               \
            const char *s_ = "?";                                                               \
            cuGetErrorString(r_, &s_);                                                          \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, s_);                       \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static inline double probe_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif /* CUA_PROBE_DRV_H */
