/*
 * segment.h - the expandable segment: one reserved address range per arena,
 * and which of its granularity pages are backed by physical memory.
 *
 * Physical memory comes in chunks: one backend handle mapped at a run of
 * pages. A chunk is created, mapped and released whole (CUDA cannot unmap part
 * of a mapping), so its size is a trade-off: one page trims finely, larger
 * chunks are cheaper to create. Every chunk counts the live blocks that
 * overlap it (`busy`); a chunk with none is idle, sits on the idle list (oldest
 * first) and can be trimmed. The page table (host memory) maps a page index to
 * its chunk, so a range is checked and acquired in O(pages).
 *
 * Without virtual memory management (`novmm`) nothing is reserved: the range
 * is only a space of offsets, and each chunk is a whole segment from the
 * backend's alloc (cuMemAlloc) at an address of the driver's choosing. A block
 * is then usable only inside one chunk: the heap is told where chunk edges are
 * (_cua_seg_fence) and never lets a block cross one. Pointers and offsets are
 * translated through the chunk (_cua_seg_addr, _cua_seg_offset).
 */
#ifndef CUA_SEGMENT_H
#define CUA_SEGMENT_H

#include "backend/backend.h"

/* chunk_large when the config says 0 (cuarena.h says why). */
#define CUA_CHUNK_LARGE_DEFAULT ((size_t)32 << 20)

typedef struct cua_chunk {
    uint32_t first;                   /* first page */
    uint32_t npages;
    cua_handle handle;
    uint32_t busy;                    /* live (or pending) blocks overlapping the chunk */
    /* Mapped, but its access could not be set and it could not be unmapped
     * either (two driver failures): idle until a map grants access. */
    bool noaccess;
    uintptr_t addr;                   /* novmm: the segment's device address */
    void *tag;                        /* novmm: the observer's word for the segment */
    uint64_t idle_seq;                /* the arena's free sequence when it became idle */
    struct cua_chunk *idle_prev, *idle_next; /* on the idle list while busy == 0 */
} cua_chunk;

/* Physical handles, with their sizes. `at`, in the kept list: 1 + the first
 * page where the handle is still mapped (its unmap deferred: Note [moves that
 * unmap later] in segment_alias.c), 0 when it is not; in the alias list: 1 +
 * the first page of an old mapping of a handle now mapped elsewhere. */
typedef struct cua_handle_entry {
    cua_handle h;
    size_t size;
    uint32_t at;
} cua_handle_entry;

typedef struct cua_handles {
    cua_handle_entry *v;
    size_t n, cap;
} cua_handles;

/* What happens to a whole segment (novmm), as told to the observer. */
typedef enum cua_seg_change {
    CUA_SEG_CAME,    /* allocated: register it (a failure frees it again) */
    CUA_SEG_LEAVING, /* about to be freed */
    CUA_SEG_STAYED,  /* ... but the free failed: it stays, as it was */
    CUA_SEG_GONE,    /* freed */
} cua_seg_change;

/* The segment tells its owner (the arena, which installs this) what changed,
 * and knows nothing of devices, the address map, NVTX or the history. */
typedef struct cua_seg_observer {
    void *ctx;
    /* A chunk of |delta| bytes at addr was mapped (delta > 0) or unmapped. */
    void (*mapped)(void *ctx, uintptr_t addr, int64_t delta);
    /* novmm: a whole segment at [addr, addr + len) changed; *tag is the
     * owner's per-segment word (its NVTX heap), kept with the chunk. */
    cua_status (*segment)(void *ctx, cua_seg_change what, uintptr_t addr, size_t len,
                          void **tag);
    /* A trim gave back [off, off + len) (novmm: its edges are gone). */
    void (*trimmed)(void *ctx, uint64_t off, uint64_t len);
} cua_seg_observer;

/* Devices a segment's memory may be accessible to: its own and its peers. */
#define CUA_SEG_MAX_ACCESS CUA_MAX_DEVICES

