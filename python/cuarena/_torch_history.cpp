// _torch_history.cpp - torch's allocation history (torch.cuda.memory.
// _record_memory_history, _snapshot()'s device_traces and frames), kept by
// the PyTorch shim (_torch_shim.cpp) as torch's own allocator keeps it.

#include "_torch_history.h"

#include <c10/cuda/CUDAFunctions.h>

#include <stdio.h>
#include <time.h>

#include <algorithm>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

extern "C" {
#include "cuarena.h"
}

// Note [torch's history in the shim]
// While _record_memory_history is on, torch's allocator keeps a ring of
// TraceEntry per device (max_entries of them; skip_actions names actions left
// out): each allocation, free (requested, completed), segment allocation,
// mapping, unmapping, out-of-memory and snapshot, with the thread's innermost
// "Torch-Compiled Region" (compile_context, "N/A" outside one), the thread's
// user metadata (_set_memory_metadata), and, from RecordContext ALLOC up, the
// stack the CreateContextFn gathered (Python, TorchScript, C++ frames). The
// stack of an allocation is gathered from STATE up and kept with the block
// while it lives: the snapshot's block frames. A free gathers its own at ALL;
// below ALL it carries the block's.
//
// The shim keeps these entries itself, around its calls into cuarena (the
// context is gathered before the call: the recorder may take the GIL, so no
// lock is held). What it cannot see is cuarena mapping and unmapping pages
// inside those calls: cuarena's own history (cua_history_enable, on while
// torch's is, its ring sized to cover the same stretch) records them, with
// CLOCK_MONOTONIC times. At snapshot they are merged in by time, as
// SEGMENT_MAP and SEGMENT_UNMAP (torch's entries for expandable segments),
// and each takes what torch gives a segment entry from the shim call it
// happened in (its window: the call's start and end): an allocation's
// compile region, metadata and context for a mapping; empty_cache's for an
// unmapping, whose context is empty_cache's own (ALL), else that of the
// mapping it undoes. An unmapping in no window (cuarena's janitor thread)
// has no region or metadata, and its mapping's context. Out-of-memory is the
// shim's own entry, made where torch raises (addr: the device's free bytes);
// cuarena's own answers (an arena that then got its memory elsewhere) are
// left out.
//
// Differences, where they cost: the block contexts live in a map by address,
// dropped when history is turned off (torch keeps them in its blocks until
// they are freed; here each later free would take this lock); a segment's
// context is known while its mapping is in cuarena's history; one lock serves
// every device. Entries and contexts that give way go after the lock is let
// go: a context's destructor may need the GIL.

namespace cuarena_torch {

std::atomic<bool> history_on{false};

namespace {

using TE = CCA::TraceEntry;
using AnnotationEntry = c10::CachingDeviceAllocator::AnnotationEntry;
using MempoolId = c10::cuda::MempoolId_t;

constexpr int kMaxDevices = 64;  // as cuarena's
constexpr size_t kMaxWindows = 4096;  // calls kept for their window alone

uint64_t clock_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t now_ns() { return clock_ns(CLOCK_MONOTONIC); }

// One entry, as torch's TraceEntry, with the window of its call: an
// allocation's or a free request's, empty_cache's (kept for the window
// alone), or none (start_ns == end_ns).
struct Rec {
  TE::Action action = TE::ALLOC;
  int device = 0;
  uintptr_t addr = 0;
  size_t size = 0;
  cudaStream_t stream = nullptr;
  MempoolId pool{0, 0};
  uint64_t time_ns = 0, start_ns = 0, end_ns = 0;
  Context ctx;        // the trace's frames: only from RecordContext ALLOC up
  bool keep = false;  // RecordContext was ALLOC or up
  std::string compile, meta;
};

// A ring as torch's: up to max entries, then the oldest gives way.
template <typename T>
struct Ring {
  std::vector<T> buf;
  size_t next = 0;  // once full: the oldest, overwritten next

