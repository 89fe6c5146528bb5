/*
 * registry.c - the arenas of the process: the list of those alive (creation
 * order) that enumeration, lookup by name, the device report and the
 * headroom walk; the default arena of each device; and the handles.
 *
 * Handles: the memory of an arena is never freed. A destroyed arena leaves
 * the list at once (walks cost what the live arenas cost, not every arena
 * ever made) and its memory waits in a pool for the next arena. Users hold
 * handles, not addresses: a handle is the arena's slot in a table (its
 * memory stays in that slot for life) and its generation (+1 at each
 * destroy), packed in a pointer-sized value that is never a valid address:
 *
 *     0x4A (8 bits) | generation (32 bits) | slot + 1 (24 bits)
 *
 * so a stale handle is answered CUA_ERR_DESTROYED however often its memory
 * was reused, a destroyed arena costs nothing (10^6 arenas made and
 * destroyed leave the process as large as one), and a value that is no
 * handle is refused without being read from.
 *
 * Walks take only the registry lock and read `alive` atomically, never an
 * arena lock under it: destroy takes the arena lock first and the registry
 * lock second, so the other order here could deadlock. An arena seen alive by
 * a walk may be destroyed a moment later (and its memory hold another arena):
 * callers lock it and look again.
 */
#include "process/registry.h"
#include "backend/cuda.h"
#include "backend/host.h"
#include "arena/events.h"
#include "arena/stats.h"
#include "base/addrmap.h"
#include "base/devstat.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cua_mutex registry_lock = CUA_MUTEX_INIT(REGISTRY);
static cua_arena **registry; /* the arenas alive, in creation order */
static size_t registry_n, registry_cap;
static cua_arena *default_arena[CUA_MAX_DEVICES];
/* Shared CUDA backends, made once under backend_init_lock (not the registry
 * lock: making one calls the driver), then read without a lock. */
static cua_mutex backend_init_lock = CUA_MUTEX_INIT(BACKEND_INIT);
static _Atomic(cua_backend *) device_backend[CUA_MAX_DEVICES];

/* ---- handles ---------------------------------------------------------------------------- */

#define HANDLE_TAG 0x4Au /* top bit clear: a positive intptr_t (CuPy takes it as ssize_t) */
#define SLOT_BITS 24u
#define CHUNK_BITS 12u
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define MAX_SLOTS ((1u << SLOT_BITS) - 1u)

/* slot -> arena memory: chunks of CHUNK_SLOTS, made as needed, never freed
 * (read without a lock: atomic loads). */
static _Atomic(_Atomic(cua_arena *) *) slot_chunk[(MAX_SLOTS >> CHUNK_BITS) + 1];
static _Atomic uint32_t nslots;
/* Memory of destroyed arenas, for the next ones (registry_lock). */
static cua_arena **pool;
static size_t npool, cap_pool;

_Static_assert(sizeof(uintptr_t) == 8, "a handle packs 64 bits");

static cua_arena *handle_of(uint32_t idx, uint32_t gen)
{
    uint64_t v = (uint64_t)HANDLE_TAG << 56 | (uint64_t)gen << SLOT_BITS | (idx + 1u);
    return (cua_arena *)(uintptr_t)v;
}

cua_arena *_cua_arena_of(const cua_arena *h, uint32_t *gen)
{
    uint64_t v = (uint64_t)(uintptr_t)h;
    uint32_t idx = (uint32_t)(v & MAX_SLOTS);
    if ((v >> 56) != HANDLE_TAG || idx == 0 ||
        --idx >= atomic_load_explicit(&nslots, memory_order_acquire))
        return NULL;
    *gen = (uint32_t)(v >> SLOT_BITS);
    _Atomic(cua_arena *) *chunk =
        atomic_load_explicit(&slot_chunk[idx >> CHUNK_BITS], memory_order_relaxed);
    return atomic_load_explicit(&chunk[idx & (CHUNK_SLOTS - 1)], memory_order_relaxed);
}

/* New arena memory in a new slot (registry lock held); NULL when out of host
 * memory or slots. */
