/*
 * test-devices.c - several devices in one process, simulated by host backends
 * of device ordinals 0..3 (each its own "GPU memory"), and peer access
 * between them. Per device: the arena list, the device report's sums, the
 * headroom, the mapped peak, default arenas, and out-of-memory relief, which
 * takes cache from the same device's arenas only. Peers: granted at creation
 * and later, to every mapping (checked page by page against the host
 * backend's record of who may access each mapping), kept through trim +
 * regrowth and offload + restore, refused for a device that cannot reach the
 * arena's, failed cleanly by the fault backend, and granted while threads
 * allocate. The checker runs after every step (CUA_ARENA_CHECK_ALWAYS and
 * explicit cua_arena_check calls).
 *
 * The simulated topology (cua_host_config.peer_mask: who may access whom):
 *   device 0 <- 1, 2     device 1 <- 0     device 2 <- 3     device 3 <- none
 */
#include "arena/arena.h"
#include "backend/host.h"
#include "backend/fault.h"
#include "test.h"

#include "test-internal.h"
#include <pthread.h>

#define NDEV 4
#define CAP (256 * MiB)

static const uint64_t topology[NDEV] = {
    CUA_PEER(1) | CUA_PEER(2), CUA_PEER(0), CUA_PEER(3), 0,
};

static cua_backend *make_device(int d, int no_vmm)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    hc.capacity = CAP;
    hc.device = d;
    hc.peer_mask = topology[d];
    hc.no_vmm = no_vmm;
    cua_backend *bk = NULL;
    return cua_backend_host_create(&hc, &bk) == CUA_OK ? bk : NULL;
}

/* An arena of device `device` on bk, accessible to the devices of `peers`,
 * checked after every call, without thread caches. */
static cua_arena *make_arena(cua_backend *bk, const char *name, int device, uint64_t peers)
{
    cua_arena_config cfg;
    test_config(&cfg);
    cfg.name = name;
    cfg.backend = bk;
    cfg.device = device;
    cfg.peers = peers;
    cfg.flags |= CUA_ARENA_CHECK_ALWAYS;
    cfg.thread_cache = CUA_THREAD_CACHE_OFF;
    return test_create(&cfg);
}

