/*
 * copy.c - a crew of copy threads for one offload or restore, and memcpy
 * with streaming stores (copy.h says why).
 */
#include "arena/copy.h"

#include <sched.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__SSE2__)
#include <emmintrin.h>
#define CUA_HAVE_STREAM 1
#endif

/* ---- streaming stores -------------------------------------------------------------- */

void _cua_copy_stream(void *dst, const void *src, size_t n)
{
#ifdef CUA_HAVE_STREAM
    unsigned char *d = dst;
    const unsigned char *s = src;
    size_t head = (16 - ((uintptr_t)d & 15)) & 15; /* stores must be 16-byte aligned */
    if (n < head + 256) {
        memcpy(d, s, n);
        return;
    }
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) { /* one cache line per step: the write-combining unit */
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(s + i + 48));
        _mm_stream_si128((__m128i *)(void *)(d + i), a);
        _mm_stream_si128((__m128i *)(void *)(d + i + 16), b);
        _mm_stream_si128((__m128i *)(void *)(d + i + 32), c);
        _mm_stream_si128((__m128i *)(void *)(d + i + 48), e);
    }
    _mm_sfence(); /* streamed stores are weakly ordered: finish them before anyone looks */
    memcpy(d + i, s + i, n - i);
#else
    memcpy(dst, src, n);
#endif
}

/* ---- the crew ------------------------------------------------------------------------- */

unsigned _cua_copy_helpers(void)
{
    long n = -1;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 1) return 0;
    return (unsigned)_cua_min((uint64_t)n - 1, CUA_COPY_THREADS_MAX);
}

/* Copy slice k of the current job. */
static void copy_part(const cua_crew *c, unsigned k)
{
    size_t at = (size_t)k * c->per;
    if (at >= c->n) return;
    size_t len = _cua_min(c->n - at, c->per);
    if (c->stream)
        _cua_copy_stream(c->dst + at, c->src + at, len);
    else
        memcpy(c->dst + at, c->src + at, len);
}

static void *crew_main(void *p)
{
    cua_crew *c = ((struct cua_crew_arg *)p)->crew;
    unsigned k = ((struct cua_crew_arg *)p)->k;
    uint64_t seen = 0;
    _cua_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && c->gen == seen) pthread_cond_wait(&c->go, &c->mu.m);
        if (c->quit) break;
        seen = c->gen;
        bool mine = k < c->parts;
        _cua_mutex_unlock(&c->mu);
        if (mine) copy_part(c, k);
        _cua_mutex_lock(&c->mu);
        if (mine && --c->pending == 0) pthread_cond_signal(&c->done);
    }
    _cua_mutex_unlock(&c->mu);
    return NULL;
}

void _cua_crew_start(cua_crew *c, unsigned helpers)
{
    memset(c, 0, sizeof *c);
    helpers = (unsigned)_cua_min(helpers, _cua_copy_helpers());
    if (!helpers || _cua_mutex_init(&c->mu, CUA_LOCK_RANK_CREW) != 0) return;
    if (pthread_cond_init(&c->go, NULL) != 0) {
        pthread_mutex_destroy(&c->mu.m);
        return;
    }
    if (pthread_cond_init(&c->done, NULL) != 0) {
        pthread_cond_destroy(&c->go);
        pthread_mutex_destroy(&c->mu.m);
        return;
    }
    c->ready = true;
    for (unsigned i = 0; i < helpers; i++) {
        c->arg[i] = (struct cua_crew_arg){c, i + 1};
        if (pthread_create(&c->th[i], NULL, crew_main, &c->arg[i]) != 0) break;
        c->nthreads++;
    }
}

void _cua_crew_copy(cua_crew *c, void *dst, const void *src, size_t n, bool stream)
{
    unsigned parts = (unsigned)_cua_min(n / CUA_COPY_SLICE_MIN, (uint64_t)c->nthreads + 1);
    if (parts < 2) {
        if (stream)
            _cua_copy_stream(dst, src, n);
        else
            memcpy(dst, src, n);
        return;
    }
    _cua_mutex_lock(&c->mu);
    c->dst = dst;
    c->src = src;
    c->n = n;
    c->per = ((n + parts - 1) / parts + 4095) & ~(size_t)4095; /* page-aligned slices */
    c->stream = stream;
    c->parts = parts;
    c->pending = parts - 1;
    c->gen++;
    pthread_cond_broadcast(&c->go);
    _cua_mutex_unlock(&c->mu);
    copy_part(c, 0);
    _cua_mutex_lock(&c->mu);
    while (c->pending) pthread_cond_wait(&c->done, &c->mu.m);
    _cua_mutex_unlock(&c->mu);
}

void _cua_crew_stop(cua_crew *c)
{
    if (!c->ready) return;
    _cua_mutex_lock(&c->mu);
    c->quit = true;
    pthread_cond_broadcast(&c->go);
    _cua_mutex_unlock(&c->mu);
    for (unsigned i = 0; i < c->nthreads; i++) pthread_join(c->th[i], NULL);
    pthread_cond_destroy(&c->done);
    pthread_cond_destroy(&c->go);
    pthread_mutex_destroy(&c->mu.m);
    c->nthreads = 0;
    c->ready = false;
}