static cua_arena *new_body_locked(void)
{
    uint32_t idx = atomic_load_explicit(&nslots, memory_order_relaxed);
    if (idx >= MAX_SLOTS) return NULL;
    _Atomic(cua_arena *) *chunk =
        atomic_load_explicit(&slot_chunk[idx >> CHUNK_BITS], memory_order_relaxed);
    if (!chunk) {
        if (!(chunk = calloc(CHUNK_SLOTS, sizeof *chunk))) return NULL;
        atomic_store_explicit(&slot_chunk[idx >> CHUNK_BITS], chunk, memory_order_relaxed);
    }
    /* Aligned for its lock's cache line (arena.h). */
    size_t bytes = (sizeof(cua_arena) + 63) & ~(size_t)63;
    cua_arena *a = aligned_alloc(64, bytes);
    if (!a) return NULL;
    memset(a, 0, bytes);
    _cua_lock_init(&a->lock, CUA_LOCK_RANK_ARENA);
    a->magic = CUA_ARENA_MAGIC;
    a->idx = idx;
    atomic_store_explicit(&chunk[idx & (CHUNK_SLOTS - 1)], a, memory_order_relaxed);
    atomic_store_explicit(&nslots, idx + 1, memory_order_release);
    return a;
}

static cua_status registry_body(cua_arena **out)
{
    _cua_mutex_lock(&registry_lock);
    cua_arena *a = npool ? pool[--npool] : new_body_locked();
    _cua_mutex_unlock(&registry_lock);
    if (!a) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for an arena");
    /* Locked until it is built (the caller unlocks): a thread that held the
     * last arena's memory - a stale handle, a snapshot of the registry -
     * takes the lock after the building and finds it dead or whole. */
    _cua_lock(&a->lock);
    atomic_store_explicit(&a->tc_on, 0, memory_order_relaxed);
    atomic_store_explicit(&a->tc_auto, false, memory_order_relaxed);
    atomic_store_explicit(&a->lock_waits, 0, memory_order_relaxed);
    memset(a->name, 0, sizeof *a - offsetof(cua_arena, name));
    a->self = handle_of(a->idx, atomic_load_explicit(&a->gen, memory_order_relaxed));
    *out = a;
    return CUA_OK;
}

cua_status _cua_arena_enter(cua_arena **pa)
{
    cua_arena *h = *pa, *a;
    uint32_t gen;
    if (!h) return _cua_error(CUA_ERR_INVALID_ARG, "arena is NULL");
    if (!(a = _cua_arena_of(h, &gen)))
        return _cua_error(CUA_ERR_INVALID_ARG, "%p is not an arena handle", (void *)h);
    /* The generation before the lock (a stale handle costs no wait) and under
     * it (destroyed meanwhile, its memory maybe another arena's since). */
    if (!_cua_arena_same(a, gen) || !_cua_arena_lock_same(a, gen))
        return _cua_error(CUA_ERR_DESTROYED, "the arena of handle %p was destroyed", (void *)h);
    *pa = a;
    return CUA_OK;
}

void _cua_registry_recycle(cua_arena *a)
{
    _cua_mutex_lock(&registry_lock);
    if (npool == cap_pool) {
        size_t ncap = cap_pool ? 2 * cap_pool : 16;
        cua_arena **np = realloc(pool, ncap * sizeof *np);
        if (np) {
            pool = np;
            cap_pool = ncap;
        }
    }
    /* (no host memory to keep it: it stays in its slot, unused - never freed) */
    if (npool < cap_pool) pool[npool++] = a;
    _cua_mutex_unlock(&registry_lock);
}

/* ---- the list of live arenas -------------------------------------------------------------- */

static cua_status registry_add(cua_arena *a)
{
    _cua_mutex_lock(&registry_lock);
    if (registry_n == registry_cap) {
        size_t ncap = registry_cap ? 2 * registry_cap : 16;
        cua_arena **nr = realloc(registry, ncap * sizeof *nr);
        if (!nr) {
            _cua_mutex_unlock(&registry_lock);
            return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the arena registry");
        }
        registry = nr;
        registry_cap = ncap;
    }
    registry[registry_n++] = a;
    _cua_mutex_unlock(&registry_lock);
    return CUA_OK;
}

