/*
 * test-backend.c - the host backend keeps CUDA's virtual-memory rules (map
 * whole at offset 0, access only after set_access, unmap whole mappings, in
 * batches), and its capacity, data and events behave as on a GPU (the fault
 * backend: test-fault.c). Everything goes through the _cua_bk_* wrappers.
 */
#include "test-backend.h"

#include <pthread.h>
#include <stdarg.h>



/* The permissions /proc/self/maps shows at addr ("rw-s", "---p"); "" if none. */
static const char *perms_at(uintptr_t addr, char out[8])
{
    out[0] = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return out;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, p) == 3 && addr >= lo && addr < hi) {
            memcpy(out, p, sizeof p);
            break;
        }
    }
    fclose(f);
    return out;
}

static void fill(uintptr_t addr, size_t size, unsigned char seed)
{
    unsigned char *p = (unsigned char *)addr;
    for (size_t i = 0; i < size; i += 4096) p[i] = (unsigned char)(seed + i / 4096);
    p[size - 1] = seed;
}

static int holds(uintptr_t addr, size_t size, unsigned char seed)
{
    const unsigned char *p = (const unsigned char *)addr;
    for (size_t i = 0; i < size; i += 4096)
        if (p[i] != (unsigned char)(seed + i / 4096)) return 0;
    return p[size - 1] == seed;
}



/* Release the unmapped handles of the list (handle, size in bytes, ...,
 * ending with a handle 0): the first failure's status. */
static cua_status release_handles(cua_backend *b, ...)
{
    va_list ap;
    va_start(ap, b);
    cua_status first = CUA_OK;
    for (cua_handle h = va_arg(ap, cua_handle); h; h = va_arg(ap, cua_handle)) {
        cua_status st = _cua_bk_release(b, NULL, h, va_arg(ap, size_t));
        if (first == CUA_OK) first = st;
    }
    va_end(ap);
    return first;
}

/* Nothing may be left in backend b, which is destroyed. */
static cua_status emptied(cua_backend *b)
{
    if (!all_zero(b)) {
        _cua_backend_destroy(b);
        return _cua_error(CUA_ERR_BUSY, "something is left in the backend");
    }
    return _cua_backend_destroy(b);
}

/* A test on a host backend `b` of 64 MiB in 2 MiB pages, empty at the end. */
#define BK_TEST(name) TEST_WITH(name, cua_backend *, b, host_make(64 * MiB, 2 * MiB, 0), emptied)

/* ---- configuration --------------------------------------------------------------- */

TEST(host_config)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    CHECK(hc.capacity == 80 * GiB && hc.granularity == 2 * MiB && hc.manual_events == 0);
    cua_backend *b = NULL;
    CHECK_OK(_cua_backend_host_create(NULL, &b));
    CHECK(b->kind == CUA_BK_HOST && b->granularity == 2 * MiB && b->total_bytes == 80 * GiB);
    size_t fr = 0, tot = 0;
    CHECK_OK(_cua_bk_mem_info(b, NULL, &fr, &tot));
    CHECK(fr == 80 * GiB && tot == 80 * GiB);
    CHECK_OK(_cua_backend_destroy(b));

    cua_backend *bad = NULL;
    hc.granularity = 3 * MiB;
    CHECK_ST(_cua_backend_host_create(&hc, &bad), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "granularity") != NULL && bad == NULL);
    hc.granularity = 1024; /* a power of two under the OS page */
    CHECK_ST(_cua_backend_host_create(&hc, &bad), CUA_ERR_INVALID_ARG);
    hc.granularity = 2 * MiB;
    hc.capacity = 3 * MiB;
    CHECK_ST(_cua_backend_host_create(&hc, &bad), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "capacity") != NULL);
    hc.capacity = 0;
    CHECK_ST(_cua_backend_host_create(&hc, &bad), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_backend_host_create(NULL, NULL), CUA_ERR_INVALID_ARG);
}

/* ---- address space ------------------------------------------------------------------ */

BK_TEST(reserve_aligned)
{
    uintptr_t a1 = 0, a2 = 0, a3 = 0;
    CHECK_OK(_cua_bk_reserve(b, NULL, 4 * MiB, GiB, &a1));
    CHECK(a1 && a1 % GiB == 0);
    CHECK_OK(_cua_bk_reserve(b, NULL, 2 * MiB, (size_t)1 << 40, &a2));
    CHECK(a2 && a2 % ((size_t)1 << 40) == 0);
    CHECK_OK(_cua_bk_reserve(b, NULL, 6 * MiB, 0, &a3)); /* 0: the granularity */
    CHECK(a3 % (2 * MiB) == 0);
    char p[8];
    CHECK(strcmp(perms_at(a1, p), "---p") == 0);
    CHECK(live(b, "reservations") == 3);

    uintptr_t x;
    CHECK_ST(_cua_bk_reserve(b, NULL, 3 * MiB, 2 * MiB, &x), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_reserve(b, NULL, 0, 2 * MiB, &x), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_reserve(b, NULL, 2 * MiB, 6 * MiB, &x), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_reserve(b, NULL, 2 * MiB, 1 * MiB, &x), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "alignment") != NULL);
    /* Only whole reservations are released. */
    CHECK_ST(_cua_bk_unreserve(b, NULL, a1, 2 * MiB), CUA_ERR_BACKEND);
    CHECK_ST(_cua_bk_unreserve(b, NULL, a1 + 2 * MiB, 2 * MiB), CUA_ERR_BACKEND);
    CHECK(live(b, "reservations") == 3);
    CHECK_OK(_cua_bk_unreserve(b, NULL, a1, 4 * MiB));
    CHECK(strcmp(perms_at(a1, p), "") == 0);
    CHECK_ST(_cua_bk_unreserve(b, NULL, a1, 4 * MiB), CUA_ERR_BACKEND);
    CHECK_OK(_cua_bk_unreserve(b, NULL, a2, 2 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, a3, 6 * MiB));
}

