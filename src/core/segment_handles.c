/*
 * segment_handles.c - the physical handles a segment holds outside its page
 * table (segment.h): those whose release failed (zombies: retried, never
 * leaked), those a growth's trim gave back for the growth to map again
 * (kept), those adopted from a reservation, and the release of a handle,
 * which unmaps its old places first (segment_alias.c). Beside segment.c
 * rather than in it, which would pass 800 lines.
 */
#include "core/segment.h"

#include <stdlib.h>

bool _cua_handles_push(cua_handles *l, cua_handle h, size_t size, uint32_t at)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? 2 * l->cap : 16;
        void *nv = realloc(l->v, ncap * sizeof *l->v);
        if (!nv) return false;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].h = h;
    l->v[l->n].size = size;
    l->v[l->n].at = at;
    l->n++;
    return true;
}

bool _cua_seg_list_push(cua_handles *l, cua_handle h, size_t size)
{
    return _cua_handles_push(l, h, size, 0);
}

/* Release a handle: its old places first (a handle is released only when it
 * is mapped nowhere); a failure keeps it on the zombie list. */
cua_status _cua_seg_release_handle(cua_segment *seg, cua_handle h, size_t size)
{
    cua_status st = _cua_seg_purge_handle(seg, h);
    if (st == CUA_OK) st = _cua_bk_release(seg->bk, seg->cs, h, size);
    if (st == CUA_OK) return CUA_OK;
    _cua_seg_list_push(&seg->zombies, h, size); /* if even that fails, the handle is lost */
    return st;
}

static cua_status retry_zombies(cua_segment *seg);

cua_status _cua_seg_retry_zombies(cua_segment *seg)
{
    return seg->zombies.n ? retry_zombies(seg) : CUA_OK;
}

static cua_status retry_zombies(cua_segment *seg)
{
    cua_status first = CUA_OK;
    size_t j = 0;
    cua_handles *z = &seg->zombies;
    for (size_t i = 0; i < z->n; i++) {
        cua_status st = _cua_seg_purge_handle(seg, z->v[i].h);
        if (st == CUA_OK) st = _cua_bk_release(seg->bk, seg->cs, z->v[i].h, z->v[i].size);
        if (st == CUA_OK) continue;
        if (first == CUA_OK) first = st;
        z->v[j++] = z->v[i];
    }
    z->n = j;
    return first;
}

/* An unmapped handle goes to the kept list while handles are kept, else back
 * to the backend. */
cua_status _cua_seg_drop_handle(cua_segment *seg, cua_handle h, size_t size)
{
    if (seg->keep_handles && _cua_seg_list_push(&seg->kept, h, size)) return CUA_OK;
    return _cua_seg_release_handle(seg, h, size);
}

/* A handle of exactly `size` bytes from list l, if it has one (*at: its `at`). */
bool _cua_seg_take_handle(cua_handles *l, size_t size, cua_handle *h, uint32_t *at)
{
    for (size_t i = l->n; i-- > 0;) {
        if (l->v[i].size != size) continue;
        *h = l->v[i].h;
        *at = l->v[i].at;
        l->v[i] = l->v[--l->n];
        return true;
    }
    return false;
}

/* Unmap a kept handle's old place now; false (it stays listed) on failure. */
bool _cua_seg_unmap_old_place(cua_segment *seg, uint32_t at, size_t size)
{
    uint32_t first = at - 1, n = (uint32_t)(size >> seg->gshift);
    if (_cua_bk_unmap(seg->bk, seg->cs, seg->base + ((uintptr_t)first << seg->gshift), size, 1) !=
        CUA_OK)
        return false;
    _cua_seg_bits(seg->aliasbits, first, first + n, false);
    return true;
}

/* Back to the kept list (a map of it failed); released when even that fails
 * (its old place unmapped first). */
void _cua_seg_put_kept(cua_segment *seg, cua_handle h, size_t size, uint32_t at)
{
    if (_cua_handles_push(&seg->kept, h, size, at)) return;
    if (!at || _cua_seg_unmap_old_place(seg, at, size)) _cua_seg_release_handle(seg, h, size);
}

cua_status _cua_seg_adopt(cua_segment *seg, cua_handle h, size_t size)
{
    if (seg->novmm || size % seg->gran)
        return _cua_error(CUA_ERR_INVALID_ARG, "a handle of %zu bytes cannot serve this arena", size);
    if (!_cua_seg_list_push(&seg->adopted, h, size))
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "no host memory to adopt a handle");
    seg->adopted_bytes += size;
    return CUA_OK;
}

cua_status _cua_seg_keep_handles(cua_segment *seg, bool on)
{
    seg->keep_handles = on;
    if (on) return CUA_OK;
    /* What no chunk took must really go back: its old place first (listed as
     * an alias, so that one purge unmaps them in address order, adjacent ones
     * in one call), then the handle. One whose old place cannot be unmapped
     * stays listed (the next purge tries again) and on the zombie list (the
     * release is retried after it). */
    cua_status first = CUA_OK;
    size_t n = 0;
    for (size_t i = 0; i < seg->kept.n; i++) {
        cua_handle_entry e = seg->kept.v[i];
        if (!e.at) continue;
        if (_cua_handles_push(&seg->aliases, e.h, e.size, e.at)) {
            seg->alias_bytes += e.size;
            n++;
        } else if (!_cua_seg_unmap_old_place(seg, e.at, e.size)) {
            first = CUA_ERR_BACKEND;
            _cua_seg_list_push(&seg->zombies, e.h, e.size); /* (if even that fails, it is lost) */
            seg->kept.v[i].size = 0;                   /* (not released below) */
        }
    }
    if (n) { /* (theirs only: the old places of handles mapped again wait) */
        cua_status st = _cua_seg_purge_kept(seg);
        if (st != CUA_OK && first == CUA_OK) first = st;
    }
    while (seg->kept.n) {
        seg->kept.n--;
        cua_handle_entry e = seg->kept.v[seg->kept.n];
        if (!e.size) continue;
        cua_status st = _cua_seg_release_handle(seg, e.h, e.size); /* (purges what is left of it first) */
        if (st != CUA_OK && first == CUA_OK) first = st;
    }
    return first;
}