  // Adds v; what gave way (or a moved-from husk) is left in v, for the
  // caller to drop after its lock.
  void push(T& v, size_t max) {
    if (buf.size() < max) {
      buf.push_back(std::move(v));
      return;
    }
    std::swap(buf[next], v);
    next = (next + 1) % buf.size();
  }
  std::vector<T> entries() const {  // oldest first
    std::vector<T> out(buf.begin() + next, buf.end());
    out.insert(out.end(), buf.begin(), buf.begin() + next);
    return out;
  }
  void keep_newest(size_t max, std::vector<T>& gone) {
    if (buf.size() <= max) return;
    std::rotate(buf.begin(), buf.begin() + next, buf.end());
    next = 0;
    size_t drop = buf.size() - max;
    std::move(buf.begin(), buf.begin() + drop, std::back_inserter(gone));
    buf.erase(buf.begin(), buf.begin() + drop);
  }
  void clear(std::vector<T>& gone) {
    std::move(buf.begin(), buf.end(), std::back_inserter(gone));
    buf.clear();
    next = 0;
  }
};

struct State {
  std::mutex mu;
  bool on = false;
  size_t max_entries = 1;
  std::unordered_set<int> skip;  // TE::Action values
  Ring<Rec> rings[kMaxDevices];
  std::deque<Rec> windows;  // empty_cache's, and calls whose entries are skipped
  Ring<AnnotationEntry> annotations;
  std::unordered_map<void*, Context> live;  // the live blocks' contexts
};
State st;

// Read without the lock by history_begin (torch keeps its recorder atomic too).
std::atomic<CCA::CreateContextFn> recorder{nullptr};
std::atomic<int> when{0};  // a RecordContext

// The C history's capacity, and recordHistory's own lock (serialises its
// calls, and cuarena's history calls, outside st.mu).
std::mutex record_mu;
size_t c_cap = 0;

thread_local std::vector<std::string> compile_stack;
thread_local std::string user_metadata;

bool keeps_frames() {
  return when.load(std::memory_order_relaxed) >= static_cast<int>(CCA::RecordContext::ALLOC);
}

Rec make_rec(TE::Action action, int device, uintptr_t addr, size_t size, cudaStream_t stream,
             MempoolId pool, uint64_t time, const Context& ctx) {
  Rec r;
  r.action = action;
  r.device = device;
  r.addr = addr;
  r.size = size;
  r.stream = stream;
  r.pool = pool;
  r.time_ns = r.start_ns = r.end_ns = time;
  r.keep = keeps_frames();
  if (r.keep) r.ctx = ctx;
  r.compile = compile_stack.empty() ? "N/A" : compile_stack.back();
  r.meta = user_metadata;
  return r;
}

void push_window_locked(Rec& r) {
  st.windows.push_back(std::move(r));
  if (st.windows.size() > kMaxWindows) {
    r = std::move(st.windows.front());  // (dropped by the caller, after the lock)
    st.windows.pop_front();
  }
}

// st.mu held. A skipped action keeps only its window.
void push_locked(Rec& r) {
  if (r.device < 0 || r.device >= kMaxDevices) return;
  if (st.skip.count(r.action)) {
    if (r.end_ns > r.start_ns) push_window_locked(r);
    return;
  }
  st.rings[r.device].push(r, st.max_entries);
}

TE::Action action_named(const std::string& s) {
  static const std::pair<const char*, TE::Action> names[] = {
      {"alloc", TE::ALLOC},
      {"free_requested", TE::FREE_REQUESTED},
      {"free_completed", TE::FREE_COMPLETED},
      {"segment_alloc", TE::SEGMENT_ALLOC},
      {"segment_free", TE::SEGMENT_FREE},
      {"segment_map", TE::SEGMENT_MAP},
      {"segment_unmap", TE::SEGMENT_UNMAP},
      {"snapshot", TE::SNAPSHOT},
      {"oom", TE::OOM},
  };
  for (const auto& n : names)
    if (s == n.first) return n.second;
  TORCH_CHECK(false, "Unknown TraceEntry action: ", s);
}

// cuarena's history ring for max_entries of torch's: every block torch frees
// is two entries there (three in torch's), mappings come on top.
size_t c_capacity(size_t max_entries) {
  const size_t most = size_t(1) << 20;  // (calloc'd: only what is written takes memory)
  return max_entries > (most - 256) / 2 ? most : 2 * max_entries + 256;
}

// The memory pool a block is in (its arena is torch_pool_<a>_<b>), else {0, 0}.
MempoolId pool_of(void* p) {
  cua_arena* a = nullptr;
  const char* name = nullptr;
  unsigned long long x = 0, y = 0;
  if (cua_ptr_info(p, &a, nullptr, nullptr) == CUA_OK && cua_arena_name(a, &name) == CUA_OK &&
      name && sscanf(name, "torch_pool_%llu_%llu", &x, &y) == 2)
    return {x, y};
  return {0, 0};
}

// Out of memory where torch raises (the shim's allocate() reads
// cua_last_error() next: no cuarena call here).
void note_oom(const HistoryCall& call, size_t size, int device, cudaStream_t stream) {
  size_t free_b = 0, total = 0;
  if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) (void)cudaGetLastError();
  Rec r = make_rec(TE::OOM, device, free_b, size, stream, {0, 0}, now_ns(), call.context);
  std::lock_guard<std::mutex> g(st.mu);
  if (st.on) push_locked(r);
}

void c_history(bool enabled, bool fresh, size_t max_entries) {
  int n = c10::cuda::device_count();
  size_t cap = enabled ? c_capacity(max_entries) : 0;
  if (enabled && !fresh && cap <= c_cap) return;  // (a new ring would lose its mappings)
  for (int d = 0; d < n && d < kMaxDevices; d++) cua_history_enable(d, cap);
  c_cap = cap;
}

}  // namespace

