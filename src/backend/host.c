/*
 * backend_host.c - host memory with exactly the rules of CUDA's virtual-memory
 * API, so that code which passes on it is legal on the GPU:
 *   - one memfd, sparse, of `capacity` bytes is the "device memory"; a handle
 *     is a first-fit range of granularity pages in it; releasing a handle
 *     punches a hole so the memory really goes back to the OS;
 *   - a reservation is PROT_NONE address space, aligned by over-reserving and
 *     trimming the ends;
 *   - a handle maps whole, at offset 0, on unmapped pages of one
 *     reservation; it is inaccessible until set_access; it may be mapped at
 *     several places at once (CUDA's virtual aliasing: the same memory seen
 *     at each) and is released only when none is left;
 *   - an unmap covers whole mappings only (several adjacent ones may go in one
 *     call), and puts PROT_NONE reservation back in their place;
 *   - events and streams are simulated (backend_host_stream.c): in manual mode
 *     an event completes only when its stream is completed or synchronised, so
 *     tests can hold work in flight;
 *   - whole segments (alloc / free, as cuMemAlloc) are a handle's pages mapped
 *     read-write where the kernel chooses.
 * Every hook runs under one mutex per backend.
 */
#include "backend/host_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- physical pages: a bitmap searched first-fit from a hint ------------------ */

static void mark_pages(host_backend *h, size_t first, size_t n, bool used)
{
    while (n) {
        size_t w = first / 64, bit = first % 64, k = _cua_min(n, 64 - bit);
        uint64_t mask = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << bit;
        if (used)
            h->bitmap[w] |= mask;
        else
            h->bitmap[w] &= ~mask;
        first += k;
        n -= k;
    }
}

/* First page >= from whose bit equals `used`, or npages. */
static size_t next_page(const host_backend *h, size_t from, bool used)
{
    if (from >= h->npages) return h->npages;
    size_t w = from / 64;
    uint64_t flip = used ? 0 : ~(uint64_t)0;
    uint64_t x = (h->bitmap[w] ^ flip) & (~(uint64_t)0 << (from % 64));
    while (!x) {
        if (++w >= h->nwords) return h->npages;
        x = h->bitmap[w] ^ flip;
    }
    return _cua_min(w * 64 + (size_t)__builtin_ctzll(x), h->npages);
}

/* First run of n free pages, or npages when there is none. */
static size_t find_free_run(const host_backend *h, size_t n)
{
    size_t i = h->hint;
    for (;;) {
        size_t s = next_page(h, i, false);
        if (s >= h->npages || h->npages - s < n) return h->npages;
        size_t e = next_page(h, s, true);
        if (e - s >= n) return s;
        i = e;
    }
}

/* ---- reservations and mappings: sorted arrays, binary search ------------------- */

static size_t res_lower_bound(const host_backend *h, uintptr_t a)
{
    return _cua_lower_bound(h->res, h->nres, sizeof *h->res, a);
}

static size_t map_lower_bound(const host_backend *h, uintptr_t a)
{
    return _cua_lower_bound(h->maps, h->nmaps, sizeof *h->maps, a);
}

/* The reservation that holds all of [a, a+size), or NULL. */
static const host_range *res_holding(const host_backend *h, uintptr_t a, size_t size)
{
    size_t i = res_lower_bound(h, a + 1); /* first with addr > a */
    if (i == 0) return NULL;
    const host_range *r = &h->res[i - 1];
    if (a - r->addr >= r->size || size > r->size - (a - r->addr)) return NULL;
    return r;
}

/* Index of the mapping that contains address a, or nmaps. */
static size_t map_containing(const host_backend *h, uintptr_t a)
{
    size_t i = map_lower_bound(h, a + 1);
    if (i == 0) return h->nmaps;
    const host_mapping *m = &h->maps[i - 1];
    return a - m->addr < m->size ? i - 1 : h->nmaps;
}

static bool range_has_mapping(const host_backend *h, uintptr_t a, size_t size)
{
    size_t i = map_lower_bound(h, a);
    if (i < h->nmaps && h->maps[i].addr - a < size) return true;
    return i > 0 && h->maps[i - 1].addr + h->maps[i - 1].size > a;
}