/* ---- simulated devices and peers ---------------------------------------------------- */

/* A host backend is simulated device `device`; peers in peer_mask can be
 * given access (set_access with their ordinals), others are refused; the
 * access of each mapping is recorded (_cua_host_access), and kept per mapping. */
TEST(peer_access_is_simulated_per_mapping)
{
    cua_host_config hc;
    cua_host_config_init(&hc);
    CHECK(hc.device == 0 && hc.peer_mask == 0);
    hc.capacity = 64 * MiB;
    hc.device = 2;
    hc.peer_mask = CUA_PEER(1) | CUA_PEER(3);
    cua_backend *b = NULL;
    CHECK_OK(_cua_backend_host_create(&hc, &b));
    CHECK(b->device == 2);
    CHECK_OK(_cua_bk_peer_check(b, 1));
    CHECK_OK(_cua_bk_peer_check(b, 2)); /* its own */
    CHECK_ST(_cua_bk_peer_check(b, 0), CUA_ERR_NOT_SUPPORTED);
    CHECK(strstr(cua_last_error(), "device 0 cannot access") != NULL);
    CHECK_ST(_cua_bk_peer_check(b, 64), CUA_ERR_INVALID_ARG);

    uintptr_t base;
    cua_handle h1, h2;
    uint64_t m = 0;
    CHECK_OK(_cua_bk_reserve(b, NULL, 16 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h1));
    CHECK_OK(_cua_bk_create(b, NULL, 4 * MiB, &h2));
    CHECK_OK(_cua_bk_map(b, NULL, base, 2 * MiB, h1));
    CHECK_OK(_cua_bk_map(b, NULL, base + 2 * MiB, 4 * MiB, h2));
    CHECK_OK(_cua_host_access(b, base, &m));
    CHECK(m == 0); /* mapped, nobody has access yet */
    int own_and_1[] = {2, 1}, with_0[] = {2, 0};
    CHECK_OK(_cua_bk_set_access(b, NULL, base, 6 * MiB, own_and_1, 2));
    CHECK_OK(_cua_host_access(b, base + 5 * MiB, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(1)));
    /* A device that cannot reach device 2: refused, nothing changes. */
    CHECK_ST(_cua_bk_set_access(b, NULL, base, 2 * MiB, with_0, 2), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(_cua_host_access(b, base, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(1)));
    CHECK_ST(_cua_bk_set_access(b, NULL, base, 2 * MiB, own_and_1, 0), CUA_ERR_BACKEND);
    /* Granting more to one mapping leaves the other as it was. */
    int three[] = {2, 3};
    CHECK_OK(_cua_bk_set_access(b, NULL, base, 2 * MiB, three, 2));
    CHECK_OK(_cua_host_access(b, base, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(1) | CUA_PEER(3)));
    CHECK_OK(_cua_host_access(b, base + 2 * MiB, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(1)));
    /* A remap starts with no access again. */
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 2 * MiB, 1));
    CHECK_ST(_cua_host_access(b, base, &m), CUA_ERR_INVALID_ARG);
    CHECK_OK(_cua_bk_map(b, NULL, base, 2 * MiB, h1));
    CHECK_OK(_cua_host_access(b, base, &m));
    CHECK(m == 0);
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 6 * MiB, 2));
    CHECK_OK(_cua_bk_release(b, NULL, h1, 2 * MiB));
    CHECK_OK(_cua_bk_release(b, NULL, h2, 4 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 16 * MiB));

    /* Whole segments: peer access is for all of them, now and later. */
    uintptr_t s1, s2;
    CHECK_OK(_cua_bk_alloc(b, NULL, 2 * MiB, &s1));
    CHECK_OK(_cua_host_access(b, s1, &m));
    CHECK(m == CUA_PEER(2));
    CHECK_ST(_cua_bk_peer_enable(b, NULL, 0), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(_cua_bk_peer_enable(b, NULL, 3));
    CHECK_OK(_cua_bk_alloc(b, NULL, 2 * MiB, &s2));
    CHECK_OK(_cua_host_access(b, s1, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(3)));
    CHECK_OK(_cua_host_access(b, s2 + 1, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(3)));
    CHECK_OK(_cua_bk_free(b, NULL, s1, 2 * MiB));
    CHECK_OK(_cua_bk_free(b, NULL, s2, 2 * MiB));

    /* The fault backend forwards the devices, and fails set_access and peer
     * enabling by set_access's rule, without reaching the inner backend. */
    cua_backend *f = NULL;
    CHECK_OK(_cua_backend_fault_create(b, &f));
    CHECK(f->device == 2);
    CHECK_ST(_cua_bk_peer_check(f, 0), CUA_ERR_NOT_SUPPORTED);
    CHECK_OK(_cua_fault_fail_calls(f, CUA_CALL_SET_ACCESS, 1, 1, CUA_ERR_BACKEND));
    CHECK_ST(_cua_bk_peer_enable(f, NULL, 1), CUA_ERR_BACKEND);
    CHECK_OK(_cua_bk_alloc(f, NULL, 2 * MiB, &s1));
    CHECK_OK(_cua_host_access(b, s1, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(3))); /* 1 was not enabled */
    CHECK_OK(_cua_bk_peer_enable(f, NULL, 1));
    CHECK_OK(_cua_host_access(b, s1, &m));
    CHECK(m == (CUA_PEER(2) | CUA_PEER(3) | CUA_PEER(1)));
    CHECK_OK(_cua_bk_free(f, NULL, s1, 2 * MiB));
    CHECK_OK(_cua_backend_destroy(f));
    CHECK(all_zero(b));
    CHECK_OK(_cua_backend_destroy(b));

    /* A device outside 0..63 is no host backend's. */
    hc.device = 64;
    CHECK_ST(_cua_backend_host_create(&hc, &b), CUA_ERR_INVALID_ARG);
}

