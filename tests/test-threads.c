/*
 * test-threads.c - the arena lock and arenas under threads (host backend):
 *   - the lock alone: threads add to a plain counter under it; any lost
 *     update means it let two threads in at once (contended: the futex path);
 *   - one shared arena: threads allocate, write a pattern, check it, free,
 *     hand blocks to each other to free (cross-thread free), read statistics
 *     and trim; the checker and the counts at the end must agree;
 *   - private arenas: each thread creates, uses and destroys its own arenas
 *     while the others do the same (the registry and the address map);
 *   - destroy while others are out of memory: arenas destroyed and replaced
 *     while threads run their allocations' out-of-memory path, with
 *     callbacks that sleep;
 *   - a retire that learns, from another thread's event job, that a stream
 *     is gone (Note [events asked outside the lock], src/arena/stream.c);
 *   - calls the lock's holder does for a thread that found the lock held
 *     (Note [calls the lock holder does], src/arena/combine.c): an
 *     allocation, a free, a double free whose words reach the poster while
 *     the holder keeps its own, and an allocation that comes back to its
 *     poster with event jobs to run.
 * CUA_THREADS_OPS sets the operations per thread (default 20000).
 */
#include "test.h"
#include "test-internal.h"
#include "arena/combine.h"
#include "backend/backend.h"
#include "base/internal.h"

#include <pthread.h>
#include <time.h>

#define NTHREADS 8
#define MAX_LIVE 64
#define HANDOFF 256

static long ops_per_thread(void)
{
    const char *v = getenv("CUA_THREADS_OPS");
    long n = v ? strtol(v, NULL, 10) : 0;
    return n > 0 ? n : 20000;
}

/* ---- the lock alone ------------------------------------------------------------ */

static cua_lock_t counter_lock;
static uint64_t counter; /* plain: only the lock protects it */

static void *count_up(void *arg)
{
    long n = *(long *)arg;
    for (long i = 0; i < n; i++) {
        _cua_lock(&counter_lock);
        uint64_t v = counter;
        if ((i & 63) == 0) sched_yield(); /* hold it a while: others must wait (and sleep) */
        counter = v + 1;
        _cua_unlock(&counter_lock);
    }
    return NULL;
}

TEST(lock_lets_one_thread_in)
{
    long n = 20 * ops_per_thread();
    _cua_lock_init(&counter_lock, CUA_LOCK_RANK_ARENA);
    counter = 0;
    CHECK(test_threads(NTHREADS, count_up, &n, 0));
    CHECK(counter == (uint64_t)NTHREADS * (uint64_t)n);
    CHECK(atomic_load(&counter_lock.word) == 0);
}

/* ---- one shared arena ---------------------------------------------------------- */

typedef struct blk {
    unsigned char *p;
    size_t size;
    unsigned char tag;
} blk;

typedef struct shared {
    cua_arena *a;
    pthread_mutex_t m; /* the handoff queue */
    blk queue[HANDOFF];
    int nqueue;
    _Atomic uint64_t errors, allocs, frees, handed;
    bool own_streams; /* each worker allocates on a stream of its own (else 0) */
} shared;

typedef struct worker {
    shared *s;
    int id;
    long ops;
} worker;

static void fill(blk *b) { memset(b->p, b->tag, b->size < 4096 ? b->size : 4096); }

/* The pattern is intact at both ends (others' blocks never overlap it). */
static bool intact(const blk *b)
{
    size_t n = b->size < 4096 ? b->size : 4096;
    for (size_t i = 0; i < n; i += 97)
        if (b->p[i] != b->tag) return false;
    return b->p[n - 1] == b->tag;
}

static void release(shared *s, blk *b)
{
    if (!intact(b)) atomic_fetch_add(&s->errors, 1);
    if (cua_free(b->p) != CUA_OK) atomic_fetch_add(&s->errors, 1);
    atomic_fetch_add(&s->frees, 1);
}

