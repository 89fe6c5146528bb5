/*
 * test-callbacks.c - the rule for callbacks (cuarena.h, "Callbacks"): the
 * eviction callbacks and the arena-event callback may call cuarena on any
 * arena, the one whose call raised them included: destroy it, offload it,
 * free, allocate, trim. The call that ran the callback then answers as the
 * header says (CUA_ERR_DESTROYED, CUA_ERR_OFFLOADED, CUA_ERR_OUT_OF_MEMORY),
 * never crashes, and leaves nothing behind. And unsetting a callback waits
 * for its calls in flight on other threads, so its `user` may be freed next.
 * Host backend, one simulated device of 64 MiB.
 */
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define MiB ((size_t)1 << 20)

static cua_backend *small_device(void)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = 64 * MiB;
    cua_backend *bk = NULL;
    return cua_backend_host_create(&hc, &bk) == CUA_OK ? bk : NULL;
}

static cua_arena *make(cua_backend *bk, const char *name)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = name;
    cfg.backend = bk;
    cfg.va_size = (size_t)1 << 30;
    cua_arena *a = NULL;
    return cua_arena_create(&cfg, &a) == CUA_OK ? a : NULL;
}

/* The backend holds nothing any more (every arena on it destroyed) but its
 * staging area (two buffers, a copy stream, two events: kept for the next offload). */
static int empty(cua_backend *bk)
{
    cua_backend_stats s;
    return cua_backend_get_stats(bk, &s) == CUA_OK && !s.handles && !s.mappings &&
           !s.reservations && s.events == (s.streams ? 2 : 0);
}

/* Backend bk must hold nothing; it is destroyed either way. */
static cua_status device_done(cua_backend *bk)
{
    int clean = empty(bk);
    if (!clean) fprintf(stderr, "  the backend still holds memory\n");
    cua_status gone = cua_backend_destroy(bk);
    return clean ? gone : CUA_ERR_BUSY;
}

/* A test on a device `bk` of 64 MiB (small_device), empty at the end. */
#define DEVICE_TEST(name) TEST_WITH(name, cua_backend *, bk, small_device(), device_done)

/* ---- what the callbacks do ------------------------------------------------------------ */

enum action { DO_NOTHING, DO_DESTROY, DO_OFFLOAD, DO_FREE_ALL };

typedef struct plan {
    enum action act;
    cua_arena *target; /* the arena acted on */
    void *blocks[8];   /* DO_FREE_ALL frees these */
    int nblocks;
    int calls;
    cua_status got; /* what the callback's own call answered */
} plan;

static void act(plan *p)
{
    if (!p->target) return;
    switch (p->act) {
    case DO_DESTROY:
        p->got = cua_arena_destroy(p->target, CUA_DESTROY_FORCE);
        p->target = NULL;
        break;
    case DO_OFFLOAD:
        p->got = cua_arena_offload(p->target);
        p->target = NULL;
        break;
    case DO_FREE_ALL:
        for (int i = 0; i < p->nblocks; i++) cua_free(p->blocks[i]);
        p->nblocks = 0;
        p->target = NULL;
        break;
    default: break;
    }
}

static size_t evict(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    plan *p = user;
    p->calls++;
    act(p);
    return 0;
}

static cua_arena_event_kind on_kind;
static void on_event(const cua_arena_event *ev, void *user)
{
    plan *p = user;
    if (ev->kind != on_kind || ev->arena != p->target) return;
    p->calls++;
    act(p);
}

/* ---- an eviction callback acts on the arena that asked ------------------------------------- */

/* Fill the device with `a`'s blocks (live), then ask for more than is left. */
static void *fill(cua_arena *a, size_t *kept)
{
    void *p = NULL;
    *kept = 0;
    if (cua_arena_alloc(a, 48 * MiB, 0, &p) == CUA_OK) *kept = 48 * MiB;
    return p;
}

DEVICE_TEST(evict_callback_destroys_the_asker)
{
    cua_arena *a = make(bk, "asker");
    CHECK(a);
    size_t kept;
    CHECK(fill(a, &kept) && kept);
    plan p = {.act = DO_DESTROY, .target = a};
    CHECK_OK(cua_add_evict_callback(evict, &p, 0));
    void *q = (void *)1;
    cua_status st = cua_arena_alloc(a, 32 * MiB, 0, &q);
    CHECK(strstr(cua_last_error(), "destroyed"));
    CHECK_OK(cua_remove_evict_callback(evict, &p));
    CHECK(p.calls == 1 && p.got == CUA_OK);
    CHECK_ST(st, CUA_ERR_DESTROYED);
    CHECK(q == NULL);
    CHECK_ST(cua_arena_alloc(a, 64, 0, &q), CUA_ERR_DESTROYED);
}