static long long json_num(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static cua_stats stats_of(cua_arena *a)
{
    cua_stats s;
    memset(&s, 0xff, sizeof s);
    cua_arena_get_stats(a, &s);
    return s;
}

/* ---- who may access an arena's pages ---------------------------------------------- */

struct access_walk {
    cua_backend *bk;
    uint64_t want;
    size_t segments, wrong;
    uintptr_t first_wrong;
    uint64_t got;
};

static void check_region(const cua_region *r, void *user)
{
    struct access_walk *w = user;
    if (r->kind != CUA_REGION_SEGMENT) return;
    w->segments++;
    /* Every granularity page of the mapping, first and last byte. */
    for (uintptr_t at = r->address; at < r->address + r->size; at += 2 * MiB) {
        uint64_t m = 0;
        bool ok = _cua_host_access(w->bk, at, &m) == CUA_OK && m == w->want &&
                  _cua_host_access(w->bk, at + 2 * MiB - 1, &m) == CUA_OK && m == w->want;
        if (!ok && !w->wrong++) {
            w->first_wrong = at;
            w->got = m;
        }
    }
}

/* The host backend under a fault backend, when an arena has one. */
static cua_backend *g_inner;

/* Is every mapped page of `a` accessible to exactly the devices in `want`?
 * (And is at least one page mapped, so that the answer means something?) */
static bool access_is(cua_arena *a, uint64_t want)
{
    struct access_walk w = {test_mem(a)->bk->kind == CUA_BK_HOST ? test_mem(a)->bk : g_inner, want, 0, 0, 0, 0};
    if (cua_arena_walk(a, check_region, &w) != CUA_OK) return false;
    if (w.wrong)
        fprintf(stderr, "  arena '%s': %zu page(s) with the wrong access, first at %#lx: "
                "%#llx, wanted %#llx\n", test_mem(a)->name, w.wrong, (unsigned long)w.first_wrong,
                (unsigned long long)w.got, (unsigned long long)want);
    return w.segments > 0 && w.wrong == 0;
}

static bool backend_empty(cua_backend *bk)
{
    cua_backend_stats s;
    if (cua_backend_get_stats(bk, &s) != CUA_OK) return false;
    return s.reservations == 0 && s.handles == 0 && s.mappings == 0;
}

/* An arena named `name` on device d, a simulated device of its own (of
 * whole segments when no_vmm), accessible to the devices of `peers`. */
static cua_arena *on_device(int d, const char *name, int no_vmm, uint64_t peers)
{
    cua_backend *bk = make_device(d, no_vmm);
    cua_arena *a = bk ? make_arena(bk, name, d, peers) : NULL;
    if (bk && !a) cua_backend_destroy(bk);
    return a;
}

/* Destroy arena a (nothing may be live in it) and its device, which must be empty. */
static cua_status device_done(cua_arena *a)
{
    cua_backend *bk = test_mem(a)->bk;
    cua_status st = cua_arena_destroy(a, 0);
    if (st == CUA_OK && !backend_empty(bk)) st = CUA_ERR_BUSY;
    return st == CUA_OK ? cua_backend_destroy(bk) : st;
}

/* A test on an arena `a` of on_device(...), with its device destroyed after. */
#define DEVICE_TEST(name, d, arena, no_vmm, peers)                                         \
    TEST_ON(name, on_device(d, arena, no_vmm, peers), device_done)

/* ---- per-device figures ------------------------------------------------------------- */

TEST(four_devices_report_headroom_and_peak_per_device)
{
    cua_backend *bk[NDEV];
    cua_arena *w[NDEV], *kv[NDEV];
    size_t base[NDEV];
    char name[NDEV][2][16];
    for (int d = 0; d < NDEV; d++) {
        bk[d] = make_device(d, 0);
        CHECK(bk[d]);
        snprintf(name[d][0], 16, "weights%d", d);
        snprintf(name[d][1], 16, "kv%d", d);
        w[d] = make_arena(bk[d], name[d][0], d, 0);
        kv[d] = make_arena(bk[d], name[d][1], d, 0);
        CHECK(w[d] && kv[d]);
        CHECK_OK(cua_headroom(d, &base[d]));
        CHECK(base[d] > CAP - 8 * MiB && base[d] < CAP);
    }
    /* Device d: (d + 1) * 8 MiB of weights, (d + 1) * 4 MiB of KV of which
     * half is freed again (cached). */
    void *wp[NDEV], *kp[NDEV][2];
    for (int d = 0; d < NDEV; d++) {
        size_t u = (size_t)(d + 1);
        CHECK_OK(cua_arena_alloc(w[d], u * 8 * MiB, 0, &wp[d]));
        CHECK_OK(cua_arena_alloc(kv[d], u * 2 * MiB, 0, &kp[d][0]));
        CHECK_OK(cua_arena_alloc(kv[d], u * 2 * MiB, 0, &kp[d][1]));
        CHECK_OK(cua_free(kp[d][1]));
        CHECK_ARENA(w[d]);
        CHECK_ARENA(kv[d]);
    }
    for (int d = 0; d < NDEV; d++) {
        size_t u = (size_t)(d + 1);
        cua_arena *v[8];
        size_t n = 0;
        CHECK_OK(cua_arena_list(d, v, 8, &n));
        CHECK(n == 2 && v[0] == w[d] && v[1] == kv[d]);
        cua_stats sw = stats_of(w[d]), sk = stats_of(kv[d]);
        CHECK(sw.mapped_bytes == u * 8 * MiB && sk.mapped_bytes == u * 4 * MiB);
        CHECK(sk.cached_bytes == u * 2 * MiB);
        char buf[16384];
        size_t len = 0;
        CHECK_OK(cua_device_report_json(d, buf, sizeof buf, &len));
        CHECK(len < sizeof buf);
        CHECK(json_num(buf, "device") == d);
        CHECK(json_num(buf, "mapped_bytes") == (long long)(sw.mapped_bytes + sk.mapped_bytes));
        CHECK(json_num(buf, "live_bytes") == (long long)(sw.live_bytes + sk.live_bytes));
        CHECK(json_num(buf, "cached_bytes") == (long long)(sw.cached_bytes + sk.cached_bytes));
        /* The driver figures are the device's own backend's: all of its use is ours. */
        CHECK(json_num(buf, "driver_total_bytes") == (long long)CAP);
        CHECK(json_num(buf, "driver_used_bytes") == (long long)(u * 12 * MiB));
        CHECK(json_num(buf, "unaccounted_bytes") == 0);
        for (int e = 0; e < NDEV; e++) /* no other device's arena in it */
            CHECK((strstr(buf, name[e][0]) != NULL) == (e == d));
        /* Headroom: this device's free memory and cache, nobody else's. */
        size_t h = 0;
        CHECK_OK(cua_headroom(d, &h));
        CHECK(h == base[d] - u * 10 * MiB);
        size_t peak = 0, now = 0;
        CHECK_OK(cua_device_peak(d, &peak, &now));
        CHECK(now == u * 12 * MiB && peak >= now);
    }
    /* Trimming device 2 changes device 2's figures only. */
    size_t before[NDEV], after = 0;
    for (int d = 0; d < NDEV; d++) CHECK_OK(cua_headroom(d, &before[d]));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(kv[2], 0, &released));
    CHECK(released == 6 * MiB);
    for (int d = 0; d < NDEV; d++) {
        CHECK_OK(cua_headroom(d, &after));
        CHECK(after == before[d]); /* cached bytes counted before; driver free after */
        size_t now = 0;
        CHECK_OK(cua_device_peak(d, NULL, &now));
        CHECK(now == (size_t)(d + 1) * 12 * MiB - (d == 2 ? 6 * MiB : 0));
    }
    for (int d = 0; d < NDEV; d++) {
        CHECK_ARENA(kv[d]);
        CHECK_OK(cua_arena_destroy(w[d], CUA_DESTROY_FORCE));
        CHECK_OK(cua_arena_destroy(kv[d], CUA_DESTROY_FORCE));
        CHECK(backend_empty(bk[d]));
        CHECK_OK(cua_backend_destroy(bk[d]));
    }
}

