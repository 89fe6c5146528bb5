/*
 * cuarena.hpp - an optional, header-only C++ layer over cuarena.h (C++11 or
 * later). It throws nothing and needs no RTTI: it compiles with
 * -fno-exceptions -fno-rtti, and every failure is a cua_status, as in C.
 *
 *   cuarena::arena          owns a cua_arena: created from a cua_arena_config
 *                           or a name and option string, move-only, destroyed
 *                           in its destructor
 *   cuarena::allocation     owns one block (a device pointer): move-only,
 *                           freed in its destructor
 *   cuarena::result<T>      a value or a cua_status (what create() and
 *                           alloc() return), like a small std::expected
 *   cuarena::device_allocator<T>
 *                           an allocator whose allocate() returns device
 *                           pointers from an arena, for containers that keep
 *                           their elements on the device and never touch them
 *                           from the host (thrust::device_vector-like
 *                           containers, a pool of device buffers). A host-side
 *                           container such as std::vector would dereference
 *                           them on the host: that works only on the host
 *                           backend (as in the tests), never with CUDA memory.
 *   cuarena::scoped_current makes an arena the thread's current arena (what
 *                           cua_malloc() and a default device_allocator use)
 *                           for a scope.
 *
 *   cua_status st;
 *   cuarena::arena a = cuarena::arena::create("kv-cache", "limit:8G", &st);
 *   if (!a) { fprintf(stderr, "%s\n", cuarena::last_error()); return 1; }
 *   cuarena::result<cuarena::allocation> r = a.alloc(64 << 20, stream);
 *   if (!r) return r.status();
 *   cuarena::allocation buf = r.take();       // freed when buf goes out of scope
 *
 * Objects of this header free or destroy what they own in their destructors
 * and ignore the status there (it stays in cua_last_error()); call free() or
 * destroy() first where the status matters.
 */
#ifndef CUARENA_HPP
#define CUARENA_HPP

#include "cuarena.h"

#include <cstddef>
#include <cstdlib>
#include <limits>
#include <new>
#include <type_traits>
#include <utility>

namespace cuarena {

/** The calling thread's last error message (cua_last_error()); never NULL. */
inline const char *last_error() noexcept { return cua_last_error(); }

/** The name of a status, e.g. "CUA_ERR_LIMIT" (cua_status_name()). */
inline const char *status_name(cua_status st) noexcept { return cua_status_name(st); }

/**
 * A value of type T, or the status that says why there is none. T must be
 * default-constructible and movable (arena and allocation are).
 */
template <class T>
class result {
public:
    /** A failure: `st` must not be CUA_OK. */
    result(cua_status st) noexcept : status_(st), value_() {}
    /** A success holding `v`. */
    result(T &&v) noexcept : status_(CUA_OK), value_(std::move(v)) {}

    /** CUA_OK when there is a value. */
    cua_status status() const noexcept { return status_; }
    bool ok() const noexcept { return status_ == CUA_OK; }
    explicit operator bool() const noexcept { return ok(); }

    /** The value (a default-constructed T on failure). */
    T &value() noexcept { return value_; }
    const T &value() const noexcept { return value_; }
    T *operator->() noexcept { return &value_; }
    const T *operator->() const noexcept { return &value_; }
    T &operator*() noexcept { return value_; }
    /** Move the value out (ownership of an arena or allocation goes with it). */
    T take() noexcept { return std::move(value_); }

private:
    cua_status status_;
    T value_;
};

/** One block of device memory, freed (cua_free) when this object dies. */
class allocation {
public:
    /** Holds nothing. */
    allocation() noexcept = default;
    /** Take ownership of `ptr`, a block of `size` bytes from cuarena. */
    allocation(void *ptr, std::size_t size) noexcept : ptr_(ptr), size_(size) {}
    allocation(allocation &&o) noexcept : ptr_(o.ptr_), size_(o.size_)
    {
        o.ptr_ = nullptr;
        o.size_ = 0;
    }
    allocation &operator=(allocation &&o) noexcept
    {
        if (this != &o) {
            reset();
            ptr_ = o.ptr_;
            size_ = o.size_;
            o.ptr_ = nullptr;
            o.size_ = 0;
        }
        return *this;
    }
    allocation(const allocation &) = delete;
    allocation &operator=(const allocation &) = delete;
    ~allocation() { reset(); }

    /** The device pointer (NULL when empty). */
    void *get() const noexcept { return ptr_; }
    /** The pointer as T* (a device pointer: do not dereference it on the host with CUDA). */
    template <class T>
    T *as() const noexcept { return static_cast<T *>(ptr_); }
    /** Bytes asked for. */
    std::size_t size() const noexcept { return size_; }
    explicit operator bool() const noexcept { return ptr_ != nullptr; }

