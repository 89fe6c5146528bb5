/*
 * internal.h - what every layer of cuarena shares: assert tiers, errors,
 * locks, clocks and small helpers. Internal names start with _cua_ (functions)
 * or CUA_ / cua_ inside src/ only.
 */
#ifndef CUA_INTERNAL_H
#define CUA_INTERNAL_H

#include "cuarena.h"
#include "base/lockrank.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- assert tiers (like mimalloc's MI_DEBUG) ------------------------------
 * CUA_DEBUG 0: release, no asserts.
 * CUA_DEBUG 1: cheap asserts (O(1) each).
 * CUA_DEBUG 2: full: expensive asserts, and the checker after every call.
 * Set by meson's debug_level option; release builds also get -DNDEBUG.        */
#ifndef CUA_DEBUG
#define CUA_DEBUG 0
#endif

void _cua_assert_fail(const char *expr, const char *file, int line);

#if CUA_DEBUG >= 1
#define cua_assert(x) ((x) ? (void)0 : _cua_assert_fail(#x, __FILE__, __LINE__))
#else
#define cua_assert(x) ((void)0)
#endif
#if CUA_DEBUG >= 2
#define cua_assert_expensive(x) cua_assert(x)
#else
#define cua_assert_expensive(x) ((void)0)
#endif

#define CUA_LIKELY(x) __builtin_expect(!!(x), 1)
#define CUA_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- errors ---------------------------------------------------------------- */

