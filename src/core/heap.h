/*
 * heap.h - blocks inside an arena's address range: the address-ordered list
 * that tiles the range, the free index (best fit over size-class bins, one set
 * of bins per stream tag), split, coalesce, and the map from a live pointer to
 * its block. All metadata is host memory; nothing here calls the backend.
 *
 * Stream tags: a free block carries the tag of the stream whose work may still
 * use it (tag 0 = safe for every stream). A request on stream s may take blocks
 * of tag s and tag 0. Neighbours merge only when their tags are equal.
 */
#ifndef CUA_HEAP_H
#define CUA_HEAP_H

#include "core/sizeclass.h"

enum { CUA_BLOCK_FREE = 0, CUA_BLOCK_LIVE = 1, CUA_BLOCK_PENDING = 2 };

typedef struct cua_uses cua_uses; /* extra streams of a live block (stream.c) */

/* Descriptors are aligned to CUA_BLOCK_ALIGN bytes (96 bytes of fields, 128
 * with the padding): a thread cache's hit writes its block's tcw and treq
 * without the arena's lock, and neighbouring descriptors belong to other
 * threads' blocks; on a shared cache line (or a pair the CPU's adjacent-line
 * prefetcher fetches together) those writes would bounce between the cores.
 * A build may set it (-DCUA_BLOCK_ALIGN=8: packed) to measure the difference
 * (tests/gpu/run.sh, part mt). */
#ifndef CUA_BLOCK_ALIGN
#define CUA_BLOCK_ALIGN 128
#endif

typedef struct cua_block {
    _Alignas(CUA_BLOCK_ALIGN) uint64_t off; /* offset from the segment base */
    uint64_t size;                   /* a multiple of CUA_ALIGNMENT */
    struct cua_block *prev, *next;   /* neighbours in address order */
    struct cua_block *fprev, *fnext; /* free: bin list; pending: pending list */
    uint64_t req;                    /* live: bytes asked for */
    uint64_t seq;                    /* free: the arena's free sequence at the free */
    cua_uses *uses;                  /* live / pending: other streams it was used on */
    uint32_t tag;                    /* free: stream tag; live: the stream slot it was allocated on */
    uint8_t state;                   /* CUA_BLOCK_* */
    uint8_t bin;                     /* free: its bin */
    /* Thread caches (tcache.c). Kept when the descriptor is recycled, so a
     * generation never repeats: tcw = generation << 2 | state, state 0: the
     * arena's, 1: handed out by a thread's cache (a thread may free it
     * without the lock), 2: waiting in a thread's cache (free for the user,
     * live for the heap). treq: the bytes asked for when handed out by a cache. */
    _Atomic uint64_t tcw;
    uint64_t treq;
    /* The cache that handed it out last (a hint, checked before use: its free
     * by another thread goes back there, tcache.c). */
    void *_Atomic tco;
} cua_block;

#define CUA_BITMAP_WORDS ((CUA_SC_COUNT + 63) / 64)

/* The free blocks of one tag. */
typedef struct cua_freeidx {
    uint64_t bitmap[CUA_BITMAP_WORDS]; /* bit i: bins[i] not empty */
    cua_block *bins[CUA_SC_COUNT];
    uint64_t bytes;                    /* sum of the free blocks' sizes */
    uint64_t count;
} cua_freeidx;

typedef struct cua_ptrslot {
    uint64_t key;                      /* offset + 1; 0 = empty */
    cua_block *block;
} cua_ptrslot;

typedef struct cua_heap {
    uint64_t size;                     /* the range the blocks tile */
    /* When set: true for an offset no block may cross (a chunk edge without
     * VMM); free neighbours never merge across it. */
    bool (*fence)(const void *ctx, uint64_t off);
    const void *fence_ctx;
    uint64_t page;                     /* blocks of a page or more start on a page */
    cua_block *first;                  /* the block at offset 0 */
    cua_freeidx **idx;                 /* per tag; idx[0] is the "any stream" tag */
    uint32_t ntags;
    cua_ptrslot *slots;                /* live blocks by offset (open addressing) */
    uint64_t slot_mask, live;          /* live = live blocks in the map */
    cua_block *spare;                  /* recycled descriptors */
    void **slabs;                      /* descriptor slabs, for fini */
    size_t nslabs, cap_slabs;
    uint64_t nblocks;                  /* descriptors in use */
} cua_heap;

/* The whole range starts as one free block of tag 0. */
cua_status _cua_heap_init(cua_heap *h, uint64_t size);
void _cua_heap_fini(cua_heap *h);
/* Make sure tags 0 .. tag have an index. */
cua_status _cua_heap_ensure_tag(cua_heap *h, uint32_t tag);

