// _torch_shim.cpp - cuarena as a full PyTorch CUDA allocator object.
//
// torch's CUDAPluggableAllocator forwards allocation and free to two C
// functions, and answers "does not yet support" for statistics, snapshots and
// cache queries: torch.cuda.memory_stats() and max_memory_allocated() raise,
// cudnn.benchmark and torch.compile stumble. This subclass keeps the plugged
// functions (libcuarena.so's cua_torch_alloc / cua_torch_free: the C library
// stays the one place where memory is managed) and answers the rest from
// cuarena's own figures. Built against the installed torch when
// cuarena.torch.install() runs (torch.utils.cpp_extension.load).

#include <torch/csrc/cuda/CUDAPluggableAllocator.h>
#include <torch/extension.h>

#include <c10/core/Allocator.h>
#include <c10/core/AllocatorConfig.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <vector>

extern "C" {
#include "cuarena.h"
#include "cuarena_backend.h"
#include "cuarena_frameworks.h"
}

#include "_torch_history.h"
#include "_torch_capture.h"
#include "_torch_pools.h"

namespace {

using PluggableBase = torch::cuda::CUDAPluggableAllocator::CUDAPluggableAllocator;
namespace CCA = c10::cuda::CUDACachingAllocator;
namespace CDA = c10::CachingDeviceAllocator;
using cuarena_torch::HistoryCall;
using cuarena_torch::history_on;

// The live arenas of a device.
std::vector<cua_arena*> arenas_of(int device) {
  size_t n = 0;
  if (cua_arena_list(device, nullptr, 0, &n) != CUA_OK) return {};
  std::vector<cua_arena*> v(n + 16);  // room for arenas made meanwhile
  if (cua_arena_list(device, v.data(), v.size(), &n) != CUA_OK) return {};
  v.resize(std::min(n, v.size()));
  return v;
}

template <typename StatArray>
void set_stat(StatArray& a, int64_t current, int64_t peak, int64_t allocated, int64_t freed) {
  for (size_t i = 0; i < a.size(); i++) {
    bool small = i == static_cast<size_t>(CDA::StatType::SMALL_POOL);
    a[i].current = small ? 0 : current;  // one pool: "all" and "large" alike
    a[i].peak = small ? 0 : peak;
    a[i].allocated = small ? 0 : allocated;
    a[i].freed = small ? 0 : freed;
  }
}

// Note [segments in torch's snapshot]: torch's snapshot lists segments, the
// blocks in each, and the pool that owns each segment (segment_pool_id;
// MemPool.snapshot() and graph-tree tools read a pool's segments by it). A
// torch block never crosses a segment, and for expandable segments torch
// lists one segment per contiguous mapped range. An arena with virtual
// memory management is such a segment: it maps chunks (cua_arena_walk's
// segments) side by side, and its blocks may cross their edges, where the
// walk cuts them into pieces. So chunks that touch make one segment here, and
// a block's pieces one block (a live piece without a requested size goes on
// the block before it; a free or pending piece right after a joined edge
// goes on a block of its kind). An arena without it (vmm:0, a MemPool's own
// allocator: it reserves no address range) takes whole segments, one block
// never in two: each is a segment, as torch's cudaMalloc'd ones.
struct SegmentCollector {
  std::vector<CDA::SegmentInfo> segments;
  int device;
  c10::cuda::MempoolId_t pool{0, 0};  // the walked arena's owner ({0, 0}: none)
  bool expandable = true;             // the walked arena maps chunks in one range
  bool open = false;                  // the last segment is the walked arena's
  bool joined = false;                // ... and a chunk was just added to it
};

// The piece r continues the last block of s (Note [segments in torch's snapshot]).
bool continues(const CDA::SegmentInfo& s, const cua_region* r, bool joined) {
  if (s.blocks.empty()) return false;
  const CDA::BlockInfo& b = s.blocks.back();
  if (r->kind == CUA_REGION_LIVE) return b.allocated && r->requested == 0;
  return joined && !b.allocated && b.active == (r->kind == CUA_REGION_PENDING);
}

void on_segment(SegmentCollector* c, const cua_region* r) {
  if (c->expandable && c->open) {
    CDA::SegmentInfo& s = c->segments.back();
    if (s.address + s.total_size == r->address) {
      s.total_size += r->size;
      s.is_large = s.total_size > (size_t{1} << 20);
      c->joined = true;
      return;
    }
  }
  CDA::SegmentInfo s;
  s.device = static_cast<c10::DeviceIndex>(c->device);
  s.address = r->address;
  s.total_size = r->size;
  s.is_large = r->size > (size_t{1} << 20);
  s.is_expandable = c->expandable;
  s.owner_private_pool_id = c->pool;
  c->segments.push_back(std::move(s));
  c->open = true;
  c->joined = false;
}

void on_region(const cua_region* r, void* user) {
  auto* c = static_cast<SegmentCollector*>(user);
  if (r->kind == CUA_REGION_SEGMENT) return on_segment(c, r);
  if (!c->open) return;
  CDA::SegmentInfo& s = c->segments.back();
  bool more = continues(s, r, c->joined);
  c->joined = false;
  bool allocated = r->kind == CUA_REGION_LIVE;
  bool active = allocated || r->kind == CUA_REGION_PENDING;
  if (allocated) {
    s.allocated_size += r->size;
    s.requested_size += r->requested;
    if (!s.stream) s.stream = reinterpret_cast<void*>(r->stream);
  }
  if (active) s.active_size += r->size;
  if (more) {
    s.blocks.back().size += r->size;
    return;
  }
  CDA::BlockInfo b;
  b.size = r->size;
  b.requested_size = allocated ? r->requested : 0;
  b.allocated = allocated;
  b.active = active;
  s.blocks.push_back(std::move(b));
}

// Note [torch's block sizes]: torch's allocator rounds each request
// (round_size): to 512 bytes, or, where roundup_power2_divisions applies
// to its size (_set_allocator_settings, PYTORCH_ALLOC_CONF; by size
// interval), up to the next of that many equal steps between the powers of
// two around it (84 MiB with 4 divisions: 96 MiB). The setting asks for that
// rounding (blocks reusable across sizes that vary a little), so cuarena is
// asked for the rounded size where it applies, and the block really is that
// large; otherwise for the bytes asked (its blocks are 512-byte multiples,
// as torch's). torch's statistics count the rounded sizes; so do the shim's.
// The setting is read from torch's config at each allocation.
constexpr size_t kMinBlock = 512;

// n rounded up to the next of `divisions` steps between powers of two.
size_t power2_divided(size_t n, size_t divisions) {
  if ((n & (n - 1)) == 0) return n;
  size_t floor2 = size_t{1} << (63 - __builtin_clzll(n));
  size_t step = floor2 >> (63 - __builtin_clzll(divisions));
  if (step == 0) return floor2 << 1;
  size_t down = n & ~(step - 1);
  return down == n ? n : down + step;
}

// What cuarena is asked for a request of n bytes.
size_t asked_size(size_t n) {
  if (n <= kMinBlock) return n;
  size_t divisions = c10::CachingAllocator::AcceleratorAllocatorConfig::roundup_power2_divisions(n);
  return divisions > 1 && n > kMinBlock * divisions ? power2_divided(n, divisions) : n;
}

// torch's block for a request of n bytes (0 bytes: 512, as torch's round_size).
int64_t torch_block(size_t n) {
  size_t a = std::max<size_t>(asked_size(n), 1);
  return static_cast<int64_t>((a + kMinBlock - 1) / kMinBlock * kMinBlock);
}

// torch's accumulated statistics ("allocated" and "freed" of memory_stats):
// counted here per device, for what goes through torch, in torch's block
// sizes (Note [torch's block sizes]); resetAccumulatedStats zeroes them. The
// "current" and "peak" figures are cuarena's own.
constexpr int kMaxDevices = 64;
struct Accumulated {
  std::atomic<int64_t> allocs{0}, frees{0}, bytes_in{0}, bytes_out{0}, req_in{0}, req_out{0};
};
Accumulated accumulated[kMaxDevices];

// One allocation (freed: one free) of n bytes through torch on `device`.
void tally(int device, size_t n, bool freed) {
  if (device < 0 || device >= kMaxDevices) return;
  Accumulated& a = accumulated[device];
  (freed ? a.frees : a.allocs).fetch_add(1, std::memory_order_relaxed);
  (freed ? a.bytes_out : a.bytes_in).fetch_add(torch_block(n), std::memory_order_relaxed);
  (freed ? a.req_out : a.req_in).fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
}

// Note [the profiler's memory events]: torch.profiler.profile(profile_memory=
// True) learns of allocations and frees from the allocator itself
// (c10::reportMemoryUsageToProfiler, which torch's allocator calls in its
// malloc and free, and its plugged allocator does not): the memory timeline
// and _memory_viz's profile_plot are made of these events. The totals are
// cuarena's device figures, added up only while the thread profiles memory.
void report_to_profiler(void* p, size_t n, bool freed, int device) {
  if (!p || !c10::memoryProfilingEnabled()) return;
  int64_t allocated = 0;
  for (cua_arena* a : arenas_of(device)) {
    cua_stats s;
    if (cua_arena_get_stats(a, &s) == CUA_OK) allocated += s.allocated_bytes;
  }
  size_t peak = 0, mapped = 0;
  cua_device_peak(device, &peak, &mapped);
  c10::reportMemoryUsageToProfiler(p, freed ? -torch_block(n) : torch_block(n), allocated, mapped,
                                   c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device)));
}