/* What the ranges of destroyed arenas map to: an arena that is never alive
 * (the address map's callers answer CUA_ERR_DESTROYED, with this name). */
static cua_arena the_dead = {.lock = CUA_LOCK_INIT(ARENA), .name = "(destroyed)"};

void _cua_registry_remove(cua_arena *a, uintptr_t base, size_t size)
{
    if (base) _cua_addrmap_bury(base, size, a, &the_dead);
    _cua_mutex_lock(&registry_lock);
    for (int d = 0; d < CUA_MAX_DEVICES; d++)
        if (default_arena[d] == a) default_arena[d] = NULL;
    for (size_t i = registry_n; i-- > 0;) /* (the newest first: short-lived ones are there) */
        if (registry[i] == a) {
            memmove(&registry[i], &registry[i + 1], (registry_n - i - 1) * sizeof *registry);
            registry_n--;
            break;
        }
    _cua_mutex_unlock(&registry_lock);
}

cua_status _cua_registry_device_backend(int device, cua_backend **out)
{
    *out = NULL;
    if (device < 0 || device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d", device,
                          CUA_MAX_DEVICES - 1);
    *out = atomic_load_explicit(&device_backend[device], memory_order_acquire);
    if (*out) return CUA_OK;
    cua_status st = CUA_OK;
    _cua_mutex_lock(&backend_init_lock); /* made once: a second thread waits for the first */
    cua_backend *b = atomic_load_explicit(&device_backend[device], memory_order_relaxed);
    if (!b) {
#if CUA_HAVE_CUDA
        st = _cua_backend_cuda_create(device, &b);
#else
        st = _cua_error(CUA_ERR_NOT_SUPPORTED, "this build of cuarena has no CUDA backend "
                        "(cuda.h was not found when it was built)");
#endif
        if (st == CUA_OK) {
            b->shared = true;
            atomic_store_explicit(&device_backend[device], b, memory_order_release);
        }
    }
    *out = b;
    _cua_mutex_unlock(&backend_init_lock);
    return st;
}

cua_status cua_device_backend(int device, cua_backend **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL");
    return _cua_registry_device_backend(device, out);
}

/* The backend an arena of cfg gets; owns: the arena's own (a host backend). */
static cua_status backend_for(const cua_arena_config *cfg, cua_backend **bk, bool *owns)
{
    *bk = cfg->backend;
    *owns = false;
    if (cfg->backend_kind < CUA_BACKEND_HOST || cfg->backend_kind > CUA_BACKEND_AUTO)
        return _cua_error(CUA_ERR_INVALID_ARG, "backend_kind %d is not a cua_backend_kind",
                          cfg->backend_kind);
    if (!*bk && cfg->backend_kind != CUA_BACKEND_HOST) {
        cua_status st = _cua_registry_device_backend(cfg->device, bk);
        if (st != CUA_OK && cfg->backend_kind == CUA_BACKEND_CUDA) return st;
        /* auto without the device: a host backend below */
    }
    if (*bk) return CUA_OK;
    cua_host_config hc; /* a simulated device of the arena's ordinal, without peers */
    _cua_host_config_defaults(&hc);
    if (cfg->device >= 0 && cfg->device < CUA_MAX_DEVICES) hc.device = cfg->device;
    *owns = true;
    return _cua_backend_host_create(&hc, bk);
}