typedef struct cua_segment {
    cua_backend *bk;
    /* The devices every mapping is made accessible to: access[0] is the
     * backend's own device, then the peers (cua_arena_grant_peer), in the
     * order granted. Every new mapping gets them all, so a peer keeps access
     * through trims, regrowth, offload and restore. */
    int access[CUA_SEG_MAX_ACCESS];
    int naccess;
    cua_seg_observer obs;     /* the owner's callbacks (any may be NULL) */
    cua_callstats *cs;        /* the arena's call counters */
    uintptr_t base;           /* reserved range [base, base + size) */
    size_t size;
    size_t gran;              /* granularity page */
    unsigned gshift;          /* log2(gran) */
    uint32_t npages;
    uint32_t chunk_max_pages; /* largest chunk of a short run */
    uint32_t chunk_large_pages; /* chunk of a run at least this long; 0: none */
    cua_chunk **pages;        /* page -> chunk, NULL where unmapped */
    /* page -> the first page after its chunk, where mapped: a walk over a block
     * steps from chunk to chunk without waiting for each chunk's descriptor
     * (blocks of gigabytes span a hundred chunks; benchmarks.md). */
    uint32_t *ends;
    uint64_t *mapbits;        /* bit p: page p is mapped (placement counts pages fast) */
    uint64_t mapped_bytes;
    uint64_t mapped_total, unmapped_total; /* bytes mapped / unmapped since init, in all */
    uint64_t idle_bytes;      /* bytes of idle chunks */
    uint64_t nchunks;
    uint32_t noaccess_chunks; /* chunks marked noaccess (nearly always 0) */
    cua_chunk idle;           /* sentinel of the idle list: idle.idle_next is the oldest */
    cua_chunk *spare;         /* free chunk descriptors */
    cua_chunk **slabs;        /* where descriptors come from (freed by fini) */
    size_t nslabs, cap_slabs;
    cua_handles zombies;      /* handles whose release failed: retried, never leaked */
    /* While keep_handles: handles a trim unmapped, kept for the next chunks
     * of their size instead of released (see _cua_seg_keep_handles). */
    cua_handles kept;
    bool keep_handles;
    /* Handles adopted from a reservation (cua_arena_adopt), taken by growth
     * before any new one is created; released by fini. */
    cua_handles adopted;
    uint64_t adopted_bytes;
    /* Moves that unmap later (segment_alias.c): while defer_unmap, a trim
     * during growth leaves the chunks it takes mapped where they were; a
     * handle mapped again elsewhere leaves its old place in `aliases` (the
     * same memory, seen at two addresses, no more physical memory) until a
     * purge unmaps it. aliasbits marks those pages: nothing new is mapped
     * there before they are purged. */
    bool defer_unmap;
    uint64_t *aliasbits;
    cua_handles aliases;
    uint64_t alias_bytes;
    uint64_t purged_total;    /* bytes of old places unmapped by purges, in all */
    /* novmm only: */
    bool novmm;
    cua_chunk **byaddr;       /* chunks sorted by device address */
    size_t nbyaddr, cap_byaddr;
} cua_segment;

/* Reserve `size` bytes (a multiple of 1 GiB) aligned to `align`; novmm: reserve
 * nothing, chunks will be whole segments. chunk_max and chunk_large as in
 * cua_arena_config; `obs` (may be NULL) is told of every change. */
cua_status _cua_seg_init(cua_segment *seg, cua_backend *bk, cua_callstats *cs, size_t size,
                         size_t align, size_t chunk_max, size_t chunk_large, bool novmm,
                         const cua_seg_observer *obs);
/* Unmap and release everything and the reservation. Keeps going after a
 * failure and returns the first one. */
cua_status _cua_seg_fini(cua_segment *seg);

/* Count a new live block on the mapped chunks of [off, off + len): busy++,
 * idle chunks leave the idle list. Returns the bytes of pages still unmapped
 * in the range (chunks without access need _cua_seg_map too: see
 * _cua_seg_lacks_access). */
uint64_t _cua_seg_acquire(cua_segment *seg, uint64_t off, uint64_t len);
/* Whether a chunk over [off, off + len) lacks access (then _cua_seg_map
 * grants it). Free when no chunk lacks it. */
bool _cua_seg_lacks_access_walk(const cua_segment *seg, uint64_t off, uint64_t len);
static inline bool _cua_seg_lacks_access(const cua_segment *seg, uint64_t off, uint64_t len)
{
    return CUA_UNLIKELY(seg->noaccess_chunks != 0) && _cua_seg_lacks_access_walk(seg, off, len);
}
/* Pages of [p0, p1) that are mapped: a popcount over the bitmap, 64 pages a word. */
uint32_t _cua_seg_mapped_pages(const cua_segment *seg, uint32_t p0, uint32_t p1);
/* The next run of mapped pages at or after page *p and before `limit`: its
 * first page in *p, the page after it in *run_end; false when there is none. */
bool _cua_seg_next_mapped_run(const cua_segment *seg, uint32_t *p, uint32_t limit,
                              uint32_t *run_end);
