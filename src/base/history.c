/*
 * history.c - a device's allocation history: a ring of the last N events
 * (history.h). One lock per device, a leaf: taken under an arena's or a
 * thread cache's lock, never the other way round.
 */
#include "base/history.h"

#include <stdlib.h>
#include <string.h>

typedef struct history {
    cua_lock_t lock;
    cua_history_entry *ring; /* cap entries; kept when turned off, for reading */
    size_t cap, head, count; /* head: the next slot written */
} history;

_Atomic int _cua_history_on[CUA_MAX_DEVICES];
/* Unlocked and empty; each lock of rank HISTORY (lockrank.h). */
#define H1 {.lock = CUA_LOCK_INIT(HISTORY)}
#define H4 H1, H1, H1, H1
#define H16 H4, H4, H4, H4
_Static_assert(CUA_MAX_DEVICES == 64, "hists[] lists 64 devices");
static history hists[CUA_MAX_DEVICES] = {H16, H16, H16, H16};
#undef H16
#undef H4
#undef H1

void _cua_history_add(int device, int action, uintptr_t address, uint64_t size,
                      cua_stream stream, const char *arena)
{
    history *h = &hists[device];
    cua_history_entry e = {.action = action, .address = address, .size = size,
                           .stream = stream, .time_ns = _cua_now_ns()};
    if (arena) {
        size_t n = _cua_utf8_fit(arena, strlen(arena), sizeof e.arena - 1);
        memcpy(e.arena, arena, n);
    }
    _cua_lock(&h->lock);
    if (h->cap) {
        h->ring[h->head] = e;
        h->head = (h->head + 1) % h->cap;
        if (h->count < h->cap) h->count++;
    }
    _cua_unlock(&h->lock);
}

cua_status cua_history_enable(int device, size_t max_entries)
{
    if (device < 0 || device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d is out of range 0..%d", device,
                          CUA_MAX_DEVICES - 1);
    history *h = &hists[device];
    if (max_entries == 0) { /* off; what was recorded stays readable */
        atomic_store(&_cua_history_on[device], 0);
        return CUA_OK;
    }
    if (max_entries > ((size_t)1 << 30))
        return _cua_error(CUA_ERR_INVALID_ARG, "max_entries %zu is above 2^30", max_entries);
    cua_history_entry *ring = calloc(max_entries, sizeof *ring);
    if (!ring)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for a history of %zu entries",
                          max_entries);
    _cua_lock(&h->lock);
    cua_history_entry *old = h->ring;
    h->ring = ring; /* a new history starts empty */
    h->cap = max_entries;
    h->head = h->count = 0;
    _cua_unlock(&h->lock);
    free(old);
    atomic_store(&_cua_history_on[device], 1);
    return CUA_OK;
}

cua_status cua_history_read_sized(int device, cua_history_entry *out, size_t cap, size_t *n,
                                  size_t entry_size)
{
    if (device < 0 || device >= CUA_MAX_DEVICES || !n || (cap && !out) ||
        entry_size < sizeof(cua_history_entry))
        return _cua_error(CUA_ERR_INVALID_ARG, "device %d out of range, n is NULL, out is "
                          "NULL with cap %zu, or entries of %zu bytes (at least %zu)", device,
                          cap, entry_size, sizeof(cua_history_entry));
    history *h = &hists[device];
    _cua_lock(&h->lock);
    size_t take = cap < h->count ? cap : h->count;
    if (!cap) take = 0;
    /* the newest `take` entries, oldest first */
    for (size_t i = 0; i < take; i++) {
        size_t at = (h->head + h->cap - take + i) % h->cap;
        unsigned char *slot = (unsigned char *)out + i * entry_size; /* the caller's stride */
        memcpy(slot, &h->ring[at], sizeof h->ring[at]);
        memset(slot + sizeof h->ring[at], 0, entry_size - sizeof h->ring[at]);
    }
    *n = cap ? take : h->count;
    _cua_unlock(&h->lock);
    return CUA_OK;
}