HistoryCall history_begin(CCA::RecordContext level) {
  HistoryCall c;
  c.on = history_on.load(std::memory_order_relaxed);
  if (!c.on) return c;
  CCA::CreateContextFn fn = recorder.load();
  if (fn && when.load(std::memory_order_relaxed) >= static_cast<int>(level)) c.context = fn();
  c.start_ns = now_ns();
  return c;
}

HistoryCall history_begin_free(void* ptr) {
  HistoryCall c = history_begin(CCA::RecordContext::ALL);
  if (c.on) c.pool = pool_of(ptr);
  std::lock_guard<std::mutex> g(st.mu);
  auto it = st.live.find(ptr);
  if (it == st.live.end()) return c;
  c.block_context = std::move(it->second);  // (dropped with the call)
  st.live.erase(it);
  return c;
}

void history_alloc(const HistoryCall& call, void* ptr, size_t size, int device,
                   cudaStream_t stream) {
  if (!call.on) return;
  if (!ptr) return note_oom(call, size, device, stream);
  uint64_t end = now_ns();
  Rec r = make_rec(TE::ALLOC, device, reinterpret_cast<uintptr_t>(ptr), size, stream,
                   pool_of(ptr), end, call.context);
  r.start_ns = call.start_ns;
  Context block = call.context;
  std::lock_guard<std::mutex> g(st.mu);
  if (!st.on) return;
  if (block) std::swap(st.live[ptr], block);  // (a stale one goes after the lock)
  push_locked(r);
}

void history_free(const HistoryCall& call, void* ptr, size_t size, int device,
                  cudaStream_t stream) {
  if (!call.on) return;
  uint64_t end = now_ns();
  const Context& ctx = call.context ? call.context : call.block_context;
  auto addr = reinterpret_cast<uintptr_t>(ptr);
  Rec requested = make_rec(TE::FREE_REQUESTED, device, addr, size, stream, call.pool,
                           call.start_ns, ctx);
  requested.end_ns = end;  // its window: the whole call
  // cuarena hands a block to another stream only once that stream's work
  // is done: the free completes within the call.
  Rec completed = make_rec(TE::FREE_COMPLETED, device, addr, size, stream, call.pool, end, ctx);
  std::lock_guard<std::mutex> g(st.mu);
  if (!st.on) return;
  push_locked(requested);
  push_locked(completed);
}

