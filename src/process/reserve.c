/*
 * reserve.c - reserve then yield: physical handles taken now, mapped by an
 * arena later (cuarena.h: cua_reserve, cua_arena_adopt). The handles are of
 * the granularity, the size of the arenas' default chunk, so that any growth
 * can map them.
 */
#include "arena/events.h"
#include "process/registry.h"

#include <stdlib.h>

#define CUA_RESERVATION_MAGIC 0x52535256u /* "RSRV" */

struct cua_reservation {
    uint32_t magic;
    cua_backend *bk;
    cua_handle *h;
    size_t n, each;
};

/* Release the handles from `from` on. One the driver refuses is handed to the
 * backend, which retries it (before its next reserve, create or alloc, at a
 * trim, at its destroy) as it does for an arena's: never dropped. */
static cua_status release_all(cua_reservation *r, size_t from)
{
    cua_status first = CUA_OK;
    for (size_t i = from; i < r->n; i++) {
        cua_status st = _cua_bk_release(r->bk, NULL, r->h[i], r->each);
        if (st == CUA_OK) continue;
        _cua_bk_bury(r->bk, (cua_grave){.kind = CUA_CALL_RELEASE, .h = r->h[i], .size = r->each},
                     st);
        if (first == CUA_OK) first = st;
    }
    return first;
}

static void reservation_free(cua_reservation *r)
{
    atomic_fetch_sub(&r->bk->users, 1);
    r->magic = 0;
    free(r->h);
    free(r);
}

cua_status cua_reserve(cua_backend *bk, size_t bytes, cua_reservation **out)
{
    if (!bk || !out || !bytes) return _cua_error(CUA_ERR_INVALID_ARG, "backend or out is NULL, or 0 bytes");
    *out = NULL;
    if (!bk->vmm)
        return _cua_error(CUA_ERR_NOT_SUPPORTED, "backend '%s' has no virtual memory management: "
                          "nothing to reserve handles for", bk->name);
    size_t gran = bk->granularity, n = bytes / gran + (bytes % gran != 0);
    cua_reservation *r = calloc(1, sizeof *r);
    if (r) r->h = malloc(n * sizeof *r->h);
    if (!r || !r->h) {
        free(r);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a reservation of %zu handles", n);
    }
    r->bk = bk;
    r->each = gran;
    atomic_fetch_add(&bk->users, 1); /* the backend must outlive the reservation */
    for (r->n = 0; r->n < n; r->n++) {
        cua_status st = _cua_bk_create(bk, NULL, gran, &r->h[r->n]);
        if (st != CUA_OK) {
            char keep[CUA_MSG_CAP], got[32], want[32];
            uint64_t had = (uint64_t)r->n * gran;
            _cua_error_stash(keep, sizeof keep);
            release_all(r, 0); /* the r->n made so far */
            reservation_free(r);
            _cua_error_restore(keep);
            return _cua_error_wrap(st, "cannot reserve %s (got %s)", _cua_fmt_bytes(want, 32, bytes),
                                   _cua_fmt_bytes(got, 32, had));
        }
    }
    r->magic = CUA_RESERVATION_MAGIC;
    *out = r;
    return CUA_OK;
}

static cua_status check_res(const cua_reservation *r)
{
    if (!r || r->magic != CUA_RESERVATION_MAGIC)
        return _cua_error(CUA_ERR_INVALID_ARG, "%p is not a reservation (or was used up)", (const void *)r);
    return CUA_OK;
}

cua_status cua_reservation_release(cua_reservation *r)
{
    cua_status st = check_res(r);
    if (st != CUA_OK) return st;
    st = release_all(r, 0);
    reservation_free(r);
    return st;
}

cua_status cua_arena_adopt(cua_arena *a, cua_reservation *r)
{
    cua_status st = check_res(r);
    if (st != CUA_OK) return st;
    st = _cua_arena_enter(&a); /* (NULL, not an arena: INVALID_ARG; destroyed: DESTROYED) */
    bool locked = st == CUA_OK;
    if (!locked)
        ;
    else if (a->bk != r->bk)
        st = _cua_error(CUA_ERR_INVALID_ARG, "the reservation is of backend '%s', arena '%s' of "
                        "another one", r->bk->name, a->name);
    else if (a->seg.novmm)
        st = _cua_error(CUA_ERR_NOT_SUPPORTED, "arena '%s' takes whole segments", a->name);
    size_t i = 0;
    for (; st == CUA_OK && i < r->n; i++) st = _cua_seg_adopt(&a->seg, r->h[i], r->each);
    if (locked) _cua_arena_unlock(a);
    if (st != CUA_OK) { /* the reservation is used up either way: what was not adopted goes back */
        char keep[CUA_MSG_CAP];
        _cua_error_stash(keep, sizeof keep);
        release_all(r, i ? i - 1 : 0);
        _cua_error_restore(keep);
    }
    reservation_free(r);
    return st;
}