/* Bytes of unmapped pages in [off, off + len) (read only). */
uint64_t _cua_seg_missing(const cua_segment *seg, uint64_t off, uint64_t len);
/* Undo _cua_seg_acquire / drop a block that leaves: busy--, chunks reaching 0
 * join the idle list's tail with idle_seq = seq. Every page must be mapped. */
void _cua_seg_release(cua_segment *seg, uint64_t off, uint64_t len, uint64_t seq);
/* Map every unmapped page of [off, off + len) in chunks of at most
 * chunk_max_pages (chunk_large_pages in a run of at least that many unmapped
 * pages), each counted busy by one block, and grant access to chunks of the
 * range that lack it. novmm: the pages are all unmapped and become one chunk
 * (one segment). On failure nothing new stays mapped (or, when unmapping it
 * fails too, it stays mapped idle, accessible, or marked noaccess). */
cua_status _cua_seg_map(cua_segment *seg, uint64_t off, uint64_t len);
/* Let device `peer` access the segment's memory: every chunk mapped now (one
 * set_access per run of adjacent chunks, with every device of the list) and
 * every chunk mapped later; novmm: the backend's peer access for whole
 * segments. The backend is asked first whether the peer can reach the device
 * (CUA_ERR_NOT_SUPPORTED when not). Granting the own device or a peer again
 * does nothing. On failure the peer is not added (chunks granted before the
 * failure keep their access: CUDA cannot take it back in place). */
cua_status _cua_seg_grant_peer(cua_segment *seg, int peer);
/* Release again the handles whose release failed (also done by every trim). */
cua_status _cua_seg_retry_zombies(cua_segment *seg);

/* Keep the handles of chunks that trims unmap, for chunks mapped next (on)
 * instead of releasing them; off releases what is still kept. A growth that
 * must first give back cached pages (the footprint cap, the limit) then moves
 * physical memory to its new place with unmap + map, without a release and a
 * create per page. The kept bytes are not counted mapped: they are in transit. */
cua_status _cua_seg_keep_handles(cua_segment *seg, bool on);
/* Unmap every old place of a moved handle (Note [moves that unmap later]):
 * in address order, adjacent ones in one call. Those whose unmap fails stay,
 * for the next purge. CUA_OK when none is left. */
cua_status _cua_seg_purge(cua_segment *seg);
/* ... those of handle h (before releasing it). */
cua_status _cua_seg_purge_handle(cua_segment *seg, cua_handle h);
/* ... those of the handles on the kept list (a growth's leftovers). */
cua_status _cua_seg_purge_kept(cua_segment *seg);
/* Take an unmapped handle of `size` bytes (a multiple of the granularity) for
 * later growth. */
cua_status _cua_seg_adopt(cua_segment *seg, cua_handle h, size_t size);

/* The victims of a trim (segment_pick.c): idle chunks whose idle_seq <=
 * safe_seq until `want` bytes, the oldest first, or in the smallest runs of
 * address-adjacent idle chunks first; a malloc'ed array in *out, their count
 * returned. The chunks stay on the idle list. */
size_t _cua_seg_pick_oldest(const cua_segment *seg, uint64_t want, uint64_t safe_seq,
                            cua_chunk ***out);
size_t _cua_seg_pick_fragments(const cua_segment *seg, uint64_t want, uint64_t safe_seq,
                               cua_chunk ***out);
/* Unmap idle chunks whose idle_seq <= safe_seq, until at least `want` bytes
 * went back or none is left; *released gets the bytes. Oldest first, or
 * (fragments) the smallest runs of adjacent idle chunks first. Adjacent
 * chunks are unmapped in one call. */
cua_status _cua_seg_trim(cua_segment *seg, uint64_t want, uint64_t safe_seq, bool fragments,
                         uint64_t *released);

/* The largest chunk the segment ever maps, in pages. */
static inline uint32_t _cua_seg_chunk_cap(const cua_segment *seg)
{
    return seg->chunk_large_pages > seg->chunk_max_pages ? seg->chunk_large_pages
                                                         : seg->chunk_max_pages;
}

/* Set (on) or clear bits [p0, p1) of a page bitmap. */
static inline void _cua_seg_bits(uint64_t *bits, uint32_t p0, uint32_t p1, bool on)
{
    while (p0 < p1) {
        uint32_t w = p0 >> 6, b = p0 & 63, n = _cua_min(64 - b, p1 - p0);
        uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << b;
        bits[w] = on ? bits[w] | mask : bits[w] & ~mask;
        p0 += n;
    }
}

