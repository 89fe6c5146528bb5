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
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
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

struct SegmentCollector {
  std::vector<CDA::SegmentInfo> segments;
  int device;
};

void on_region(const cua_region* r, void* user) {
  auto* c = static_cast<SegmentCollector*>(user);
  if (r->kind == CUA_REGION_SEGMENT) {
    CDA::SegmentInfo s;
    s.device = static_cast<c10::DeviceIndex>(c->device);
    s.address = r->address;
    s.total_size = r->size;
    s.is_large = r->size > (size_t{1} << 20);
    s.is_expandable = true;
    c->segments.push_back(std::move(s));
    return;
  }
  if (c->segments.empty()) return;
  CDA::SegmentInfo& s = c->segments.back();
  CDA::BlockInfo b;
  b.size = r->size;
  b.requested_size = r->kind == CUA_REGION_LIVE ? r->requested : 0;
  b.allocated = r->kind == CUA_REGION_LIVE;
  b.active = r->kind == CUA_REGION_LIVE || r->kind == CUA_REGION_PENDING;
  if (b.allocated) {
    s.allocated_size += r->size;
    s.requested_size += r->requested;
    if (!s.stream) s.stream = reinterpret_cast<void*>(r->stream);
  }
  if (b.active) s.active_size += r->size;
  s.blocks.push_back(std::move(b));
}

// Private memory pools (CUDA graph capture): while a
// pool is active, what the streams its filter accepts allocate goes to an
// arena of its own, named torch_pool_<a>_<b> after the pool id. Its blocks,
// once freed, are reused only by the same pool (what a captured graph needs),
// and the arena can be offloaded or discarded and restored like any other:
// a graph replays at the same addresses afterwards. torch.cuda.MemPool() makes
// the same kind of pool (createOrIncrefPool), and `with
// torch.cuda.use_mem_pool(pool):` sends the thread's allocations to its arena.
// A pool lives while its users (graphs, MemPool objects) hold it.
struct Pool {
  cua_arena* arena = nullptr;
  // A MemPool with an allocator of its own: the arena's segments come from
  // it (a supplier backend, Note [memory from a supplier] in
  // src/backend/supplier.c), which lives as long as the pool.
  std::shared_ptr<c10::cuda::CUDACachingAllocator::CUDAAllocator> supplier;
  cua_backend* backend = nullptr;
  std::function<bool(cudaStream_t)> filter;
  bool active = false;
  int device = 0;
  int uses = 0;
};

std::mutex pools_mu;
std::map<std::pair<uint64_t, uint64_t>, Pool> pools;
std::atomic<int> pools_active{0};

std::string pool_name(c10::cuda::MempoolId_t id) {
  return "torch_pool_" + std::to_string(id.first) + "_" + std::to_string(id.second);
}

// torch's accumulated statistics ("allocated" and "freed" of memory_stats):
// counted here per device, for what goes through torch, rounded as torch
// rounds (512 bytes, cuarena's alignment too); resetAccumulatedStats zeroes
// them. The "current" and "peak" figures are cuarena's own.
constexpr int kMaxDevices = 64;
struct Accumulated {
  std::atomic<int64_t> allocs{0}, frees{0}, bytes_in{0}, bytes_out{0}, req_in{0}, req_out{0};
};
Accumulated accumulated[kMaxDevices];

int64_t rounded(size_t n) { return static_cast<int64_t>((std::max<size_t>(n, 1) + 511) / 512 * 512); }

// One allocation (freed: one free) of n bytes through torch on `device`.
void tally(int device, size_t n, bool freed) {
  if (device < 0 || device >= kMaxDevices) return;
  Accumulated& a = accumulated[device];
  (freed ? a.frees : a.allocs).fetch_add(1, std::memory_order_relaxed);
  (freed ? a.bytes_out : a.bytes_in).fetch_add(rounded(n), std::memory_order_relaxed);
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
  c10::reportMemoryUsageToProfiler(p, freed ? -rounded(n) : rounded(n), allocated, mapped,
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

// Note [frees during a capture, reused after a join]: inside a CUDA graph
// capture, a tensor used on a side stream (record_stream) and then freed may
// be handed out again as soon as the capturing stream that allocates has
// joined every such side stream - its work in the graph comes after theirs -
// as torch's allocator does with graph_capture_record_stream_reuse. An event
// cannot tell (one recorded on a capturing stream is a node of the graph,
// never complete): the graph can. So a record_stream on a capturing stream is
// kept here, not given to cuarena; the free of such a tensor is held, with
// each side stream's last captured nodes at that moment (its "marks"); an
// allocation on a capturing stream of the same capture hands the held block
// to cuarena's free first when the nodes the stream now ends with have every
// mark as an ancestor (cudaGraphNodeGetDependencies, searched upward). When
// the capture is over, a held block is freed with its side streams recorded
// as any other (cuarena then waits for their work). Nothing is held outside
// captures: the allocation path pays one relaxed load.
struct HeldFree {
  void* ptr;
  size_t size;
  int device;
  cudaStream_t stream;               // the block's own (the free's)
  std::vector<cudaStream_t> uses;    // side streams recorded during the capture
  unsigned long long capture = 0;    // the capture's id (0: none seen)
  std::vector<cudaGraphNode_t> marks;
};
std::mutex capture_mu;
std::map<void*, std::vector<cudaStream_t>> capture_uses;  // ptr -> capturing side streams
std::vector<HeldFree> held;
std::atomic<size_t> held_count{0};

// The capture `stream` takes part in, with its last captured nodes; false
// when it captures nothing (an error, e.g. a legacy stream during another
// thread's capture, is cleared: torch checks cudaGetLastError after kernels).
bool capture_of(cudaStream_t stream, unsigned long long* id, const cudaGraphNode_t** deps,
                size_t* n) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamGetCaptureInfo(stream, &st, id, nullptr, deps, nullptr, n) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return st == cudaStreamCaptureStatusActive;
}

bool stream_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return true;  // (implicit capture: treat as capturing, touch nothing)
  }
  return st != cudaStreamCaptureStatusNone;
}