/* The same with an arena of its own backend (destroyed with it). */
TEST(evict_callback_destroys_the_asker_and_its_backend)
{
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "own_backend";
    cua_arena *a = NULL;
    CHECK_OK(cua_arena_create(&cfg, &a));
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(a, &s));
    void *big = NULL;
    /* the host backend's default capacity is 80 GiB: ask for more than that, twice */
    CHECK_OK(cua_arena_alloc(a, (size_t)50 << 30, 0, &big));
    plan p = {.act = DO_DESTROY, .target = a};
    CHECK_OK(cua_add_evict_callback(evict, &p, 0));
    void *q = NULL;
    cua_status st = cua_arena_alloc(a, (size_t)40 << 30, 0, &q);
    CHECK_OK(cua_remove_evict_callback(evict, &p));
    CHECK(p.calls == 1);
    CHECK_ST(st, CUA_ERR_DESTROYED);
    CHECK(q == NULL);
}

DEVICE_TEST(evict_callback_offloads_the_asker)
{
    cua_arena *a = make(bk, "asker");
    CHECK(a);
    size_t kept;
    unsigned char *big = fill(a, &kept);
    CHECK(big);
    big[0] = 7;
    plan p = {.act = DO_OFFLOAD, .target = a};
    CHECK_OK(cua_add_evict_callback(evict, &p, 0));
    void *q = (void *)1;
    CHECK_ST(cua_arena_alloc(a, 32 * MiB, 0, &q), CUA_ERR_OFFLOADED);
    CHECK_OK(cua_remove_evict_callback(evict, &p));
    CHECK(q == NULL && p.got == CUA_OK);
    CHECK_OK(cua_arena_restore(a));
    CHECK(big[0] == 7);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
}