/* Whether any of pages [p0, p1) is set in a page bitmap. */
static inline bool _cua_seg_any_bit(const uint64_t *bits, uint32_t p0, uint32_t p1)
{
    while (p0 < p1) {
        uint32_t w = p0 >> 6, b = p0 & 63, n = _cua_min(64 - b, p1 - p0);
        uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << b;
        if (bits[w] & mask) return true;
        p0 += n;
    }
    return false;
}

/* ---- between the segment's files (segment_handles.c) ---- */

/* Append a handle to a list; false when out of host memory. */
bool _cua_handles_push(cua_handles *l, cua_handle h, size_t size, uint32_t at);
bool _cua_seg_list_push(cua_handles *l, cua_handle h, size_t size); /* (at 0) */
/* Release a handle (its old places unmapped first); a failure keeps it on the
 * zombie list. */
cua_status _cua_seg_release_handle(cua_segment *seg, cua_handle h, size_t size);
/* An unmapped handle: to the kept list while handles are kept, else released. */
cua_status _cua_seg_drop_handle(cua_segment *seg, cua_handle h, size_t size);
/* A handle of exactly `size` bytes from list l, if it has one (*at: its `at`). */
bool _cua_seg_take_handle(cua_handles *l, size_t size, cua_handle *h, uint32_t *at);
/* Unmap a kept handle's old place now; false (nothing changed) on failure. */
bool _cua_seg_unmap_old_place(cua_segment *seg, uint32_t at, size_t size);
/* Back to the kept list (a map of it failed); released when even that fails. */
void _cua_seg_put_kept(cua_segment *seg, cua_handle h, size_t size, uint32_t at);

static inline uint32_t _cua_seg_page(const cua_segment *seg, uint64_t off)
{
    return (uint32_t)(off >> seg->gshift);
}

static inline bool _cua_seg_page_mapped(const cua_segment *seg, uint32_t page)
{
    return seg->pages[page] != NULL;
}

/* The address of offset `off`, whose page is mapped. */
static inline uintptr_t _cua_seg_addr(const cua_segment *seg, uint64_t off)
{
    if (CUA_LIKELY(!seg->novmm)) return seg->base + (uintptr_t)off;
    const cua_chunk *c = seg->pages[_cua_seg_page(seg, off)];
    return c->addr + (uintptr_t)(off - ((uint64_t)c->first << seg->gshift));
}

/* The observer's word of the segment that holds offset `off` (novmm; NULL when none). */
static inline void *_cua_seg_tag(const cua_segment *seg, uint64_t off)
{
    const cua_chunk *c = seg->novmm ? seg->pages[_cua_seg_page(seg, off)] : NULL;
    return c ? c->tag : NULL;
}

bool _cua_seg_offset_novmm(const cua_segment *seg, uintptr_t addr, uint64_t *off);

/* The offset of address `addr`; false when no chunk (novmm) or the range holds it. */
static inline bool _cua_seg_offset(const cua_segment *seg, uintptr_t addr, uint64_t *off)
{
    if (CUA_UNLIKELY(seg->novmm)) return _cua_seg_offset_novmm(seg, addr, off);
    if (addr < seg->base || addr - seg->base >= seg->size) return false;
    *off = addr - seg->base;
    return true;
}

/* novmm: true when `off` is a chunk edge, which no block may cross (a page
 * boundary with different chunks, or a chunk and unmapped space, on its sides). */
bool _cua_seg_fence(const void *seg, uint64_t off);

/* The segment's validator: every mapped page points to its chunk, which
 * starts there (runs of pages of one chunk, at most _cua_seg_chunk_cap pages
 * with VMM) and whose end the ends table holds; a chunk without access has no
 * blocks; idle chunks (busy 0) are exactly those on the idle list; the
 * counters (mapped, idle, chunks, noaccess) sum the chunks up; without VMM the
 * chunks sorted by address are the chunks, without overlap. When `busy` is
 * given (npages entries, made with _cua_seg_check_block), each chunk's busy
 * count must equal busy[its first page]. CUA_OK, or CUA_ERR_CORRUPT with the
 * first broken invariant in the message; changes nothing. O(pages + chunks). */
cua_status _cua_seg_check(const cua_segment *seg, const uint32_t *busy);
/* For the validator's `busy`: count one block over [off, off + len) on each
 * chunk it overlaps (busy[chunk's first page]++). CUA_ERR_CORRUPT when the
 * block covers an unmapped page. */
cua_status _cua_seg_check_block(const cua_segment *seg, uint64_t off, uint64_t len,
                                uint32_t *busy);

#endif /* CUA_SEGMENT_H */
