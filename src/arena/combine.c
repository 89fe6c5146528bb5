/*
 * combine.c - allocations and frees of a contended arena done by the thread
 * that holds its lock (combine.h).
 *
 * Note [calls the lock holder does]: threads that share an arena take its
 * lock for what their caches cannot serve (cuarena-mt's default: about a
 * tenth of the allocations and frees). On an H100's 16 cores one such call
 * took about 47 ns with one thread and 740 ns with two (cuarena-mt's ops a
 * second over its calls through the lock: 10.73 M ops at one thread, all
 * through it, 6.42 M at two with 0.895 cache hits): each call reads and
 * writes the arena's counters, bins, block descriptors and pointer map,
 * which the call before it left in another core's cache, and the lock itself
 * passes from core to core. The lock then served about half a million calls
 * a second whatever the thread count, and 16 threads ran at 0.4x of one. So
 * a thread that finds the lock held posts its call and waits, and the holder
 * does the posted calls before it lets go (flat combining: Hendler, Incze,
 * Shavit and Tzafrir, 2010): the arena's data stays in one core's cache, and
 * a waiting thread spins on its own request, not on the lock's word.
 *
 * The protocol. A poster fills its request (thread-local), puts its address
 * into a free slot of the arena with a compare-and-swap and sets the slot's
 * bit in `req_mask`. The holder takes a request by emptying its slot (only
 * a holder empties slots, so a slot's request is taken once), does it, and
 * stores `done` (release); the poster sees `done` (acquire) and reads the
 * results. A poster that takes the lock itself (it came free) withdraws its
 * request by emptying the slot if it still holds it: no holder can take it
 * meanwhile, and had one taken it before, it is done. So
 * every request is done once or withdrawn, and no poster waits on a lock
 * nobody will release: it tries the lock between its looks.
 *
 * What a posted call may not do on another thread: deliver events to the
 * user's callback (so nothing is posted while one is set), run event jobs
 * without the lock (an allocation that plans them comes back to its poster
 * with the plan, as if it had made it itself: api.c runs the jobs and
 * retries), or retry after an out-of-memory (it comes back, and the poster
 * relieves the pressure as it would have). A failure's words go back with
 * it, and the holder keeps its own call's.
 */
#include "arena/combine.h"
#include "arena/arena.h"
#include "arena/events.h"
#include "arena/tcache.h"
#include "backend/backend.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CUA_COMBINE_SERVE_MAX 64 /* calls one holder does for others before it lets go */
#define CUA_COMBINE_SPINS 256    /* a poster's looks with a pause in between */
#define CUA_COMBINE_YIELDS 64    /* then with a sched_yield */
#define CUA_COMBINE_NAP_NS 20000 /* then with a nap */

/* Whether a's calls may be posted: not while an event callback is set (a
 * call's events would reach it on the holder's thread), nor in an arena whose
 * segments come from the user's supplier (its functions would run on the
 * holder's thread, with that thread's current device and stream). */
static bool combining(const cua_arena *a)
{
#ifdef CUA_NO_COMBINE /* (for measuring: every thread takes the lock itself) */
    (void)a;
    return false;
#else
    return !_cua_event_listening() && a->bk->kind != CUA_BK_SUPPLIER;
#endif
}

/* ---- the poster ------------------------------------------------------------------ */