/* ---- map, access, data ---------------------------------------------------------------- */

BK_TEST(map_then_set_access)
{
    uintptr_t base;
    cua_handle h;
    CHECK_OK(_cua_bk_reserve(b, NULL, 16 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_create(b, NULL, 4 * MiB, &h));
    CHECK(h != 0);
    CHECK_OK(_cua_bk_map(b, NULL, base, 4 * MiB, h));
    char p[8];
    CHECK(strcmp(perms_at(base, p), "---s") == 0); /* mapped, not accessible yet */
    CHECK_OK(_cua_bk_set_access_own(b, NULL, base, 4 * MiB));
    CHECK(strcmp(perms_at(base, p), "rw-s") == 0);
    fill(base, 4 * MiB, 7);
    CHECK(holds(base, 4 * MiB, 7));
    /* set_access needs every page mapped. */
    CHECK_ST(_cua_bk_set_access_own(b, NULL, base, 6 * MiB), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "not mapped") != NULL);
    CHECK_ST(_cua_bk_set_access_own(b, NULL, base + 8 * MiB, 2 * MiB), CUA_ERR_BACKEND);
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 4 * MiB, 1));
    CHECK(strcmp(perms_at(base, p), "---p") == 0); /* the reservation is back */
    CHECK_OK(_cua_bk_release(b, NULL, h, 4 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 16 * MiB));
}

BK_TEST(map_rules)
{
    uintptr_t base, other;
    cua_handle h, h2;
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &other));
    CHECK_OK(_cua_bk_create(b, NULL, 4 * MiB, &h));
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h2));
    /* An offset into a handle: refused, as on CUDA (the wrapper always passes 0). */
    CHECK_ST(b->ops->map(b, base, 2 * MiB, 2 * MiB, h), CUA_ERR_NOT_SUPPORTED);
    CHECK(strstr(cua_last_error(), "offset") != NULL);
    CHECK_ST(_cua_bk_map(b, NULL, base, 2 * MiB, h), CUA_ERR_BACKEND);     /* not whole */
    CHECK_ST(_cua_bk_map(b, NULL, base, 4 * MiB, h + 99), CUA_ERR_BACKEND); /* no such handle */
    CHECK_ST(_cua_bk_map(b, NULL, base + 4096, 4 * MiB, h), CUA_ERR_BACKEND); /* unaligned */
    CHECK_ST(_cua_bk_map(b, NULL, base + 6 * MiB, 4 * MiB, h), CUA_ERR_BACKEND); /* sticks out */
    CHECK(strstr(cua_last_error(), "reservation") != NULL);
    CHECK_ST(_cua_bk_map(b, NULL, base + 64 * GiB, 4 * MiB, h), CUA_ERR_BACKEND); /* nowhere */
    CHECK(live(b, "mappings") == 0);
    CHECK_OK(_cua_bk_map(b, NULL, base + 2 * MiB, 4 * MiB, h));
    CHECK_ST(_cua_bk_map(b, NULL, base + 4 * MiB, 2 * MiB, h2), CUA_ERR_BACKEND); /* overlaps */
    CHECK(strstr(cua_last_error(), "mapped already") != NULL);
    CHECK_OK(_cua_bk_map(b, NULL, base, 2 * MiB, h2));                   /* adjacent: fine */
    /* A second mapping of a handle (CUDA's virtual aliasing): the same bytes
     * at both places; the handle is released only when both are gone. */
    CHECK_OK(_cua_bk_map(b, NULL, other, 4 * MiB, h));
    int dev = b->device;
    CHECK_OK(_cua_bk_set_access(b, NULL, base + 2 * MiB, 4 * MiB, &dev, 1));
    CHECK_OK(_cua_bk_set_access(b, NULL, other, 4 * MiB, &dev, 1));
    ((volatile unsigned char *)(base + 2 * MiB))[12345] = 0x5a;
    CHECK(((volatile unsigned char *)other)[12345] == 0x5a);
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 6 * MiB, 2));
    CHECK_ST(_cua_bk_release(b, NULL, h, 4 * MiB), CUA_ERR_BACKEND); /* mapped at `other` */
    CHECK(strstr(cua_last_error(), "still mapped") != NULL);
    CHECK_OK(_cua_bk_unmap(b, NULL, other, 4 * MiB, 1));
    CHECK_OK(release_handles(b, h, 4 * MiB, h2, 2 * MiB, (cua_handle)0));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 8 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, other, 8 * MiB));
}

