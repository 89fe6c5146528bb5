/*
 * backend_fault.c - a backend that forwards every call to an inner backend and
 * fails the calls chosen by a rule: the nth call of a kind (one rule per kind,
 * fired once, and a second one for pairs of failures), or any call with
 * probability p from a seeded generator. An injected failure sets a message,
 * returns its status, and never reaches the inner backend: it has no side
 * effect there.
 *
 * Forwarded calls go through the _cua_bk_* wrappers of the inner backend, so
 * its counters stay exact. Two of them need what the hook signatures do not
 * carry: release needs the handle's size and unmap the number of mappings it
 * covers. The fault backend keeps both (handle -> size, address -> size of
 * each mapping made through it) in two sorted tables.
 *
 * While a fault backend exists it counts as a user of the inner backend, so
 * the inner one cannot be destroyed first.
 */
#include "backend/fault.h"

#include <stdlib.h>
#include <string.h>

typedef struct fault_rule {
    uint64_t nth;   /* 0: no rule */
    uint64_t count; /* calls nth .. nth + count - 1 fail */
    uint64_t seen;  /* calls of the kind since the rule was set */
    cua_status fail;
} fault_rule;

/* A sorted table of (key, value) pairs: handles -> size, addresses -> size. */
typedef struct kv { uint64_t key, val; } kv;
typedef struct kv_table {
    kv *items;
    size_t n, cap;
} kv_table;

typedef struct fault_backend {
    struct cua_backend base; /* first: a cua_backend * points here */
    cua_backend *inner;
    cua_lock_t lock;         /* everything below */
    fault_rule rules[CUA_CALL_COUNT];
    fault_rule also[CUA_CALL_COUNT]; /* a second rule per kind (_cua_fault_fail_also) */
    uint64_t calls[CUA_CALL_COUNT]; /* calls per kind since creation, for messages */
    uint64_t at_first[CUA_CALL_COUNT]; /* `calls` when the first failure was injected */
    double p;                /* random failures: probability, 0 = off */
    uint64_t rng;            /* splitmix64 state */
    uint64_t injected;
    kv_table handles;        /* handle -> size in bytes */
    kv_table mappings;       /* address -> size of each mapping */
} fault_backend;

static fault_backend *fault_of(cua_backend *b) { return (fault_backend *)(void *)b; }

/* ---- sorted tables ------------------------------------------------------------ */

static size_t kv_lower_bound(const kv_table *t, uint64_t key)
{
    _Static_assert(sizeof(uintptr_t) == sizeof(uint64_t), "keys are addresses");
    return _cua_lower_bound(t->items, t->n, sizeof *t->items, (uintptr_t)key);
}

/* Room for one more pair, taken before forwarding so the insert cannot fail after. */
static cua_status kv_make_room(kv_table *t)
{
    if (t->n < t->cap) return CUA_OK;
    size_t ncap = t->cap ? 2 * t->cap : 64;
    kv *items = realloc(t->items, ncap * sizeof *items);
    if (!items)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "fault backend: no host memory for its tables");
    t->items = items;
    t->cap = ncap;
    return CUA_OK;
}

static void kv_insert(kv_table *t, uint64_t key, uint64_t val)
{
    _cua_sorted_insert(t->items, &t->n, sizeof *t->items, &(kv){key, val});
}

static void kv_remove(kv_table *t, size_t first, size_t end)
{
    _cua_array_remove(t->items, &t->n, sizeof *t->items, first, end);
}

/* ---- deciding to fail ----------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static cua_status random_status(cua_call kind)
{
    return kind == CUA_CALL_CREATE || kind == CUA_CALL_RESERVE || kind == CUA_CALL_ALLOC ||
                   kind == CUA_CALL_HOST_ALLOC
               ? CUA_ERR_OUT_OF_MEMORY
               : CUA_ERR_BACKEND;
}

/* Count a call against rule r: true when it is to fail. */
static bool rule_fires(fault_rule *r)
{
    if (!r->nth || ++r->seen < r->nth) return false;
    if (r->seen + 1 >= r->nth + r->count) r->nth = 0; /* the rule's last call */
    return true;
}

static void note_injection(fault_backend *f)
{
    if (f->injected++ == 0) memcpy(f->at_first, f->calls, sizeof f->at_first);
}