static void *work_shared(void *arg)
{
    worker *w = arg;
    shared *s = w->s;
    blk mine[MAX_LIVE];
    int n = 0;
    uint64_t rng = 1000 + (uint64_t)w->id;
    for (long op = 0; op < w->ops; op++) {
        uint64_t r = test_rand(&rng);
        if (n < MAX_LIVE && (n == 0 || r % 100 < 55)) {
            blk b = {.size = 512 + (size_t)(test_rand(&rng) % (256 * 1024)),
                     .tag = (unsigned char)(w->id * 16 + op % 16 + 1)};
            cua_stream stream = s->own_streams ? (cua_stream)(0x100 * (uintptr_t)(w->id + 1)) : 0;
            if (cua_arena_alloc(s->a, b.size, stream, (void **)&b.p) != CUA_OK) {
                atomic_fetch_add(&s->errors, 1);
                continue;
            }
            fill(&b);
            mine[n++] = b;
            atomic_fetch_add(&s->allocs, 1);
        } else if (r % 100 < 85) { /* free one of mine */
            int k = (int)(test_rand(&rng) % (uint64_t)n);
            release(s, &mine[k]);
            mine[k] = mine[--n];
        } else if (r % 100 < 95) { /* hand one to whoever frees next, or free a handed one */
            pthread_mutex_lock(&s->m);
            if (s->nqueue < HANDOFF) {
                int k = (int)(test_rand(&rng) % (uint64_t)n);
                s->queue[s->nqueue++] = mine[k];
                mine[k] = mine[--n];
                atomic_fetch_add(&s->handed, 1);
                pthread_mutex_unlock(&s->m);
            } else {
                blk b = s->queue[--s->nqueue];
                pthread_mutex_unlock(&s->m);
                release(s, &b);
            }
        } else if (r % 100 < 98) {
            cua_stats st;
            if (cua_arena_get_stats(s->a, &st) != CUA_OK || st.live_blocks > st.alloc_count)
                atomic_fetch_add(&s->errors, 1);
        } else {
            if (cua_arena_trim(s->a, 0, NULL) != CUA_OK) atomic_fetch_add(&s->errors, 1);
        }
    }
    while (n > 0) release(s, &mine[--n]);
    return NULL;
}

/* NTHREADS workers of fn on s, each with ops_per_thread() operations; false
 * when one could not start. */
static bool run_workers(shared *s, void *(*fn)(void *))
{
    worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) w[i] = (worker){.s = s, .id = i, .ops = ops_per_thread()};
    return test_threads(NTHREADS, fn, w, sizeof w[0]);
}

/* Workers on s's arena (made here) with a handoff queue, then every count
 * checked and the arena destroyed. */
static void shared_run(bool own_streams)
{
    static shared s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.m, NULL);
    s.own_streams = own_streams;
    s.a = test_arena_with(NULL, "threads", test_default_flags(), NULL);
    CHECK(s.a);
    CHECK(run_workers(&s, work_shared));
    while (s.nqueue > 0) release(&s, &s.queue[--s.nqueue]);
    CHECK(atomic_load(&s.errors) == 0);
    CHECK(atomic_load(&s.handed) > 0);
    CHECK_ARENA(s.a);
    cua_stats st;
    CHECK_OK(cua_arena_get_stats(s.a, &st));
    CHECK(st.live_blocks == 0 && st.live_bytes == 0);
    CHECK(st.alloc_count == atomic_load(&s.allocs) && st.free_count == atomic_load(&s.frees));
    CHECK_OK(cua_arena_destroy(s.a, 0));
}

TEST(shared_arena_alloc_free_handoff_trim) { shared_run(false); }

/* Each thread on its own stream: allocations ask the other streams' events
 * without the arena lock while others trim, read statistics and free each
 * other's blocks (Note [events asked outside the lock], stream.c). */
TEST(shared_arena_threads_on_their_own_streams) { shared_run(true); }

/* ---- private arenas ------------------------------------------------------------ */