BK_TEST(unmap_whole_mappings_in_batches)
{
    uintptr_t base;
    cua_handle h1, h2, h3;
    CHECK_OK(_cua_bk_reserve(b, NULL, 32 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_create(b, NULL, 4 * MiB, &h1));
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h2));
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h3));
    CHECK_OK(_cua_bk_map(b, NULL, base, 4 * MiB, h1));
    CHECK_OK(_cua_bk_map(b, NULL, base + 4 * MiB, 2 * MiB, h2));
    CHECK_OK(_cua_bk_map(b, NULL, base + 10 * MiB, 2 * MiB, h3));
    /* One set_access over two adjacent mappings. */
    CHECK_OK(_cua_bk_set_access_own(b, NULL, base, 6 * MiB));
    fill(base, 6 * MiB, 3);
    /* Part of a mapping: refused, as cuMemUnmap does. */
    CHECK_ST(_cua_bk_unmap(b, NULL, base, 2 * MiB, 1), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "unmapped whole") != NULL);
    CHECK_ST(_cua_bk_unmap(b, NULL, base + 2 * MiB, 4 * MiB, 1), CUA_ERR_BACKEND);
    /* Pages that are not mapped: refused. */
    CHECK_ST(_cua_bk_unmap(b, NULL, base + 6 * MiB, 2 * MiB, 1), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "not mapped") != NULL);
    CHECK_ST(_cua_bk_unmap(b, NULL, base + 4 * MiB, 8 * MiB, 2), CUA_ERR_BACKEND); /* a gap */
    CHECK_ST(_cua_bk_unmap(b, NULL, base, 3 * MiB, 1), CUA_ERR_BACKEND);           /* unaligned */
    CHECK(live(b, "mappings") == 3 && holds(base, 6 * MiB, 3));
    /* Two adjacent mappings in one call. */
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 6 * MiB, 2));
    CHECK(live(b, "mappings") == 1);
    char p[8];
    CHECK(strcmp(perms_at(base + 4 * MiB, p), "---p") == 0);
    CHECK_ST(_cua_bk_unmap(b, NULL, base, 6 * MiB, 2), CUA_ERR_BACKEND);
    /* The reservation survived: the handles map there again. */
    CHECK_OK(_cua_bk_map(b, NULL, base + 2 * MiB, 4 * MiB, h1));
    CHECK_OK(_cua_bk_unmap(b, NULL, base + 2 * MiB, 4 * MiB, 1));
    CHECK_OK(_cua_bk_unmap(b, NULL, base + 10 * MiB, 2 * MiB, 1));
    CHECK_OK(release_handles(b, h1, 4 * MiB, h2, 2 * MiB, h3, 2 * MiB, (cua_handle)0));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 32 * MiB));
}

BK_TEST(release_and_unreserve_rules)
{
    uintptr_t base;
    cua_handle h;
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h));
    CHECK_OK(_cua_bk_map(b, NULL, base + 2 * MiB, 2 * MiB, h));
    CHECK_ST(_cua_bk_release(b, NULL, h, 2 * MiB), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "still mapped") != NULL);
    CHECK_ST(_cua_bk_unreserve(b, NULL, base, 8 * MiB), CUA_ERR_BACKEND);
    CHECK(strstr(cua_last_error(), "mapping") != NULL);
    CHECK_ST(_cua_bk_release(b, NULL, 0, 2 * MiB), CUA_ERR_BACKEND);
    CHECK_ST(_cua_bk_release(b, NULL, h ^ ((uint64_t)1 << 32), 2 * MiB), CUA_ERR_BACKEND);
    CHECK(live(b, "handles") == 1 && live(b, "reservations") == 1);
    CHECK_OK(_cua_bk_unmap(b, NULL, base + 2 * MiB, 2 * MiB, 1));
    CHECK_OK(_cua_bk_release(b, NULL, h, 2 * MiB));
    CHECK_ST(_cua_bk_release(b, NULL, h, 2 * MiB), CUA_ERR_BACKEND); /* twice */
    /* A new handle in the same slot has a new value: the old one stays dead. */
    cua_handle h2;
    CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h2));
    CHECK(h2 != h);
    CHECK_ST(_cua_bk_map(b, NULL, base, 2 * MiB, h), CUA_ERR_BACKEND);
    CHECK_OK(_cua_bk_release(b, NULL, h2, 2 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 8 * MiB));
}