/* With the lock held: CUA_OK to forward the call, or the injected status. */
static cua_status decide(fault_backend *f, cua_call kind)
{
    f->calls[kind]++;
    bool first = rule_fires(&f->rules[kind]), second = rule_fires(&f->also[kind]);
    if (first || second) {
        fault_rule *r = first ? &f->rules[kind] : &f->also[kind];
        note_injection(f);
        return _cua_error(r->fail, "fault backend: injected %s on call %llu of kind '%s'",
                          cua_status_name(r->fail), (unsigned long long)r->seen,
                          cua_call_name(kind));
    }
    if (f->p > 0) {
        double u = (double)(splitmix64(&f->rng) >> 11) * 0x1.0p-53; /* in [0, 1) */
        if (u < f->p) {
            note_injection(f);
            cua_status st = random_status(kind);
            return _cua_error(st, "fault backend: injected %s on call %llu of kind '%s' "
                              "(random, p = %g)", cua_status_name(st),
                              (unsigned long long)f->calls[kind], cua_call_name(kind), f->p);
        }
    }
    return CUA_OK;
}

/* Take the lock and decide; the caller unlocks after updating its table. */
static cua_status lock_decide(fault_backend *f, cua_call kind)
{
    _cua_lock(&f->lock);
    return decide(f, kind);
}

/* Decide without holding the lock afterwards: for calls that need no table. */
static cua_status inject(fault_backend *f, cua_call kind)
{
    cua_status st = lock_decide(f, kind);
    _cua_unlock(&f->lock);
    return st;
}

/* ---- hooks ------------------------------------------------------------------------ */

/* A hook with nothing to track: fail the call if a rule says so, else forward
 * it to the inner backend's wrapper (which counts it there). Defines
 * fault_<hook>, failed by the rules of call kind CUA_CALL_<KIND>. */