    /** Give up ownership: the caller frees the returned pointer with cua_free(). */
    void *release() noexcept
    {
        void *p = ptr_;
        ptr_ = nullptr;
        size_ = 0;
        return p;
    }
    /** Free the block now and say how it went (CUA_OK when empty). */
    cua_status free() noexcept
    {
        void *p = release();
        return p ? cua_free(p) : CUA_OK;
    }
    /** Free the block now, ignoring the status. */
    void reset() noexcept { (void)free(); }
    /** Record that the block is also used on `stream` (cua_record_stream()). */
    cua_status record_stream(cua_stream stream) const noexcept
    {
        return cua_record_stream(ptr_, stream);
    }

private:
    void *ptr_ = nullptr;
    std::size_t size_ = 0;
};

/**
 * An arena, destroyed when this object dies (cua_arena_destroy with
 * CUA_DESTROY_FORCE: blocks still live are freed with it, and an allocation
 * that outlives its arena gets CUA_ERR_DESTROYED from its free, never a
 * crash). Call destroy(0) first to be told about live blocks instead.
 */
class arena {
public:
    /** Holds nothing. */
    arena() noexcept = default;
    /** Take ownership of an arena handle. */
    explicit arena(cua_arena *a) noexcept : a_(a) {}
    arena(arena &&o) noexcept : a_(o.a_) { o.a_ = nullptr; }
    arena &operator=(arena &&o) noexcept
    {
        if (this != &o) {
            reset();
            a_ = o.a_;
            o.a_ = nullptr;
        }
        return *this;
    }
    arena(const arena &) = delete;
    arena &operator=(const arena &) = delete;
    ~arena() { reset(); }

    /** Create an arena from `cfg` (cua_arena_create()); the status or the arena. */
    static result<arena> make(const cua_arena_config &cfg) noexcept
    {
        cua_arena *a = nullptr;
        cua_status st = cua_arena_create(&cfg, &a);
        if (st != CUA_OK) return result<arena>(st);
        return result<arena>(arena(a));
    }
    /** Create an arena named `name` from the defaults, CUARENA_CONF and
     *  `conf` (cua_arena_create_conf(); either may be NULL). */
    static result<arena> make(const char *name, const char *conf = nullptr) noexcept
    {
        cua_arena *a = nullptr;
        cua_status st = cua_arena_create_conf(name, conf, &a);
        if (st != CUA_OK) return result<arena>(st);
        return result<arena>(arena(a));
    }
    /** As make(cfg); the status goes to *st (may be NULL), an empty arena on failure. */
    static arena create(const cua_arena_config &cfg, cua_status *st) noexcept
    {
        result<arena> r = make(cfg);
        if (st) *st = r.status();
        return r.take();
    }
    /** As make(name, conf); the status goes to *st (may be NULL). */
    static arena create(const char *name, const char *conf, cua_status *st) noexcept
    {
        result<arena> r = make(name, conf);
        if (st) *st = r.status();
        return r.take();
    }

    /** The handle, for the C API (NULL when empty). */
    cua_arena *get() const noexcept { return a_; }
    explicit operator bool() const noexcept { return a_ != nullptr; }
    /** Give up ownership: the caller destroys the handle. */
    cua_arena *release() noexcept
    {
        cua_arena *a = a_;
        a_ = nullptr;
        return a;
    }
    /** Destroy the arena now with `flags` (0: refuse while blocks are live,
     *  CUA_ERR_BUSY, and keep owning it). CUA_OK when empty. */
    cua_status destroy(unsigned flags = 0) noexcept
    {
        if (!a_) return CUA_OK;
        cua_status st = cua_arena_destroy(a_, flags);
        if (st != CUA_ERR_BUSY) a_ = nullptr; /* also on a failed release: it is gone */
        return st;
    }
    /** Destroy the arena now, freeing live blocks, ignoring the status. */
    void reset() noexcept { (void)destroy(CUA_DESTROY_FORCE); }

    /** Allocate `size` bytes on `stream`: an owning allocation, or the status. */
    result<allocation> alloc(std::size_t size, cua_stream stream = 0) noexcept
    {
        void *p = nullptr;
        cua_status st = cua_arena_alloc(a_, size, stream, &p);
        if (st != CUA_OK) return result<allocation>(st);
        return result<allocation>(allocation(p, size));
    }
    /** As alloc(); the status goes to *st (may be NULL), an empty allocation on failure. */
    allocation alloc(std::size_t size, cua_stream stream, cua_status *st) noexcept
    {
        result<allocation> r = alloc(size, stream);
        if (st) *st = r.status();
        return r.take();
    }

