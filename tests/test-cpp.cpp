/*
 * test-cpp.cpp - include/cuarena.hpp on the host backend, built with
 * -fno-exceptions -fno-rtti: arena (create from a config and from a name,
 * move, destroy), allocation (move, free in the destructor, release),
 * result<T>, scoped_current, and device_allocator<T> in std::vector and
 * std::map (on an arena, and by default on the current arena). Each case ends its checks with the arena's checker; the program
 * ends with "N passed, N failed".
 */
#include "cuarena.hpp"
#include "cuarena_backend.h"
#include "test.hpp"

#include <cstdio>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

static const std::size_t MiB = std::size_t(1) << 20;

/* A host backend the test owns, so that leaks show in its counters. */
struct host {
    cua_backend *bk = nullptr;
    host() { cua_backend_host_create(nullptr, &bk); }
    ~host() { cua_backend_destroy(bk); }
    host(const host &) = delete;
    host &operator=(const host &) = delete;
    cua_arena_config config(const char *name) const
    {
        cua_arena_config cfg;
        cua_arena_config_init(&cfg);
        cfg.name = name;
        cfg.backend = bk;
        return cfg;
    }
    bool empty() const
    {
        cua_backend_stats s;
        return cua_backend_get_stats(bk, &s) == CUA_OK && s.handles == 0 && s.mappings == 0 &&
               s.reservations == 0;
    }
};

static std::size_t live(const cuarena::arena &a)
{
    cua_stats s;
    return a.stats(&s) == CUA_OK ? std::size_t(s.live_bytes) : std::size_t(-1);
}

static void arena_lifetime()
{
    host h;
    CHECK(h.bk);
    {
        cua_status st = CUA_ERR_CORRUPT;
        cuarena::arena a = cuarena::arena::create(h.config("cpp"), &st);
        CHECK(st == CUA_OK && a && a.get());
        CHECK(std::strcmp(a.name(), "cpp") == 0);
        cuarena::arena b(std::move(a)); /* move construction */
        CHECK(!a && b);
        cuarena::arena c;
        c = std::move(b); /* move assignment */
        CHECK(!b && c);
        CHECK(c.check() == CUA_OK);
    } /* destroyed here */
    CHECK(h.empty());

    /* result<arena>: success and failure */
    cuarena::result<cuarena::arena> r = cuarena::arena::make(h.config("made"));
    CHECK(r.ok() && r.status() == CUA_OK && r->get());
    cuarena::arena owned = r.take();
    CHECK(owned && !r.value());
    cua_arena_config bad = h.config("bad");
    bad.chunk_max = 12345; /* not a multiple of the granularity */
    cuarena::result<cuarena::arena> r2 = cuarena::arena::make(bad);
    CHECK(!r2 && r2.status() == CUA_ERR_INVALID_ARG && !r2.value());
    cua_status st = CUA_OK;
    cuarena::arena none = cuarena::arena::create(bad, &st);
    CHECK(!none && st == CUA_ERR_INVALID_ARG);
    CHECK(std::strcmp(cuarena::status_name(st), "CUA_ERR_INVALID_ARG") == 0);

    /* destroy(0) refuses while a block is live and keeps the arena */
    {
        cuarena::allocation blk = owned.alloc(MiB).take();
        CHECK(blk);
        CHECK(owned.destroy(0) == CUA_ERR_BUSY && owned);
    }
    CHECK(owned.destroy(0) == CUA_OK && !owned);
    CHECK(owned.destroy(0) == CUA_OK); /* empty: nothing to do */
    CHECK(h.empty());

    /* from a name and an option string (a host backend of its own) */
    cuarena::arena named = cuarena::arena::create("named", "limit:64M,backend:host", &st);
    CHECK(st == CUA_OK && named && std::strcmp(named.name(), "named") == 0);
    cuarena::result<cuarena::arena> r3 = cuarena::arena::make("badconf", "limit:banana");
    CHECK(r3.status() == CUA_ERR_CONFIG);
    cua_arena *raw = named.release();
    CHECK(!named && cua_arena_destroy(raw, 0) == CUA_OK);
}