/* A handle is the memory: mapped elsewhere, it shows the same bytes. */
BK_TEST(contents_follow_the_handle)
{
    uintptr_t r1, r2;
    cua_handle h;
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &r1));
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &r2));
    CHECK_OK(_cua_bk_create(b, NULL, 4 * MiB, &h));
    CHECK_OK(_cua_bk_map(b, NULL, r1, 4 * MiB, h));
    CHECK_OK(_cua_bk_set_access_own(b, NULL, r1, 4 * MiB));
    fill(r1, 4 * MiB, 42);
    CHECK_OK(_cua_bk_unmap(b, NULL, r1, 4 * MiB, 1));
    CHECK_OK(_cua_bk_map(b, NULL, r2 + 4 * MiB, 4 * MiB, h));
    char p[8];
    CHECK(strcmp(perms_at(r2 + 4 * MiB, p), "---s") == 0); /* access is set again after a map */
    CHECK_OK(_cua_bk_set_access_own(b, NULL, r2 + 4 * MiB, 4 * MiB));
    CHECK(holds(r2 + 4 * MiB, 4 * MiB, 42));
    CHECK_OK(_cua_bk_unmap(b, NULL, r2 + 4 * MiB, 4 * MiB, 1));
    CHECK_OK(_cua_bk_release(b, NULL, h, 4 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, r1, 8 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, r2, 8 * MiB));
}

/* ---- capacity ---------------------------------------------------------------------------- */

TEST(capacity_and_reuse)
{
    cua_backend *b = host_make(8 * MiB, 2 * MiB, 0);
    CHECK(b);
    uintptr_t base;
    CHECK_OK(_cua_bk_reserve(b, NULL, 8 * MiB, 2 * MiB, &base));
    cua_handle h[4], x;
    for (int i = 0; i < 4; i++) CHECK_OK(_cua_bk_create(b, NULL, 2 * MiB, &h[i]));
    size_t fr = 1, tot = 0;
    CHECK_OK(_cua_bk_mem_info(b, NULL, &fr, &tot));
    CHECK(fr == 0 && tot == 8 * MiB);
    CHECK_ST(_cua_bk_create(b, NULL, 2 * MiB, &x), CUA_ERR_OUT_OF_MEMORY);
    CHECK(strstr(cua_last_error(), "cannot create a 2.0 MiB handle: 0 B of 8.0 MiB free"));
    CHECK_ST(_cua_bk_create(b, NULL, 16 * MiB, &x), CUA_ERR_OUT_OF_MEMORY);
    CHECK_ST(_cua_bk_create(b, NULL, 3 * MiB, &x), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_create(b, NULL, 0, &x), CUA_ERR_INVALID_ARG);
    /* Two free pages apart: 4 MiB free, but not in one piece. */
    CHECK_OK(_cua_bk_release(b, NULL, h[1], 2 * MiB));
    CHECK_OK(_cua_bk_release(b, NULL, h[3], 2 * MiB));
    CHECK_OK(_cua_bk_mem_info(b, NULL, &fr, &tot));
    CHECK(fr == 4 * MiB);
    CHECK_ST(_cua_bk_create(b, NULL, 4 * MiB, &x), CUA_ERR_OUT_OF_MEMORY);
    CHECK(strstr(cua_last_error(), "4.0 MiB of 8.0 MiB free, but no free range"));
    /* Released pages are reused, and they come back zeroed: the memory went back
     * to the OS (a punched hole), it was not just marked free. */
    CHECK_OK(_cua_bk_map(b, NULL, base, 2 * MiB, h[0]));
    CHECK_OK(_cua_bk_set_access_own(b, NULL, base, 2 * MiB));
    fill(base, 2 * MiB, 9);
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 2 * MiB, 1));
    CHECK_OK(_cua_bk_release(b, NULL, h[0], 2 * MiB));
    CHECK_OK(_cua_bk_release(b, NULL, h[2], 2 * MiB));
    CHECK_OK(_cua_bk_create(b, NULL, 8 * MiB, &x)); /* all of it, in one piece again */
    CHECK_OK(_cua_bk_map(b, NULL, base, 8 * MiB, x));
    CHECK_OK(_cua_bk_set_access_own(b, NULL, base, 8 * MiB));
    const unsigned char *m = (const unsigned char *)base;
    for (size_t i = 0; i < 8 * MiB; i += 4096) CHECK(m[i] == 0);
    CHECK_OK(_cua_bk_mem_info(b, NULL, &fr, &tot));
    CHECK(fr == 0);
    CHECK_OK(_cua_bk_unmap(b, NULL, base, 8 * MiB, 1));
    CHECK_OK(_cua_bk_release(b, NULL, x, 8 * MiB));
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, 8 * MiB));
    CHECK(all_zero(b));
    CHECK_OK(_cua_backend_destroy(b));
}