cua_status _cua_registry_create(const cua_arena_config *cfg, cua_arena **out, cua_arena **handle,
                                uint32_t *gen)
{
    cua_backend *bk;
    bool owns;
    cua_status st = backend_for(cfg, &bk, &owns);
    if (st != CUA_OK) return st;
    cua_arena *a = NULL;
    st = registry_body(&a);
    if (st != CUA_OK) {
        if (owns) _cua_backend_destroy(bk);
        return st;
    }
    st = _cua_arena_create(a, cfg, bk, owns); /* (destroys an owned backend on failure) */
    if (st == CUA_OK && (st = registry_add(a)) != CUA_OK) {
        if (!a->seg.novmm) _cua_addrmap_remove(a->seg.base, a->seg.size, a);
        _cua_arena_destroy_locked(a, CUA_DESTROY_FORCE);
    }
    if (st != CUA_OK) {
        _cua_unlock(&a->lock);
        _cua_registry_recycle(a); /* never handed out */
        return st;
    }
    /* Listed: from the unlock on another thread may find it, destroy it and
     * build another arena in its memory. Its handle and generation, and its
     * CREATED event's figures, are taken before. */
    *out = a;
    *handle = a->self;
    *gen = atomic_load_explicit(&a->gen, memory_order_relaxed);
    _cua_event_queue(a, CUA_ARENA_CREATED, "", 0);
    _cua_arena_unlock(a); /* (the callback runs after the unlock) */
    return CUA_OK;
}

cua_arena *_cua_registry_default(int device, cua_arena *candidate)
{
    uint32_t gen = 0;
    cua_arena *c = candidate ? _cua_arena_of(candidate, &gen) : NULL;
    _cua_mutex_lock(&registry_lock);
    /* Only the arena of that handle, alive: a destroy sets `alive` before it
     * takes this lock to drop the defaults, so one seen alive here is dropped
     * by that destroy. */
    if (!default_arena[device] && c && _cua_arena_same(c, gen)) default_arena[device] = c;
    cua_arena *a = default_arena[device];
    cua_arena *h = a ? a->self : NULL; /* (a destroy takes it out under this lock first) */
    _cua_mutex_unlock(&registry_lock);
    return h;
}

/* The arenas alive on device (or all): up to cap into out (their memory, or
 * their handles); returns how many. */
static size_t list_alive(int device, cua_arena **out, size_t cap, bool handles)
{
    size_t n = 0;
    _cua_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n; i++) {
        cua_arena *a = registry[i];
        if (!atomic_load(&a->alive) || (device != CUA_ALL_DEVICES && a->device != device)) continue;
        if (n < cap) out[n] = handles ? a->self : a;
        n++;
    }
    _cua_mutex_unlock(&registry_lock);
    return n;
}

/* A snapshot of the device's arenas in a malloc'ed array (NULL and 0 when none). */
cua_status _cua_registry_snapshot(int device, cua_arena ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    for (;;) {
        size_t want = list_alive(device, NULL, 0, false);
        if (want == 0) return CUA_OK;
        cua_arena **v = malloc(want * sizeof *v);
        if (!v) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to list %zu arenas", want);
        size_t got = list_alive(device, v, want, false);
        if (got <= want) {
            *out = v;
            *n = got;
            return CUA_OK;
        }
        free(v); /* more arenas came meanwhile: again */
    }
}

cua_status cua_arena_list(int device, cua_arena **out, size_t cap, size_t *n)
{
    if (!n || (!out && cap) || device < CUA_ALL_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "n is NULL, out is NULL with cap %zu, or device "
                          "%d is not an ordinal or CUA_ALL_DEVICES", cap, device);
    *n = list_alive(device, out, cap, true);
    return CUA_OK;
}

cua_status cua_arena_find(int device, const char *name, cua_arena **out)
{
    if (!name || !out || device < CUA_ALL_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "name or out is NULL, or device %d is not an "
                          "ordinal or CUA_ALL_DEVICES", device);
    *out = NULL;
    _cua_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n && !*out; i++) {
        cua_arena *a = registry[i];
        if (atomic_load(&a->alive) && (device == CUA_ALL_DEVICES || a->device == device) &&
            strcmp(a->name, name) == 0)
            *out = a->self;
    }
    _cua_mutex_unlock(&registry_lock);
    if (*out) return CUA_OK;
    return _cua_error(CUA_ERR_NOT_FOUND, "no arena named '%s' is alive on %s %d", name,
                      device == CUA_ALL_DEVICES ? "any device, asked with" : "device", device);
}

/* ---- by priority, and idle trim ------------------------------------------------------ */

typedef struct ranked {
    cua_arena *a;
    int priority;
    size_t order;
} ranked;

