/*
 * lock.c - the slow path of cua_lock_t (internal.h): a taker that found the
 * lock held spins with a pause, then yields its CPU, then naps, trying again
 * between each. The unlock is a plain store and wakes nobody, so a napping
 * taker notices the release at its next try: the naps are short (tens of
 * microseconds) and come only after thousands of failed tries, that is when
 * the holder was descheduled or the arena is shared by many busy threads.
 *
 * In builds without NDEBUG it also keeps the locks each thread holds and
 * checks the order of src/base/lockrank.h at every take (the witness).
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