// An allocation (p; null: it failed) and a free by `free`, as torch's
// allocator notes them: in its history (Note [torch's history in the shim],
// _torch_history.cpp) and for the profiler.
void note_alloc(const HistoryCall& h, void* p, size_t n, int device, cudaStream_t s) {
  if (h.on) cuarena_torch::history_alloc(h, p, n, device, s);
  report_to_profiler(p, n, false, device);
}

template <typename Free>
void noted_free(void* p, size_t n, int device, cudaStream_t s, Free&& free) {
  HistoryCall h;
  if (p && history_on.load(std::memory_order_relaxed)) h = cuarena_torch::history_begin_free(p);
  free();
  if (h.on) cuarena_torch::history_free(h, p, n, device, s);
  report_to_profiler(p, n, true, device);
}

// torch's size words (format_size in its allocator): "N bytes" up to 1 KiB,
// then KiB, MiB, GiB with two decimals. Tools in the wild parse them.
std::string torch_size(uint64_t n) {
  char b[64];
  if (n <= 1024)
    snprintf(b, sizeof b, "%llu bytes", static_cast<unsigned long long>(n));
  else if (n <= 1048576)
    snprintf(b, sizeof b, "%.2f KiB", static_cast<double>(n) / 1024.0);
  else if (n <= 1073741824ULL)
    snprintf(b, sizeof b, "%.2f MiB", static_cast<double>(n) / 1048576.0);
  else
    snprintf(b, sizeof b, "%.2f GiB", static_cast<double>(n) / 1073741824.0);
  return b;
}