static int evicted_on[NDEV];
static size_t count_evictions(int device, size_t need, void *user)
{
    (void)need;
    (void)user;
    if (device >= 0 && device < NDEV) evicted_on[device]++;
    return 0;
}

TEST(out_of_memory_relief_stays_on_the_device)
{
    cua_backend *b0 = make_device(0, 0), *b1 = make_device(1, 0);
    CHECK(b0 && b1);
    cua_arena *cache0 = make_arena(b0, "cache0", 0, 0), *cache1 = make_arena(b1, "cache1", 1, 0);
    cua_arena *work1 = make_arena(b1, "work1", 1, 0);
    CHECK(cache0 && cache1 && work1);
    void *p;
    /* 200 MiB cached on each device. */
    CHECK_OK(cua_arena_alloc(cache0, 200 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_alloc(cache1, 200 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK(stats_of(cache0).cached_bytes == 200 * MiB && stats_of(cache1).cached_bytes == 200 * MiB);
    memset(evicted_on, 0, sizeof evicted_on);
    CHECK_OK(cua_add_evict_callback(count_evictions, NULL, 0));
    /* Device 1 has 56 MiB free: 100 MiB need 44 MiB of device 1's cache. */
    void *q;
    CHECK_OK(cua_arena_alloc(work1, 100 * MiB, 0, &q));
    CHECK_ARENA(work1);
    CHECK_ARENA(cache1);
    CHECK_ARENA(cache0);
    uint64_t m1 = stats_of(cache1).mapped_bytes;
    CHECK(m1 < 200 * MiB && m1 >= 200 * MiB - 64 * MiB); /* only what was missing went */
    CHECK(stats_of(cache0).mapped_bytes == 200 * MiB);  /* device 0's cache untouched */
    CHECK(evicted_on[0] == 0);
    /* An allocation device 1 cannot hold: every relief of device 1 runs,
     * device 0 is left alone, and the answer names device 1. */
    void *r;
    CHECK_ST(cua_arena_alloc(work1, 300 * MiB, 0, &r), CUA_ERR_OUT_OF_MEMORY);
    CHECK(strstr(cua_last_error(), "device 1") != NULL);
    CHECK(strstr(cua_last_error(), "cache0") == NULL);
    CHECK(evicted_on[1] >= 1 && evicted_on[0] == 0);
    CHECK(stats_of(cache0).mapped_bytes == 200 * MiB);
    CHECK(stats_of(cache1).mapped_bytes == 0); /* it gave all it had */
    CHECK_ARENA(cache0);
    CHECK_ARENA(cache1);
    CHECK_ARENA(work1);
    /* And device 0 can still use its own cache without a driver call. */
    cua_stats s0 = stats_of(cache0);
    CHECK_OK(cua_arena_alloc(cache0, 150 * MiB, 0, &p));
    CHECK(stats_of(cache0).calls[CUA_CALL_CREATE] == s0.calls[CUA_CALL_CREATE]);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_remove_evict_callback(count_evictions, NULL));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_destroy(work1, 0));
    CHECK_OK(cua_arena_destroy(cache1, 0));
    CHECK_OK(cua_arena_destroy(cache0, 0));
    CHECK(backend_empty(b0) && backend_empty(b1));
    CHECK_OK(cua_backend_destroy(b0));
    CHECK_OK(cua_backend_destroy(b1));
}

TEST(default_arenas_one_per_device)
{
    /* Host defaults whatever the machine has (CUARENA_CONF is read by each
     * default arena's creation). */
    setenv("CUARENA_CONF", "backend:host,check:1", 1);
    cua_arena *def[NDEV];
    for (int d = 0; d < NDEV; d++) {
        CHECK_OK(cua_arena_default(d, &def[d]));
        cua_arena *again = NULL;
        CHECK_OK(cua_arena_default(d, &again));
        CHECK(again == def[d]);
        for (int e = 0; e < d; e++) CHECK(def[e] != def[d]);
        CHECK(test_mem(def[d])->device == d && test_mem(def[d])->bk->device == d); /* a simulated device d */
        cua_arena *found = NULL;
        CHECK_OK(cua_arena_find(d, "default", &found));
        CHECK(found == def[d]);
    }
    /* The framework hooks take each device's own default arena. */
    void *p[NDEV];
    for (int d = 0; d < NDEV; d++) {
        p[d] = cua_torch_alloc((size_t)(d + 1) * MiB, d, NULL);
        CHECK(p[d]);
        cua_arena *owner = NULL;
        CHECK_OK(cua_ptr_info(p[d], &owner, NULL, NULL));
        CHECK(owner == def[d]);
        uint64_t m = 0;
        CHECK_OK(_cua_host_access(test_mem(def[d])->bk, (uintptr_t)p[d], &m));
        CHECK(m == CUA_PEER(d));
    }
    void *c = cua_cupy_malloc(NULL, MiB, 3);
    cua_arena *owner = NULL;
    CHECK(c);
    CHECK_OK(cua_ptr_info(c, &owner, NULL, NULL));
    CHECK(owner == def[3]);
    cua_cupy_free(NULL, c, 3);
    for (int d = 0; d < NDEV; d++) {
        CHECK(stats_of(def[d]).live_bytes == (size_t)(d + 1) * MiB);
        cua_torch_free(p[d], (size_t)(d + 1) * MiB, d, NULL);
        CHECK_ARENA(def[d]);
        CHECK(stats_of(def[d]).live_bytes == 0);
    }
    /* CUARENA_CONF's peers reach default arenas: a fresh default of device 1
     * (after destroying the old one) accessible from 0 is refused on a
     * simulated device with no peers, and the default is then made again
     * without. */
    CHECK_OK(cua_arena_destroy(def[1], 0));
    setenv("CUARENA_CONF", "backend:host,peers:0", 1);
    cua_arena *d1 = NULL;
    CHECK_ST(cua_arena_default(1, &d1), CUA_ERR_NOT_SUPPORTED);
    CHECK(strstr(cua_last_error(), "device 0 cannot access") != NULL);
    setenv("CUARENA_CONF", "backend:host", 1);
    CHECK_OK(cua_arena_default(1, &d1));
    CHECK(d1 != def[1] && test_mem(d1)->device == 1);
    def[1] = d1;
    unsetenv("CUARENA_CONF");
    for (int d = 0; d < NDEV; d++) CHECK_OK(cua_arena_destroy(def[d], 0));
}

/* ---- peers ----------------------------------------------------------------------------- */

TEST(peers_granted_at_creation_and_later)
{
    cua_backend *b0 = make_device(0, 0);
    CHECK(b0);
    cua_arena *a = make_arena(b0, "shared0", 0, CUA_PEER(1));
    CHECK(a);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 6 * MiB, 0, &p));
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1)));
    /* Later: the pages mapped now, and those mapped after. */
    cua_stats s = stats_of(a);
    CHECK_OK(cua_arena_grant_peer(a, 2));
    CHECK(stats_of(a).calls[CUA_CALL_SET_ACCESS] == s.calls[CUA_CALL_SET_ACCESS] + 1); /* one run */
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK_OK(cua_arena_alloc(a, 10 * MiB, 0, &q));
    CHECK_ARENA(a);
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    /* Again, or the own device: nothing to do, no driver call. */
    s = stats_of(a);
    CHECK_OK(cua_arena_grant_peer(a, 2));
    CHECK_OK(cua_arena_grant_peer(a, 0));
    CHECK(stats_of(a).calls[CUA_CALL_SET_ACCESS] == s.calls[CUA_CALL_SET_ACCESS]);
    /* Device 3 cannot reach device 0: refused, nothing changed. */
    CHECK_ST(cua_arena_grant_peer(a, 3), CUA_ERR_NOT_SUPPORTED);
    CHECK(strstr(cua_last_error(), "device 3 cannot access") != NULL);
    CHECK(strstr(cua_last_error(), "shared0") != NULL);
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK_ST(cua_arena_grant_peer(a, 64), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_grant_peer(a, -1), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_grant_peer(NULL, 1), CUA_ERR_INVALID_ARG);
    CHECK_ARENA(a);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_ST(cua_arena_grant_peer(a, 1), CUA_ERR_DESTROYED);

    /* At creation, an impossible peer fails the create and leaves nothing. */
    cua_arena *bad = make_arena(b0, "bad", 0, CUA_PEER(1) | CUA_PEER(3));
    CHECK(bad == NULL);
    CHECK(strstr(cua_last_error(), "device 3 cannot access") != NULL);
    CHECK(backend_empty(b0));
    /* The option string says the same; an arena with a host backend of its
     * own is a device without peers. */
    CHECK_ST(cua_arena_create_conf("conf", "backend:host,device:2,peers:3", &bad),
             CUA_ERR_NOT_SUPPORTED);
    CHECK(bad == NULL);
    CHECK_OK(cua_arena_create_conf("conf", "backend:host,device:2,peers:2", &bad)); /* own */
    CHECK_OK(cua_arena_alloc(bad, MiB, 0, &p));
    CHECK(access_is(bad, CUA_PEER(2)));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_destroy(bad, 0));
    CHECK_OK(cua_backend_destroy(b0));
}