/*
 * The run of adjacent mappings [*first, *end) that covers [a, a+size) with no
 * gap. With `whole`, the run must start at a and end at a+size exactly (unmap);
 * without, it may stick out at either end (set_access).
 */
static cua_status mapped_run(const host_backend *h, const char *what, uintptr_t a, size_t size,
                             bool whole, size_t *first, size_t *end)
{
    uintptr_t stop = a + size, cur = a;
    size_t i = map_containing(h, a), j = i;
    while (cur < stop) {
        if (j >= h->nmaps || h->maps[j].addr > cur || h->maps[j].addr + h->maps[j].size <= cur)
            return _cua_error(CUA_ERR_BACKEND,
                              "host backend: %s of [%#lx, %#lx): the page at %#lx is not mapped",
                              what, (unsigned long)a, (unsigned long)stop, (unsigned long)cur);
        cur = h->maps[j].addr + h->maps[j].size;
        j++;
    }
    if (whole && (h->maps[i].addr != a || cur != stop)) {
        const host_mapping *m = h->maps[i].addr != a ? &h->maps[i] : &h->maps[j - 1];
        return _cua_error(CUA_ERR_BACKEND,
                          "host backend: %s of [%#lx, %#lx): invalid argument: a mapping is "
                          "unmapped whole, and [%#lx, %#lx) is only partly inside",
                          what, (unsigned long)a, (unsigned long)stop, (unsigned long)m->addr,
                          (unsigned long)(m->addr + m->size));
    }
    *first = i;
    *end = j;
    return CUA_OK;
}

/* addr and size must be granularity multiples, size nonzero, no wrap-around. */
static cua_status check_span(const host_backend *h, const char *what, uintptr_t a, size_t size)
{
    if (size == 0 || (a | size) & (h->gran - 1) || a + size < a)
        return _cua_error(CUA_ERR_BACKEND,
                          "host backend: %s of %zu bytes at %#lx: invalid argument: address and "
                          "size must be nonzero multiples of the granularity (%zu)",
                          what, size, (unsigned long)a, h->gran);
    return CUA_OK;
}

/* ---- hooks: address space ---------------------------------------------------------- */

static cua_status check_reserve_args(const host_backend *h, size_t size, size_t align)
{
    if (size == 0 || size % h->gran)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "host backend: cannot reserve %zu bytes: not a nonzero multiple of "
                          "the granularity (%zu)", size, h->gran);
    if (!_cua_is_pow2(align) || align % h->gran)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "host backend: cannot reserve with alignment %zu: not a power of two "
                          "multiple of the granularity (%zu)", align, h->gran);
    if (size > SIZE_MAX - align)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY,
                          "host backend: cannot reserve %zu bytes aligned to %zu: too large",
                          size, align);
    return CUA_OK;
}

/* mmap PROT_NONE address space of size+align bytes and trim it to an aligned range. */
static cua_status reserve_aligned(size_t size, size_t align, uintptr_t *out)
{
    char b1[32], b2[32];
    size_t span = size + align;
    void *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY,
                          "host backend: cannot reserve %s aligned to %s: mmap: %s",
                          bytes_str(b1, size), bytes_str(b2, align), strerror(errno));
    uintptr_t lo = (uintptr_t)p, base = (lo + align - 1) & ~(uintptr_t)(align - 1);
    if (base > lo) munmap(p, base - lo);
    if (lo + span > base + size) munmap((void *)(base + size), lo + span - (base + size));
    *out = base;
    return CUA_OK;
}

/* A backend created with no_vmm refuses the virtual-memory calls. */
static cua_status refuse_vmm(const host_backend *h, const char *what)
{
    if (!h->no_vmm) return CUA_OK;
    return _cua_error(CUA_ERR_NOT_SUPPORTED, "host backend: %s: this backend has no virtual "
                      "memory management (no_vmm)", what);
}