void history_window(const HistoryCall& call, int device) {
  if (!call.on) return;
  Rec r = make_rec(TE::SEGMENT_UNMAP, device, 0, 0, nullptr, {0, 0}, now_ns(), call.context);
  r.start_ns = call.start_ns;
  std::lock_guard<std::mutex> g(st.mu);
  if (st.on) push_window_locked(r);
}

// As torch: enabled or not, the recorder and the level, the ring's size and
// the actions skipped are set anew; turning off, or clear, empties the ring.
void history_record(bool enabled, CCA::CreateContextFn fn, size_t max_entries,
                    CCA::RecordContext level, bool clear,
                    const std::vector<std::string>& skip) {
  TORCH_CHECK(level == CCA::RecordContext::NEVER || fn,
              "a context recorder is needed to record contexts");
  std::unordered_set<int> skipped;
  for (const auto& s : skip) skipped.insert(action_named(s));
  std::lock_guard<std::mutex> r(record_mu);
  std::vector<Rec> gone;  // (dropped after st.mu)
  std::vector<AnnotationEntry> gone_annotations;
  std::unordered_map<void*, Context> gone_live;
  bool was_on;
  {
    std::lock_guard<std::mutex> g(st.mu);
    was_on = st.on;
    st.on = enabled;
    recorder.store(enabled ? fn : nullptr);
    when.store(static_cast<int>(enabled ? level : CCA::RecordContext::NEVER));
    st.max_entries = std::max<size_t>(1, max_entries);
    st.skip = std::move(skipped);
    for (auto& ring : st.rings) {
      if (!enabled || clear)
        ring.clear(gone);
      else
        ring.keep_newest(st.max_entries, gone);
    }
    if (!enabled || clear) {
      std::move(st.windows.begin(), st.windows.end(), std::back_inserter(gone));
      st.windows.clear();
      st.annotations.clear(gone_annotations);
    } else {
      st.annotations.keep_newest(st.max_entries, gone_annotations);
    }
    if (!enabled) std::swap(st.live, gone_live);  // Note [torch's history in the shim]
    history_on.store(enabled);
  }
  c_history(enabled, !was_on || clear, st.max_entries);
}

bool history_enabled() { return history_on.load(std::memory_order_relaxed); }

// As torch: only while history is on (a pop with none pushed does nothing).
void history_push_compile(const std::string& name) {
  if (history_enabled()) compile_stack.push_back(name);
}

void history_pop_compile() {
  if (history_enabled() && !compile_stack.empty()) compile_stack.pop_back();
}

void history_set_metadata(const std::string& metadata) { user_metadata = metadata; }

std::string history_metadata() { return user_metadata; }

// record_function's user scopes, while history is on (torch registers the
// callback that calls this): the snapshot's external_annotations.
void history_annotate(const std::vector<std::pair<std::string, std::string>>& md) {
  if (!history_enabled()) return;
  AnnotationEntry e(c10::cuda::current_device(),
                         static_cast<c10::approx_time_t>(now_ns()));
  for (const auto& kv : md) e.recordUserMetadata(kv.first, kv.second);
  std::lock_guard<std::mutex> g(st.mu);
  if (st.on) st.annotations.push(e, st.max_entries);
}