// Observers of torch._C._cuda_attach_out_of_memory_observer, told of every
// out-of-memory before it is raised, as torch's allocator does.
std::mutex observers_mu;
std::vector<CCA::OutOfMemoryObserver> observers;

// The allocation recorder (cuarena.record): while on, every allocation and
// free torch makes through cuarena, with the arena's name, and markers.
struct TraceEvent {
  char op;  // 'a', 'f', 'm'
  uintptr_t ptr;
  size_t size;
  uintptr_t stream;
  std::string name;  // 'a': the arena; 'm': the marker
};
std::mutex trace_mu;
std::vector<TraceEvent> trace;
std::atomic<bool> tracing{false};

void trace_alloc(void* p, size_t n, cudaStream_t stream) {
  cua_arena* a = nullptr;
  const char* name = "";
  if (cua_ptr_info(p, &a, nullptr, nullptr) == CUA_OK) cua_arena_name(a, &name);
  std::lock_guard<std::mutex> g(trace_mu);
  trace.push_back({'a', reinterpret_cast<uintptr_t>(p), n,
                   reinterpret_cast<uintptr_t>(stream), name ? name : ""});
}

void* traced(void* p, size_t n, cudaStream_t stream) {
  if (p && tracing.load(std::memory_order_relaxed)) trace_alloc(p, n, stream);
  return p;
}

void* pool_or_default_alloc_untraced(size_t n, int device, cudaStream_t stream);

void* pool_or_default_alloc(size_t n, int device, cudaStream_t stream) {
  return traced(pool_or_default_alloc_untraced(n, device, stream), n, stream);
}

void* pool_or_default_alloc_untraced(size_t n, int device, cudaStream_t stream) {
  release_held(stream);
  bool taken = false;
  void* p = pool_alloc(n, device, stream, &taken);
  return taken ? p : cua_torch_alloc(n, device, stream);
}

struct CuarenaAllocator final : PluggableBase {
  // The plugged functions (torch calls them with no lock of its own held).
  static void* alloc_fn(size_t n, int device, cudaStream_t s) {
    HistoryCall h;
    if (history_on.load(std::memory_order_relaxed))
      h = cuarena_torch::history_begin(CCA::RecordContext::STATE);
    void* p = pool_or_default_alloc(asked_size(n), device, s);
    if (p) tally(device, n, false);
    note_alloc(h, p, n, device, s);
    return p;
  }

  static void free_fn(void* p, size_t n, int device, cudaStream_t s) {
    if (p) tally(device, n, true);
    if (tracing.load(std::memory_order_relaxed)) {
      std::lock_guard<std::mutex> g(trace_mu);
      trace.push_back({'f', reinterpret_cast<uintptr_t>(p), 0, 0, ""});
    }
    noted_free(p, n, device, s, [&] { free_or_hold(p, n, device, s); });
  }

  CuarenaAllocator() : PluggableBase(alloc_fn, free_fn) {
    set_record_stream_fn(record_use);
  }