static void *work_private(void *arg)
{
    worker *w = arg;
    shared *s = w->s;
    uint64_t rng = 77 + (uint64_t)w->id;
    for (long round = 0; round < w->ops / 200; round++) {
        cua_arena *a = test_arena_with(NULL, "private", test_default_flags(), "va_size:1G");
        if (!a) {
            atomic_fetch_add(&s->errors, 1);
            continue;
        }
        blk b[16];
        for (int i = 0; i < 16; i++) {
            b[i] = (blk){.size = 512 + (size_t)(test_rand(&rng) % (1 << 20)),
                         .tag = (unsigned char)(w->id + 1)};
            if (cua_arena_alloc(a, b[i].size, 0, (void **)&b[i].p) != CUA_OK) {
                atomic_fetch_add(&s->errors, 1);
                b[i].p = NULL;
                continue;
            }
            fill(&b[i]);
        }
        for (int i = 0; i < 16; i += 2)
            if (b[i].p) release(s, &b[i]);
        for (int i = 1; i < 16; i += 2)
            if (b[i].p && !intact(&b[i])) atomic_fetch_add(&s->errors, 1);
        /* The odd ones go with the arena. (Their pointers are not freed again:
         * another thread's new arena may reserve the same range at once, and
         * then such a pointer is that arena's - test-wrong covers stale
         * pointers where no arena reuses the range.) */
        if (cua_arena_destroy(a, CUA_DESTROY_FORCE) != CUA_OK) atomic_fetch_add(&s->errors, 1);
    }
    return NULL;
}

TEST(private_arenas_created_and_destroyed_concurrently)
{
    static shared s;
    memset(&s, 0, sizeof s);
    CHECK(run_workers(&s, work_private));
    CHECK(atomic_load(&s.errors) == 0);
}

/* ---- destroy while others are out of memory ------------------------------------------
 * Workers allocate from arenas of a device a hog fills, so that most of their
 * allocations take the out-of-memory path (other arenas' caches, the eviction
 * callback, the event callback of the failure), which runs without the
 * arena's lock; both callbacks sleep 2 ms, as a logger might, to hold that
 * window open. Meanwhile a destroyer destroys the arenas (those with no live
 * block) and puts new ones in their place. Every answer must be a block,
 * OUT_OF_MEMORY or DESTROYED: never a crash (nor, under ThreadSanitizer, a race). */

#define OOM_SLOTS 4

typedef struct oom_world {
    cua_backend *bk;
    _Atomic(cua_arena *) slot[OOM_SLOTS];
    _Atomic int stop, errors;
    _Atomic long allocs, ooms, destroyed, replaced;
} oom_world;

static void nap_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t sleepy_evict(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    (void)user;
    nap_ms(2);
    return 0;
}

static void sleepy_log(const cua_arena_event *ev, void *user)
{
    (void)user;
    if (ev->kind == CUA_ARENA_OUT_OF_MEMORY) nap_ms(2);
}

static cua_arena *oom_arena(oom_world *w)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "oom_victim";
    cfg.backend = w->bk;
    cfg.va_size = (size_t)1 << 30;
    cua_arena *a = NULL;
    return cua_arena_create(&cfg, &a) == CUA_OK ? a : NULL;
}

static void *oom_worker(void *arg)
{
    oom_world *w = arg;
    uint64_t seed = (uint64_t)(uintptr_t)&seed;
    while (!atomic_load(&w->stop)) {
        cua_arena *a = atomic_load(&w->slot[test_rand(&seed) % OOM_SLOTS]);
        size_t size = (test_rand(&seed) & 1 ? 32 : 8) << 20;
        void *p = NULL;
        cua_status st = cua_arena_alloc(a, size, 0, &p);
        if (st == CUA_OK) {
            atomic_fetch_add(&w->allocs, 1);
            if (cua_free(p) != CUA_OK) atomic_fetch_add(&w->errors, 1); /* live: not destroyed */
        } else if (st == CUA_ERR_OUT_OF_MEMORY) {
            atomic_fetch_add(&w->ooms, 1);
        } else if (st == CUA_ERR_DESTROYED) {
            atomic_fetch_add(&w->destroyed, 1);
        } else {
            fprintf(stderr, "oom worker: %s: %s\n", cua_status_name(st), cua_last_error());
            atomic_fetch_add(&w->errors, 1);
        }
    }
    return NULL;
}

static void *oom_destroyer(void *arg)
{
    oom_world *w = arg;
    long rounds = ops_per_thread() / 20;
    for (long r = 0; r < rounds; r++) {
        int i = (int)(r % OOM_SLOTS);
        cua_arena *old = atomic_load(&w->slot[i]);
        nap_ms(1);
        if (cua_arena_destroy(old, 0) != CUA_OK) continue; /* a block is live: later */
        cua_arena *a = oom_arena(w);
        if (!a) {
            atomic_fetch_add(&w->errors, 1);
            break;
        }
        atomic_store(&w->slot[i], a);
        atomic_fetch_add(&w->replaced, 1);
    }
    atomic_store(&w->stop, 1);
    return NULL;
}