static int by_priority(const void *x, const void *y)
{
    const ranked *p = x, *q = y;
    if (p->priority != q->priority) return p->priority < q->priority ? -1 : 1;
    return (p->order > q->order) - (p->order < q->order);
}

/* The arenas alive on device (or all) with their priorities, read under the
 * registry lock (an arena's memory may hold another arena once it is off
 * the list): up to cap into r; returns how many there are. */
static size_t rank_alive(int device, ranked *r, size_t cap)
{
    size_t n = 0;
    _cua_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n; i++) {
        cua_arena *a = registry[i];
        if (!atomic_load(&a->alive) || (device != CUA_ALL_DEVICES && a->device != device)) continue;
        if (n < cap) r[n] = (ranked){a, a->cfg.priority, n};
        n++;
    }
    _cua_mutex_unlock(&registry_lock);
    return n;
}

cua_status _cua_registry_by_priority(int device, cua_arena ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    ranked *r = NULL;
    size_t want = rank_alive(device, NULL, 0), got = 0;
    for (;;) { /* (more arenas may come between the count and the copy) */
        if (want == 0) return CUA_OK;
        if (!(r = malloc(want * sizeof *r)) || !(*out = malloc(want * sizeof **out))) {
            free(r);
            return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to rank %zu arenas", want);
        }
        if ((got = rank_alive(device, r, want)) <= want) break;
        free(r);
        free(*out);
        *out = NULL;
        want = got;
    }
    *n = got;
    qsort(r, *n, sizeof *r, by_priority);
    for (size_t i = 0; i < *n; i++) (*out)[i] = r[i].a;
    free(r);
    return CUA_OK;
}

cua_status cua_trim_idle(int device, size_t *released)
{
    if (released) *released = 0;
    if (device < CUA_ALL_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is not an ordinal or CUA_ALL_DEVICES",
                          device);
    return _cua_registry_trim_idle(device, released);
}

cua_status _cua_registry_trim_idle(int device, size_t *released)
{
    cua_arena **v;
    size_t n;
    cua_status st = _cua_registry_by_priority(device, &v, &n), first = CUA_OK;
    if (st != CUA_OK) return st;
    uint64_t now = _cua_now_ns();
    for (size_t i = 0; i < n; i++) {
        cua_arena *a = v[i];
        if (!_cua_arena_lock_alive(a)) continue;
        uint64_t got = 0;
        st = _cua_arena_trim_if_idle_locked(a, now, &got);
        if (st != CUA_OK && first == CUA_OK) first = st;
        _cua_arena_unlock(a);
        if (released) *released += got;
    }
    free(v);
    return first;
}

/* ---- the device report and the headroom ------------------------------------------ */

typedef struct device_sums {
    size_t driver_free, driver_total;
    uint64_t mapped, live, cached;
    size_t narenas;
    size_t gran;               /* the first arena's backend granularity */
} device_sums;

/* What a new allocation can still map: the driver's free memory in whole
 * pages, less what the driver needs to map them (page tables and its own
 * bookkeeping: on the H100 an allocation of all of its free 78.7 GiB failed
 * and one 2.2 MiB smaller fit; 1/4096 of it and one page are kept back), plus
 * what trims would return. */
static size_t headroom_of(const device_sums *s)
{
    size_t gran = s->gran ? s->gran : 1;
    size_t pages = s->driver_free / gran * gran;
    size_t keep = (pages / 4096 / gran + 1) * gran;
    return (pages > keep ? pages - keep : 0) + (size_t)s->cached;
}

/* Arena a's figures, when it is still alive on `device` (its memory may hold
 * another arena since the snapshot); with json, its JSON object too. */
static bool stats_of(cua_arena *a, int device, cua_stats *out, char *json, size_t cap,
                     size_t *len)
{
    if (!_cua_arena_lock_alive(a)) return false;
    bool ours = a->device == device;
    if (ours) _cua_stats_read(a, out);
    if (ours && len) *len = _cua_stats_json(out, a->name, a->device, a->bk->name, json, cap);
    _cua_arena_unlock(a);
    return ours;
}

/* Sum the arenas of `device` in v[0..n) (skipping those destroyed meanwhile)
 * and ask the first one's backend for the driver's figures. */