/* First fit against a model of the pages, over several bitmap words; every live
 * handle, mapped in its own slot, keeps its bytes (no two handles overlap). */
TEST(first_fit_model)
{
    enum { PAGES = 200, SLOTS = 24, MAXP = 40 };
    const size_t g = 4096;
    cua_backend *b = host_make(PAGES * g, g, 0);
    CHECK(b);
    uintptr_t base;
    CHECK_OK(_cua_bk_reserve(b, NULL, (size_t)SLOTS * MAXP * g, g, &base));
    unsigned char used[PAGES] = {0};
    struct { cua_handle h; size_t first, n; } s[SLOTS] = {{0, 0, 0}};
    uint64_t rng = 12345;
    for (int op = 0; op < 3000; op++) {
        int i = (int)(test_rand(&rng) % SLOTS);
        uintptr_t at = base + (size_t)i * MAXP * g;
        if (s[i].h) {
            CHECK(holds(at, s[i].n * g, (unsigned char)i));
            CHECK_OK(_cua_bk_unmap(b, NULL, at, s[i].n * g, 1));
            CHECK_OK(_cua_bk_release(b, NULL, s[i].h, s[i].n * g));
            memset(used + s[i].first, 0, s[i].n);
            s[i].h = 0;
            continue;
        }
        size_t n = 1 + (size_t)(test_rand(&rng) % MAXP), first = PAGES;
        for (size_t p = 0, run = 0; p < PAGES && first == PAGES; p++) {
            run = used[p] ? 0 : run + 1;
            if (run == n) first = p + 1 - n;
        }
        cua_status st = _cua_bk_create(b, NULL, n * g, &s[i].h);
        CHECK_ST(st, first < PAGES ? CUA_OK : CUA_ERR_OUT_OF_MEMORY);
        if (st != CUA_OK) {
            s[i].h = 0;
            continue;
        }
        memset(used + first, 1, n);
        s[i].first = first;
        s[i].n = n;
        CHECK_OK(_cua_bk_map(b, NULL, at, n * g, s[i].h));
        CHECK_OK(_cua_bk_set_access_own(b, NULL, at, n * g));
        fill(at, n * g, (unsigned char)i);
    }
    size_t fr, tot, model_free = 0;
    for (int p = 0; p < PAGES; p++) model_free += !used[p];
    CHECK_OK(_cua_bk_mem_info(b, NULL, &fr, &tot));
    CHECK(fr == model_free * g && tot == PAGES * g);
    for (int i = 0; i < SLOTS; i++) {
        if (!s[i].h) continue;
        uintptr_t at = base + (size_t)i * MAXP * g;
        CHECK(holds(at, s[i].n * g, (unsigned char)i));
        CHECK_OK(_cua_bk_unmap(b, NULL, at, s[i].n * g, 1));
        CHECK_OK(_cua_bk_release(b, NULL, s[i].h, s[i].n * g));
    }
    CHECK_OK(_cua_bk_unreserve(b, NULL, base, (size_t)SLOTS * MAXP * g));
    CHECK(all_zero(b));
    CHECK_OK(_cua_backend_destroy(b));
}

/* ---- events ---------------------------------------------------------------------------------- */