static void allocation_lifetime()
{
    host h;
    cuarena::arena a = cuarena::arena::make(h.config("alloc")).take();
    CHECK(a);
    {
        cuarena::result<cuarena::allocation> r = a.alloc(3 * MiB, 0);
        CHECK(r && r->get() && r->size() == 3 * MiB);
        cuarena::allocation x = r.take();
        std::memset(x.get(), 0x5a, x.size()); /* host backend: host memory */
        CHECK(x.as<unsigned char>()[x.size() - 1] == 0x5a);
        CHECK(live(a) == 3 * MiB);
        cuarena::allocation y(std::move(x));
        CHECK(!x && y && live(a) == 3 * MiB);
        cuarena::allocation z = a.alloc(MiB).take();
        z = std::move(y); /* z's old block is freed */
        CHECK(!y && z.size() == 3 * MiB && live(a) == 3 * MiB);
        CHECK(z.record_stream(7) == CUA_OK);
    } /* freed here */
    CHECK(live(a) == 0 && a.check() == CUA_OK);

    cua_status st = CUA_OK;
    cuarena::allocation zero = a.alloc(0, 0, &st); /* size 0: a status, no block */
    CHECK(!zero && st == CUA_ERR_INVALID_ARG);
    CHECK(a.set_limit(4 * MiB) == CUA_OK);
    cuarena::result<cuarena::allocation> big = a.alloc(64 * MiB);
    CHECK(big.status() == CUA_ERR_LIMIT && !big.value());

    cuarena::allocation w = a.alloc(MiB).take();
    void *p = w.release();
    CHECK(!w && live(a) == MiB);
    CHECK(cua_free(p) == CUA_OK);
    cuarena::allocation v = a.alloc(MiB).take();
    CHECK(v.free() == CUA_OK && !v && v.free() == CUA_OK);

    std::size_t released = 0;
    CHECK(a.trim(0, &released) == CUA_OK && released > 0);
    CHECK(a.check() == CUA_OK);

    /* an allocation that outlives its arena: its free is answered, not a crash */
    cuarena::allocation orphan = a.alloc(MiB).take();
    CHECK(orphan);
    a.reset();
    CHECK(!a && orphan.free() == CUA_ERR_DESTROYED);
    CHECK(h.empty());
}

static void current_arena()
{
    host h;
    cuarena::arena a = cuarena::arena::make(h.config("current")).take();
    CHECK(a);
    {
        cuarena::scoped_current cur(a);
        CHECK(cur.ok());
        cua_arena *now = nullptr;
        CHECK(cua_arena_current(&now) == CUA_OK && now == a.get());
        void *p = nullptr;
        CHECK(cua_malloc(MiB, 0, &p) == CUA_OK);
        cuarena::allocation owned(p, MiB);
        CHECK(live(a) == MiB);
        /* a default device_allocator takes from the current arena */
        std::vector<long, cuarena::device_allocator<long>> v(1000, 7L);
        CHECK(v[999] == 7L && live(a) == MiB + 1000 * sizeof(long));
        CHECK((cuarena::device_allocator<long>() == cuarena::device_allocator<int>()));
    }
    cua_arena *now = a.get();
    CHECK(cua_arena_current(&now) == CUA_OK && now == nullptr);
    CHECK(live(a) == 0);
}

struct pair3 {
    double x, y, z;
};

static void allocator_in_containers()
{
    host h;
    cuarena::arena a = cuarena::arena::make(h.config("containers")).take();
    CHECK(a);
    {
        cuarena::device_allocator<int> alloc(a, /*stream*/ 3);
        std::vector<int, cuarena::device_allocator<int>> v(alloc);
        for (int i = 0; i < 100000; i++) v.push_back(i);
        CHECK(v.size() == 100000 && v[99999] == 99999);
        CHECK(live(a) >= 100000 * sizeof(int));
        void *base = nullptr;
        cua_arena *owner = nullptr;
        CHECK(cua_ptr_info(v.data(), &owner, &base, nullptr) == CUA_OK && owner == a.get() &&
              base == v.data());

        /* rebinding: a node container allocates nodes, not pair3 */
        cuarena::device_allocator<std::pair<const int, pair3>> palloc(alloc);
        CHECK(palloc == alloc && !(palloc != alloc));
        std::map<int, pair3, std::less<int>, cuarena::device_allocator<std::pair<const int, pair3>>>
            m(palloc);
        for (int i = 0; i < 1000; i++) m[i] = pair3{double(i), 0, 0};
        CHECK(m.size() == 1000 && m[999].x == 999.0);

        /* try_allocate: a status, no abort */
        cua_status st = CUA_OK;
        CHECK(alloc.try_allocate(std::size_t(-1) / 2, &st) == nullptr &&
              st == CUA_ERR_INVALID_ARG);
        int *q = alloc.allocate(16);
        CHECK(q);
        alloc.deallocate(q, 16);

        cuarena::device_allocator<int> other(a, /*stream*/ 4);
        CHECK(other != alloc);
    }
    CHECK(live(a) == 0 && a.check() == CUA_OK);
}

int main()
{
    static const test_case cases[] = {
        {"arena_lifetime", arena_lifetime},
        {"allocation_lifetime", allocation_lifetime},
        {"current_arena", current_arena},
        {"allocator_in_containers", allocator_in_containers},
    };
    return run_cases(cases);
}