static cua_status host_reserve(cua_backend *b, size_t size, size_t align, uintptr_t *addr)
{
    host_backend *h = host_of(b);
    if (refuse_vmm(h, "reserve")) return CUA_ERR_NOT_SUPPORTED;
    if (align == 0) align = h->gran; /* as cuMemAddressReserve: 0 = the default */
    cua_status st = check_reserve_args(h, size, align);
    if (st != CUA_OK) return st;
    _cua_lock(&h->lock);
    if (!grow((void **)&h->res, &h->cap_res, h->nres, sizeof *h->res)) {
        _cua_unlock(&h->lock);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY,
                          "host backend: no host memory to track a reservation");
    }
    uintptr_t base = 0;
    st = reserve_aligned(size, align, &base);
    if (st == CUA_OK) {
        _cua_sorted_insert(h->res, &h->nres, sizeof *h->res, &(host_range){base, size});
        *addr = base;
    }
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_unreserve(cua_backend *b, uintptr_t addr, size_t size)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    size_t i = res_lower_bound(h, addr);
    cua_status st = CUA_OK;
    if (i >= h->nres || h->res[i].addr != addr || h->res[i].size != size)
        st = _cua_error(CUA_ERR_BACKEND,
                        "host backend: cannot unreserve %zu bytes at %#lx: not a whole "
                        "reservation", size, (unsigned long)addr);
    else if (range_has_mapping(h, addr, size))
        st = _cua_error(CUA_ERR_BACKEND,
                        "host backend: cannot unreserve %zu bytes at %#lx: a mapping is still "
                        "inside it", size, (unsigned long)addr);
    else if (munmap((void *)addr, size) != 0)
        st = _cua_error(CUA_ERR_BACKEND, "host backend: cannot unreserve %zu bytes at %#lx: "
                        "munmap: %s", size, (unsigned long)addr, strerror(errno));
    if (st == CUA_OK) _cua_array_remove(h->res, &h->nres, sizeof *h->res, i, i + 1);
    _cua_unlock(&h->lock);
    return st;
}

/* ---- hooks: physical handles ------------------------------------------------------- */

static cua_status no_room(const host_backend *h, size_t size)
{
    char want[32], fr[32], tot[32];
    uint64_t free_bytes = (uint64_t)(h->npages - h->used_pages) << h->gshift;
    return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: cannot create a %s handle: %s of %s "
                      "free%s", bytes_str(want, size), bytes_str(fr, free_bytes),
                      bytes_str(tot, (uint64_t)h->npages << h->gshift),
                      free_bytes >= size ? ", but no free range of that size in one piece" : "");
}

/* Take n free pages of the memfd for a handle (lock held). */
static cua_status create_locked(host_backend *h, size_t size, cua_handle *out)
{
    if (size == 0 || size % h->gran)
        return _cua_error(CUA_ERR_INVALID_ARG,
                          "host backend: cannot create a handle of %zu bytes: not a nonzero "
                          "multiple of the granularity (%zu)", size, h->gran);
    size_t n = size >> h->gshift;
    size_t first = n <= h->npages ? find_free_run(h, n) : h->npages;
    uint32_t idx = 0;
    if (first >= h->npages) return no_room(h, size);
    if (!slot_alloc(&h->handles, &idx))
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory for a handle");
    host_handle *hd = (host_handle *)slot_at(&h->handles, idx);
    hd->first_page = (uint32_t)first;
    hd->npages = (uint32_t)n;
    mark_pages(h, first, n, true);
    h->used_pages += n;
    if (first == h->hint) h->hint = first + n;
    *out = slot_value(&h->handles, idx);
    return CUA_OK;
}

/* Give a handle's pages back to the OS (lock held). */
static cua_status release_locked(host_backend *h, cua_handle hv)
{
    uint32_t idx = 0;
    host_handle *hd = (host_handle *)slot_lookup(&h->handles, hv, &idx);
    if (!hd)
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot release handle %#llx: no such "
                          "handle (never created, or released already)", (unsigned long long)hv);
    if (hd->nmaps)
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot release handle %#llx: the "
                          "handle is still mapped at %#lx (%u mappings)", (unsigned long long)hv,
                          (unsigned long)hd->mapped_at, hd->nmaps);
    if (fallocate(h->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)hd->first_page << h->gshift, (off_t)hd->npages << h->gshift) != 0)
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot release handle %#llx: "
                          "fallocate(PUNCH_HOLE): %s", (unsigned long long)hv, strerror(errno));
    mark_pages(h, hd->first_page, hd->npages, false);
    h->used_pages -= hd->npages;
    if (hd->first_page < h->hint) h->hint = hd->first_page;
    slot_free(&h->handles, idx);
    return CUA_OK;
}

