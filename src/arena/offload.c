/*
 * offload.c - an arena's live data leaves the device and comes back at the
 * same addresses (cuarena.h: cua_arena_offload, _discard, _restore).
 *
 * Offload: wait for every stream the arena has seen; copy each live block
 * to a host image through the backend's staging area; then drop the blocks'
 * claims on their pages (every chunk becomes idle) and trim everything. The
 * heap is untouched: the blocks stay live at their offsets, the address range
 * stays reserved, so restore only has to map pages under each live block
 * (acquire + map, as an allocation does) and copy the image back.
 *
 * The copies alternate between the two staging buffers: chunk k goes to
 * buffer k % 2 on the copy stream while the CPU moves chunk k - 1 between the
 * other buffer and the image; an event per buffer says when it is free. One
 * CPU thread moves 6-10 GB/s and the copy engine ~55 GB/s, so the CPU's part
 * of each chunk is split among a crew of helper threads that lives for one
 * offload or restore (copy.h; cuarena keeps no thread of its own), with
 * streaming stores into the image; the image is mapped with transparent huge
 * pages, so that its first touch costs few page faults.
 */
#include "arena/offload.h"
#include "arena/copy.h"
#include "arena/events.h"
#include "arena/stream.h"
#include "arena/tcache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Wait until no stream can still touch the arena's memory. */
static cua_status quiesce(cua_arena *a)
{
    cua_status st = CUA_OK;
    for (uint32_t tag = 1; tag < a->streams.n && st == CUA_OK; tag++)
        st = _cua_stream_wait_slot(a, tag); /* (a retired one was waited for; a gone one: the device) */
    if (st == CUA_OK) _cua_stream_poll_pending(a, true, &st);
    if (st == CUA_OK) _cua_stream_reclaim(a, true, &st);
    return st;
}

/* ---- the image's memory, and copies into and out of it ------------------------------- */

/* The image's mapping: the spare one of the last restore when it is large
 * enough and not much larger (its pages, unless the kernel took them back
 * meanwhile, are there: no page fault, no zeroing), else a new one. */
static unsigned char *image_alloc(cua_arena *a, size_t n, size_t *map_bytes)
{
    if (a->spare_image && a->spare_bytes >= n && a->spare_bytes / 2 <= n) {
        unsigned char *p = a->spare_image;
        *map_bytes = a->spare_bytes;
        a->spare_image = NULL;
        a->spare_bytes = 0;
        return p;
    }
    _cua_offload_drop_spare(a);
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
    *map_bytes = n;
    return p;
}

void _cua_offload_drop_spare(cua_arena *a)
{
    if (a->spare_image) munmap(a->spare_image, a->spare_bytes);
    a->spare_image = NULL;
    a->spare_bytes = 0;
}

/* The image's memory goes back to the kernel, lazily: MADV_FREE lets it take
 * the pages whenever it needs memory, and until then they stay where the next
 * offload finds them (the spare). Without MADV_FREE, it is unmapped. */
void _cua_offload_image_free(cua_arena *a)
{
    struct cua_image *im = &a->image;
    free(im->blocks);
    free(im->kept);
    im->kept = NULL;
    im->nkept = 0;
    if (im->data && (a->cfg.flags & CUA_ARENA_SCRUB)) memset(im->data, 0, im->bytes);
    if (im->data) {
#ifdef MADV_FREE
        _cua_offload_drop_spare(a);
        if (madvise(im->data, im->map_bytes, MADV_FREE) == 0) {
            a->spare_image = im->data;
            a->spare_bytes = im->map_bytes;
        } else {
            munmap(im->data, im->map_bytes);
        }
#else
        munmap(im->data, im->map_bytes);
#endif
    }
    memset(im, 0, sizeof *im);
}

