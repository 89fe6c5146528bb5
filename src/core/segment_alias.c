/*
 * segment_alias.c - the old places of moved handles, and their purge
 * (segment.h: defer_unmap, aliases, _cua_seg_purge).
 *
 * Note [moves that unmap later]: when a growth must first give pages back
 * (the footprint cap, the limit), the pages it gives back are not lost: their
 * handles are mapped again at the growing block's place (segment.h's
 * keep_handles). A move used to be unmap (old place) + map + set access (new
 * place), all on the allocating thread, under the arena lock; on a GPU the
 * unmap is about 40 % of it (cuMemUnmap follows the bytes: 0.3-0.5 ms per GiB
 * on the H100 at scale 140, docs/benchmarks.md). CUDA lets one handle be
 * mapped at several places at once ("virtual aliasing"), so with
 * defer_unmap the trim of a growth leaves its chunks mapped where they were:
 * a handle that the growth maps again is then seen at two addresses, the old
 * one listed here as an alias, and the unmap of the old place is deferred to
 * a purge. No physical memory is added (it is the same handle), so peak
 * mapped is what it was; only address space is held, and nothing is placed
 * there: a growth over an alias's pages purges the old places first (all of
 * them, in one batch: the bytes cost the same now or later). A handle the
 * growth did not take is unmapped and released before the growth returns, as
 * before, since its memory must really go back.
 *
 * Purges run where the time is not an allocation's: cua_arena_trim and the
 * other trims of the policy table (policy.c, column `purge`), the idle trim
 * and the janitor, offload and destroy; a handle is never released while an
 * old place of it is mapped (release purges its aliases first). A purge
 * unmaps in address order, adjacent old places in one call. One that fails
 * stays listed and is tried again by the next purge; fini hands what is left
 * to the backend's graves. What a stale pointer into an old place sees is
 * the memory of the block that lives at the new place: as with any caching
 * allocator, a pointer is valid only until its free.
 */
#include "core/segment.h"

#include <stdlib.h>

static int cmp_at(const void *a, const void *b)
{
    uint32_t x = ((const cua_handle_entry *)a)->at, y = ((const cua_handle_entry *)b)->at;
    return (x > y) - (x < y);
}

/* Unmap the aliases that `pick` picks, in address order, adjacent ones in
 * one call; those unmapped leave the list, those whose unmap failed stay. */
static cua_status purge_where(cua_segment *seg, bool (*pick)(const cua_segment *, size_t, uintptr_t),
                              uintptr_t arg)
{
    cua_handles *l = &seg->aliases;
    size_t n = 0; /* the picked ones to the front, then in address order */
    for (size_t i = 0; i < l->n; i++)
        if (pick(seg, i, arg)) {
            cua_handle_entry t = l->v[n];
            l->v[n++] = l->v[i];
            l->v[i] = t;
        }
    if (n == 0) return CUA_OK;
    qsort(l->v, n, sizeof *l->v, cmp_at);
    cua_status first = CUA_OK;
    size_t keep = 0; /* entries that stay: failed ones, at the front */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        uint64_t pages = l->v[i].size >> seg->gshift;
        while (j < n && l->v[j].at == l->v[i].at + pages) {
            pages += l->v[j].size >> seg->gshift;
            j++;
        }
        uint32_t p0 = l->v[i].at - 1;
        cua_status st = _cua_bk_unmap(seg->bk, seg->cs, seg->base + ((uintptr_t)p0 << seg->gshift),
                                      (size_t)pages << seg->gshift, j - i);
        if (st == CUA_OK) {
            _cua_seg_bits(seg->aliasbits, p0, p0 + (uint32_t)pages, false);
            for (size_t k = i; k < j; k++) {
                seg->alias_bytes -= l->v[k].size;
                seg->purged_total += l->v[k].size;
            }
        } else {
            if (first == CUA_OK) first = st;
            for (size_t k = i; k < j; k++) l->v[keep++] = l->v[k];
        }
        i = j;
    }
    /* The entries not picked follow the kept ones. */
    for (size_t i = n; i < l->n; i++) l->v[keep++] = l->v[i];
    l->n = keep;
    return first;
}

static bool pick_all(const cua_segment *seg, size_t i, uintptr_t arg)
{
    (void)seg, (void)i, (void)arg;
    return true;
}

static bool pick_handle(const cua_segment *seg, size_t i, uintptr_t arg)
{
    return seg->aliases.v[i].h == (cua_handle)arg;
}

/* An alias of a handle the kept list holds (one a growth did not take). */
static bool pick_kept(const cua_segment *seg, size_t i, uintptr_t arg)
{
    (void)arg;
    for (size_t k = 0; k < seg->kept.n; k++)
        if (seg->kept.v[k].size && seg->kept.v[k].h == seg->aliases.v[i].h) return true;
    return false;
}

cua_status _cua_seg_purge_kept(cua_segment *seg)
{
    return seg->aliases.n ? purge_where(seg, pick_kept, 0) : CUA_OK;
}

cua_status _cua_seg_purge(cua_segment *seg)
{
    return seg->aliases.n ? purge_where(seg, pick_all, 0) : CUA_OK;
}

cua_status _cua_seg_purge_handle(cua_segment *seg, cua_handle h)
{
    _Static_assert(sizeof(cua_handle) <= sizeof(uintptr_t), "a handle fits a uintptr_t");
    return seg->aliases.n ? purge_where(seg, pick_handle, (uintptr_t)h) : CUA_OK;
}