#define FORWARD(hook, KIND, params, ...)                                                   \
    static cua_status fault_##hook params                                                  \
    {                                                                                      \
        fault_backend *f = fault_of(b);                                                    \
        cua_status st = inject(f, CUA_CALL_##KIND);                                        \
        return st != CUA_OK ? st : _cua_bk_##hook(f->inner, NULL, __VA_ARGS__);            \
    }

FORWARD(reserve, RESERVE, (cua_backend *b, size_t size, size_t align, uintptr_t *addr),
        size, align, addr)
FORWARD(unreserve, UNRESERVE, (cua_backend *b, uintptr_t addr, size_t size), addr, size)
FORWARD(set_access, SET_ACCESS,
        (cua_backend *b, uintptr_t addr, size_t size, const int *devices, int n),
        addr, size, devices, n)
/* peer_enable is a set_access for whole segments: failed by the same rules. */
FORWARD(peer_enable, SET_ACCESS, (cua_backend *b, int peer), peer)
FORWARD(alloc, ALLOC, (cua_backend *b, size_t size, uintptr_t *addr), size, addr)
FORWARD(free, FREE, (cua_backend *b, uintptr_t addr, size_t size), addr, size)
FORWARD(mem_info, MEM_INFO, (cua_backend *b, size_t *free_bytes, size_t *total_bytes),
        free_bytes, total_bytes)
FORWARD(event_create, EVENT_CREATE, (cua_backend *b, cua_event *out), out)
FORWARD(event_destroy, EVENT_DESTROY, (cua_backend *b, cua_event ev), ev)
FORWARD(event_record, EVENT_RECORD, (cua_backend *b, cua_event ev, cua_stream stream), ev,
        stream)
FORWARD(event_query, EVENT_QUERY, (cua_backend *b, cua_event ev), ev)
FORWARD(event_sync, EVENT_SYNC, (cua_backend *b, cua_event ev), ev)
FORWARD(stream_sync, STREAM_SYNC, (cua_backend *b, cua_stream stream), stream)
FORWARD(host_alloc, HOST_ALLOC, (cua_backend *b, size_t size, void **out), size, out)
FORWARD(host_free, HOST_FREE, (cua_backend *b, void *p, size_t size), p, size)
FORWARD(stream_create, STREAM_CREATE, (cua_backend *b, cua_stream *out), out)
FORWARD(stream_destroy, STREAM_DESTROY, (cua_backend *b, cua_stream s), s)
FORWARD(copy_to_host, COPY_TO_HOST,
        (cua_backend *b, void *dst, uintptr_t src, size_t n, cua_stream s), dst, src, n, s)
FORWARD(copy_to_device, COPY_TO_DEVICE,
        (cua_backend *b, uintptr_t dst, const void *src, size_t n, cua_stream s), dst, src, n,
        s)
FORWARD(fill, FILL, (cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s),
        addr, n, v, s)

/* The hooks that keep the tables release and unmap need. */
static cua_status fault_create(cua_backend *b, size_t size, cua_handle *out)
{
    fault_backend *f = fault_of(b);
    cua_status st = lock_decide(f, CUA_CALL_CREATE);
    if (st == CUA_OK) st = kv_make_room(&f->handles);
    if (st == CUA_OK) st = _cua_bk_create(f->inner, NULL, size, out);
    if (st == CUA_OK) kv_insert(&f->handles, *out, size);
    _cua_unlock(&f->lock);
    return st;
}

static cua_status fault_release(cua_backend *b, cua_handle h)
{
    fault_backend *f = fault_of(b);
    cua_status st = lock_decide(f, CUA_CALL_RELEASE);
    if (st == CUA_OK) {
        size_t i = kv_lower_bound(&f->handles, h);
        bool known = i < f->handles.n && f->handles.items[i].key == h;
        /* An unknown handle is refused by the inner backend; its size does not matter. */
        st = _cua_bk_release(f->inner, NULL, h, known ? (size_t)f->handles.items[i].val : 0);
        if (st == CUA_OK && known) kv_remove(&f->handles, i, i + 1);
    }
    _cua_unlock(&f->lock);
    return st;
}

/* The wrapper always maps at offset 0; pass any other offset on as the driver
 * would get it (to be refused), counting the call as the wrapper does. */
static cua_status forward_map(cua_backend *inner, uintptr_t addr, size_t size, size_t offset,
                              cua_handle h)
{
    if (offset == 0) return _cua_bk_map(inner, NULL, addr, size, h);
    uint64_t t0 = _cua_now_ns();
    cua_status st = inner->ops->map(inner, addr, size, offset, h);
    return _cua_bk_account(inner, NULL, CUA_CALL_MAP, t0, st, 1, 0);
}

static cua_status fault_map(cua_backend *b, uintptr_t addr, size_t size, size_t offset,
                            cua_handle h)
{
    fault_backend *f = fault_of(b);
    cua_status st = lock_decide(f, CUA_CALL_MAP);
    if (st == CUA_OK) st = kv_make_room(&f->mappings);
    if (st == CUA_OK) st = forward_map(f->inner, addr, size, offset, h);
    if (st == CUA_OK) kv_insert(&f->mappings, addr, size);
    _cua_unlock(&f->lock);
    return st;
}

static cua_status fault_unmap(cua_backend *b, uintptr_t addr, size_t size)
{
    fault_backend *f = fault_of(b);
    cua_status st = lock_decide(f, CUA_CALL_UNMAP);
    if (st == CUA_OK) {
        /* The mappings that start inside the range: all of them go if the inner
         * backend accepts the unmap (it refuses partial ones). */
        size_t first = kv_lower_bound(&f->mappings, addr);
        size_t end = size <= UINT64_MAX - addr ? kv_lower_bound(&f->mappings, addr + size)
                                               : f->mappings.n;
        st = _cua_bk_unmap(f->inner, NULL, addr, size, end - first);
        if (st == CUA_OK) kv_remove(&f->mappings, first, end);
    }
    _cua_unlock(&f->lock);
    return st;
}

/* A question, not a driver call that changes anything: never failed here. */
static cua_status fault_peer_check(cua_backend *b, int peer)
{
    return _cua_bk_peer_check(fault_of(b)->inner, peer);
}

static void fault_destroy(cua_backend *b)
{
    fault_backend *f = fault_of(b);
    atomic_fetch_sub(&f->inner->users, 1);
    free(f->handles.items);
    free(f->mappings.items);
    _cua_lock_destroy(&f->lock);
    free(f);
}

static const cua_backend_ops fault_ops = CUA_BACKEND_OPS(fault);

/* ---- creation and controls --------------------------------------------------------- */

cua_status _cua_backend_fault_create(cua_backend *inner, cua_backend **out)
{
    if (!inner || !out) return _cua_error(CUA_ERR_INVALID_ARG, "fault backend: inner or out is NULL");
    *out = NULL;
    fault_backend *f = calloc(1, sizeof *f);
    if (!f) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "fault backend: no host memory for it");
    _cua_backend_init(&f->base, &fault_ops, "fault", CUA_BK_FAULT, inner->granularity,
                      inner->total_bytes);
    f->base.device = inner->device;
    f->base.vmm = inner->vmm;
    f->inner = inner;
    _cua_lock_init(&f->lock, CUA_LOCK_RANK_FAULT);
    atomic_fetch_add(&inner->users, 1);
    *out = &f->base;
    return CUA_OK;
}