/* The image's entries: every live block, by offset. */
static cua_status image_plan(cua_arena *a, bool keep_data)
{
    struct cua_image *im = &a->image;
    memset(im, 0, sizeof *im);
    for (cua_block *b = a->heap.first; b; b = b->next)
        if (b->state == CUA_BLOCK_LIVE) im->n++;
    im->blocks = malloc((im->n ? im->n : 1) * sizeof *im->blocks);
    if (!im->blocks) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for an offload plan");
    size_t i = 0;
    for (cua_block *b = a->heap.first; b; b = b->next) {
        if (b->state != CUA_BLOCK_LIVE) continue;
        im->blocks[i++] = (struct cua_image_block){b->off, b->req, im->bytes};
        im->bytes += b->req;
    }
    im->discarded = !keep_data;
    if (keep_data && im->bytes && !(im->data = image_alloc(a, im->bytes, &im->map_bytes))) {
        char need[32];
        free(im->blocks);
        memset(im, 0, sizeof *im);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the %s the arena's live "
                          "blocks hold", _cua_fmt_bytes(need, sizeof need, a->live_bytes));
    }
    return CUA_OK;
}

/* ---- copies through the staging area ------------------------------------------------ */

typedef struct copy_pipe {
    cua_backend *bk;
    cua_stage stage;             /* the backend's staging area, held */
    cua_callstats *cs;
    cua_crew *crew;
    bool to_host;
    bool busy[2];                /* a copy into / out of that buffer is in flight */
    unsigned char *host_at[2];   /* to_host: where the buffer's bytes go when it is done */
    size_t len[2];
    unsigned k;                  /* chunks issued */
} copy_pipe;

/* Wait for buffer i's copy; to the host, move its bytes into the image. */
static cua_status drain(copy_pipe *p, int i)
{
    if (!p->busy[i]) return CUA_OK;
    cua_status st = _cua_bk_event_sync(p->bk, p->cs, p->stage.ev[i]);
    if (st != CUA_OK) return st;
    if (p->to_host) _cua_crew_copy(p->crew, p->host_at[i], p->stage.buf[i], p->len[i], true);
    p->busy[i] = false;
    return CUA_OK;
}

/* Copy n bytes between device address dev and host memory host, in chunks. */
static cua_status move(copy_pipe *p, uintptr_t dev, unsigned char *host, uint64_t n)
{
    cua_backend *bk = p->bk;
    const cua_stage *sa = &p->stage;
    for (uint64_t done = 0; done < n;) {
        int i = (int)(p->k++ % 2);
        size_t len = (size_t)_cua_min(n - done, (uint64_t)sa->bytes);
        cua_status st = drain(p, i);
        if (st != CUA_OK) return st;
        if (p->to_host) {
            st = _cua_bk_copy_to_host(bk, p->cs, sa->buf[i], dev + done, len, sa->stream);
            p->host_at[i] = host + done;
            p->len[i] = len;
        } else {
            _cua_crew_copy(p->crew, sa->buf[i], host + done, len, false);
            st = _cua_bk_copy_to_device(bk, p->cs, dev + done, sa->buf[i], len, sa->stream);
        }
        if (st == CUA_OK) st = _cua_bk_event_record(bk, p->cs, sa->ev[i], sa->stream);
        if (st != CUA_OK) return st;
        p->busy[i] = true;
        done += len;
    }
    return CUA_OK;
}

/* Every live block of the image between the device and the host. */
static cua_status copy_image(cua_arena *a, bool to_host)
{
    struct cua_image *im = &a->image;
    if (!im->bytes) return CUA_OK;
    copy_pipe p = {.bk = a->bk, .cs = &a->cs, .to_host = to_host};
    cua_status st = _cua_stage_get(a->bk, &a->cs, &p.stage);
    if (st != CUA_OK) return _cua_error_wrap(st, "arena '%s': no staging area for the copies", a->name);
    cua_crew crew;
    _cua_crew_start(&crew, im->bytes >= 2 * CUA_COPY_SLICE_MIN ? CUA_COPY_THREADS_MAX : 0);
    p.crew = &crew;
    for (size_t i = 0; i < im->n && st == CUA_OK; i++) {
        const struct cua_image_block *e = &im->blocks[i];
        if (e->len) st = move(&p, _cua_seg_addr(&a->seg, e->off), im->data + e->at, e->len);
    }
    /* Both buffers, oldest first; after a failure still wait, so that no copy
     * is left writing into memory about to be freed or unmapped. */
    for (unsigned j = 0; j < 2; j++) {
        cua_status ds = drain(&p, (int)((p.k + j) % 2));
        if (st == CUA_OK) st = ds;
    }
    _cua_crew_stop(&crew);
    if (st == CUA_OK && (a->cfg.flags & CUA_ARENA_SCRUB)) /* what passed through them: gone too
                                                          * (not while a failed copy may still run) */
        for (int i = 0; i < 2; i++) memset(p.stage.buf[i], 0, p.stage.bytes);
    _cua_stage_put(a->bk);
    return st;
}