DEVICE_TEST(peers_regranted_after_trim_and_regrow, 1, "regrow1", 0, 0)
{
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &q));
    CHECK(access_is(a, CUA_PEER(1)));
    CHECK_OK(cua_arena_grant_peer(a, 0));
    CHECK(access_is(a, CUA_PEER(1) | CUA_PEER(0)));
    CHECK_OK(cua_free(p));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK(released == 4 * MiB);
    CHECK_ARENA(a);
    /* Regrowth maps new handles where the old ones were, and beyond. */
    CHECK_OK(cua_arena_alloc(a, 12 * MiB, 0, &p));
    CHECK(stats_of(a).mapped_bytes == 16 * MiB);
    CHECK(access_is(a, CUA_PEER(1) | CUA_PEER(0)));
    /* Under a limit the footprint swaps pages: still every peer. */
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_set_limit(a, 10 * MiB));
    CHECK_OK(cua_arena_alloc(a, 6 * MiB, 0, &p));
    CHECK_ARENA(a);
    CHECK(access_is(a, CUA_PEER(1) | CUA_PEER(0)));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
}

static bool holds(const void *p, size_t n, unsigned char seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i += 4093)
        if (c[i] != (unsigned char)(seed + i)) return false;
    return true;
}

static void fill(void *p, size_t n, unsigned char seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i += 4093) c[i] = (unsigned char)(seed + i);
}