/* The callback frees the asker's own blocks: the retry then fits. */
DEVICE_TEST(evict_callback_frees_the_askers_blocks)
{
    cua_arena *a = make(bk, "asker");
    CHECK(a);
    size_t kept;
    void *big = fill(a, &kept);
    CHECK(big);
    plan p = {.act = DO_FREE_ALL, .target = a, .blocks = {big}, .nblocks = 1};
    CHECK_OK(cua_add_evict_callback(evict, &p, 0));
    void *q = NULL;
    CHECK_OK(cua_arena_alloc(a, 32 * MiB, 0, &q));
    CHECK_OK(cua_remove_evict_callback(evict, &p));
    CHECK(q && p.calls == 1);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* ---- the event callback acts on the arena of the event ---------------------------------- */

/* The out-of-memory event's callback destroys the arena: the allocation
 * answers OUT_OF_MEMORY (it had failed) or DESTROYED, and the device report
 * the message gets is made without it. */
DEVICE_TEST(oom_event_destroys_the_asker)
{
    cua_arena *a = make(bk, "asker"), *other = make(bk, "other");
    CHECK(a && other);
    size_t kept;
    CHECK(fill(a, &kept));
    plan p = {.act = DO_DESTROY, .target = a};
    on_kind = CUA_ARENA_OUT_OF_MEMORY;
    CHECK_OK(cua_set_event_callback(on_event, &p));
    void *q = (void *)1;
    cua_status st = cua_arena_alloc(a, 32 * MiB, 0, &q);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK(p.calls == 1 && p.got == CUA_OK && q == NULL);
    CHECK(st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_DESTROYED);
    CHECK_OK(cua_arena_destroy(other, 0));
}

/* The out-of-memory event's callback destroys the asker and makes a new arena
 * of another device, which gets the asker's memory: the failure's report is
 * of the asker's device, never of the newcomer's (the generation tells). */
static cua_backend *g_elsewhere;
static cua_arena *g_asker, *g_newcomer;
static void destroy_and_replace(const cua_arena_event *ev, void *user)
{
    (void)user;
    if (ev->kind != CUA_ARENA_OUT_OF_MEMORY || ev->arena != g_asker) return;
    cua_arena_destroy(g_asker, CUA_DESTROY_FORCE);
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "newcomer";
    cfg.backend = g_elsewhere;
    cfg.device = 5;
    cfg.va_size = (size_t)1 << 30;
    cua_arena_create(&cfg, &g_newcomer);
}

DEVICE_TEST(oom_event_replaces_the_asker_the_report_stays_its_own)
{
    g_elsewhere = small_device();
    CHECK(g_elsewhere);
    g_asker = make(bk, "asker");
    CHECK(g_asker);
    size_t kept;
    CHECK(fill(g_asker, &kept));
    CHECK_OK(cua_set_event_callback(destroy_and_replace, NULL));
    void *q = (void *)1;
    cua_status st = cua_arena_alloc(g_asker, 32 * MiB, 0, &q);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK(g_newcomer && q == NULL);
    CHECK(st == CUA_ERR_OUT_OF_MEMORY || st == CUA_ERR_DESTROYED);
    CHECK(!strstr(cua_last_error(), "newcomer") && !strstr(cua_last_error(), "device 5"));
    CHECK_OK(cua_arena_destroy(g_newcomer, 0));
    CHECK(empty(g_elsewhere));
    CHECK_OK(cua_backend_destroy(g_elsewhere));
}

/* A trim event in the middle of an allocation (the arena gives back its
 * cache before failing) whose callback destroys the arena. */
DEVICE_TEST(trim_event_destroys_the_asker)
{
    cua_arena *a = make(bk, "asker");
    CHECK(a);
    void *x = NULL, *y = NULL;
    CHECK_OK(cua_arena_alloc(a, 24 * MiB, 0, &x));
    CHECK_OK(cua_arena_alloc(a, 24 * MiB, 0x100, &y));
    CHECK_OK(cua_free(x)); /* cached, on another stream's tag */
    plan p = {.act = DO_DESTROY, .target = a};
    on_kind = CUA_ARENA_TRIMMED;
    CHECK_OK(cua_set_event_callback(on_event, &p));
    void *q = (void *)1;
    cua_status st = cua_arena_alloc(a, 40 * MiB, 0x200, &q);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK(p.calls == 1 && q == NULL);
    CHECK(st == CUA_ERR_DESTROYED || st == CUA_ERR_OUT_OF_MEMORY);
}

/* A successful allocation whose events' callback destroys or offloads the
 * arena: the block went with it (DESTROYED), or is freed again (OFFLOADED). */
static void alloc_then(enum action what, cua_status want)
{
    cua_backend *bk = small_device();
    CHECK(bk);
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.name = "asker";
    cfg.backend = bk;
    cfg.limit = 32 * MiB; /* the growth trims the cache: a TRIMMED event ("limit") */
    cua_arena *a = NULL;
    CHECK_OK(cua_arena_create(&cfg, &a));
    void *x = NULL, *y = NULL;
    CHECK_OK(cua_arena_alloc(a, 20 * MiB, 0, &x));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &y)); /* x's room stays apart */
    CHECK_OK(cua_free(x));
    plan p = {.act = what, .target = a};
    on_kind = CUA_ARENA_TRIMMED;
    CHECK_OK(cua_set_event_callback(on_event, &p));
    void *q = (void *)1;
    cua_status st = cua_arena_alloc(a, 24 * MiB, 0, &q);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK(p.calls == 1);
    CHECK_ST(p.got, CUA_OK);
    CHECK_ST(st, want);
    CHECK(q == NULL);
    if (what == DO_OFFLOAD) {
        cua_stats s;
        CHECK_OK(cua_arena_restore(a));
        CHECK_OK(cua_arena_get_stats(a, &s));
        CHECK(s.live_blocks == 1); /* y; the new block is not kept for nobody */
        CHECK_ARENA(a);
        CHECK_OK(cua_free(y));
        CHECK_OK(cua_arena_destroy(a, 0));
    }
    CHECK(empty(bk));
    CHECK_OK(cua_backend_destroy(bk));
}

TEST(event_of_a_successful_alloc_destroys_the_arena) { alloc_then(DO_DESTROY, CUA_ERR_DESTROYED); }
TEST(event_of_a_successful_alloc_offloads_the_arena) { alloc_then(DO_OFFLOAD, CUA_ERR_OFFLOADED); }

/* The CREATED event's callback destroys the new arena: the create answers
 * DESTROYED and hands out no handle. */
static int created_destroyed;
static void destroy_created(const cua_arena_event *ev, void *user)
{
    (void)user;
    if (ev->kind == CUA_ARENA_CREATED && cua_arena_destroy(ev->arena, 0) == CUA_OK)
        created_destroyed++;
}

DEVICE_TEST(created_event_destroys_the_new_arena)
{
    CHECK_OK(cua_set_event_callback(destroy_created, NULL));
    cua_arena *a = (cua_arena *)1;
    cua_arena_config cfg;
    cua_arena_config_init(&cfg);
    cfg.backend = bk;
    cua_status st = cua_arena_create(&cfg, &a);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK(created_destroyed == 1);
    CHECK_ST(st, CUA_ERR_DESTROYED);
    CHECK(a == NULL);
}

/* ---- a restore that finds the device full ------------------------------------------------- */