static cua_status host_create(cua_backend *b, size_t size, cua_handle *out)
{
    host_backend *h = host_of(b);
    if (refuse_vmm(h, "create")) return CUA_ERR_NOT_SUPPORTED;
    _cua_lock(&h->lock);
    cua_status st = create_locked(h, size, out);
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_release(cua_backend *b, cua_handle hv)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    cua_status st = release_locked(h, hv);
    _cua_unlock(&h->lock);
    return st;
}

/* ---- hooks: whole segments (cuMemAlloc / cuMemFree) ----------------------------------- */

/* A handle's pages mapped read-write where the kernel chooses: memory that is
 * usable at once and can only be freed whole, as from cuMemAlloc. */
static cua_status host_alloc(cua_backend *b, size_t size, uintptr_t *addr)
{
    host_backend *h = host_of(b);
    cua_handle hv = 0;
    _cua_lock(&h->lock);
    cua_status st = grow((void **)&h->segs, &h->cap_segs, h->nsegs, sizeof *h->segs)
                        ? create_locked(h, size, &hv)
                        : _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory to "
                                     "track a segment");
    if (st == CUA_OK) {
        uint32_t idx = (uint32_t)(hv & 0xffffffffu) - 1;
        host_handle *hd = (host_handle *)slot_at(&h->handles, idx);
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, h->memfd,
                       (off_t)hd->first_page << h->gshift);
        if (p == MAP_FAILED) {
            st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: alloc of %zu bytes: mmap: %s",
                            size, strerror(errno));
            release_locked(h, hv);
        } else {
            hd->mapped_at = (uintptr_t)p;
            hd->nmaps = 1;
            _cua_sorted_insert(h->segs, &h->nsegs, sizeof *h->segs,
                               &(host_mapping){(uintptr_t)p, size, idx, 0});
            *addr = (uintptr_t)p;
        }
    }
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_free(cua_backend *b, uintptr_t addr, size_t size)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    size_t i = _cua_lower_bound(h->segs, h->nsegs, sizeof *h->segs, addr);
    cua_status st = CUA_OK;
    if (i >= h->nsegs || h->segs[i].addr != addr || h->segs[i].size != size)
        st = _cua_error(CUA_ERR_BACKEND, "host backend: cannot free %zu bytes at %#lx: not a "
                        "segment from alloc", size, (unsigned long)addr);
    else if (munmap((void *)addr, size) != 0)
        st = _cua_error(CUA_ERR_BACKEND, "host backend: free of %zu bytes at %#lx: munmap: %s",
                        size, (unsigned long)addr, strerror(errno));
    if (st == CUA_OK) {
        host_handle *hd = (host_handle *)slot_at(&h->handles, h->segs[i].handle_idx);
        hd->mapped_at = 0;
        hd->nmaps = 0;
        st = release_locked(h, slot_value(&h->handles, h->segs[i].handle_idx));
        _cua_array_remove(h->segs, &h->nsegs, sizeof *h->segs, i, i + 1);
    }
    _cua_unlock(&h->lock);
    return st;
}

/* ---- hooks: mappings and access ----------------------------------------------------- */

/* Everything map() must check before it touches the address space. */
static cua_status check_map(const host_backend *h, uintptr_t addr, size_t size, size_t offset,
                            cua_handle hv, host_handle **out)
{
    if (offset != 0)
        return _cua_error(CUA_ERR_NOT_SUPPORTED, "host backend: cannot map handle %#llx at "
                          "offset %zu: an offset into a handle is not supported, as on CUDA",
                          (unsigned long long)hv, offset);
    cua_status st = check_span(h, "map", addr, size);
    if (st != CUA_OK) return st;
    host_handle *hd = (host_handle *)slot_lookup(&h->handles, hv, NULL);
    if (!hd)
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot map handle %#llx: no such "
                          "handle", (unsigned long long)hv);
    if (size != (size_t)hd->npages << h->gshift)
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot map %zu bytes of handle %#llx: "
                          "a handle is mapped whole (%zu bytes)", size, (unsigned long long)hv,
                          (size_t)hd->npages << h->gshift);
    if (!res_holding(h, addr, size))
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot map %zu bytes at %#lx: the "
                          "range is not inside one reservation", size, (unsigned long)addr);
    if (range_has_mapping(h, addr, size))
        return _cua_error(CUA_ERR_BACKEND, "host backend: cannot map %zu bytes at %#lx: pages "
                          "there are mapped already", size, (unsigned long)addr);
    *out = hd;
    return CUA_OK;
}

