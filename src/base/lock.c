/*
 * lock.c - the slow path of cua_lock_t (internal.h): a taker that found the
 * lock held spins with a pause, then yields its CPU, then naps, trying again
 * between each. The naps are short (tens of microseconds) and come only
 * after thousands of failed tries, that is when the holder was descheduled
 * or the arena is shared by many busy threads; they end by their time-out
 * (Note [naps that a release ends]: why a release does not wake them).
 *
 * In builds without NDEBUG it also keeps the locks each thread holds and
 * checks the order of src/base/lockrank.h at every take (the witness).
 */
#include "base/internal.h"

#include <sched.h>
#if CUA_LOCK_WAKES
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define CUA_LOCK_SPINS 256   /* tries with a pause in between */
#define CUA_LOCK_YIELDS 64   /* then tries with a sched_yield in between */
#define CUA_LOCK_NAP_NS 20000

static inline bool try_take(cua_lock_t *l)
{
    uint32_t expect = 0;
    return atomic_load_explicit(&l->word, memory_order_relaxed) == 0 &&
           atomic_compare_exchange_weak_explicit(&l->word, &expect, 1, memory_order_acquire,
                                                 memory_order_relaxed);
}

/* Note [naps that a release ends]: a taker that spun and yielded without
 * getting the lock naps, and while it naps the lock may be free. With 16
 * threads on one arena (cuarena-mt) most takers napped at once, so a
 * release that sees a napping taker could end its nap: the taker counts
 * itself in `sleepers` and sleeps on the lock word with a futex, and the
 * release, reading the count before it frees the word, wakes one. Measured,
 * it loses: on an H100 (16 cores, cuarena-mt --backend cuda --ops 400000,
 * thread_cache:auto, one run, events asked under the lock in both builds)
 * 8 / 16 threads ran at 6.36 / 5.50 M ops/s with naps that end by their
 * time-out and 4.49 / 3.66 with the wake. With 16 takers a sleeper is
 * nearly always counted, so nearly every release pays a system call on the
 * releasing thread and a woken taker's context switch, and the lock passes
 * between more threads (each pass moves the arena's cache lines) where the
 * naps leave a few takers to pass it among themselves. So the naps end by
 * their time-out; -DCUA_LOCK_WAKE builds the wake (on Linux) to measure it
 * again. A wake names only the word's address (one that reaches memory
 * reused since is a spurious wake, which takers tolerate). */
#if CUA_LOCK_WAKES
static void nap(cua_lock_t *l, const struct timespec *t)
{
    atomic_fetch_add_explicit(&l->sleepers, 1, memory_order_relaxed);
    /* (it sleeps only while the word still reads "held") */
    syscall(SYS_futex, &l->word, FUTEX_WAIT_PRIVATE, 1u, t, NULL, 0);
    atomic_fetch_sub_explicit(&l->sleepers, 1, memory_order_relaxed);
}

void _cua_lock_wake(cua_lock_t *l)
{
    syscall(SYS_futex, &l->word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
#else
static void nap(cua_lock_t *l, const struct timespec *t)
{
    (void)l;
    nanosleep(t, NULL);
}

void _cua_lock_wake(cua_lock_t *l) { (void)l; }
#endif

void _cua_lock_slow(cua_lock_t *l)
{
    for (int i = 0; i < CUA_LOCK_SPINS; i++) {
        if (try_take(l)) return;
        _cua_cpu_relax();
    }
    for (int i = 0; i < CUA_LOCK_YIELDS; i++) {
        if (try_take(l)) return;
        sched_yield();
    }
    const struct timespec t = {0, CUA_LOCK_NAP_NS};
    while (!try_take(l)) nap(l, &t);
}

/* ---- the lock order (lockrank.h), in builds without NDEBUG --------------------- */

#if CUA_LOCK_WITNESS
#include <stdio.h>

#define CUA_WITNESS_HELD 16 /* locks one thread may hold at once */

/* The locks this thread holds, in the order taken. */
static _Thread_local struct held {
    const void *lock;
    unsigned rank;
} tl_held[CUA_WITNESS_HELD];
static _Thread_local unsigned tl_nheld;

static const char *rank_name(unsigned rank)
{
    static const char *const names[CUA_LOCK_RANK_COUNT] = {
        [CUA_LOCK_RANK_NONE] = "a lock without a rank",
#define CUA_LOCK_RANK_NAME_(name, text) [CUA_LOCK_RANK_##name] = text " (" #name ")",
        CUA_LOCK_RANKS(CUA_LOCK_RANK_NAME_)
#undef CUA_LOCK_RANK_NAME_
    };
    return rank < CUA_LOCK_RANK_COUNT ? names[rank] : "a lock of an unknown rank";
}

static void witness_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void witness_fail(const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    _cua_assert_fail(msg, __FILE__, __LINE__);
}

void _cua_lock_witness_check(unsigned rank)
{
    if (rank == CUA_LOCK_RANK_NONE || rank >= CUA_LOCK_RANK_COUNT)
        witness_fail("lock order: taking %s (rank %u): not initialised, or not in "
                     "src/base/lockrank.h", rank_name(rank), rank);
    for (unsigned i = 0; i < tl_nheld; i++)
        if (tl_held[i].rank >= rank)
            witness_fail("lock order: taking %s while holding %s; src/base/lockrank.h "
                         "orders them the other way", rank_name(rank), rank_name(tl_held[i].rank));
}

void _cua_lock_witness_take(const void *lock, unsigned rank, bool checked)
{
    if (checked) _cua_lock_witness_check(rank);
    if (tl_nheld == CUA_WITNESS_HELD)
        witness_fail("lock order: taking %s while holding %d locks already", rank_name(rank),
                     CUA_WITNESS_HELD);
    tl_held[tl_nheld++] = (struct held){lock, rank};
}

bool _cua_lock_witness_holds(unsigned rank)
{
    for (unsigned i = 0; i < tl_nheld; i++)
        if (tl_held[i].rank == rank) return true;
    return false;
}

void _cua_lock_witness_drop(const void *lock)
{
    for (unsigned i = tl_nheld; i-- > 0;) {
        if (tl_held[i].lock != lock) continue;
        memmove(&tl_held[i], &tl_held[i + 1], (tl_nheld - i - 1) * sizeof *tl_held);
        tl_nheld--;
        return;
    }
    witness_fail("lock order: releasing the lock at %p, which this thread does not hold", lock);
}
#endif