TEST(destroy_while_others_are_out_of_memory)
{
    static oom_world w;
    memset(&w, 0, sizeof w);
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 64 << 20;
    CHECK_OK(cua_backend_host_create(&hc, &w.bk));
    for (int i = 0; i < OOM_SLOTS; i++) {
        cua_arena *a = oom_arena(&w);
        CHECK(a);
        atomic_store(&w.slot[i], a);
    }
    cua_arena *hog = oom_arena(&w);
    void *h = NULL;
    CHECK(hog);
    CHECK_OK(cua_arena_alloc(hog, 40 << 20, 0, &h));
    CHECK_OK(cua_add_evict_callback(sleepy_evict, NULL, 0));
    CHECK_OK(cua_set_event_callback(sleepy_log, NULL));
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS - 1; i++) CHECK(pthread_create(&th[i], NULL, oom_worker, &w) == 0);
    CHECK(pthread_create(&th[NTHREADS - 1], NULL, oom_destroyer, &w) == 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK_OK(cua_remove_evict_callback(sleepy_evict, NULL));
    printf("  %ld blocks, %ld out of memory, %ld destroyed under the caller, %ld arenas replaced\n",
           atomic_load(&w.allocs), atomic_load(&w.ooms), atomic_load(&w.destroyed),
           atomic_load(&w.replaced));
    CHECK(atomic_load(&w.errors) == 0);
    CHECK(atomic_load(&w.ooms) > 0 && atomic_load(&w.replaced) > 0);
    CHECK_OK(cua_free(h));
    CHECK_OK(cua_arena_destroy(hog, 0));
    for (int i = 0; i < OOM_SLOTS; i++) CHECK_OK(cua_arena_destroy(atomic_load(&w.slot[i]), 0));
    CHECK_OK(cua_backend_destroy(w.bk));
}

/* ---- a job's answer learnt by another thread ------------------------------------ */

#if CUA_LOCK_WITNESS /* (the backend below tells jobs apart by the witness) */
/* A host backend whose event records made without an arena lock (the event
 * jobs of an allocation) wait until `jobs_hold` drops. */
static const cua_backend_ops *jobs_inner;
static atomic_int jobs_running, jobs_hold;

static cua_status record_held(cua_backend *b, cua_event ev, cua_stream s)
{
    if (!_cua_lock_witness_holds(CUA_LOCK_RANK_ARENA)) {
        atomic_store(&jobs_running, 1);
        while (atomic_load(&jobs_hold)) nap_ms(1);
    }
    return jobs_inner->event_record(b, ev, s);
}

typedef struct jobs_world {
    cua_arena *a;
    cua_stream grow_on, retire;
    cua_status alloc_st, retire_st, check_st;
} jobs_world;

static void *jobs_grow(void *arg)
{
    jobs_world *w = arg;
    void *p;
    w->alloc_st = cua_arena_alloc(w->a, 256u << 20, w->grow_on, &p); /* needs new pages */
    return NULL;
}

static void *jobs_retire(void *arg)
{
    jobs_world *w = arg;
    w->retire_st = cua_stream_retire(CUA_ALL_DEVICES, w->retire);
    w->check_st = cua_arena_check(w->a);
    return NULL;
}
#endif