  // torch's plugged allocate() hands out a null pointer when the allocation
  // function fails (a kernel then faults on it); here a failure raises
  // torch.OutOfMemoryError with cuarena's report, as torch's own allocator does.
  // The message starts as torch's own ("CUDA out of memory. Tried to
  // allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which
  // 1.20 GiB is free."), which tools parse; cuarena's report follows.
  // Observers are told first, as torch does.
  c10::DataPtr allocate(size_t size) override {
    c10::DeviceIndex device = -1;
    C10_CUDA_CHECK(c10::cuda::GetDevice(&device));
    // (torch refuses these before anything else, in these words)
    TORCH_CHECK_WITH(OutOfMemoryError, size < (uint64_t{1} << 60),
                     "CUDA out of memory. Tried to allocate more than 1EB memory.");
    c10::Device where(c10::DeviceType::CUDA, device);
    if (size == 0) return {nullptr, nullptr, raw_deleter(), where};  // (torch's: no block)
    if (!enabled_.load()) {  // Note [the cache turned off]
      void* p = uncached_alloc(size);
      return {p, p, raw_deleter(), where};
    }
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(device);
    void* r = this->malloc(size, device, stream);
    if (!r) {
      {
        std::lock_guard<std::mutex> g(allocator_mutex_);
        allocation_metadata_.erase(nullptr);
      }
      std::string report = cua_last_error();  // (before any other cuarena call)
      size_t free_b = 0, total = 0;
      if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        free_b = total = 0;
      }
      std::vector<CCA::OutOfMemoryObserver> obs;
      {
        std::lock_guard<std::mutex> g(observers_mu);
        obs = observers;
      }
      for (auto& o : obs) o(device, size, total, free_b);
      // The text is made with snprintf: numbers streamed into c10::str from
      // this extension crashed in libstdc++'s number formatting (mixed
      // runtimes on the GPU machine).
      char msg[4096 + 512];
      snprintf(msg, sizeof msg, "CUDA out of memory. Tried to allocate %s. GPU %d has a total "
               "capacity of %s of which %s is free. cuarena: %s", torch_size(size).c_str(),
               static_cast<int>(device), torch_size(total).c_str(), torch_size(free_b).c_str(),
               report.c_str());
      TORCH_CHECK_WITH(OutOfMemoryError, false, static_cast<const char*>(msg));
    }
    return {r, r, raw_deleter(), where};
  }

  // Note [the cache turned off]: torch.cuda.caching_allocator_enable(False)
  // makes torch's allocator take each allocation straight from cudaMalloc
  // and give it back with cudaFree, outside its cache and its statistics (a
  // debugging aid: a memory checker sees each buffer). So here: while it is
  // off, allocations bypass cuarena; blocks cuarena handed out before go back
  // to it as usual. The deleter tells them apart by the pointers remembered.
  void enable(bool value) override { enabled_.store(value); }
  bool isEnabled() const override { return enabled_.load(); }

  void* raw_alloc(size_t n) override {
    return enabled_.load() ? PluggableBase::raw_alloc(n) : uncached_alloc(n);
  }
  void* raw_alloc_with_stream(size_t n, cudaStream_t stream) override {
    return enabled_.load() ? PluggableBase::raw_alloc_with_stream(n, stream) : uncached_alloc(n);
  }
  void raw_delete(void* p) override {
    if (!p) return;  // (a tensor of 0 bytes, as torch's)
    if (uncached_n_.load(std::memory_order_relaxed) && uncached_free(p)) return;
    PluggableBase::raw_delete(p);
  }

  CDA::DeviceStats getDeviceStats(c10::DeviceIndex device) override {
    release_over();  // (Note [frees during a capture, reused after a join])
    CDA::DeviceStats d;
    int64_t live = 0, blocks = 0, alloc = 0, mapped = 0, peak_live = 0, free_b = 0, cached = 0;
    int64_t ooms = 0, creates = 0, releases = 0;
    for (cua_arena* a : arenas_of(device)) {
      cua_stats s;
      if (cua_arena_get_stats(a, &s) != CUA_OK) continue;
      live += s.live_bytes;
      blocks += s.live_blocks;
      alloc += s.allocated_bytes;
      mapped += s.mapped_bytes;
      peak_live += s.peak_live_bytes;
      free_b += s.free_bytes;
      cached += s.cached_bytes;
      ooms += s.oom_count;
      creates += s.calls[CUA_CALL_CREATE] + s.calls[CUA_CALL_ALLOC];
      releases += s.calls[CUA_CALL_RELEASE] + s.calls[CUA_CALL_FREE];
    }
    size_t peak_mapped = 0, now_mapped = 0;
    cua_device_peak(device, &peak_mapped, &now_mapped);
    // Peaks: arenas peak at different moments, so the sum of their live peaks
    // can pass the device's real peak; reserved uses the device's own peak.
    int64_t n_in = 0, n_out = 0, b_in = 0, b_out = 0, r_in = 0, r_out = 0;
    if (device >= 0 && device < kMaxDevices) {
      const Accumulated& acc = accumulated[device];
      n_in = acc.allocs.load();
      n_out = acc.frees.load();
      b_in = acc.bytes_in.load();
      b_out = acc.bytes_out.load();
      r_in = acc.req_in.load();
      r_out = acc.req_out.load();
    }
    set_stat(d.allocation, blocks, blocks, n_in, n_out);
    set_stat(d.active, blocks, blocks, n_in, n_out);
    set_stat(d.allocated_bytes, alloc, std::max(peak_live, alloc), b_in, b_out);
    set_stat(d.active_bytes, alloc, std::max(peak_live, alloc), b_in, b_out);
    set_stat(d.requested_bytes, live, std::max(peak_live, live), r_in, r_out);
    set_stat(d.reserved_bytes, mapped, std::max<int64_t>(peak_mapped, mapped), 0, 0);
    set_stat(d.segment, creates - releases, creates - releases, creates, releases);
    set_stat(d.inactive_split_bytes, free_b - cached, free_b - cached, 0, 0);
    d.num_ooms = ooms;
    d.num_device_alloc = creates;
    d.num_device_free = releases;
    return d;
  }

  void resetPeakStats(c10::DeviceIndex device) override {
    for (cua_arena* a : arenas_of(device)) cua_arena_reset_peaks(a);
    cua_device_reset_peak(device);
  }

  // torch's accumulated "allocated" and "freed" figures start again; cuarena's
  // own counters (cua_stats) run on.
  void resetAccumulatedStats(c10::DeviceIndex device) override {
    if (device < 0 || device >= kMaxDevices) return;
    Accumulated& a = accumulated[device];
    a.allocs = 0;
    a.frees = 0;
    a.bytes_in = 0;
    a.bytes_out = 0;
    a.req_in = 0;
    a.req_out = 0;
  }

  // Note [empty_cache and pools]: as torch's. While something is allocated
  // to a pool on a device (a capture, a use_mem_pool block), nothing of that
  // device is given back (a capture may not synchronise; torch leaves its
  // cache alone then). Pools a graph or a MemPool holds are left: a captured
  // graph replays into the blocks its capture freed (Note [pages a graph
  // replays into], src/arena/policy.c). A pool nobody holds is trimmed, and
  // goes once no block of it is live. A MemPool's end (its id) does this for
  // that pool alone, once no graph holds it either.
  void emptyCache(c10::cuda::MempoolId_t id) override {
    // (its unmappings take its context: Note [torch's history in the shim])
    HistoryCall h = cuarena_torch::history_begin(CCA::RecordContext::ALL);
    release_over();
    trim_caches(id);
    cuarena_torch::history_window(h, -1);
  }

  static void trim_caches(c10::cuda::MempoolId_t id) {
    size_t released = 0;
    if (!is_default(id)) {
      std::lock_guard<std::mutex> g(pools_mu);
      auto it = pools.find({id.first, id.second});
      if (it == pools.end() || it->second.uses > 0 || busy_locked(it->second.device)) return;
      synchronize(it->second.device);
      if (it->second.arena) cua_arena_trim(it->second.arena, 0, &released);
      drop_locked(it);
      return;
    }
    std::vector<cua_arena*> kept;
    std::vector<int> busy;
    {
      std::lock_guard<std::mutex> g(pools_mu);
      for (const Underway& u : underway) busy.push_back(u.device);
      for (auto& kv : pools)
        if (kv.second.arena && kv.second.uses > 0) kept.push_back(kv.second.arena);
    }
    auto has = [](const auto& v, auto x) { return std::find(v.begin(), v.end(), x) != v.end(); };
    for (int d = 0; d < c10::cuda::device_count(); d++) {
      std::vector<cua_arena*> arenas = arenas_of(d);
      if (arenas.empty() || has(busy, d)) continue;
      // (pools_mu held from the check to the trims: no capture begins between)
      std::lock_guard<std::mutex> g(pools_mu);
      if (busy_locked(d)) continue;
      synchronize(d);  // (what the device still runs may use cached blocks)
      for (cua_arena* a : arenas)
        if (!has(kept, a)) cua_arena_trim(a, 0, &released);
    }
    std::lock_guard<std::mutex> g(pools_mu);
    for (auto it = pools.begin(); it != pools.end();) {
      auto next = std::next(it);
      if (!busy_locked(it->second.device)) drop_locked(it);
      it = next;
    }
  }

  // (a failure stays out of the runtime's last error, which torch checks
  // after its kernels)
  static void synchronize(int device) {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    if (cudaDeviceSynchronize() != cudaSuccess) (void)cudaGetLastError();
  }

  // cudnn's benchmark mode sizes its workspaces from this (the largest block
  // the cache could hand out at once, or the driver's free memory if larger).
  void cacheInfo(c10::DeviceIndex device, size_t* largest) override {
    for (cua_arena* a : arenas_of(device)) {
      cua_stats s;
      if (cua_arena_get_stats(a, &s) == CUA_OK && s.largest_free_bytes > *largest)
        *largest = s.largest_free_bytes;
    }
  }

  // The segments of `device` a snapshot lists, in address order (Note
  // [segments in torch's snapshot]): every arena's, each with the pool that
  // owns it, or for a pool's id only that pool's, as torch lists a MemPool's.
  static void collect_segments(int device, c10::cuda::MempoolId_t id, SegmentCollector& c) {
    std::vector<cua_arena*> all = is_default(id) ? arenas_of(device) : std::vector<cua_arena*>{};
    std::vector<std::pair<cua_arena*, c10::cuda::MempoolId_t>> todo;
    {
      std::lock_guard<std::mutex> g(pools_mu);
      std::map<cua_arena*, c10::cuda::MempoolId_t> owner;
      for (auto& kv : pools)
        if (kv.second.arena && kv.second.device == device)
          owner[kv.second.arena] = {kv.first.first, kv.first.second};
      for (cua_arena* a : all) {
        auto o = owner.find(a);
        todo.emplace_back(a, o == owner.end() ? c10::cuda::MempoolId_t{0, 0} : o->second);
      }
      auto it = pools.find({id.first, id.second});
      if (!is_default(id) && it != pools.end() && it->second.arena && it->second.device == device)
        todo.emplace_back(it->second.arena, id);
    }
    for (auto& [arena, pool] : todo) {
      cua_stats st;
      c.pool = pool;
      c.expandable = cua_arena_get_stats(arena, &st) != CUA_OK || st.reserved_bytes > 0;
      c.open = false;  // (segments of two arenas are never one)
      cua_arena_walk(arena, on_region, &c);
    }
    std::sort(c.segments.begin(), c.segments.end(),
              [](const CDA::SegmentInfo& a, const CDA::SegmentInfo& b) { return a.address < b.address; });
  }

  // Segments and blocks from cuarena's arenas; the blocks' and segments'
  // frames and the device traces from the history the shim keeps (Note
  // [torch's history in the shim], _torch_history.cpp).
  CCA::SnapshotInfo snapshot(c10::cuda::MempoolId_t id, bool include_traces) override {
    release_over();
    CCA::SnapshotInfo info;
    int count = c10::cuda::device_count();
    for (int device = 0; device < count; device++) {
      SegmentCollector c;
      c.device = device;
      collect_segments(device, id, c);
      for (auto& s : c.segments) info.segments.push_back(std::move(s));
    }
    cuarena_torch::history_fill(info, count, id, include_traces);
    return info;
  }

  // torch.cuda.memory._record_memory_history and what torch calls while it
  // records. The newer calls are written without `override`: where this
  // torch declares them otherwise they do not take part, and the shim builds.
  void recordHistory(bool enabled, CCA::CreateContextFn recorder, size_t max_entries,
                     CCA::RecordContext when, bool clear,
                     const std::vector<std::string>& skip_actions) override {
    cuarena_torch::history_record(enabled, recorder, max_entries, when, clear, skip_actions);
  }
  bool isHistoryEnabled() { return cuarena_torch::history_enabled(); }
  void recordAnnotation(const std::vector<std::pair<std::string, std::string>>& md) {
    cuarena_torch::history_annotate(md);
  }
  void pushCompileContext(std::string& md) { cuarena_torch::history_push_compile(md); }
  void popCompileContext() { cuarena_torch::history_pop_compile(); }
  void setUserMetadata(const std::string& md) { cuarena_torch::history_set_metadata(md); }
  std::string getUserMetadata() { return cuarena_torch::history_metadata(); }

  void attachOutOfMemoryObserver(CCA::OutOfMemoryObserver observer) override {
    std::lock_guard<std::mutex> g(observers_mu);
    observers.push_back(std::move(observer));
  }
  void attachAllocatorTraceTracker(CCA::AllocatorTraceTracker) override {}

  // set_per_process_memory_fraction: the default arena's limit.
  void setMemoryFraction(double fraction, c10::DeviceIndex device) override {
    cua_arena* a = nullptr;
    if (cua_arena_default(device, &a) != CUA_OK) return;
    // The total of `device` (not of the current device): its backend's figure.
    cua_backend* bk = nullptr;
    cua_backend_stats bs{};
    size_t total = 0;
    if (cua_device_backend(device, &bk) == CUA_OK && cua_backend_get_stats(bk, &bs) == CUA_OK)
      total = static_cast<size_t>(bs.total_bytes);
    if (total == 0) {  // no shared backend: the runtime's answer for the current device
      size_t free_b = 0;
      cudaMemGetInfo(&free_b, &total);
    }
    fraction_.store(fraction);
    size_t limit = static_cast<size_t>(fraction * static_cast<double>(total));
    limit &= ~((size_t{2} << 20) - 1);  // whole 2 MiB pages
    cua_arena_set_limit(a, fraction >= 1.0 ? 0 : limit);
  }

  double getMemoryFraction(c10::DeviceIndex) override { return fraction_.load(); }

  // As torch's: every begin holds the pool (a use, given back by the
  // releasePool that follows a graph's destruction or use_mem_pool's end),
  // so a MemPool's use_count() counts its object alone between them. Note
  // [pools allocated to] in _torch_pools.h.
  void beginAllocateToPool(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                           std::function<bool(cudaStream_t)> filter) override {
    std::lock_guard<std::mutex> g(pools_mu);
    PoolKey key{id.first, id.second};
    for (const Underway& u : underway)
      TORCH_CHECK(u.id != key, "beginAllocateToPool: already allocating to memory pool ",
                  pool_name(id));
    bool fresh = pools.find(key) == pools.end();
    Pool& p = pool_locked(device, id);
    if (!fresh) p.uses++;
    p.device = device;
    underway.push_back({key, device, std::move(filter)});
    underway_n++;
  }

  void endAllocateToPool(c10::DeviceIndex, c10::cuda::MempoolId_t id) override {
    std::lock_guard<std::mutex> g(pools_mu);
    for (auto u = underway.begin(); u != underway.end(); ++u) {
      if (u->id != PoolKey{id.first, id.second}) continue;
      underway.erase(u);
      underway_n--;
      return;
    }
  }

  // The pool is gone (its graph destroyed, its MemPool deleted): its arena
  // goes too, unless a tensor of it is still alive; then it stays, its
  // blocks are freed as usual, into it, and empty_cache() ends it.
  void releasePool(c10::DeviceIndex device, c10::cuda::MempoolId_t id) override {
    // (gathered before pools_mu: the context recorder may wait for the GIL)
    HistoryCall h = cuarena_torch::history_begin(CCA::RecordContext::ALL);
    release_over();
    release_pool(id);
    cuarena_torch::history_window(h, device);
  }

  static void release_pool(c10::cuda::MempoolId_t id) {
    std::lock_guard<std::mutex> g(pools_mu);
    auto it = pools.find({id.first, id.second});
    if (it == pools.end()) return;
    if (--it->second.uses > 0) return;  // another graph or MemPool still holds it
    // (while a capture or use_mem_pool runs on its device, the destroy's
    // waits could break the capture: empty_cache() ends it later)
    if (!busy_locked(it->second.device)) drop_locked(it);
  }

  // torch.cuda.MemPool(). These are written without `override`: where this
  // torch declares them otherwise, they do not take part (torch then says it
  // "does not yet support" them, as without them) and the shim still builds.
  // A MemPool with an allocator of its own (NCCL's registered memory, a
  // CUDAPluggableAllocator): its arena takes whole segments from that
  // allocator and places blocks inside them, as torch's pools do.
  void createOrIncrefPool(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                          std::shared_ptr<CCA::CUDAAllocator> allocator = nullptr) {
    if (allocator.get() == this) allocator = nullptr;
    std::lock_guard<std::mutex> g(pools_mu);
    bool fresh = pools.find({id.first, id.second}) == pools.end();
    Pool& p = pool_locked(device, id, std::move(allocator));
    p.device = device;
    if (!fresh) p.uses++;
  }

  int getPoolUseCount(c10::DeviceIndex, c10::cuda::MempoolId_t id) {
    std::lock_guard<std::mutex> g(pools_mu);
    auto it = pools.find({id.first, id.second});
    return it == pools.end() ? 0 : it->second.uses;
  }

  // Note [CUDA-graph trees]: torch.compile's reduce-overhead mode records
  // graphs into one private pool (an arena here). After each recording it
  // asks whether the pool's live blocks are exactly the tensors it expects
  // (checkPoolLiveAllocations), and takes a checkpoint of the pool
  // (getCheckpointState: its live blocks, with their sizes and streams). To
  // switch to another recorded path it restores a checkpoint
  // (setCheckpointPoolState): every block live now is freed (torch makes
  // their tensors stale), and the checkpoint's blocks are made live again at
  // their addresses (cua_arena_alloc_at), as the recorded graphs use them;
  // torch gives the new data pointers to the tensors that stay. Written
  // without `override`: where this torch declares them otherwise, torch
  // answers "does not yet support", as without them.
  bool checkPoolLiveAllocations(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                                const std::unordered_set<void*>& expected) {
    std::vector<LiveBlock> live = pool_blocks(device, id);
    if (live.size() != expected.size()) return false;
    for (const LiveBlock& b : live)
      if (!expected.count(b.ptr)) return false;
    return true;
  }

  struct PoolCheckpoint : CCA::AllocatorState {
    c10::cuda::MempoolId_t id;
    std::vector<LiveBlock> live;
  };

  std::shared_ptr<CCA::AllocatorState> getCheckpointState(c10::DeviceIndex device,
                                                           c10::cuda::MempoolId_t id) {
    auto state = std::make_shared<PoolCheckpoint>();
    state->id = id;
    state->live = pool_blocks(device, id);
    return state;
  }

  CCA::CheckpointDelta setCheckpointPoolState(c10::DeviceIndex device,
                                              std::shared_ptr<CCA::AllocatorState> as) {
    auto cp = std::dynamic_pointer_cast<PoolCheckpoint>(as);
    TORCH_CHECK(cp, "cuarena: setCheckpointPoolState was given a state cuarena did not make");
    cua_arena* arena = nullptr;
    std::vector<LiveBlock> now = pool_blocks(device, cp->id, &arena);
    TORCH_CHECK(arena, "cuarena: the memory pool of this checkpoint has no arena on this device");
    CCA::CheckpointDelta delta;
    for (const LiveBlock& b : now) {  // (torch makes their storages stale)
      {
        std::lock_guard<std::mutex> g(allocator_mutex_);
        allocation_metadata_.erase(b.ptr);
      }
      tally(device, b.size, true);
      forget_uses(b.ptr);
      noted_free(b.ptr, b.size, device, b.stream, [&] { cua_free(b.ptr); });
      delta.ptrs_freed.push_back(b.ptr);
    }
    // (as torch: one context for the blocks made live again)
    HistoryCall h = cuarena_torch::history_begin(CCA::RecordContext::STATE);
    for (const LiveBlock& b : cp->live) {
      if (cua_arena_alloc_at(arena, b.ptr, b.size, reinterpret_cast<cua_stream>(b.stream)) !=
          CUA_OK) {
        char msg[4096 + 128];  // (snprintf: see allocate())
        snprintf(msg, sizeof msg, "cuarena: cannot restore a block of the checkpoint at %p: %s",
                 b.ptr, cua_last_error());
        TORCH_CHECK(false, static_cast<const char*>(msg));
      }
      {
        // (libtorch exports no constructor of _AllocationMetadata: its fields
        // are set in a copy of plain bytes, then copied in by the implicit,
        // inline copy constructor)
        using Meta = torch::cuda::CUDAPluggableAllocator::_AllocationMetadata;
        static_assert(std::is_trivially_copyable<Meta>::value, "plain fields");
        alignas(Meta) unsigned char raw[sizeof(Meta)] = {};
        Meta* meta = reinterpret_cast<Meta*>(raw);
        meta->size = b.size;
        meta->device_idx = device;
        meta->stream = b.stream;
        std::lock_guard<std::mutex> g(allocator_mutex_);
        allocation_metadata_.insert_or_assign(b.ptr, *meta);
      }
      tally(device, b.size, false);
      note_alloc(h, b.ptr, b.size, device, b.stream);
      delta.dataptrs_allocd.emplace_back(b.ptr, b.ptr, raw_deleter(),
                                         c10::Device(c10::DeviceType::CUDA, device));
    }
    return delta;
  }

  // use_on_oom (other allocations may take the pool's memory when the device
  // is full): cuarena's arenas of a device give each other their cached
  // memory before any out-of-memory anyway. no_split: cuarena places blocks
  // by best fit in every arena. Both accepted, nothing to change.
  void setUseOnOOM(c10::DeviceIndex, c10::cuda::MempoolId_t, bool) {}
  void setNoSplit(c10::DeviceIndex, c10::cuda::MempoolId_t) {}

  std::string name() override { return "cuarena"; }

 private:
  void* uncached_alloc(size_t n) {
    if (n == 0) return nullptr;
    void* p = nullptr;
    C10_CUDA_CHECK(cudaMalloc(&p, n));
    std::lock_guard<std::mutex> g(uncached_mu_);
    uncached_.insert(p);
    uncached_n_++;
    return p;
  }

  bool uncached_free(void* p) {
    {
      std::lock_guard<std::mutex> g(uncached_mu_);
      if (!uncached_.erase(p)) return false;
      uncached_n_--;
    }
    C10_CUDA_CHECK_WARN(cudaFree(p));
    return true;
  }

  std::atomic<double> fraction_{1.0};
  std::atomic<bool> enabled_{true};
  std::mutex uncached_mu_;
  std::unordered_set<void*> uncached_;  // (uncached_mu_) cudaMalloc'd while off
  std::atomic<size_t> uncached_n_{0};
};