/* The eviction callback destroys the arena being restored. */
DEVICE_TEST(evict_callback_destroys_the_arena_being_restored)
{
    cua_arena *a = make(bk, "restored"), *hog = make(bk, "hog");
    CHECK(a && hog);
    void *x = NULL, *h = NULL;
    CHECK_OK(cua_arena_alloc(a, 32 * MiB, 0, &x));
    CHECK_OK(cua_arena_offload(a));
    CHECK_OK(cua_arena_alloc(hog, 48 * MiB, 0, &h));
    plan p = {.act = DO_DESTROY, .target = a};
    CHECK_OK(cua_add_evict_callback(evict, &p, 0));
    cua_status st = cua_arena_restore(a);
    CHECK_OK(cua_remove_evict_callback(evict, &p));
    CHECK(p.calls == 1 && p.got == CUA_OK);
    CHECK_ST(st, CUA_ERR_DESTROYED);
    CHECK_OK(cua_free(h));
    CHECK_OK(cua_arena_destroy(hog, 0));
}

/* ---- unsetting a callback waits for its calls in flight ---------------------------------- */

typedef struct slow_user {
    _Atomic int inside;   /* a call is running */
    _Atomic int freed;    /* the owner "freed" this (a use after free if a call is still inside) */
    _Atomic int late;     /* calls that ran on after the owner freed it */
} slow_user;

static void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void slow_event(const cua_arena_event *ev, void *user)
{
    (void)ev;
    slow_user *u = user;
    atomic_store(&u->inside, 1);
    sleep_ms(30);
    if (atomic_load(&u->freed)) atomic_fetch_add(&u->late, 1);
}

static size_t slow_evict(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    slow_event(NULL, user);
    return 0;
}

static void *create_and_destroy(void *arg)
{
    cua_backend *bk = arg;
    cua_arena *a = make(bk, "events"); /* CREATED: the slow callback runs */
    if (a) cua_arena_destroy(a, 0);
    return NULL;
}

DEVICE_TEST(unset_event_callback_waits_for_calls_in_flight)
{
    slow_user u = {0};
    CHECK_OK(cua_set_event_callback(slow_event, &u));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, create_and_destroy, bk) == 0);
    while (!atomic_load(&u.inside)) sleep_ms(1);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    atomic_store(&u.freed, 1); /* the natural shutdown: unset, then free `user` */
    pthread_join(t, NULL);
    CHECK(atomic_load(&u.late) == 0);
}

static void *alloc_too_much(void *arg)
{
    cua_arena *a = arg;
    void *p = NULL;
    cua_arena_alloc(a, 60 * MiB, 0, &p); /* out of memory: the eviction callback runs */
    if (p) cua_free(p);
    return NULL;
}

DEVICE_TEST(remove_evict_callback_waits_for_calls_in_flight)
{
    cua_arena *a = make(bk, "asker");
    CHECK(a);
    void *x = NULL;
    CHECK_OK(cua_arena_alloc(a, 32 * MiB, 0, &x));
    slow_user u = {0};
    CHECK_OK(cua_add_evict_callback(slow_evict, &u, 0));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, alloc_too_much, a) == 0);
    while (!atomic_load(&u.inside)) sleep_ms(1);
    CHECK_OK(cua_remove_evict_callback(slow_evict, &u));
    atomic_store(&u.freed, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&u.late) == 0);
    CHECK_OK(cua_free(x));
    CHECK_OK(cua_arena_destroy(a, 0));
}

/* A callback may unset itself (it does not wait for its own call). */
static int self_unset_calls;
static void unset_myself(const cua_arena_event *ev, void *user)
{
    (void)ev;
    (void)user;
    self_unset_calls++;
    cua_set_event_callback(NULL, NULL);
}

static size_t remove_myself(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    self_unset_calls++;
    cua_remove_evict_callback(remove_myself, user);
    return 0;
}

TEST(a_callback_may_unset_itself)
{
    cua_backend *bk = small_device();
    CHECK(bk);
    self_unset_calls = 0;
    CHECK_OK(cua_set_event_callback(unset_myself, NULL));
    cua_arena *a = make(bk, "self");
    CHECK(a && self_unset_calls == 1);
    void *x = NULL, *y = NULL;
    CHECK_OK(cua_arena_alloc(a, 48 * MiB, 0, &x));
    CHECK_OK(cua_add_evict_callback(remove_myself, NULL, 0));
    CHECK_ST(cua_arena_alloc(a, 32 * MiB, 0, &y), CUA_ERR_OUT_OF_MEMORY);
    CHECK(self_unset_calls == 2);
    CHECK_ST(cua_remove_evict_callback(remove_myself, NULL), CUA_ERR_NOT_FOUND);
    CHECK_OK(cua_free(x));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(bk));
}
