/*
 * lock.c - the slow paths of cua_lock_t (internal.h): a contended lock spins a
 * little, then sleeps on a futex; an unlock that saw waiters wakes one.
 *
 * The word is 0 (free), 1 (held) or 2 (held, and someone may sleep on it): the
 * three-state mutex of Drepper's "Futexes Are Tricky". A thread that sleeps
 * first sets the word to 2, so the holder's unlock knows to call the kernel;
 * an uncontended unlock never does.
 */
#include "internal.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Tries before sleeping: the arena lock is held for well under a microsecond. */
#define CUA_LOCK_SPINS 100

static void futex_wait(_Atomic uint32_t *word, uint32_t value)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static void futex_wake_one(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void _cua_lock_slow(cua_lock_t *l)
{
    for (int i = 0; i < CUA_LOCK_SPINS; i++) {
        uint32_t expect = 0;
        if (atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->word, &expect, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        cpu_relax();
    }
    /* Announce a sleeper (2); whoever finds the word 0 here owns the lock, and
     * keeps 2, which costs at most one needless wake at its unlock. */
    while (atomic_exchange_explicit(&l->word, 2, memory_order_acquire) != 0)
        futex_wait(&l->word, 2);
}

void _cua_unlock_wake(cua_lock_t *l)
{
    futex_wake_one(&l->word);
}