TEST(a_retire_learns_that_another_threads_job_found_a_stream_gone)
{
    /* Stream X frees blocks and is destroyed behind the arena's back. T1's
     * allocation on Z plans an event record on X and makes it without the
     * lock; meanwhile T2 retires Y, whose wait for the jobs learns that the
     * record failed and retires X: X's free blocks must then be every
     * stream's (the checker refuses free blocks with a retired stream's
     * tag). Found by a review of the change; the check failed before. */
#if CUA_LOCK_WITNESS
    const cua_stream X = 0x1000, Y = 0x2000, Z = 0x3000;
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.manual_events = 1;
    cua_backend *bk;
    CHECK_OK(cua_backend_host_create(&hc, &bk));
    static cua_backend_ops ops;
    jobs_inner = bk->ops;
    ops = *jobs_inner;
    ops.event_record = record_held;
    bk->ops = &ops;
    atomic_store(&jobs_running, 0);
    atomic_store(&jobs_hold, 1);
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    cfg.thread_cache = CUA_THREAD_CACHE_OFF;
    jobs_world w = {.grow_on = Z, .retire = Y};
    CHECK_OK(cua_arena_create(&cfg, &w.a));
    void *px[4], *py, *pz;
    CHECK_OK(cua_arena_alloc(w.a, 1 << 20, Z, &pz));
    CHECK_OK(cua_arena_alloc(w.a, 1 << 20, Y, &py));
    for (int i = 0; i < 4; i++) CHECK_OK(cua_arena_alloc(w.a, 3 << 20, X, &px[i]));
    for (int i = 0; i < 4; i += 2) CHECK_OK(cua_free(px[i])); /* free blocks of X's */
    CHECK_OK(cua_free(py));
    CHECK_OK(cua_host_stream_destroy(bk, X));
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, jobs_grow, &w) == 0);
    while (!atomic_load(&jobs_running)) nap_ms(1);
    CHECK(pthread_create(&t2, NULL, jobs_retire, &w) == 0);
    nap_ms(100); /* (T2 waits for T1's job under the lock) */
    atomic_store(&jobs_hold, 0);
    pthread_join(t2, NULL);
    pthread_join(t1, NULL);
    CHECK_OK(w.retire_st);
    CHECK_OK(w.check_st);
    CHECK_OK(w.alloc_st);
    CHECK_ARENA(w.a);
    CHECK_OK(cua_arena_destroy(w.a, CUA_DESTROY_FORCE));
    bk->ops = jobs_inner;
    CHECK_OK(cua_backend_destroy(bk));
#endif
}

/* ---- calls the lock's holder does (combine.c) ------------------------------------ */

typedef struct posted_call {
    cua_arena *a;
    void *p;
    size_t size;
    cua_stream stream;
    cua_status st;
    char msg[256];
} posted_call;

static void *post_alloc(void *arg)
{
    posted_call *c = arg;
    c->st = cua_arena_alloc(c->a, c->size, c->stream, &c->p);
    snprintf(c->msg, sizeof c->msg, "%s", c->st == CUA_OK ? "" : cua_last_error());
    return NULL;
}

static void *post_free(void *arg)
{
    posted_call *c = arg;
    c->st = cua_free(c->p);
    snprintf(c->msg, sizeof c->msg, "%s", c->st == CUA_OK ? "" : cua_last_error());
    return NULL;
}

/* Hold the arena's lock while a thread runs fn(c); once it has posted its
 * call (within wait_ms), do what a holder does before it lets go: the posted
 * calls, then the unlock. False when the thread never posted (it then waited
 * for the lock instead). */
static bool hold_for(cua_arena *a, void *(*fn)(void *), posted_call *c, int wait_ms)
{
    cua_arena *m = test_mem(a);
    pthread_t t;
    _cua_lock(&m->lock);
    if (pthread_create(&t, NULL, fn, c) != 0) {
        _cua_unlock(&m->lock);
        return false;
    }
    bool posted = false;
    for (int i = 0; i < wait_ms && !posted; i++)
        if (!(posted = atomic_load(&m->req_mask) != 0)) nap_ms(1);
    _cua_combine_serve(m);
    _cua_unlock(&m->lock);
    pthread_join(t, NULL);
    return posted;
}

static bool hold_while(cua_arena *a, void *(*fn)(void *), posted_call *c)
{
    return hold_for(a, fn, c, 5000);
}