TEST(events_manual)
{
    cua_backend *b = host_make(64 * MiB, 2 * MiB, 1);
    CHECK(b);
    cua_event e1, e2, e3;
    CHECK_OK(_cua_bk_event_create(b, NULL, &e1));
    CHECK_OK(_cua_bk_event_create(b, NULL, &e2));
    CHECK_OK(_cua_bk_event_create(b, NULL, &e3));
    CHECK(e1 && e2 && e1 != e2);
    CHECK_OK(_cua_bk_event_query(b, NULL, e1)); /* never recorded: complete, as on CUDA */
    CHECK_OK(_cua_bk_event_record(b, NULL, e1, 7));
    _cua_error(CUA_ERR_IO, "marker");
    CHECK_ST(_cua_bk_event_query(b, NULL, e1), CUA_ERR_BUSY);
    CHECK(strcmp(cua_last_error(), "marker") == 0); /* BUSY sets no message */
    CHECK_OK(_cua_host_stream_complete(b, 7));
    CHECK_OK(_cua_bk_event_query(b, NULL, e1));
    /* Recorded again: in flight again. Work on another stream is not completed. */
    CHECK_OK(_cua_bk_event_record(b, NULL, e1, 7));
    CHECK_OK(_cua_bk_event_record(b, NULL, e2, 7));
    CHECK_OK(_cua_bk_event_record(b, NULL, e3, 8));
    CHECK_ST(_cua_bk_event_query(b, NULL, e1), CUA_ERR_BUSY);
    /* Synchronising e1 completes stream 7 up to e1, not the later e2. */
    CHECK_OK(_cua_bk_event_sync(b, NULL, e1));
    CHECK_OK(_cua_bk_event_query(b, NULL, e1));
    CHECK_ST(_cua_bk_event_query(b, NULL, e2), CUA_ERR_BUSY);
    CHECK_OK(_cua_bk_stream_sync(b, NULL, 7));
    CHECK_OK(_cua_bk_event_query(b, NULL, e2));
    CHECK_ST(_cua_bk_event_query(b, NULL, e3), CUA_ERR_BUSY);
    CHECK_OK(_cua_bk_stream_sync(b, NULL, 12345)); /* a stream never seen: nothing to do */
    CHECK_OK(_cua_host_stream_complete(b, 8));
    CHECK_OK(_cua_bk_event_query(b, NULL, e3));
    /* Unknown and destroyed events. */
    CHECK_ST(_cua_bk_event_query(b, NULL, 0), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_event_record(b, NULL, e3 + 1000, 1), CUA_ERR_INVALID_ARG);
    CHECK_OK(_cua_bk_event_destroy(b, NULL, e3));
    CHECK_ST(_cua_bk_event_query(b, NULL, e3), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_event_sync(b, NULL, e3), CUA_ERR_INVALID_ARG);
    CHECK_ST(_cua_bk_event_destroy(b, NULL, e3), CUA_ERR_INVALID_ARG);
    CHECK(live(b, "events") == 2);
    CHECK_OK(_cua_bk_event_destroy(b, NULL, e1));
    CHECK_OK(_cua_bk_event_destroy(b, NULL, e2));
    CHECK(all_zero(b));
    CHECK_OK(_cua_backend_destroy(b));
}

BK_TEST(events_auto)
{
    cua_event e;
    CHECK_OK(_cua_bk_event_create(b, NULL, &e));
    CHECK_OK(_cua_bk_event_record(b, NULL, e, 3));
    CHECK_OK(_cua_bk_event_query(b, NULL, e));
    CHECK_OK(_cua_bk_event_sync(b, NULL, e));
    CHECK_OK(_cua_bk_event_destroy(b, NULL, e));
}

/* ---- counters and destroy ---------------------------------------------------------------- */

