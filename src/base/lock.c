/*
 * lock.c - the slow path of cua_lock_t (internal.h): a taker that found the
 * lock held spins with a pause, then yields its CPU, then naps, trying again
 * between each. The unlock is a plain store and wakes nobody, so a napping
 * taker notices the release at its next try: the naps are short (tens of
 * microseconds) and come only after thousands of failed tries, that is when
 * the holder was descheduled or the arena is shared by many busy threads.
 */
#include "base/internal.h"

#include <sched.h>

#define CUA_LOCK_SPINS 256   /* tries with a pause in between */
#define CUA_LOCK_YIELDS 64   /* then tries with a sched_yield in between */
#define CUA_LOCK_NAP_NS 20000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline bool try_take(cua_lock_t *l)
{
    uint32_t expect = 0;
    return atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
           atomic_compare_exchange_weak_explicit(&l->word, &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed);
}

void _cua_lock_slow(cua_lock_t *l)
{
    for (int i = 0; i < CUA_LOCK_SPINS; i++) {
        if (try_take(l)) return;
        cpu_relax();
    }
    for (int i = 0; i < CUA_LOCK_YIELDS; i++) {
        if (try_take(l)) return;
        sched_yield();
    }
    const struct timespec nap = {0, CUA_LOCK_NAP_NS};
    while (!try_take(l)) nanosleep(&nap, NULL);
}