void trace_start() {
  std::lock_guard<std::mutex> g(trace_mu);
  trace.clear();
  tracing = true;
}

void trace_marker(const std::string& name) {
  std::lock_guard<std::mutex> g(trace_mu);
  if (tracing) trace.push_back({'m', 0, 0, 0, name});
}

// Stop recording; the events as (op, ptr, size, stream, name) tuples.
std::vector<std::tuple<std::string, uint64_t, uint64_t, uint64_t, std::string>> trace_stop() {
  std::lock_guard<std::mutex> g(trace_mu);
  tracing = false;
  std::vector<std::tuple<std::string, uint64_t, uint64_t, uint64_t, std::string>> out;
  out.reserve(trace.size());
  for (const TraceEvent& e : trace)
    out.emplace_back(std::string(1, e.op), e.ptr, e.size, e.stream, e.name);
  trace.clear();
  return out;
}

// Note [two registries of torch's CUDA allocator]
// torch keeps its CUDA allocator in two places: CUDACachingAllocator's atomic
// (what tensors, graphs and torch.cuda.* use; changeCurrentAllocator sets it)
// and c10's per-device-type table (c10::GetAllocator(kCUDA), which
// torch.accelerator.*, at::getDeviceAllocator and storage constructors read;
// torch registers its native allocator there at priority 0 during static
// initialisation). changeCurrentAllocator sets only the first, so without the
// second torch.accelerator.memory_stats() answered from the idle native
// allocator: empty. Registering the same object in both keeps one answer.
void install() {
  auto ours = std::make_shared<CuarenaAllocator>();
  torch::cuda::CUDAPluggableAllocator::changeCurrentAllocator(ours);
  // ours stays alive: changeCurrentAllocator keeps the shared_ptr for the
  // life of the process.
  c10::SetAllocator(c10::DeviceType::CUDA, ours.get(), /*priority=*/0);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("install", &install, "Make cuarena torch's CUDA allocator (statistics included).");
  m.def("trace_start", &trace_start, "Record every allocation and free from now on.");
  m.def("trace_marker", &trace_marker, "A phase marker in the recording.");
  m.def("trace_stop", &trace_stop, "Stop recording; the events.");
}