namespace {

// Pages mapped as cuarena's history tells, each range with its context.
struct Mapped {
  uintptr_t end;
  Context ctx;
};
using MappedRanges = std::map<uintptr_t, Mapped>;

Context mapped_ctx(const MappedRanges& m, uintptr_t addr) {
  auto it = m.upper_bound(addr);
  if (it == m.begin()) return nullptr;
  --it;
  return it->second.end > addr ? it->second.ctx : nullptr;
}

void unmap(MappedRanges& m, uintptr_t lo, uintptr_t hi) {
  auto it = m.lower_bound(lo);
  if (it != m.begin()) {
    auto left = std::prev(it);
    if (left->second.end > lo) {  // it starts before lo: keep its ends
      Mapped whole = left->second;
      left->second.end = lo;
      if (whole.end > hi) m[hi] = whole;
    }
  }
  it = m.lower_bound(lo);
  while (it != m.end() && it->first < hi) {
    if (it->second.end > hi) {
      Mapped rest = it->second;
      m.erase(it);
      m[hi] = rest;
      break;
    }
    it = m.erase(it);
  }
}

// The innermost window (the latest to start) that holds time t: the call
// during which cuarena made the entry; null if none.
const Rec* window_of(const std::vector<const Rec*>& w, uint64_t t) {
  auto it = std::upper_bound(w.begin(), w.end(), t,
                             [](uint64_t x, const Rec* r) { return x < r->start_ns; });
  for (int k = 0; k < 64 && it != w.begin(); k++) {
    --it;
    if ((*it)->end_ns >= t) return *it;
  }
  return nullptr;
}

// cuarena's mappings and unmappings of `device`, in torch's terms (Note
// [torch's history in the shim]); `mapped` gets the ranges still mapped.
std::vector<Rec> segment_entries(int device, const std::vector<const Rec*>& windows,
                                 const std::unordered_set<int>& skip, bool keep_now,
                                 MappedRanges& mapped) {
  std::vector<Rec> out;
  size_t n = 0;
  if (cua_history_read(device, nullptr, 0, &n) != CUA_OK || n == 0) return out;
  std::vector<cua_history_entry> h(n);
  if (cua_history_read(device, h.data(), n, &n) != CUA_OK) return out;
  h.resize(n);
  for (const cua_history_entry& e : h) {
    if (e.action != CUA_HISTORY_MAP && e.action != CUA_HISTORY_UNMAP) continue;
    bool map = e.action == CUA_HISTORY_MAP;
    const Rec* w = window_of(windows, e.time_ns);
    Rec r;
    r.action = map ? TE::SEGMENT_MAP : TE::SEGMENT_UNMAP;
    r.device = device;
    r.addr = e.address;
    r.size = e.size;
    r.stream = reinterpret_cast<cudaStream_t>(e.stream);
    r.time_ns = r.start_ns = r.end_ns = e.time_ns;
    r.compile = w ? w->compile : "N/A";
    r.meta = w ? w->meta : "";
    r.keep = w ? w->keep : keep_now;
    if (map) {
      r.ctx = w ? w->ctx : nullptr;
      mapped[e.address] = {e.address + e.size, r.ctx};
    } else {
      r.ctx = w && w->ctx ? w->ctx : r.keep ? mapped_ctx(mapped, e.address) : nullptr;
      unmap(mapped, e.address, e.address + e.size);
    }
    if (!skip.count(r.action)) out.push_back(std::move(r));
  }
  return out;
}

CCA::TraceEntry to_torch(const Rec& r, int64_t epoch_offset_ns) {
  CCA::TraceEntry te(r.action, static_cast<c10::DeviceIndex>(r.device), r.addr, r.size, r.stream,
                     r.pool, c10::approx_time_t{0}, r.keep ? r.ctx : nullptr, r.compile, r.meta);
  te.time_.t_ = static_cast<time_t>((static_cast<int64_t>(r.time_ns) + epoch_offset_ns) / 1000);
  return te;
}

// One device's trace: the shim's entries and cuarena's segment entries by
// time, the newest max_entries of them.
std::vector<CCA::TraceEntry> device_trace(int device, std::vector<Rec> recs,
                                          const std::vector<Rec>& windows, size_t max_entries,
                                          const std::unordered_set<int>& skip, bool keep_now,
                                          int64_t epoch_offset_ns, MappedRanges& mapped) {
  std::stable_sort(recs.begin(), recs.end(),  // (threads push in their own order)
                   [](const Rec& a, const Rec& b) { return a.time_ns < b.time_ns; });
  std::vector<const Rec*> w;
  for (const Rec& r : recs)
    if (r.end_ns > r.start_ns) w.push_back(&r);
  for (const Rec& r : windows)
    if (r.device == device || r.device < 0) w.push_back(&r);
  std::stable_sort(w.begin(), w.end(),
                   [](const Rec* a, const Rec* b) { return a->start_ns < b->start_ns; });
  std::vector<Rec> segs = segment_entries(device, w, skip, keep_now, mapped);
  std::vector<Rec> all;
  all.reserve(recs.size() + segs.size());
  std::merge(std::make_move_iterator(recs.begin()), std::make_move_iterator(recs.end()),
             std::make_move_iterator(segs.begin()), std::make_move_iterator(segs.end()),
             std::back_inserter(all),
             [](const Rec& a, const Rec& b) { return a.time_ns < b.time_ns; });
  size_t from = all.size() > max_entries ? all.size() - max_entries : 0;
  std::vector<CCA::TraceEntry> out;
  out.reserve(all.size() - from);
  for (size_t i = from; i < all.size(); i++) out.push_back(to_torch(all[i], epoch_offset_ns));
  return out;
}

}  // namespace