/* ---- offload and restore ----------------------------------------------------------------- */

/* CUA_ARENA_KEEP_MAPPED: note the runs of mapped pages, which the restore
 * maps again (Note [pages a graph replays into], policy.c). */
static cua_status note_kept(cua_arena *a)
{
    struct cua_image *im = &a->image;
    size_t n = 0, cap = 0;
    uint32_t p = 0, end;
    while (_cua_seg_next_mapped_run(&a->seg, &p, a->seg.npages, &end)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            uint32_t(*grown)[2] = realloc(im->kept, cap * sizeof *grown);
            if (!grown) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory for the list "
                                          "of arena '%s''s mapped pages", a->name);
            im->kept = grown;
        }
        im->kept[n][0] = p;
        im->kept[n][1] = end;
        im->nkept = ++n;
        p = end;
    }
    return CUA_OK;
}

/* Map again the pages noted by note_kept that are not mapped now (the live
 * blocks' are): idle, as they were. */
static cua_status map_kept(cua_arena *a)
{
    const struct cua_image *im = &a->image;
    unsigned sh = a->seg.gshift;
    for (size_t i = 0; i < im->nkept; i++) {
        for (uint32_t p = im->kept[i][0], limit = im->kept[i][1]; p < limit;) {
            uint32_t q = p, end;
            bool mapped = _cua_seg_next_mapped_run(&a->seg, &q, limit, &end);
            uint32_t gap_end = mapped ? q : limit; /* [p, gap_end) is unmapped */
            if (gap_end > p) {
                uint64_t off = (uint64_t)p << sh, len = (uint64_t)(gap_end - p) << sh;
                cua_status st = _cua_seg_map(&a->seg, off, len);
                /* mapped, no block: idle (also what a failed map left, as
                 * after an allocation's) */
                _cua_seg_release(&a->seg, off, len, a->seq);
                if (st != CUA_OK) return st;
            }
            p = mapped ? end : limit;
        }
    }
    if (a->seg.mapped_bytes > a->peak_mapped) a->peak_mapped = a->seg.mapped_bytes;
    return CUA_OK;
}

/* Drop every live block's claim on its pages and unmap them all. */
static cua_status release_pages(cua_arena *a, uint64_t *released)
{
    uint64_t seq = ++a->seq;
    for (cua_block *b = a->heap.first; b; b = b->next)
        if (b->state == CUA_BLOCK_LIVE) _cua_seg_release(&a->seg, b->off, b->size, seq);
    return _cua_seg_trim(&a->seg, UINT64_MAX, UINT64_MAX, false, released);
}

cua_status _cua_offload_locked(cua_arena *a, bool keep_data)
{
    if (a->offloaded)
        return _cua_error(CUA_ERR_OFFLOADED, "arena '%s' is offloaded already", a->name);
    if (a->seg.novmm)
        return _cua_error(CUA_ERR_NOT_SUPPORTED, "arena '%s' takes whole segments (no VMM): "
                          "their addresses cannot be kept through an offload", a->name);
    /* The threads' caches close first: their blocks return to the heap, and
     * no thread hands a block out or caches one while the arena is away. */
    _cua_tc_close_all_locked(a);
    cua_status st = quiesce(a);
    if (st == CUA_OK) st = image_plan(a, keep_data);
    if (st == CUA_OK && (a->cfg.flags & CUA_ARENA_KEEP_MAPPED)) st = note_kept(a);
    if (st == CUA_OK && keep_data) st = copy_image(a, true);
    if (st != CUA_OK) {
        _cua_offload_image_free(a);
        _cua_tc_open_all_locked(a);
        return _cua_error_wrap(st, "arena '%s' was not offloaded", a->name);
    }
    a->offloaded = true;
    uint64_t released = 0;
    /* The data is safe on the host: the arena is offloaded even when an unmap
     * fails (those pages stay mapped, idle, and a later trim gives them back). */
    st = release_pages(a, &released);
    if (st != CUA_OK)
        st = _cua_error_wrap(st, "arena '%s' is offloaded, but some of its pages could not be "
                             "given back (a trim retries)", a->name);
    a->trim_count++;
    a->trimmed_bytes += released;
    _cua_event_queue(a, CUA_ARENA_OFFLOADED, keep_data ? "offload" : "discard", a->image.bytes);
    return st;
}