static cua_status check_fault(cua_backend *b, const char *what)
{
    if (!b || b->kind != CUA_BK_FAULT)
        return _cua_error(CUA_ERR_INVALID_ARG, "%s: not a fault backend", what);
    return CUA_OK;
}

cua_status _cua_fault_fail_calls(cua_backend *b, cua_call call, uint64_t nth, uint64_t count,
                                 cua_status fail)
{
    cua_status st = check_fault(b, "fault_fail_nth");
    if (st != CUA_OK) return st;
    if ((unsigned)call >= CUA_CALL_COUNT)
        return _cua_error(CUA_ERR_INVALID_ARG, "fault_fail_nth: unknown call kind %d", (int)call);
    if (nth && fail != CUA_ERR_OUT_OF_MEMORY && fail != CUA_ERR_BACKEND)
        return _cua_error(CUA_ERR_INVALID_ARG, "fault_fail_nth: can inject CUA_ERR_OUT_OF_MEMORY "
                          "or CUA_ERR_BACKEND, not %s", cua_status_name(fail));
    fault_backend *f = fault_of(b);
    _cua_lock(&f->lock);
    f->rules[call] = (fault_rule){nth, count ? count : 1, 0, fail};
    _cua_unlock(&f->lock);
    return CUA_OK;
}

cua_status _cua_fault_fail_also(cua_backend *b, cua_call call, uint64_t nth, cua_status fail)
{
    cua_status st = check_fault(b, "fault_fail_also");
    if (st != CUA_OK) return st;
    if ((unsigned)call >= CUA_CALL_COUNT || (nth && fail != CUA_ERR_OUT_OF_MEMORY &&
                                             fail != CUA_ERR_BACKEND))
        return _cua_error(CUA_ERR_INVALID_ARG, "fault_fail_also: bad call kind %d or status",
                          (int)call);
    fault_backend *f = fault_of(b);
    _cua_lock(&f->lock);
    f->also[call] = (fault_rule){nth, 1, 0, fail};
    _cua_unlock(&f->lock);
    return CUA_OK;
}

bool _cua_fault_calls(cua_backend *b, uint64_t at_first[CUA_CALL_COUNT],
                      uint64_t now[CUA_CALL_COUNT])
{
    if (check_fault(b, "fault_calls") != CUA_OK) return false;
    fault_backend *f = fault_of(b);
    _cua_lock(&f->lock);
    bool any = f->injected != 0;
    memcpy(at_first, f->at_first, sizeof f->at_first);
    memcpy(now, f->calls, sizeof f->calls);
    _cua_unlock(&f->lock);
    return any;
}

cua_status _cua_fault_fail_random(cua_backend *b, double p, uint64_t seed)
{
    cua_status st = check_fault(b, "fault_fail_random");
    if (st != CUA_OK) return st;
    if (!(p >= 0.0 && p <= 1.0)) /* NaN fails too */
        return _cua_error(CUA_ERR_INVALID_ARG, "fault_fail_random: probability %g is not in "
                          "[0, 1]", p);
    fault_backend *f = fault_of(b);
    _cua_lock(&f->lock);
    f->p = p;
    f->rng = seed;
    _cua_unlock(&f->lock);
    return CUA_OK;
}

cua_status _cua_fault_injected(cua_backend *b, uint64_t *count)
{
    cua_status st = check_fault(b, "fault_injected");
    if (st != CUA_OK) return st;
    if (!count) return _cua_error(CUA_ERR_INVALID_ARG, "fault_injected: count is NULL");
    fault_backend *f = fault_of(b);
    _cua_lock(&f->lock);
    *count = f->injected;
    _cua_unlock(&f->lock);
    return CUA_OK;
}