DEVICE_TEST(peers_regranted_after_offload_and_restore, 0, "offload0", 0, CUA_PEER(1))
{
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 5 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(a, 40 * MiB, 0, &q)); /* large: chunk_large handles */
    fill(p, 5 * MiB, 3);
    fill(q, 40 * MiB, 9);
    CHECK_OK(cua_arena_offload(a));
    CHECK(stats_of(a).mapped_bytes == 0);
    uint64_t m;
    CHECK_ST(_cua_host_access(test_mem(a)->bk, (uintptr_t)p, &m), CUA_ERR_INVALID_ARG); /* unmapped */
    /* A peer granted while offloaded is checked, and applies at the restore. */
    CHECK_ST(cua_arena_grant_peer(a, 3), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(cua_arena_grant_peer(a, 2));
    CHECK_OK(cua_arena_restore(a));
    CHECK_ARENA(a);
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK(holds(p, 5 * MiB, 3) && holds(q, 40 * MiB, 9));
    /* Discard + restore too. */
    CHECK_OK(cua_arena_discard(a));
    CHECK_OK(cua_arena_restore(a));
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK_ARENA(a);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
}

/* no VMM: cuMemAlloc and cuCtxEnablePeerAccess */
DEVICE_TEST(peers_of_an_arena_of_whole_segments, 0, "novmm0", 1, CUA_PEER(2))
{
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 3 * MiB, 0, &p));
    uint64_t m = 0;
    CHECK_OK(_cua_host_access(test_mem(a)->bk, (uintptr_t)p, &m));
    CHECK(m == (CUA_PEER(0) | CUA_PEER(2)));
    CHECK_ST(cua_arena_grant_peer(a, 3), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(cua_arena_grant_peer(a, 1));
    CHECK_OK(cua_arena_alloc(a, 9 * MiB, 0, &q));
    CHECK_OK(_cua_host_access(test_mem(a)->bk, (uintptr_t)p, &m));
    CHECK(m == (CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK_OK(_cua_host_access(test_mem(a)->bk, (uintptr_t)q + 9 * MiB - 1, &m));
    CHECK(m == (CUA_PEER(0) | CUA_PEER(1) | CUA_PEER(2)));
    CHECK_ARENA(a);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
}

TEST(a_failed_grant_changes_nothing_and_can_be_repeated)
{
    cua_backend *b0 = make_device(0, 0), *f = NULL;
    CHECK(b0);
    CHECK_OK(cua_backend_fault_create(b0, &f));
    g_inner = b0;
    cua_arena *a = make_arena(f, "fault0", 0, 0);
    CHECK(a);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &p));
    CHECK_OK(cua_fault_fail_nth(f, CUA_CALL_SET_ACCESS, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_arena_grant_peer(a, 1), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "fault0") != NULL);
    CHECK(access_is(a, CUA_PEER(0)));
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &q)); /* the peer was not recorded */
    CHECK(access_is(a, CUA_PEER(0)));
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_grant_peer(a, 1));
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1)));
    /* A growth whose access call fails leaves nothing new mapped; the next
     * one grants every device. */
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK_OK(cua_fault_fail_nth(f, CUA_CALL_SET_ACCESS, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_arena_alloc(a, 4 * MiB, 0, &q), CUA_ERR_BACKEND);
    CHECK(stats_of(a).mapped_bytes == 4 * MiB);
    CHECK_ARENA(a);
    CHECK_OK(cua_arena_alloc(a, 4 * MiB, 0, &q));
    CHECK(access_is(a, CUA_PEER(0) | CUA_PEER(1)));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(f));
    CHECK(backend_empty(b0));
    CHECK_OK(cua_backend_destroy(b0));
}