BK_TEST(counters_and_destroy)
{
    cua_callstats cs;
    memset(&cs, 0, sizeof cs);
    uintptr_t base;
    cua_handle h;
    cua_event e;
    size_t fr, tot;
    CHECK_OK(_cua_bk_reserve(b, &cs, 8 * MiB, 2 * MiB, &base));
    CHECK_OK(_cua_bk_create(b, &cs, 4 * MiB, &h));
    CHECK_OK(_cua_bk_map(b, &cs, base, 4 * MiB, h));
    CHECK_OK(_cua_bk_set_access_own(b, &cs, base, 4 * MiB));
    CHECK_OK(_cua_bk_mem_info(b, &cs, &fr, &tot));
    CHECK_OK(_cua_bk_event_create(b, &cs, &e));
    CHECK_OK(_cua_bk_event_record(b, &cs, e, 0));
    CHECK_OK(_cua_bk_event_query(b, &cs, e));
    CHECK_OK(_cua_bk_event_sync(b, &cs, e));
    CHECK_OK(_cua_bk_stream_sync(b, &cs, 0));
    uintptr_t seg;
    CHECK_OK(_cua_bk_alloc(b, &cs, 2 * MiB, &seg));
    memset((void *)seg, 0x5a, 2 * MiB); /* usable at once, no set_access */
    CHECK(live(b, "reservations") == 1 && live(b, "handles") == 2 && live(b, "mappings") == 1 &&
          live(b, "events") == 1 && live(b, "handle_bytes") == (int64_t)(6 * MiB));
    CHECK(fr == 60 * MiB && tot == 64 * MiB);
    CHECK_OK(_cua_bk_free(b, &cs, seg, 2 * MiB));
    /* Staging memory, a copy stream, and copies both ways through it. */
    void *stage;
    cua_stream cp;
    CHECK_OK(_cua_bk_host_alloc(b, &cs, 1 * MiB, &stage));
    CHECK_OK(_cua_bk_stream_create(b, &cs, &cp));
    CHECK(live(b, "host_buffers") == 1 && live(b, "host_bytes") == (int64_t)MiB &&
          live(b, "streams") == 1);
    memset(stage, 0x3c, 1 * MiB);
    CHECK_OK(_cua_bk_copy_to_device(b, &cs, base + 1000, stage, 1 * MiB, cp));
    CHECK(((unsigned char *)base)[1000] == 0x3c && ((unsigned char *)base)[1000 + MiB - 1] == 0x3c);
    memset((void *)(base + 1000), 0x77, 10);
    CHECK_OK(_cua_bk_copy_to_host(b, &cs, stage, base + 1000, 1 * MiB, cp));
    CHECK(((unsigned char *)stage)[0] == 0x77 && ((unsigned char *)stage)[10] == 0x3c);
    /* A fill (the poison of freed blocks), in mapped memory only. */
    CHECK_OK(_cua_bk_fill(b, &cs, base + 100, 50, 0xde, cp));
    CHECK(((unsigned char *)base)[100] == 0xde && ((unsigned char *)base)[149] == 0xde &&
          ((unsigned char *)base)[150] != 0xde);
    /* Outside the mapped 4 MiB: refused, not a crash. */
    CHECK_ST(_cua_bk_copy_to_host(b, &cs, stage, base + 4 * MiB - 10, 100, cp), CUA_ERR_BACKEND);
    CHECK_ST(_cua_backend_destroy(b), CUA_ERR_BUSY);
    CHECK(strstr(cua_last_error(), "1 host buffer(s), 1 stream(s)") != NULL);
    CHECK_OK(_cua_bk_host_free(b, &cs, stage, 1 * MiB));
    CHECK_OK(_cua_bk_stream_destroy(b, &cs, cp));
    /* Something alive: destroy refuses and releases nothing. */
    CHECK_ST(_cua_backend_destroy(b), CUA_ERR_BUSY);
    CHECK(strstr(cua_last_error(), "1 reservation(s)") != NULL);
    CHECK_OK(_cua_bk_event_destroy(b, &cs, e));
    CHECK_OK(_cua_bk_unmap(b, &cs, base, 4 * MiB, 1));
    CHECK_OK(_cua_bk_release(b, &cs, h, 4 * MiB));
    CHECK_ST(_cua_backend_destroy(b), CUA_ERR_BUSY);
    CHECK_OK(_cua_bk_unreserve(b, &cs, base, 8 * MiB));
    for (int k = 0; k < CUA_CALL_COUNT; k++) {
        uint64_t want = k == CUA_CALL_COPY_TO_HOST ? 2 : 1;
        CHECK(atomic_load(&b->calls[k]) == want && cs.calls[k] == want);
        CHECK(cs.call_ns[k] == atomic_load(&b->call_ns[k]));
    }
    CHECK(atomic_load(&b->failures) == 1); /* the refused copy */
    CHECK_ST(_cua_bk_unreserve(b, &cs, base, 8 * MiB), CUA_ERR_BACKEND);
    CHECK(atomic_load(&b->failures) == 2 && cs.calls[CUA_CALL_UNRESERVE] == 2);
}

/* Arenas on several threads share one backend (small pages: many calls, little memory). */
struct worker { cua_backend *b; int id; int ok; };

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const size_t g = 64 * KiB;
    uintptr_t base;
    w->ok = 0;
    if (_cua_bk_reserve(w->b, NULL, 16 * g, g, &base) != CUA_OK) return NULL;
    for (int i = 0; i < 500; i++) {
        cua_handle h;
        cua_event e;
        size_t size = (size_t)(1 + i % 3) * g;
        uintptr_t at = base + (size_t)(i % 2) * 8 * g;
        unsigned char seed = (unsigned char)(w->id * 31 + i);
        if (_cua_bk_create(w->b, NULL, size, &h) != CUA_OK) return NULL;
        if (_cua_bk_map(w->b, NULL, at, size, h) != CUA_OK) return NULL;
        if (_cua_bk_set_access_own(w->b, NULL, at, size) != CUA_OK) return NULL;
        fill(at, size, seed);
        if (!holds(at, size, seed)) return NULL;
        if (_cua_bk_event_create(w->b, NULL, &e) != CUA_OK) return NULL;
        if (_cua_bk_event_record(w->b, NULL, e, (cua_stream)w->id) != CUA_OK) return NULL;
        if (_cua_bk_event_query(w->b, NULL, e) != CUA_OK) return NULL;
        if (_cua_bk_event_destroy(w->b, NULL, e) != CUA_OK) return NULL;
        if (_cua_bk_unmap(w->b, NULL, at, size, 1) != CUA_OK) return NULL;
        if (_cua_bk_release(w->b, NULL, h, size) != CUA_OK) return NULL;
    }
    w->ok = _cua_bk_unreserve(w->b, NULL, base, 16 * g) == CUA_OK;
    return NULL;
}

TEST(threads_share_a_backend)
{
    cua_backend *b = host_make(64 * MiB, 64 * KiB, 0);
    CHECK(b);
    enum { N = 4 };
    struct worker w[N];
    for (int i = 0; i < N; i++) w[i] = (struct worker){b, i, 0};
    CHECK(test_threads(N, worker_main, w, sizeof w[0]));
    for (int i = 0; i < N; i++) CHECK(w[i].ok);
    CHECK(atomic_load(&b->calls[CUA_CALL_MAP]) == N * 500);
    CHECK_OK(emptied(b));
}