static cua_status host_map(cua_backend *b, uintptr_t addr, size_t size, size_t offset,
                           cua_handle hv)
{
    host_backend *h = host_of(b);
    if (refuse_vmm(h, "map")) return CUA_ERR_NOT_SUPPORTED;
    _cua_lock(&h->lock);
    host_handle *hd = NULL;
    cua_status st = check_map(h, addr, size, offset, hv, &hd);
    if (st == CUA_OK && !grow((void **)&h->maps, &h->cap_maps, h->nmaps, sizeof *h->maps))
        st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory to track a mapping");
    if (st == CUA_OK) {
        /* PROT_NONE until set_access, as a fresh cuMemMap. */
        void *p = mmap((void *)addr, size, PROT_NONE, MAP_SHARED | MAP_FIXED, h->memfd,
                       (off_t)hd->first_page << h->gshift);
        if (p == MAP_FAILED)
            st = _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: cannot map %zu bytes at %#lx: "
                            "mmap: %s", size, (unsigned long)addr, strerror(errno));
    }
    if (st == CUA_OK) {
        _cua_sorted_insert(h->maps, &h->nmaps, sizeof *h->maps,
                           &(host_mapping){addr, size, (uint32_t)(hv & 0xffffffffu) - 1, 0});
        if (!hd->nmaps++) hd->mapped_at = addr;
    }
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_unmap(cua_backend *b, uintptr_t addr, size_t size)
{
    host_backend *h = host_of(b);
    cua_status st = check_span(h, "unmap", addr, size);
    if (st != CUA_OK) return st;
    _cua_lock(&h->lock);
    size_t first = 0, end = 0;
    st = mapped_run(h, "unmap", addr, size, true, &first, &end);
    if (st == CUA_OK) {
        /* Put the reservation back; munmap would leave a hole others could take. */
        void *p = mmap((void *)addr, size, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
        if (p == MAP_FAILED)
            st = _cua_error(CUA_ERR_BACKEND, "host backend: cannot unmap %zu bytes at %#lx: "
                            "mmap: %s", size, (unsigned long)addr, strerror(errno));
    }
    if (st == CUA_OK) {
        for (size_t i = first; i < end; i++) {
            host_handle *hd = (host_handle *)slot_at(&h->handles, h->maps[i].handle_idx);
            if (--hd->nmaps == 0) hd->mapped_at = 0;
        }
        _cua_array_remove(h->maps, &h->nmaps, sizeof *h->maps, first, end);
    }
    _cua_unlock(&h->lock);
    return st;
}

/* Is `dev` the backend's device or a simulated peer that can reach it? */
static cua_status peer_ok(const host_backend *h, const char *what, int dev)
{
    if (dev < 0 || dev >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: %s: device %d is out of range "
                          "0..%d", what, dev, CUA_MAX_DEVICES - 1);
    if (dev == h->base.device || (h->can_peer >> dev & 1)) return CUA_OK;
    return _cua_error(CUA_ERR_NOT_SUPPORTED, "host backend: %s: device %d cannot access the "
                      "memory of (simulated) device %d: no peer access between them "
                      "(cua_host_config.peer_mask)", what, dev, h->base.device);
}

static cua_status host_set_access(cua_backend *b, uintptr_t addr, size_t size, const int *devices,
                                  int n)
{
    host_backend *h = host_of(b);
    cua_status st = check_span(h, "set_access", addr, size);
    if (st != CUA_OK) return st;
    if (!devices || n <= 0)
        return _cua_error(CUA_ERR_BACKEND, "host backend: set_access of %zu bytes at %#lx: "
                          "invalid argument: no device given", size, (unsigned long)addr);
    uint64_t mask = 0;
    for (int i = 0; i < n; i++) {
        st = peer_ok(h, "set_access", devices[i]);
        if (st != CUA_OK) return st;
        mask |= (uint64_t)1 << devices[i];
    }
    _cua_lock(&h->lock);
    size_t first, end;
    st = mapped_run(h, "set_access", addr, size, false, &first, &end);
    if (st == CUA_OK && mprotect((void *)addr, size, PROT_READ | PROT_WRITE) != 0)
        st = _cua_error(CUA_ERR_BACKEND, "host backend: set_access of %zu bytes at %#lx: "
                        "mprotect: %s", size, (unsigned long)addr, strerror(errno));
    if (st == CUA_OK) /* CUDA grants the range; the run may stick out: mark whole mappings */
        for (size_t i = first; i < end; i++) h->maps[i].access |= mask;
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_peer_check(cua_backend *b, int peer)
{
    return peer_ok(host_of(b), "peer access", peer);
}

static cua_status host_peer_enable(cua_backend *b, int peer)
{
    host_backend *h = host_of(b);
    cua_status st = peer_ok(h, "enable peer access", peer);
    if (st != CUA_OK) return st;
    _cua_lock(&h->lock);
    h->seg_peers |= (uint64_t)1 << peer;
    _cua_unlock(&h->lock);
    return CUA_OK;
}

cua_status _cua_host_access(cua_backend *b, uintptr_t addr, uint64_t *mask)
{
    if (!b || b->kind != CUA_BK_HOST || !mask)
        return _cua_error(CUA_ERR_INVALID_ARG, "_cua_host_access: not a host backend, or mask NULL");
    host_backend *h = host_of(b);
    cua_status st = CUA_ERR_INVALID_ARG;
    _cua_lock(&h->lock);
    size_t i = map_containing(h, addr);
    if (i < h->nmaps) {
        *mask = h->maps[i].access;
        st = CUA_OK;
    }
    for (size_t j = 0; st != CUA_OK && j < h->nsegs; j++)
        if (addr - h->segs[j].addr < h->segs[j].size) {
            *mask = ((uint64_t)1 << h->base.device) | h->seg_peers;
            st = CUA_OK;
        }
    _cua_unlock(&h->lock);
    if (st != CUA_OK)
        _cua_error(st, "host backend: %#lx is in no mapping and no segment", (unsigned long)addr);
    return st;
}

static cua_status host_mem_info(cua_backend *b, size_t *free_bytes, size_t *total_bytes)
{
    host_backend *h = host_of(b);
    _cua_lock(&h->lock);
    if (free_bytes) *free_bytes = (h->npages - h->used_pages) << h->gshift;
    if (total_bytes) *total_bytes = h->npages << h->gshift;
    _cua_unlock(&h->lock);
    return CUA_OK;
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void host_destroy(cua_backend *b)
{
    host_backend *h = host_of(b);
    /* Nothing is alive when the wrappers' counts say so; free whatever a direct
     * caller of the hooks may have left all the same. */
    for (size_t i = 0; i < h->nres; i++) munmap((void *)h->res[i].addr, h->res[i].size);
    for (size_t i = 0; i < h->nsegs; i++) munmap((void *)h->segs[i].addr, h->segs[i].size);
    if (h->memfd >= 0) close(h->memfd);
    free(h->bitmap);
    free(h->handles.items);
    free(h->events.items);
    free(h->streams);
    free(h->sindex);
    free(h->res);
    free(h->maps);
    free(h->segs);
    _cua_lock_destroy(&h->lock);
    free(h);
}

/* ---- hooks: staging memory, copy streams, copies ---------------------------------- */

/* "Pinned" host memory is plain memory here. */
static cua_status host_pinned_alloc(cua_backend *b, size_t size, void **out)
{
    (void)b;
    *out = size ? malloc(size) : NULL;
    if (!*out)
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory for a %zu-byte "
                          "staging buffer", size);
    return CUA_OK;
}

static cua_status host_pinned_free(cua_backend *b, void *p, size_t size)
{
    (void)b;
    (void)size;
    free(p);
    return CUA_OK;
}

/* Streams are names only: events on them complete when synced (or completed
 * by hand). Backend streams get names no caller's stream is likely to use. */
static cua_status host_stream_create(cua_backend *b, cua_stream *out)
{
    static _Atomic uint64_t next = 1;
    (void)b;
    *out = (cua_stream)(0xC0FFEE0000000000ull + atomic_fetch_add(&next, 1));
    return CUA_OK;
}

static cua_status host_stream_destroy(cua_backend *b, cua_stream s)
{
    (void)b;
    (void)s;
    return CUA_OK;
}

/* Is [a, a+n) inside mappings (or one whole segment), so that a copy there
 * reads and writes memory and cannot fault? */
static cua_status device_span(host_backend *h, const char *what, uintptr_t a, size_t n)
{
    if (n == 0 || a + n < a)
        return _cua_error(CUA_ERR_BACKEND, "host backend: %s of %zu bytes at %#lx: invalid "
                          "argument", what, n, (unsigned long)a);
    uintptr_t lo = a & ~(uintptr_t)(h->gran - 1), hi = (a + n + h->gran - 1) & ~(uintptr_t)(h->gran - 1);
    size_t first, end;
    if (mapped_run(h, what, lo, hi - lo, false, &first, &end) == CUA_OK) return CUA_OK;
    for (size_t i = 0; i < h->nsegs; i++)
        if (a >= h->segs[i].addr && a + n <= h->segs[i].addr + h->segs[i].size) return CUA_OK;
    return _cua_error(CUA_ERR_BACKEND, "host backend: %s of [%#lx, %#lx): not all of it is "
                      "mapped device memory", what, (unsigned long)a, (unsigned long)(a + n));
}

/* Copy n bytes from src to dst, one of them the device memory at
 * [dev, dev + n): at once, under the lock (a finished copy is a valid
 * "asynchronous" one). */
static cua_status copy_at(host_backend *h, const char *what, uintptr_t dev, void *dst,
                          const void *src, size_t n)
{
    _cua_lock(&h->lock);
    cua_status st = device_span(h, what, dev, n);
    if (st == CUA_OK) memcpy(dst, src, n);
    _cua_unlock(&h->lock);
    return st;
}

static cua_status host_copy_to_host(cua_backend *b, void *dst, uintptr_t src, size_t n,
                                    cua_stream s)
{
    (void)s;
    return copy_at(host_of(b), "copy to host", src, dst, (const void *)src, n);
}

static cua_status host_copy_to_device(cua_backend *b, uintptr_t dst, const void *src, size_t n,
                                      cua_stream s)
{
    (void)s;
    return copy_at(host_of(b), "copy to device", dst, (void *)dst, src, n);
}

static cua_status host_fill(cua_backend *b, uintptr_t addr, size_t n, unsigned char v, cua_stream s)
{
    host_backend *h = host_of(b);
    (void)s;
    _cua_lock(&h->lock);
    cua_status st = device_span(h, "fill", addr, n);
    if (st == CUA_OK) memset((void *)addr, v, n);
    _cua_unlock(&h->lock);
    return st;
}

static const cua_backend_ops host_ops = {
    .reserve = host_reserve,
    .unreserve = host_unreserve,
    .create = host_create,
    .release = host_release,
    .map = host_map,
    .unmap = host_unmap,
    .set_access = host_set_access,
    .peer_check = host_peer_check,
    .peer_enable = host_peer_enable,
    .alloc = host_alloc,
    .free = host_free,
    .mem_info = host_mem_info,
    .event_create = _cua_host_event_create,
    .event_destroy = _cua_host_event_destroy,
    .event_record = _cua_host_event_record,
    .event_query = _cua_host_event_query,
    .event_sync = _cua_host_event_sync,
    .stream_sync = _cua_host_stream_sync,
    .host_alloc = host_pinned_alloc,
    .host_free = host_pinned_free,
    .stream_create = host_stream_create,
    .stream_destroy = host_stream_destroy,
    .copy_to_host = host_copy_to_host,
    .copy_to_device = host_copy_to_device,
    .fill = host_fill,
    .destroy = host_destroy,
};

void _cua_host_config_defaults(cua_host_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->capacity = 80 * CUA_GIB;
    cfg->granularity = 2 * CUA_MIB;
    cfg->manual_events = 0;
}

void cua_host_config_init(cua_host_config *cfg)
{
    if (cfg) _cua_host_config_defaults(cfg);
}

static cua_status check_config(const cua_host_config *cfg)
{
    long os_page = sysconf(_SC_PAGESIZE);
    size_t page = os_page > 0 ? (size_t)os_page : 4096;
    size_t g = cfg->granularity, cap = cfg->capacity;
    if (!_cua_is_pow2(g) || g % page)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: granularity %zu is not a power of "
                          "two multiple of the OS page size (%zu)", g, page);
    if (cap == 0 || cap % g)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: capacity %zu is not a nonzero "
                          "multiple of the granularity (%zu)", cap, g);
    if (cap / g >= UINT32_MAX)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: capacity %zu is too many pages of "
                          "%zu bytes (at most 2^32 - 2)", cap, g);
    if (cfg->no_vmm != 0 && cfg->no_vmm != 1)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: no_vmm is %d, not 0 or 1",
                          cfg->no_vmm);
    if (cfg->manual_events != 0 && cfg->manual_events != 1)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: manual_events is %d, not 0 or 1",
                          cfg->manual_events);
    if (cfg->device < 0 || cfg->device >= CUA_MAX_DEVICES)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: device %d is out of range 0..%d",
                          cfg->device, CUA_MAX_DEVICES - 1);
    if ((uint64_t)cap > (uint64_t)INT64_MAX)
        return _cua_error(CUA_ERR_INVALID_ARG, "host backend: capacity %zu is too large", cap);
    return CUA_OK;
}