TEST(a_thread_that_finds_the_lock_held_has_the_holder_do_its_call)
{
    cua_arena *a = test_arena_with(NULL, "combine", 0, "va_size:1G,thread_cache:off");
    CHECK(a != NULL);
    cua_arena *m = test_mem(a);
    uint64_t before = _cua_combine_count(m);
    posted_call c = {a, NULL, 3000, 0, CUA_ERR_INVALID_ARG, ""};
    CHECK(hold_while(a, post_alloc, &c));
    CHECK_OK(c.st);
    CHECK(c.p != NULL && _cua_combine_count(m) == before + 1);
    void *base = NULL;
    size_t size = 0;
    CHECK_OK(cua_ptr_info(c.p, NULL, &base, &size));
    CHECK(base == c.p && size == 3000);
    CHECK_ARENA(a);
    /* The free, then a second one: the poster gets the words of its own
     * failure, and the holder keeps its own (a thread's message stays until
     * that thread's next error). */
    posted_call f = {a, c.p, 0, 0, CUA_ERR_INVALID_ARG, ""};
    CHECK(hold_while(a, post_free, &f));
    CHECK_OK(f.st);
    posted_call d = {a, c.p, 0, 0, CUA_OK, ""};
    CHECK(_cua_error(CUA_ERR_LIMIT, "the holder's own failure") == CUA_ERR_LIMIT);
    CHECK(hold_while(a, post_free, &d));
    CHECK(d.st == CUA_ERR_DOUBLE_FREE && strstr(d.msg, "not live") != NULL);
    CHECK(strcmp(cua_last_error(), "the holder's own failure") == 0);
    CHECK(_cua_combine_count(m) == before + 3);
    cua_stats s = test_stats(a);
    CHECK(s.live_blocks == 0 && s.live_bytes == 0 && s.alloc_count == 1 && s.free_count == 1);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
}

TEST(an_allocation_posted_with_event_jobs_comes_back_to_run_them)
{
    /* Streams X and Y free blocks nobody knows complete; an allocation on Z
     * that would map pages plans event jobs on them (Note [events asked
     * outside the lock], stream.c): done by the holder, it comes back with
     * the plan, and its poster runs the jobs without the lock and ends it. */
    const cua_stream X = 0x100, Y = 0x200, Z = 0x300;
    cua_arena *a = test_arena_with(NULL, "combine-jobs", 0, "va_size:1G,thread_cache:off");
    CHECK(a != NULL);
    void *px, *py, *pz;
    CHECK_OK(cua_arena_alloc(a, 8 << 20, X, &px));
    CHECK_OK(cua_arena_alloc(a, 8 << 20, Y, &py));
    CHECK_OK(cua_arena_alloc(a, 1 << 20, Z, &pz));
    CHECK_OK(cua_free(px));
    CHECK_OK(cua_free(py));
    cua_stats s0 = test_stats(a);
    cua_arena *m = test_mem(a);
    uint64_t before = _cua_combine_count(m);
    posted_call c = {a, NULL, 12 << 20, Z, CUA_ERR_INVALID_ARG, ""};
    CHECK(hold_while(a, post_alloc, &c));
    CHECK_OK(c.st);
    CHECK(_cua_combine_count(m) == before + 1);
    cua_stats s1 = test_stats(a);
    CHECK(s1.calls[CUA_CALL_EVENT_RECORD] > s0.calls[CUA_CALL_EVENT_RECORD]);
    CHECK(m->streams.jobs_out == 0);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(c.p));
    CHECK_OK(cua_free(pz));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
}

static void *supply_alloc_fn(size_t size, int device, void *ctx)
{
    (void)device, (void)ctx;
    return aligned_alloc(4096, size);
}

static void supply_free_fn(void *p, size_t size, int device, void *ctx)
{
    (void)size, (void)device, (void)ctx;
    free(p);
}

TEST(an_arena_of_a_users_supplier_does_not_post_its_calls)
{
    /* The supplier's functions must run on the calling thread (its device,
     * its stream): a thread that finds the lock held waits for it instead. */
    cua_backend *host, *bk;
    CHECK_OK(cua_backend_host_create(NULL, &host));
    CHECK_OK(cua_backend_supplier_create(host, supply_alloc_fn, supply_free_fn, NULL, &bk));
    cua_arena *a = test_arena_with(bk, "supplied", 0, "thread_cache:off");
    CHECK(a != NULL);
    uint64_t before = _cua_combine_count(test_mem(a));
    posted_call c = {a, NULL, 3 << 20, 0, CUA_ERR_INVALID_ARG, ""};
    CHECK(!hold_for(a, post_alloc, &c, 200));
    CHECK_OK(c.st);
    CHECK(_cua_combine_count(test_mem(a)) == before);
    CHECK_OK(cua_free(c.p));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(bk));
    CHECK_OK(cua_backend_destroy(host));
}