/* Best fit for `size` bytes among free blocks of tag `tag` and tag 0: the
 * smallest block that fits, the lowest address on a tie. NULL if none. */
cua_block *_cua_heap_find(cua_heap *h, uint32_t tag, uint64_t size);
/* Free blocks of tag `tag` by size, for searches of their own: the first
 * block of the first non-empty bin at or above *bin (*bin set to it), or
 * NULL; the bin's other blocks follow through fnext. */
cua_block *_cua_heap_bin_next(const cua_heap *h, uint32_t tag, unsigned *bin);
/* Take the free block b for a request of `size` bytes on stream tag `tag` and
 * return the live block. Usually b cut to `size` (the rest stays free with b's
 * tag). When b's lower neighbour is free, usable by `tag` and too small on its
 * own, the block starts there instead and runs into b: what merging the two
 * would have given, had their tags allowed it. *undo_tag receives the tag to
 * free the block with if the caller must give it back (the more restrictive of
 * the two). NULL (and nothing changed) if no host memory for a descriptor. */
cua_block *_cua_heap_take(cua_heap *h, cua_block *b, uint64_t size, uint32_t tag,
                          uint32_t *undo_tag);
/* Make b free with `tag` and `seq`, merge it with free neighbours of the same
 * tag (of any tag when `merge_any`: the arena has one stream, so tags do not
 * restrict anyone; the result keeps `tag`), and index the result. */
cua_block *_cua_heap_put(cua_heap *h, cua_block *b, uint32_t tag, uint64_t seq, bool merge_any);
/* Split the free block that holds offset `off` there (both parts keep its tag
 * and stay free). Nothing to do when a block starts at `off` or it is live. */
cua_status _cua_heap_split_at(cua_heap *h, uint64_t off);
/* Split free block b at `off` (inside it, above its start): both parts keep
 * its tag and stay free; returns the upper part (NULL: no host memory). */
cua_block *_cua_heap_split_block(cua_heap *h, cua_block *b, uint64_t off);
/* Merge the free block that starts at `off` with its free lower neighbour,
 * when tags (or merge_any) and the fences allow it (a fence went away). */
void _cua_heap_merge_at(cua_heap *h, uint64_t off, bool merge_any);
/* Keep at least n spare block descriptors, so the next n splits cannot fail. */
cua_status _cua_heap_reserve(cua_heap *h, unsigned n);
/* Give the never-used space above offset `top` to every stream: the free block
 * that holds it is split there and its upper part gets tag 0. */
cua_status _cua_heap_share_above(cua_heap *h, uint64_t top);
/* Move free block b to tag 0 (merging with tag-0 neighbours). */
cua_block *_cua_heap_retag_any(cua_heap *h, cua_block *b);

/* Live-pointer map. */
cua_status _cua_heap_map_insert(cua_heap *h, cua_block *b);
cua_block *_cua_heap_map_find(const cua_heap *h, uint64_t off);
void _cua_heap_map_remove(cua_heap *h, uint64_t off);
/* Find and remove in one probe: the live block at `off`, or NULL (not live). */
cua_block *_cua_heap_map_take(cua_heap *h, uint64_t off);

/* The block that contains offset `off` (a walk: for error reports and the checker). */
cua_block *_cua_heap_block_at(const cua_heap *h, uint64_t off);

/* Free index helpers for the checker. */
void _cua_freeidx_remove(cua_freeidx *fi, cua_block *b);

/* What the validator counts on its walk over the blocks, for its caller's
 * cross-checks (the arena's statistics). */
typedef struct cua_heap_tally {
    uint64_t free_blocks;
    uint64_t live, allocated;          /* live blocks and their sizes */
    uint64_t pending, pending_bytes;   /* pending blocks and their sizes */
} cua_heap_tally;

/* The heap's validator: the blocks tile the range in address order with sound
 * links, sizes are positive multiples of CUA_ALIGNMENT, no block crosses a
 * fence, free neighbours that could merge (same tag, or any tag when
 * `merge_any`, as for _cua_heap_put) are merged, every free block sits in the
 * bin of its size in its tag's index and the bitmaps and counts agree, and
 * the pointer map holds exactly the live blocks. CUA_OK, or CUA_ERR_CORRUPT
 * with the first broken invariant in the message; changes nothing. `t` (may be
 * NULL) gets the counts. O(blocks + tags x bins). */
cua_status _cua_heap_check(const cua_heap *h, bool merge_any, cua_heap_tally *t);

#endif /* CUA_HEAP_H */