/* The memfd that stands for device memory: sparse, `capacity` bytes long. */
static cua_status open_memfd(size_t capacity, int *out)
{
    int fd = memfd_create("cuarena-host", MFD_CLOEXEC);
    if (fd < 0)
        return _cua_error(errno == ENOSYS ? CUA_ERR_NOT_SUPPORTED : CUA_ERR_OUT_OF_MEMORY,
                          "host backend: memfd_create: %s", strerror(errno));
    if (ftruncate(fd, (off_t)capacity) != 0) {
        int e = errno;
        close(fd);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: ftruncate of the memfd to %zu "
                          "bytes: %s", capacity, strerror(e));
    }
    *out = fd;
    return CUA_OK;
}

static void init_tables(host_backend *h)
{
    h->handles.elem = sizeof(host_handle);
    h->events.elem = sizeof(host_event);
    /* Padding bits past the last page count as used, so searches never find them. */
    size_t tail = h->npages % 64;
    if (tail) h->bitmap[h->nwords - 1] = ~(uint64_t)0 << tail;
}

cua_status _cua_backend_host_create(const cua_host_config *cfg, cua_backend **out)
{
    if (!out) return _cua_error(CUA_ERR_INVALID_ARG, "host backend: out is NULL");
    *out = NULL;
    cua_host_config defaults;
    if (!cfg) {
        _cua_host_config_defaults(&defaults);
        cfg = &defaults;
    }
    cua_status st = check_config(cfg);
    if (st != CUA_OK) return st;
    host_backend *h = calloc(1, sizeof *h);
    if (!h) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory for it");
    h->memfd = -1;
    h->gran = cfg->granularity;
    h->gshift = _cua_log2(h->gran);
    h->manual_events = cfg->manual_events != 0;
    h->no_vmm = cfg->no_vmm != 0;
    h->npages = cfg->capacity >> h->gshift;
    h->nwords = (h->npages + 63) / 64;
    h->bitmap = calloc(h->nwords, sizeof *h->bitmap);
    if (!h->bitmap) {
        size_t npages = h->npages;
        free(h);
        return _cua_error(CUA_ERR_OUT_OF_MEMORY, "host backend: no host memory for a page "
                          "bitmap of %zu pages", npages);
    }
    st = open_memfd(cfg->capacity, &h->memfd);
    if (st != CUA_OK) {
        free(h->bitmap);
        free(h);
        return st;
    }
    init_tables(h);
    _cua_lock_init(&h->lock, CUA_LOCK_RANK_HOST);
    _cua_backend_init(&h->base, &host_ops, "host", CUA_BK_HOST, h->gran, cfg->capacity);
    h->base.vmm = !h->no_vmm;
    h->base.device = cfg->device;
    h->can_peer = cfg->peer_mask & ~((uint64_t)1 << cfg->device);
    *out = &h->base;
    return CUA_OK;
}