/** Set the thread's message from a printf format and return `status`. */
cua_status _cua_error(cua_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** As _cua_error, but keep the previous message after ": " (what a lower layer said). */
cua_status _cua_error_wrap(cua_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** snprintf into buf at offset *len; *len grows by what was (or, past cap,
 *  would have been) written, so a cut text still tells the length it needs. */
void _cua_put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** Size of the thread's message buffer (cua_last_error), its end included. */
#define CUA_MSG_CAP 4096

/** Copy the thread's message out (cap bytes at most) and back, around code
 *  that may set another one (user callbacks). */
void _cua_error_stash(char *buf, size_t cap);
void _cua_error_restore(const char *buf);

/** User callbacks (arena events, eviction) the calling thread is inside
 *  (events.c): while it is in one, unsetting a callback does not wait for
 *  the calls in flight on other threads (two threads, each in a callback,
 *  would wait for each other). */
extern _Thread_local unsigned _cua_in_callback;

/** How many bytes of the text s[0..n) fit in `max` without cutting a UTF-8
 *  character: a cut that would fall inside one moves back to its first byte
 *  (names are cut so; a cut character would make them invalid UTF-8 in
 *  JSON, messages and Python). Bytes that are no UTF-8 are cut where they fall. */
static inline size_t _cua_utf8_fit(const char *s, size_t n, size_t max)
{
    if (n <= max) return n;
    size_t k = max;
    while (k > 0 && max - k < 3 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return ((unsigned char)s[k] & 0xC0) == 0x80 ? max : k;
}

/** Format a byte count for messages ("1.5 MiB") into buf (at least 32 bytes). */
const char *_cua_fmt_bytes(char *buf, size_t cap, uint64_t bytes);

/* ---- locks ------------------------------------------------------------------ */

/* The lock order is checked in builds without NDEBUG (lockrank.h, lock.c):
 * each lock carries its rank there, and every take and release is noted in
 * the thread's list of held locks. Release builds compile it all out. */
#ifndef CUA_LOCK_WITNESS
#ifdef NDEBUG
#define CUA_LOCK_WITNESS 0
#else
#define CUA_LOCK_WITNESS 1
#endif
#endif

#if CUA_LOCK_WITNESS
/* Abort unless every lock the thread holds ranks below `rank`. */
void _cua_lock_witness_check(unsigned rank);
/* A thread takes `lock` of `rank`: checked (a blocking take) as above, then
 * noted as held. */
void _cua_lock_witness_take(const void *lock, unsigned rank, bool checked);
/* The thread released `lock`: no longer held (aborts if it was not). */
void _cua_lock_witness_drop(const void *lock);
/* Whether the thread holds a lock of `rank`. */
bool _cua_lock_witness_holds(unsigned rank);
#define CUA_WITNESS_TAKE(lock, rank, checked) _cua_lock_witness_take(lock, rank, checked)
#define CUA_WITNESS_DROP(lock) _cua_lock_witness_drop(lock)
#define CUA_WITNESS_RANK(rank) , (rank)
#else
#define CUA_WITNESS_TAKE(lock, rank, checked) ((void)0)
#define CUA_WITNESS_DROP(lock) ((void)0)
#define CUA_WITNESS_RANK(rank)
#endif

/* A lock of one atomic word (0 free, 1 held). Taking it uncontended is one
 * compare-and-swap and no call; dropping it is a plain release store, which
 * does not drain the store buffer as an atomic exchange would (with
 * pthread_mutex the two atomic instructions were about a quarter of the
 * alloc/free fast path). A
 * contended taker spins, then yields, then sleeps in short naps (lock.c)
 * that end by their time-out; built with -DCUA_LOCK_WAKE (Linux), a release
 * that sees a sleeper wakes one (Note [naps that a release ends], lock.c). */
#if defined(__linux__) && defined(CUA_LOCK_WAKE)
#define CUA_LOCK_WAKES 1
#else
#define CUA_LOCK_WAKES 0
#endif
typedef struct cua_lock_t {
    _Atomic uint32_t word;
    _Atomic uint32_t sleepers; /* takers in a nap that a release may end (CUA_LOCK_WAKE) */
#if CUA_LOCK_WITNESS
    _Atomic uint32_t rank; /* a cua_lock_rank (atomic: a stale taker of a
                            * destroyed arena's lock reads it while a new
                            * arena in that memory sets it) */
#endif
} cua_lock_t;

/* A static cua_lock_t of rank CUA_LOCK_RANK_<name>, unlocked. */
#define CUA_LOCK_INIT(name) { 0, 0 CUA_WITNESS_RANK(CUA_LOCK_RANK_##name) }

/* A spinning thread's pause between two looks (x86 pause, ARM yield). */
static inline void _cua_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void _cua_lock_slow(cua_lock_t *l);
/* Wake one taker napping on l (lock.c). */
void _cua_lock_wake(cua_lock_t *l);

static inline void _cua_lock_init(cua_lock_t *l, cua_lock_rank rank)
{
    atomic_init(&l->word, 0);
    atomic_init(&l->sleepers, 0);
#if CUA_LOCK_WITNESS
    atomic_store_explicit(&l->rank, (uint32_t)rank, memory_order_relaxed);
#else
    (void)rank;
#endif
}
/* Give an unheld lock another rank (an arena's memory serves arenas of both
 * ranks: lockrank.h's ARENA and ARENA_SUPPLIED). */
static inline void _cua_lock_set_rank(cua_lock_t *l, cua_lock_rank rank)
{
#if CUA_LOCK_WITNESS
    atomic_store_explicit(&l->rank, (uint32_t)rank, memory_order_relaxed);
#else
    (void)l, (void)rank;
#endif
}
/* Check the order for a blocking take of l, without noting it (a caller
 * that tries first and waits after). */
static inline void _cua_lock_check(const cua_lock_t *l)
{
#if CUA_LOCK_WITNESS
    _cua_lock_witness_check(atomic_load_explicit(&l->rank, memory_order_relaxed));
#else
    (void)l;
#endif
}
static inline void _cua_lock(cua_lock_t *l)
{
    CUA_WITNESS_TAKE(l, atomic_load_explicit(&l->rank, memory_order_relaxed), true);
    uint32_t expect = 0;
    if (CUA_LIKELY(atomic_compare_exchange_strong_explicit(&l->word, &expect, 1,
                                                           memory_order_acquire,
                                                           memory_order_relaxed)))
        return;
    _cua_lock_slow(l);
}
static inline bool _cua_trylock(cua_lock_t *l)
{
    uint32_t expect = 0;
    bool got = atomic_compare_exchange_strong_explicit(&l->word, &expect, 1,
                                                       memory_order_acquire,
                                                       memory_order_relaxed);
    if (got) CUA_WITNESS_TAKE(l, atomic_load_explicit(&l->rank, memory_order_relaxed), false);
    return got;
}
static inline void _cua_unlock(cua_lock_t *l)
{
    CUA_WITNESS_DROP(l);
    /* (read before the release: once the word is 0 another thread may take
     * the lock and free the memory it lives in, a thread cache for one) */
    uint32_t sleepers =
        CUA_LOCK_WAKES ? atomic_load_explicit(&l->sleepers, memory_order_relaxed) : 0;
    atomic_store_explicit(&l->word, 0, memory_order_release);
    if (CUA_UNLIKELY(sleepers)) _cua_lock_wake(l);
}
static inline void _cua_lock_destroy(cua_lock_t *l) { (void)l; }

/* A pthread mutex with its rank (for the process-wide tables, and where a
 * condition variable waits on it: pass &m->m). */
typedef struct cua_mutex {
    pthread_mutex_t m;
#if CUA_LOCK_WITNESS
    unsigned rank;
#endif
} cua_mutex;

#define CUA_MUTEX_INIT(name) { PTHREAD_MUTEX_INITIALIZER CUA_WITNESS_RANK(CUA_LOCK_RANK_##name) }

static inline int _cua_mutex_init(cua_mutex *x, cua_lock_rank rank)
{
#if CUA_LOCK_WITNESS
    x->rank = rank;
#else
    (void)rank;
#endif
    return pthread_mutex_init(&x->m, NULL);
}
static inline void _cua_mutex_lock(cua_mutex *x)
{
    CUA_WITNESS_TAKE(x, x->rank, true);
    pthread_mutex_lock(&x->m);
}
static inline void _cua_mutex_unlock(cua_mutex *x)
{
    CUA_WITNESS_DROP(x);
    pthread_mutex_unlock(&x->m);
}

/* A pthread read-write lock with its rank: readers are ordered as writers. */
typedef struct cua_rwlock {
    pthread_rwlock_t l;
#if CUA_LOCK_WITNESS
    unsigned rank;
#endif
} cua_rwlock;

#define CUA_RWLOCK_INIT(name) { PTHREAD_RWLOCK_INITIALIZER CUA_WITNESS_RANK(CUA_LOCK_RANK_##name) }

static inline void _cua_rwlock_rdlock(cua_rwlock *x)
{
    CUA_WITNESS_TAKE(x, x->rank, true);
    pthread_rwlock_rdlock(&x->l);
}
static inline void _cua_rwlock_wrlock(cua_rwlock *x)
{
    CUA_WITNESS_TAKE(x, x->rank, true);
    pthread_rwlock_wrlock(&x->l);
}
static inline void _cua_rwlock_unlock(cua_rwlock *x)
{
    CUA_WITNESS_DROP(x);
    pthread_rwlock_unlock(&x->l);
}

/* ---- clocks and arithmetic -------------------------------------------------- */

static inline uint64_t _cua_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline bool _cua_is_pow2(size_t x) { return x && !(x & (x - 1)); }

/** Round x up to a multiple of the power of two a; false if that overflows. */
static inline bool _cua_align_up(size_t x, size_t a, size_t *out)
{
    if (x > SIZE_MAX - (a - 1)) return false;
    *out = (x + a - 1) & ~(a - 1);
    return true;
}

static inline unsigned _cua_log2(uint64_t x) { return 63u - (unsigned)__builtin_clzll(x); }

static inline size_t _cua_min(size_t a, size_t b) { return a < b ? a : b; }
static inline size_t _cua_max(size_t a, size_t b) { return a > b ? a : b; }

/* Index of the first element whose key is >= key, in an array of n elements of
 * `elem` bytes sorted by a uintptr_t key that each element starts with. */
static inline size_t _cua_lower_bound(const void *arr, size_t n, size_t elem, uintptr_t key)
{
    const char *items = arr;
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (*(const uintptr_t *)(const void *)(items + mid * elem) < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Put `item` (elem bytes, starting with its uintptr_t key) in its place in
 * the sorted array arr of *n elements, which has room for one more. */
static inline void _cua_sorted_insert(void *arr, size_t *n, size_t elem, const void *item)
{
    uintptr_t key;
    memcpy(&key, item, sizeof key);
    char *items = arr;
    size_t i = _cua_lower_bound(arr, *n, elem, key);
    memmove(items + (i + 1) * elem, items + i * elem, (*n - i) * elem);
    memcpy(items + i * elem, item, elem);
    (*n)++;
}

/* Remove elements [first, end) of the array arr of *n elements of elem bytes. */
static inline void _cua_array_remove(void *arr, size_t *n, size_t elem, size_t first, size_t end)
{
    char *items = arr;
    memmove(items + first * elem, items + end * elem, (*n - end) * elem);
    *n -= end - first;
}

/* Devices cuarena knows by ordinal: 0 .. CUA_MAX_DEVICES - 1 (process-wide
 * tables are indexed by device; a device mask is one uint64_t). */
#define CUA_MAX_DEVICES 64

#define CUA_KIB ((size_t)1 << 10)
#define CUA_MIB ((size_t)1 << 20)
#define CUA_GIB ((size_t)1 << 30)

#define CUA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif /* CUA_INTERNAL_H */