    /** cua_arena_trim(): unmap cached pages above keep_bytes; *released may be NULL. */
    cua_status trim(std::size_t keep_bytes = 0, std::size_t *released = nullptr) noexcept
    {
        return cua_arena_trim(a_, keep_bytes, released);
    }
    /** cua_arena_get_stats(). */
    cua_status stats(cua_stats *out) const noexcept { return cua_arena_get_stats(a_, out); }
    /** cua_arena_set_limit(). */
    cua_status set_limit(std::size_t limit) noexcept { return cua_arena_set_limit(a_, limit); }
    /** cua_arena_offload(). */
    cua_status offload() noexcept { return cua_arena_offload(a_); }
    /** cua_arena_restore(). */
    cua_status restore() noexcept { return cua_arena_restore(a_); }
    /** cua_arena_check(). */
    cua_status check() const noexcept { return cua_arena_check(a_); }
    /** The arena's name ("" when empty or destroyed). */
    const char *name() const noexcept
    {
        const char *n = nullptr;
        return cua_arena_name(a_, &n) == CUA_OK && n ? n : "";
    }

private:
    cua_arena *a_ = nullptr;
};

/**
 * Makes an arena the calling thread's current arena (cua_arena_push) for a
 * scope: cua_malloc() and PyTorch's hook allocate from it until the scope ends.
 */
class scoped_current {
public:
    explicit scoped_current(cua_arena *a) noexcept : pushed_(cua_arena_push(a) == CUA_OK) {}
    explicit scoped_current(const arena &a) noexcept : scoped_current(a.get()) {}
    ~scoped_current()
    {
        if (pushed_) (void)cua_arena_pop();
    }
    scoped_current(const scoped_current &) = delete;
    scoped_current &operator=(const scoped_current &) = delete;
    /** Whether the push worked (cua_last_error() says why not). */
    bool ok() const noexcept { return pushed_; }

private:
    bool pushed_;
};

/**
 * An allocator (the C++ Allocator requirements) that takes memory from a
 * cuarena arena on one stream. allocate() returns device pointers: it is meant
 * for containers that keep device memory and do not dereference it on the
 * host - thrust-like device vectors, pools of device buffers - or, on the host
 * backend, for any container (tests). It does not own the arena; the arena
 * must outlive every block. Two allocators are equal when they use the same
 * arena and stream (memory from any of them can be freed by any other: cua_free
 * finds the arena by address). A default-constructed one allocates with
 * cua_malloc(): from the thread's current arena at the time of each allocate().
 *
 * A failed allocate() throws std::bad_alloc where exceptions are enabled and
 * calls std::abort() under -fno-exceptions (as the standard library does
 * then); try_allocate() reports the status instead.
 */
template <class T>
class device_allocator {
public:
    using value_type = T;
    using size_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using propagate_on_container_move_assignment = std::true_type;
    using propagate_on_container_swap = std::true_type;
    template <class U>
    struct rebind {
        using other = device_allocator<U>;
    };

    /** Allocate with cua_malloc() on stream 0: from the calling thread's current
     *  arena at each allocate() (scoped_current), else device 0's default arena. */
    device_allocator() noexcept : arena_(nullptr), stream_(0) {}
    /** Allocate from `a` (a raw handle, not owned) on `stream`. */
    explicit device_allocator(cua_arena *a, cua_stream stream = 0) noexcept
        : arena_(a), stream_(stream) {}
    /** Allocate from `a` (not owned: it must outlive the allocator's blocks). */
    explicit device_allocator(const arena &a, cua_stream stream = 0) noexcept
        : arena_(a.get()), stream_(stream) {}
    template <class U>
    device_allocator(const device_allocator<U> &o) noexcept
        : arena_(o.arena_handle()), stream_(o.stream()) {}

    /** Room for n objects; NULL with *st set on failure (st may be NULL). */
    T *try_allocate(std::size_t n, cua_status *st) const noexcept
    {
        if (n == 0) n = 1; /* a unique pointer, as operator new gives */
        if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) {
            if (st) *st = CUA_ERR_INVALID_ARG;
            return nullptr;
        }
        void *p = nullptr;
        cua_status s = arena_ ? cua_arena_alloc(arena_, n * sizeof(T), stream_, &p)
                              : cua_malloc(n * sizeof(T), stream_, &p);
        if (st) *st = s;
        return s == CUA_OK ? static_cast<T *>(p) : nullptr;
    }
    /** Room for n objects (a device pointer); see the class comment on failure. */
    T *allocate(std::size_t n)
    {
        T *p = try_allocate(n, nullptr);
        if (!p) {
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
            throw std::bad_alloc();
#else
            std::abort();
#endif
        }
        return p;
    }
    /** Free p (cua_free() finds its arena by address); n is not needed. */
    void deallocate(T *p, std::size_t n) noexcept
    {
        (void)n;
        (void)cua_free(p);
    }

    cua_arena *arena_handle() const noexcept { return arena_; }
    cua_stream stream() const noexcept { return stream_; }

private:
    cua_arena *arena_;
    cua_stream stream_;
};

template <class T, class U>
bool operator==(const device_allocator<T> &a, const device_allocator<U> &b) noexcept
{
    return a.arena_handle() == b.arena_handle() && a.stream() == b.stream();
}
template <class T, class U>
bool operator!=(const device_allocator<T> &a, const device_allocator<U> &b) noexcept
{
    return !(a == b);
}

} // namespace cuarena

#endif /* CUARENA_HPP */