/* Map the pages of every live block (as an allocation does: claims, then the
 * missing pages). On failure, drop the claims and the pages again. */
static cua_status map_live(cua_arena *a)
{
    cua_status st = CUA_OK;
    cua_block *b, *failed = NULL;
    for (b = a->heap.first; b; b = b->next) {
        if (b->state != CUA_BLOCK_LIVE) continue;
        uint64_t missing = _cua_seg_acquire(&a->seg, b->off, b->size);
        if (missing || _cua_seg_lacks_access(&a->seg, b->off, b->size))
            st = _cua_seg_map(&a->seg, b->off, b->size);
        if (st != CUA_OK) {
            _cua_seg_release(&a->seg, b->off, b->size, a->seq); /* its claims on mapped chunks */
            failed = b;
            break;
        }
    }
    if (a->seg.mapped_bytes > a->peak_mapped) a->peak_mapped = a->seg.mapped_bytes;
    if (!failed) return CUA_OK;
    char keep[CUA_MSG_CAP];
    _cua_error_stash(keep, sizeof keep);
    for (cua_block *c = a->heap.first; c != failed; c = c->next)
        if (c->state == CUA_BLOCK_LIVE) _cua_seg_release(&a->seg, c->off, c->size, a->seq);
    uint64_t released;
    _cua_seg_trim(&a->seg, UINT64_MAX, UINT64_MAX, false, &released);
    _cua_error_restore(keep);
    return st;
}

uint64_t _cua_offload_restore_need(const cua_arena *a)
{
    uint64_t gran = a->seg.gran, pages = 0, next = 0; /* next: the first page not counted */
    if (a->image.nkept) { /* (every page mapped at the offload: the live ones among them) */
        for (size_t i = 0; i < a->image.nkept; i++)
            pages += a->image.kept[i][1] - a->image.kept[i][0];
        return pages * gran;
    }
    for (const cua_block *b = a->heap.first; b; b = b->next) {
        if (b->state != CUA_BLOCK_LIVE) continue;
        uint64_t first = b->off / gran, last = (b->off + b->size - 1) / gran;
        if (first < next) first = next;
        if (last >= first) pages += last - first + 1;
        if (last + 1 > next) next = last + 1;
    }
    return pages * gran;
}

cua_status _cua_offload_restore_locked(cua_arena *a)
{
    if (!a->offloaded)
        return _cua_error(CUA_ERR_INVALID_ARG, "arena '%s' is not offloaded: nothing to restore",
                          a->name);
    cua_status st = map_live(a); /* (on failure it drops what it mapped itself) */
    bool mapped = st == CUA_OK;
    if (st == CUA_OK && a->image.nkept) st = map_kept(a);
    if (st == CUA_OK && !a->image.discarded) st = copy_image(a, false);
    if (st != CUA_OK && mapped) { /* the live blocks' claims and every page go again */
        char keep[CUA_MSG_CAP];
        uint64_t released;
        _cua_error_stash(keep, sizeof keep);
        release_pages(a, &released);
        _cua_error_restore(keep);
    }
    if (st != CUA_OK)
        return _cua_error_wrap(st, "arena '%s' was not restored (it stays offloaded, its data "
                               "kept)", a->name);
    uint64_t bytes = a->image.discarded ? 0 : a->image.bytes;
    _cua_offload_image_free(a);
    a->offloaded = false;
    _cua_tc_open_all_locked(a);
    _cua_event_queue(a, CUA_ARENA_RESTORED, "", bytes);
    return CUA_OK;
}

/* _cua_lower_bound reads an image entry's `off` as its uintptr_t key. */
_Static_assert(sizeof(uintptr_t) == sizeof(uint64_t), "image offsets are the search key");

void _cua_offload_image_drop(cua_arena *a, uint64_t off)
{
    struct cua_image *im = &a->image;
    size_t i = _cua_lower_bound(im->blocks, im->n, sizeof *im->blocks, (uintptr_t)off);
    if (i < im->n && im->blocks[i].off == off) im->blocks[i].len = 0; /* not copied back */
}