// Every node of `marks` is an ancestor of (or one of) `from`, within a bounded search.
bool reaches_all(const cudaGraphNode_t* from, size_t n, const std::vector<cudaGraphNode_t>& marks) {
  std::unordered_set<cudaGraphNode_t> need(marks.begin(), marks.end()), seen;
  std::vector<cudaGraphNode_t> todo(from, from + n);
  constexpr size_t kMaxNodes = 1 << 16;
  while (!todo.empty() && !need.empty() && seen.size() < kMaxNodes) {
    cudaGraphNode_t node = todo.back();
    todo.pop_back();
    if (!seen.insert(node).second) continue;
    need.erase(node);
    size_t k = 0;
    if (cudaGraphNodeGetDependencies(node, nullptr, nullptr, &k) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    size_t at = todo.size();
    todo.resize(at + k);
    if (k && cudaGraphNodeGetDependencies(node, todo.data() + at, nullptr, &k) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
  }
  return need.empty();
}

// torch's record_stream: kept here while `stream` captures (see the Note).
void record_use(void* p, cudaStream_t stream) {
  if (stream_capturing(stream)) {
    std::lock_guard<std::mutex> g(capture_mu);
    auto& v = capture_uses[p];
    if (std::find(v.begin(), v.end(), stream) == v.end()) v.push_back(stream);
    return;
  }
  cua_record_stream(p, reinterpret_cast<cua_stream>(stream));
}

void free_now(const HeldFree& h, bool with_uses) {
  if (with_uses)
    for (cudaStream_t u : h.uses) cua_record_stream(h.ptr, reinterpret_cast<cua_stream>(u));
  cua_torch_free(h.ptr, h.size, h.device, h.stream);
}

// torch's free: held when the block was used on a stream that captures.
void free_or_hold(void* p, size_t n, int device, cudaStream_t stream) {
  HeldFree h{p, n, device, stream, {}, 0, {}};
  {
    std::lock_guard<std::mutex> g(capture_mu);
    auto it = capture_uses.find(p);
    if (it != capture_uses.end()) {
      h.uses = std::move(it->second);
      capture_uses.erase(it);
    }
  }
  bool capturing = false;
  for (cudaStream_t u : h.uses) {
    unsigned long long id = 0;
    const cudaGraphNode_t* deps = nullptr;
    size_t k = 0;
    if (!capture_of(u, &id, &deps, &k)) continue;
    capturing = true;
    h.capture = id;
    h.marks.insert(h.marks.end(), deps, deps + k);
  }
  if (!capturing) return free_now(h, true);
  std::lock_guard<std::mutex> g(capture_mu);
  held.push_back(std::move(h));
  held_count.store(held.size(), std::memory_order_relaxed);
}

// Before an allocation on `stream`: the held blocks it may have (their side
// streams joined into it), and those of captures that are over, to cuarena.
void release_held(cudaStream_t stream) {
  if (held_count.load(std::memory_order_relaxed) == 0) return;
  unsigned long long id = 0;
  const cudaGraphNode_t* deps = nullptr;
  size_t k = 0;
  bool capturing = capture_of(stream, &id, &deps, &k);
  std::vector<HeldFree> out;
  {
    std::lock_guard<std::mutex> g(capture_mu);
    for (size_t i = 0; i < held.size();) {
      HeldFree& h = held[i];
      bool over = std::none_of(h.uses.begin(), h.uses.end(), stream_capturing);
      bool joined = !over && capturing && id == h.capture && reaches_all(deps, k, h.marks);
      if (!over && !joined) {
        i++;
        continue;
      }
      if (joined) h.uses.clear();  // (the graph orders them: nothing to wait for)
      out.push_back(std::move(h));
      held[i] = std::move(held.back());
      held.pop_back();
    }
    held_count.store(held.size(), std::memory_order_relaxed);
  }
  for (const HeldFree& h : out) free_now(h, true);
}

void* pool_or_default_alloc_untraced(size_t n, int device, cudaStream_t stream);

void* pool_or_default_alloc(size_t n, int device, cudaStream_t stream) {
  return traced(pool_or_default_alloc_untraced(n, device, stream), n, stream);
}

void* pool_or_default_alloc_untraced(size_t n, int device, cudaStream_t stream) {
  release_held(stream);
  if (pools_active.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> g(pools_mu);
    for (auto& kv : pools) {
      Pool& p = kv.second;
      if (p.active && p.device == device && p.arena && p.filter && p.filter(stream)) {
        void* ptr = nullptr;
        if (cua_arena_alloc(p.arena, n ? n : 1, reinterpret_cast<cua_stream>(stream), &ptr) !=
            CUA_OK)
          return nullptr;
        return ptr;
      }
    }
  }
  return cua_torch_alloc(n, device, stream);
}

// A live block of a pool: where, the bytes asked for, its stream.
struct LiveBlock {
  void* ptr;
  size_t size;
  cudaStream_t stream;
};

void collect_live(const cua_region* r, void* user) {
  if (r->kind == CUA_REGION_LIVE && r->requested)  // (a block's first piece)
    static_cast<std::vector<LiveBlock>*>(user)->push_back(
        {reinterpret_cast<void*>(r->address), r->requested, reinterpret_cast<cudaStream_t>(r->stream)});
}

// The live blocks of a pool's arena (none when the pool has no arena on
// `device`), in address order; *arena gets the arena.
std::vector<LiveBlock> pool_blocks(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                                   cua_arena** arena = nullptr) {
  std::vector<LiveBlock> live;
  std::lock_guard<std::mutex> g(pools_mu);
  auto it = pools.find({id.first, id.second});
  cua_arena* a = it != pools.end() && it->second.device == device ? it->second.arena : nullptr;
  if (a) cua_arena_walk(a, collect_live, &live);
  if (arena) *arena = a;
  return live;
}

struct CuarenaAllocator final : PluggableBase {
  // The plugged functions (torch calls them with no lock of its own held).
  static void* alloc_fn(size_t n, int device, cudaStream_t s) {
    HistoryCall h;
    if (history_on.load(std::memory_order_relaxed))
      h = cuarena_torch::history_begin(CCA::RecordContext::STATE);
    void* p = pool_or_default_alloc(n, device, s);
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
    return {r, r, raw_deleter(), c10::Device(c10::DeviceType::CUDA, device)};
  }

  CDA::DeviceStats getDeviceStats(c10::DeviceIndex device) override {
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

  void emptyCache(c10::cuda::MempoolId_t id) override {
    // (its unmappings take its context: Note [torch's history in the shim])
    HistoryCall h = cuarena_torch::history_begin(CCA::RecordContext::ALL);
    // As torch does: what the device still runs may use cached blocks.
    cudaDeviceSynchronize();
    trim_caches(id);
    cuarena_torch::history_window(h, -1);
  }

  static void trim_caches(c10::cuda::MempoolId_t id) {
    size_t released = 0;
    if (id.first != 0 || id.second != 0) {  // one pool's (MemPool.empty_cache)
      std::lock_guard<std::mutex> g(pools_mu);
      auto it = pools.find({id.first, id.second});
      if (it != pools.end() && it->second.arena) cua_arena_trim(it->second.arena, 0, &released);
      return;
    }
    // Not the private pools still held: a captured graph replays into their
    // freed blocks (torch keeps a pool's memory while a graph or MemPool
    // holds it; Note [pages a graph replays into], src/arena/policy.c).
    std::vector<cua_arena*> skip;
    {
      std::lock_guard<std::mutex> g(pools_mu);
      for (auto& kv : pools)
        if (kv.second.arena && kv.second.uses > 0) skip.push_back(kv.second.arena);
    }
    for (cua_arena* a : arenas_of(CUA_ALL_DEVICES))
      if (std::find(skip.begin(), skip.end(), a) == skip.end()) cua_arena_trim(a, 0, &released);
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

  // Segments and blocks from cuarena's arenas; the blocks' and segments'
  // frames and the device traces from the history the shim keeps (Note
  // [torch's history in the shim], _torch_history.cpp).
  CCA::SnapshotInfo snapshot(c10::cuda::MempoolId_t id, bool include_traces) override {
    CCA::SnapshotInfo info;
    int count = c10::cuda::device_count();
    for (int device = 0; device < count; device++) {
      SegmentCollector c;
      c.device = device;
      for (cua_arena* a : arenas_of(device)) cua_arena_walk(a, on_region, &c);
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

  // A segment of a pool's own allocator (the supplier backend's callbacks;
  // called under the pool arena's lock, and under pools_mu: the allocator
  // must not allocate through torch's CUDA allocator). No exception crosses
  // into C: a failure is a null segment, cuarena's out-of-memory answer.
  static void* supplier_alloc(size_t size, int device, void* ctx) {
    try {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
      return static_cast<CCA::CUDAAllocator*>(ctx)->raw_alloc(size);
    } catch (...) {
      return nullptr;
    }
  }
  static void supplier_free(void* ptr, size_t, int device, void* ctx) {
    try {
      c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
      static_cast<CCA::CUDAAllocator*>(ctx)->raw_delete(ptr);
    } catch (...) {
    }
  }

  // The pool of id, with its arena made on first use (pools_mu held); with
  // `supplier`, an arena whose segments come from that allocator.
  static Pool& pool_locked(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                           std::shared_ptr<CCA::CUDAAllocator> supplier = nullptr) {
    Pool& p = pools[{id.first, id.second}];
    if (!p.arena) {
      // keep_mapped: a graph replays into the blocks its capture freed, so
      // no automatic reason may unmap a pool's pages; an offload's restore
      // maps them all again.
      std::string name = pool_name(id),
                  conf = "device:" + std::to_string(device) + ",keep_mapped:1";
      cua_status st = CUA_OK;
      if (supplier) {
        cua_backend* inner = nullptr;
        st = cua_device_backend(device, &inner);
        if (st == CUA_OK)
          st = cua_backend_supplier_create(inner, supplier_alloc, supplier_free, supplier.get(),
                                           &p.backend);
        if (st == CUA_OK) {
          cua_arena_config cfg;
          cua_arena_config_init(&cfg);
          cfg.name = name.c_str();
          cfg.device = device;
          cfg.backend = p.backend;
          cfg.flags |= CUA_ARENA_KEEP_MAPPED;
          st = cua_arena_create(&cfg, &p.arena);
        }
        if (st != CUA_OK && p.backend) {
          std::string why = cua_last_error();
          cua_backend_destroy(p.backend);
          p.backend = nullptr;
          pools.erase({id.first, id.second});
          TORCH_CHECK(false, "cuarena: no arena for memory pool ", name, ": ", why);
        }
        p.supplier = std::move(supplier);
      } else {
        st = cua_arena_create_conf(name.c_str(), conf.c_str(), &p.arena);
      }
      if (st != CUA_OK) pools.erase({id.first, id.second});
      TORCH_CHECK(st == CUA_OK, "cuarena: no arena for memory pool ", name, ": ",
                  cua_last_error());
      p.uses = 1;
    }
    return p;
  }

  // As torch's: every begin holds the pool (a use, given back by the
  // releasePool that follows a graph's destruction or use_mem_pool's end),
  // so a MemPool's use_count() counts its object alone between them.
  void beginAllocateToPool(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                           std::function<bool(cudaStream_t)> filter) override {
    std::lock_guard<std::mutex> g(pools_mu);
    bool fresh = pools.find({id.first, id.second}) == pools.end();
    Pool& p = pool_locked(device, id);
    if (!fresh) p.uses++;
    p.filter = std::move(filter);
    p.device = device;
    if (!p.active) pools_active++;
    p.active = true;
  }

  void endAllocateToPool(c10::DeviceIndex, c10::cuda::MempoolId_t id) override {
    std::lock_guard<std::mutex> g(pools_mu);
    auto it = pools.find({id.first, id.second});
    if (it == pools.end() || !it->second.active) return;
    it->second.active = false;
    pools_active--;
  }

  // The pool is gone (its graph destroyed): its arena goes too, unless a
  // tensor of it is still alive; then it stays, and its blocks are freed as
  // usual, into it.
  void releasePool(c10::DeviceIndex device, c10::cuda::MempoolId_t id) override {
    // (gathered before pools_mu: the context recorder may wait for the GIL)
    HistoryCall h = cuarena_torch::history_begin(CCA::RecordContext::ALL);
    release_pool(id);
    cuarena_torch::history_window(h, device);
  }

  static void release_pool(c10::cuda::MempoolId_t id) {
    std::lock_guard<std::mutex> g(pools_mu);
    auto it = pools.find({id.first, id.second});
    if (it == pools.end()) return;
    if (--it->second.uses > 0) return;  // another graph or MemPool still holds it
    if (it->second.active) pools_active--;
    if (it->second.arena && cua_arena_destroy(it->second.arena, 0) != CUA_OK) return;
    if (it->second.backend) cua_backend_destroy(it->second.backend);  // (its segments went back)
    pools.erase(it);
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
  std::atomic<double> fraction_{1.0};
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
