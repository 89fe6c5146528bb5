/*
 * copy.h - large host memory copies for offload and restore: split among a
 * crew of helper threads that lives for one offload or restore (cuarena keeps
 * no thread of its own), with non-temporal stores where they help.
 *
 * Why: on the H100 machine one thread moves 6-10 GB/s between pinned and
 * pageable memory while the copy engine moves 55 GB/s; memcpy's stores read
 * each destination line first and fill the cache with data nobody reads
 * again, so streaming stores into the host image double what 8 threads move
 * (27 -> 69 GB/s, tests/gpu/probe-copy.c).
 */
#ifndef CUA_COPY_H
#define CUA_COPY_H

#include "base/internal.h"

/* Most helper threads of a crew (the calling thread works too). */
#define CUA_COPY_THREADS_MAX 16
/* Below this many bytes per thread, fewer threads take part. */
#define CUA_COPY_SLICE_MIN ((size_t)1 << 20)

typedef struct cua_crew cua_crew;
struct cua_crew_arg {
    cua_crew *crew;
    unsigned k;             /* the helper's slice: 1.. */
};

struct cua_crew {
    cua_mutex mu;
    pthread_cond_t go, done;
    bool ready;             /* mu, go and done exist */
    pthread_t th[CUA_COPY_THREADS_MAX];
    struct cua_crew_arg arg[CUA_COPY_THREADS_MAX];
    unsigned nthreads;      /* helpers started */
    /* the job: each worker copies its slice of [dst, dst + n) */
    unsigned char *dst;
    const unsigned char *src;
    size_t n, per;
    bool stream;            /* non-temporal stores */
    unsigned parts;         /* slices of this job, the caller's (0) included */
    uint64_t gen;           /* job number: a helper works when it changes */
    unsigned pending;       /* helpers' slices not copied yet */
    bool quit;
};

/* Start up to `helpers` threads (fewer when the machine has fewer CPUs, none
 * when a thread cannot start: the caller then copies alone). Never fails. */
void _cua_crew_start(cua_crew *c, unsigned helpers);
/* Copy n bytes, split among the crew and the caller; returns when all is
 * copied. stream: non-temporal stores (for a destination nobody reads soon). */
void _cua_crew_copy(cua_crew *c, void *dst, const void *src, size_t n, bool stream);
/* Stop and join the helpers. */
void _cua_crew_stop(cua_crew *c);

/* memcpy with non-temporal stores where the CPU has them (x86-64), else memcpy. */
void _cua_copy_stream(void *dst, const void *src, size_t n);

/* Helpers worth starting on this machine for copies: CPUs this thread may
 * run on, less one (the caller), at most CUA_COPY_THREADS_MAX. */
unsigned _cua_copy_helpers(void);

#endif /* CUA_COPY_H */