/* ---- threads: one per device, grants while they allocate ----------------------------- */

struct worker {
    cua_arena *a;
    int rounds;
    cua_status st;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = (uint64_t)(uintptr_t)w->a;
    void *live[16] = {0};
    for (int i = 0; i < w->rounds && w->st == CUA_OK; i++) {
        int k = (int)(test_rand(&rng) % 16);
        if (live[k]) {
            w->st = cua_free(live[k]);
            live[k] = NULL;
        } else {
            size_t size = (size_t)(test_rand(&rng) % (6 * MiB)) + 1;
            w->st = cua_arena_alloc(w->a, size, 0, &live[k]);
        }
        if (w->st == CUA_OK && i % 64 == 63) w->st = cua_arena_trim(w->a, 0, NULL);
    }
    for (int k = 0; k < 16; k++)
        if (live[k] && cua_free(live[k]) != CUA_OK) w->st = CUA_ERR_CORRUPT;
    return NULL;
}

TEST(grants_while_every_device_allocates)
{
    cua_backend *bk[NDEV];
    cua_arena *a[NDEV];
    struct worker w[NDEV];
    pthread_t t[NDEV];
    for (int d = 0; d < NDEV; d++) {
        bk[d] = make_device(d, 0);
        CHECK(bk[d]);
        char name[16];
        snprintf(name, sizeof name, "busy%d", d);
        a[d] = make_arena(bk[d], name, d, 0);
        CHECK(a[d]);
        w[d] = (struct worker){a[d], 600, CUA_OK};
    }
    for (int d = 0; d < NDEV; d++) CHECK(pthread_create(&t[d], NULL, work, &w[d]) == 0);
    /* Every possible peer of the topology, granted while the threads run;
     * the impossible ones refused. */
    int granted = 0, refused = 0;
    for (int d = 0; d < NDEV; d++)
        for (int p = 0; p < NDEV; p++) {
            if (p == d) continue;
            cua_status st = cua_arena_grant_peer(a[d], p);
            if (topology[d] >> p & 1) {
                granted += st == CUA_OK;
            } else {
                refused += st == CUA_ERR_NOT_SUPPORTED;
            }
        }
    for (int d = 0; d < NDEV; d++) CHECK(pthread_join(t[d], NULL) == 0);
    CHECK(granted == 4 && refused == 8);
    for (int d = 0; d < NDEV; d++) {
        CHECK_OK(w[d].st);
        CHECK_ARENA(a[d]);
        void *p;
        CHECK_OK(cua_arena_alloc(a[d], 8 * MiB, 0, &p)); /* something mapped to look at */
        CHECK(access_is(a[d], CUA_PEER(d) | topology[d]));
        CHECK_OK(cua_free(p));
        CHECK_OK(cua_arena_destroy(a[d], 0));
        CHECK(backend_empty(bk[d]));
        CHECK_OK(cua_backend_destroy(bk[d]));
    }
}