static cua_status device_sums_of(int device, cua_arena **v, size_t n, device_sums *s)
{
    memset(s, 0, sizeof *s);
    bool asked = false;
    cua_status st = CUA_OK;
    for (size_t i = 0; i < n; i++) {
        cua_stats as;
        if (!stats_of(v[i], device, &as, NULL, 0, NULL)) continue; /* destroyed meanwhile */
        s->mapped += as.mapped_bytes;
        s->live += as.live_bytes;
        s->cached += as.cached_bytes;
        s->narenas++;
        if (asked) continue;
        /* Under the arena's lock, so that its backend cannot go meanwhile. */
        if (!_cua_arena_lock_alive(v[i])) continue;
        if (v[i]->device != device) {
            _cua_unlock(&v[i]->lock);
            continue;
        }
        st = _cua_bk_mem_info(v[i]->bk, NULL, &s->driver_free, &s->driver_total);
        s->gran = v[i]->bk->granularity;
        asked = true;
        _cua_unlock(&v[i]->lock);
    }
    if (st != CUA_OK)
        return _cua_error_wrap(st, "cannot ask the driver what device %d has free", device);
    return CUA_OK;
}

cua_status cua_headroom(int device, size_t *out)
{
    if (!out || device < 0) return _cua_error(CUA_ERR_INVALID_ARG, "out is NULL or device %d < 0", device);
    return _cua_registry_headroom(device, out);
}

cua_status _cua_registry_headroom(int device, size_t *out)
{
    *out = 0;
    cua_arena **v;
    size_t n;
    device_sums s;
    cua_status st = _cua_registry_snapshot(device, &v, &n);
    if (st == CUA_OK) st = device_sums_of(device, v, n, &s);
    free(v);
    if (st == CUA_OK) *out = headroom_of(&s);
    return st;
}

cua_status cua_device_report_json(int device, char *buf, size_t cap, size_t *len)
{
    if (!len || (!buf && cap) || device < 0)
        return _cua_error(CUA_ERR_INVALID_ARG, "len is NULL, buf is NULL with cap %zu, or "
                          "device %d < 0", cap, device);
    *len = 0;
    if (cap) buf[0] = 0;
    cua_arena **v;
    size_t n;
    device_sums s;
    cua_status st = _cua_registry_snapshot(device, &v, &n);
    if (st == CUA_OK) st = device_sums_of(device, v, n, &s);
    if (st != CUA_OK) {
        free(v);
        return st;
    }
    uint64_t used = s.driver_total - s.driver_free;
    uint64_t unaccounted = used > s.mapped ? used - s.mapped : 0;
    _cua_put(buf, cap, len,
        "{\"device\":%d,\"driver_free_bytes\":%zu,\"driver_total_bytes\":%zu,"
        "\"driver_used_bytes\":%" PRIu64 ",\"mapped_bytes\":%" PRIu64 ",\"live_bytes\":%" PRIu64
        ",\"cached_bytes\":%" PRIu64 ",\"unaccounted_bytes\":%" PRIu64
        ",\"headroom_bytes\":%" PRIu64 ",\"peak_mapped_bytes\":%" PRIu64 ",\"arenas\":[",
        device, s.driver_free, s.driver_total, used, s.mapped, s.live, s.cached, unaccounted,
        (uint64_t)headroom_of(&s),
        _cua_devstat_of(device) ? (uint64_t)atomic_load(&_cua_devstat_of(device)->peak) : 0);
    bool first = true;
    for (size_t i = 0; i < n && st == CUA_OK; i++) {
        size_t need = 0, got = 0;
        cua_stats as;
        if (!stats_of(v[i], device, &as, NULL, 0, &need)) continue; /* destroyed */
        char *one = malloc(need + 64);
        if (!one) {
            st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the device report");
            break;
        }
        if (stats_of(v[i], device, &as, one, need + 64, &got) && got < need + 64) {
            _cua_put(buf, cap, len, "%s%s", first ? "" : ",", one);
            first = false;
        }
        free(one);
    }
    _cua_put(buf, cap, len, "]}");
    free(v);
    return st;
}