void history_fill(CCA::SnapshotInfo& info, int devices, MempoolId pool, bool include_traces) {
  devices = std::min(devices, kMaxDevices);
  std::vector<size_t> active(devices, 0);
  for (const auto& s : info.segments)
    if (s.device >= 0 && s.device < devices) active[s.device] += s.active_size;
  std::vector<std::vector<Rec>> recs(devices);
  std::vector<Rec> windows, gone;
  std::vector<AnnotationEntry> annotations;
  info.device_traces.assign(devices, {});
  size_t max_entries;
  std::unordered_set<int> skip;
  {
    std::lock_guard<std::mutex> g(st.mu);
    for (auto& s : info.segments) {  // the frames of the live blocks
      uintptr_t addr = s.address;
      for (auto& b : s.blocks) {
        auto it = b.allocated ? st.live.find(reinterpret_cast<void*>(addr)) : st.live.end();
        if (it != st.live.end()) b.context_when_allocated = it->second;
        addr += b.size;
      }
    }
    if (!st.on) return;  // (torch empties its history when it is turned off)
    for (int d = 0; d < devices; d++) recs[d] = st.rings[d].entries();
    windows.assign(st.windows.begin(), st.windows.end());
    annotations = st.annotations.entries();
    max_entries = st.max_entries;
    skip = st.skip;
    // As torch: each device's snapshot is an entry, after its trace was read.
    for (int d = 0; d < devices; d++) {
      Rec r = make_rec(TE::SNAPSHOT, d, 0, active[d], nullptr, pool, now_ns(), nullptr);
      push_locked(r);
      gone.push_back(std::move(r));
    }
  }
  int64_t epoch_offset_ns = static_cast<int64_t>(clock_ns(CLOCK_REALTIME)) -
                            static_cast<int64_t>(now_ns());
  for (int d = 0; d < devices; d++) {
    MappedRanges mapped;
    auto trace = device_trace(d, std::move(recs[d]), windows, max_entries, skip, keeps_frames(),
                              epoch_offset_ns, mapped);
    if (include_traces) info.device_traces[d] = std::move(trace);
    for (auto& s : info.segments)
      if (s.device == d && !s.context_when_allocated)
        s.context_when_allocated = mapped_ctx(mapped, s.address);
  }
  for (auto& a : annotations)
    a.time_.t_ = static_cast<time_t>((static_cast<int64_t>(a.time_.approx_t_) + epoch_offset_ns) / 1000);
  info.external_annotations = std::move(annotations);
}

}  // namespace cuarena_torch
