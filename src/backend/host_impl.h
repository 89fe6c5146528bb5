/*
 * host_impl.h - the host backend's state, shared by its two files: host.c
 * (memory: pages of a memfd, reservations, mappings, whole segments,
 * lifecycle) and host_stream.c (simulated events and streams). Others
 * include host.h.
 */
#ifndef CUA_BACKEND_HOST_IMPL_H
#define CUA_BACKEND_HOST_IMPL_H

#include "backend/host.h"

#include <stdlib.h>
#include <string.h>

/* ---- tables of slots addressed by (generation, index) values -----------------
 * Handle and event values are ((uint64_t)gen << 32) | (index + 1): never 0, and
 * a value kept after its slot was freed and reused no longer matches. */

typedef struct slot {
    uint32_t gen;
    uint32_t next_free; /* index + 1 of the next free slot; 0 ends the chain */
    bool alive;
} slot;

typedef struct slot_table {
    char *items;        /* elements of `elem` bytes, each starting with a slot */
    size_t elem;
    uint32_t len, cap;  /* slots ever used, slots allocated */
    uint32_t free_head; /* index + 1 of the first free slot; 0: none */
} slot_table;

static inline slot *slot_at(const slot_table *t, uint32_t i)
{
    return (slot *)(void *)(t->items + (size_t)i * t->elem);
}

static inline uint64_t slot_value(const slot_table *t, uint32_t i)
{
    return ((uint64_t)slot_at(t, i)->gen << 32) | ((uint64_t)i + 1);
}

/* The live slot a value names, or NULL. */
static inline slot *slot_lookup(const slot_table *t, uint64_t value, uint32_t *idx)
{
    uint64_t low = value & 0xffffffffu;
    if (low == 0 || low > t->len) return NULL;
    uint32_t i = (uint32_t)(low - 1);
    slot *s = slot_at(t, i);
    if (!s->alive || s->gen != (uint32_t)(value >> 32)) return NULL;
    if (idx) *idx = i;
    return s;
}

/* A fresh slot (its element zeroed past the header); false when out of memory. */
static inline bool slot_alloc(slot_table *t, uint32_t *idx)
{
    uint32_t i;
    if (t->free_head) {
        i = t->free_head - 1;
        t->free_head = slot_at(t, i)->next_free;
    } else {
        if (t->len == UINT32_MAX - 1) return false;
        if (t->len == t->cap) {
            uint32_t ncap = t->cap ? (t->cap > UINT32_MAX / 2 ? UINT32_MAX - 1 : 2 * t->cap) : 16;
            char *n = realloc(t->items, (size_t)ncap * t->elem);
            if (!n) return false;
            t->items = n;
            t->cap = ncap;
        }
        i = t->len++;
        slot_at(t, i)->gen = 0;
    }
    slot *s = slot_at(t, i);
    uint32_t gen = s->gen + 1 ? s->gen + 1 : 1;
    memset(s, 0, t->elem);
    s->gen = gen;
    s->alive = true;
    *idx = i;
    return true;
}

static inline void slot_free(slot_table *t, uint32_t i)
{
    slot *s = slot_at(t, i);
    s->alive = false;
    s->next_free = t->free_head;
    t->free_head = i + 1;
}

/* ---- the backend ------------------------------------------------------------ */

typedef struct host_handle {
    slot s;
    uint32_t first_page; /* where it lies in the memfd, in granularity pages */
    uint32_t npages;
    uintptr_t mapped_at; /* its first mapping's address, 0 while not mapped */
    uint32_t nmaps;      /* its mappings: more than one is virtual aliasing (CUDA allows it) */
} host_handle;

typedef struct host_event {
    slot s;
    bool recorded;
    uint32_t stream_idx; /* into host_backend.streams */
    uint64_t seq;        /* the stream's sequence number when recorded */
} host_event;

typedef struct host_stream {
    cua_stream stream;
    uint64_t issued; /* sequence number of the last event recorded on it */
    uint64_t done;   /* events recorded up to this sequence number are complete */
    bool destroyed;  /* cua_host_stream_destroy: recording on it or waiting for it fails */
    bool capturing;  /* cua_host_stream_capture: a CUDA graph capture is underway on it */
    bool invalidated; /* a call during the capture invalidated it (CUDA's rules) */
} host_stream;

typedef struct host_range {
    uintptr_t addr;
    size_t size;
} host_range;

typedef struct host_mapping {
    uintptr_t addr;
    size_t size;
    uint32_t handle_idx;
    uint64_t access;    /* devices granted access by set_access (bit d: device d); 0 after map */
} host_mapping;

typedef struct host_backend {
    struct cua_backend base; /* first: a cua_backend * points here */
    cua_lock_t lock;
    int memfd;
    size_t gran;
    unsigned gshift;
    bool manual_events;
    /* physical pages: bit set = used; padding bits past npages are set */
    uint64_t *bitmap;
    size_t npages, nwords, used_pages;
    size_t hint; /* every page below it is used */
    slot_table handles, events;
    host_stream *streams;
    size_t nstreams, cap_streams;
    /* stream -> index + 1 into streams (open addressing, 0: empty): a test
     * or a replay may use tens of thousands */
    uint32_t *sindex;
    size_t sindex_mask;
    host_range *res; /* reservations, sorted by address */
    size_t nres, cap_res;
    host_mapping *maps; /* mappings, sorted by address */
    size_t nmaps, cap_maps;
    host_mapping *segs; /* whole segments of alloc(), sorted by address */
    size_t nsegs, cap_segs;
    bool no_vmm;        /* reserve / create / map refused, as on a device without VMM */
    /* Simulated peers: the devices that can access this device's memory
     * (cuDeviceCanAccessPeer), and those given access to the whole segments
     * of alloc (cuCtxEnablePeerAccess: all of them, now and later). */
    uint64_t can_peer, seg_peers;
} host_backend;

static inline host_backend *host_of(cua_backend *b) { return (host_backend *)(void *)b; }

static inline const char *bytes_str(char *buf, uint64_t bytes) { return _cua_fmt_bytes(buf, 32, bytes); }

/* Grow a dynamic array to hold one more element; false when out of memory. */
static inline bool grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return true;
    size_t ncap = *cap ? 2 * *cap : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return false;
    *arr = p;
    *cap = ncap;
    return true;
}

/* backend_host_stream.c: the event and stream hooks. */
cua_status _cua_host_event_create(cua_backend *b, cua_event *out);
cua_status _cua_host_event_destroy(cua_backend *b, cua_event ev);
cua_status _cua_host_event_record(cua_backend *b, cua_event ev, cua_stream stream);
cua_status _cua_host_event_query(cua_backend *b, cua_event ev);
cua_status _cua_host_event_sync(cua_backend *b, cua_event ev);
cua_status _cua_host_stream_sync(cua_backend *b, cua_stream stream);

#endif /* CUA_BACKEND_HOST_IMPL_H */