/* Put r into a free slot: its index, or -1 when every slot is taken. */
static int post(cua_arena *a, cua_req *r)
{
    for (int i = 0; i < CUA_COMBINE_SLOTS; i++) {
        cua_req *none = NULL;
        /* (acq_rel: the holder's emptying of the slot, bit first, comes
         * before this poster's bit) */
        if (atomic_load_explicit(&a->req[i], memory_order_relaxed) == NULL &&
            atomic_compare_exchange_strong_explicit(&a->req[i], &none, r, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            atomic_fetch_or_explicit(&a->req_mask, (uint64_t)1 << i, memory_order_release);
            return i;
        }
    }
    return -1;
}

/* Empty slot i (lock held: only the holder empties a slot): its bit first,
 * so that a poster that takes the slot next keeps the bit it sets. */
static void empty_slot(cua_arena *a, int i)
{
    atomic_fetch_and_explicit(&a->req_mask, ~((uint64_t)1 << i), memory_order_relaxed);
    atomic_store_explicit(&a->req[i], NULL, memory_order_release);
}

/* The poster holds the lock now: take its request back (true), or find it
 * taken, which means done (false). */
static bool withdraw(cua_arena *a, int i, cua_req *r)
{
    if (atomic_load_explicit(&a->req[i], memory_order_relaxed) != r) return false;
    empty_slot(a, i);
    return true;
}

int _cua_combine_post(cua_arena *a, uint32_t gen, cua_req *r)
{
    if (!combining(a)) return CUA_COMBINE_NONE; /* (the usual wait counts itself) */
    r->gen = gen;
    r->msg = NULL;
    atomic_store_explicit(&r->done, 0, memory_order_relaxed);
    int i = post(a, r);
    if (i < 0) return CUA_COMBINE_NONE;
    _cua_arena_count_wait(a);
    const struct timespec nap = {0, CUA_COMBINE_NAP_NS};
    for (unsigned look = 0;; look++) {
        if (atomic_load_explicit(&r->done, memory_order_acquire)) return CUA_COMBINE_DONE;
        /* (the lock: every 16th look while spinning, then at every look,
         * when its word says free: a holder that does no posted calls, a
         * trim or a statistics read, lets the lock go to the next taker) */
        if ((look >= CUA_COMBINE_SPINS || (look & 15) == 15) &&
            atomic_load_explicit(&a->lock.word, memory_order_relaxed) == 0 &&
            _cua_trylock(&a->lock)) {
            if (withdraw(a, i, r))
                return _cua_arena_held_same(a, gen) ? CUA_COMBINE_LOCKED : CUA_COMBINE_NONE;
            /* taken before: done by the holder that let the lock go to us */
            cua_assert(atomic_load_explicit(&r->done, memory_order_acquire));
            _cua_unlock(&a->lock);
            return CUA_COMBINE_DONE;
        }
        if (look < CUA_COMBINE_SPINS) _cua_cpu_relax();
        else if (look < CUA_COMBINE_SPINS + CUA_COMBINE_YIELDS) sched_yield();
        else nanosleep(&nap, NULL);
    }
}

/* ---- the holder ------------------------------------------------------------------ */

/* A failure's words for the poster (NULL when there is no host memory). */
static char *words(void)
{
    const char *m = cua_last_error();
    size_t n = strlen(m) + 1;
    char *c = malloc(n);
    if (c) memcpy(c, m, n);
    return c;
}

static void do_alloc(cua_arena *a, cua_req *r)
{
    cua_block *b = NULL;
    cua_placerun *run = &r->run;
    r->run.ev.n = 0;
    r->run.ran = false;
#ifdef CUA_EVENTS_UNDER_LOCK
    run = NULL;
#endif
    r->ptr = NULL;
    r->word = 0;
    r->st = _cua_arena_alloc_locked(a, r->size, r->stream, false, &r->ptr, r->tc ? &b : NULL,
                                    run);
    r->b = b;
    if (r->st == CUA_OK && r->tc) r->word = _cua_tc_grant_locked(r->tc, b, r->size);
}

/* Do r; whether it failed (r is its poster's again once `done` is stored). */
static bool do_one(cua_arena *a, cua_req *r)
{
    if (atomic_load_explicit(&a->gen, memory_order_relaxed) != r->gen) {
        r->st = _cua_error(CUA_ERR_DESTROYED, "the arena was destroyed during the call");
    } else if (r->op == CUA_REQ_ALLOC) {
        do_alloc(a, r);
    } else {
        r->st = _cua_arena_free_locked(a, r->ptr);
    }
    /* (a placement that planned jobs says BUSY with no words: the poster runs them) */
    if (r->st != CUA_OK && !(r->op == CUA_REQ_ALLOC && _cua_place_planned(r->st, &r->run)))
        r->msg = words();
    a->combined++;
    bool failed = r->st != CUA_OK;
    atomic_store_explicit(&r->done, 1, memory_order_release);
    return failed;
}

void _cua_combine_serve_posted(cua_arena *a)
{
    /* The holder's words stay its own, whatever its call's status: a
     * thread's message is kept until that thread's next error. */
    char own[CUA_MSG_CAP];
    _cua_error_stash(own, sizeof own);
    bool failed = false;
    unsigned served = 0;
    for (uint64_t m; served < CUA_COMBINE_SERVE_MAX &&
                     (m = atomic_load_explicit(&a->req_mask, memory_order_acquire)) != 0;) {
        for (; m && served < CUA_COMBINE_SERVE_MAX; m &= m - 1) {
            int i = __builtin_ctzll(m);
            /* (acquire: the poster's arguments, put before its slot's swap) */
            cua_req *r = atomic_load_explicit(&a->req[i], memory_order_acquire);
            if (!r) continue;
            empty_slot(a, i);
            failed |= do_one(a, r);
            served++;
        }
    }
    if (failed) _cua_error_restore(own);
}

uint64_t _cua_combine_count(const cua_arena *a) { return a->combined; }
