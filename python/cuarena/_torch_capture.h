// _torch_capture.h - frees inside a CUDA graph capture for the torch shim
// (_torch_shim.cpp, which includes this once): record_stream on a capturing
// stream kept here, and the free of such a block held until the allocating
// stream has joined its side streams or the capture is over. Kept apart for
// size; not a header for anything else.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <unordered_set>
#include <vector>

extern "C" {
#include "cuarena.h"
#include "cuarena_frameworks.h"
}

namespace {

// Note [frees during a capture, reused after a join]: inside a CUDA graph
// capture, a tensor used on a side stream (record_stream) and then freed may
// be handed out again as soon as its own stream has joined every such side
// stream - its later work in the graph comes after theirs - as torch's
// allocator does with graph_capture_record_stream_reuse. An event cannot
// tell (one recorded on a capturing stream is a node of the graph, never
// complete): the graph can. So a record_stream on a capturing stream is kept
// here, not given to cuarena; the free of such a tensor is held, with each
// side stream's last captured nodes at that moment (its "marks"). An
// allocation on the block's own stream, in the same capture, hands the held
// block to cuarena's free first when the nodes that stream now ends with
// have every mark as an ancestor (cudaGraphNodeGetDependencies, searched
// upward once per allocation). cuarena then reuses it on that stream in
// stream order, which the graph's edges make safe. A block whose own stream
// or a side stream is not in the same capture, or whose capture could not
// be read, is never joined: it waits for the capture's end. When the capture
// is over, a held block is freed with its side streams recorded as any other
// (cuarena then waits for their work). Until then it is not live for torch:
// the pool's live blocks (checkpoints of CUDA-graph trees) leave it out, and
// any query of the pools first frees the held blocks whose capture is over.
// Nothing is held outside captures: an allocation and a free pay one relaxed
// load each.
struct HeldFree {
  void* ptr;
  size_t size;
  int device;
  cudaStream_t stream;               // the block's own (the free's)
  std::vector<cudaStream_t> uses;    // side streams recorded during the capture
  unsigned long long capture = 0;    // the capture's id
  bool joinable = false;             // false: only the capture's end frees it
  std::vector<cudaGraphNode_t> marks;
};
std::mutex capture_mu;
std::map<void*, std::vector<cudaStream_t>> capture_uses;  // ptr -> capturing side streams
std::atomic<size_t> uses_count{0};  // capture_uses.size(): frees skip the lock when 0
std::vector<HeldFree> held;
std::atomic<size_t> held_count{0};

// The capture `stream` takes part in, with a copy of its last captured nodes
// (the driver's array lasts only until the next call on the stream); false
// when it captures nothing or cannot say (an error - e.g. a legacy stream
// during another thread's capture - is cleared: torch checks
// cudaGetLastError after kernels).
bool capture_of(cudaStream_t stream, unsigned long long* id,
                std::vector<cudaGraphNode_t>* nodes = nullptr) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  const cudaGraphNode_t* deps = nullptr;
  size_t n = 0;
#if CUDART_VERSION >= 13000
  cudaError_t r = cudaStreamGetCaptureInfo(stream, &st, id, nullptr, &deps, nullptr, &n);
#else
  cudaError_t r = cudaStreamGetCaptureInfo_v2(stream, &st, id, nullptr, &deps, &n);
#endif
  if (r != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  if (st != cudaStreamCaptureStatusActive) return false;
  if (nodes) nodes->assign(deps, deps + n);
  return true;
}

bool stream_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &st) != cudaSuccess) {
    (void)cudaGetLastError();
    return true;  // (implicit capture: treat as capturing, touch nothing)
  }
  return st != cudaStreamCaptureStatusNone;
}

// The direct dependencies of `node` appended to *out; false on an error.
bool dependencies(cudaGraphNode_t node, std::vector<cudaGraphNode_t>* out) {
  size_t k = 0;
#if CUDART_VERSION >= 13000
  cudaError_t r = cudaGraphNodeGetDependencies(node, nullptr, nullptr, &k);
#else
  cudaError_t r = cudaGraphNodeGetDependencies(node, nullptr, &k);
#endif
  if (r == cudaSuccess && k) {
    size_t at = out->size();
    out->resize(at + k);
#if CUDART_VERSION >= 13000
    r = cudaGraphNodeGetDependencies(node, out->data() + at, nullptr, &k);
#else
    r = cudaGraphNodeGetDependencies(node, out->data() + at, &k);
#endif
    out->resize(at + k);
  }
  if (r != cudaSuccess) (void)cudaGetLastError();
  return r == cudaSuccess;
}

// `from` and its ancestors into *seen, upward until every node of `wanted`
// is among them (or all are seen, or the bounded search ends).
void ancestors(const std::vector<cudaGraphNode_t>& from,
               const std::unordered_set<cudaGraphNode_t>& wanted,
               std::unordered_set<cudaGraphNode_t>* seen) {
  constexpr size_t kMaxNodes = 1 << 16;
  size_t found = 0;
  std::vector<cudaGraphNode_t> todo(from);
  while (!todo.empty() && found < wanted.size()) {
    cudaGraphNode_t node = todo.back();
    todo.pop_back();
    if (!seen->insert(node).second) continue;
    found += wanted.count(node);
    if (seen->size() > kMaxNodes || !dependencies(node, &todo)) return;
  }
}

// torch's record_stream: kept here while `stream` captures (see the Note).
void record_use(void* p, cudaStream_t stream) {
  if (stream_capturing(stream)) {
    std::lock_guard<std::mutex> g(capture_mu);
    auto& v = capture_uses[p];
    if (std::find(v.begin(), v.end(), stream) == v.end()) v.push_back(stream);
    uses_count.store(capture_uses.size(), std::memory_order_relaxed);
    return;
  }
  cua_record_stream(p, reinterpret_cast<cua_stream>(stream));
}

void free_now(const HeldFree& h) {
  for (cudaStream_t u : h.uses) cua_record_stream(h.ptr, reinterpret_cast<cua_stream>(u));
  cua_torch_free(h.ptr, h.size, h.device, h.stream);
}

// torch's free: held when the block was used on a stream that captures.
void free_or_hold(void* p, size_t n, int device, cudaStream_t stream) {
  HeldFree h{p, n, device, stream, {}, 0, false, {}};
  if (uses_count.load(std::memory_order_relaxed) != 0) {
    std::lock_guard<std::mutex> g(capture_mu);
    auto it = capture_uses.find(p);
    if (it != capture_uses.end()) {
      h.uses = std::move(it->second);
      capture_uses.erase(it);
      uses_count.store(capture_uses.size(), std::memory_order_relaxed);
    }
  }
  if (h.uses.empty()) return free_now(h);
  unsigned long long own = 0;
  h.joinable = capture_of(stream, &own);
  bool capturing = false;
  for (cudaStream_t u : h.uses) {
    unsigned long long id = 0;
    std::vector<cudaGraphNode_t> nodes;
    if (!capture_of(u, &id, &nodes)) {
      h.joinable = false;  // (not in a capture, or unreadable: the end decides)
      capturing = capturing || stream_capturing(u);
      continue;
    }
    capturing = true;
    if (id != own) h.joinable = false;
    h.capture = id;
    h.marks.insert(h.marks.end(), nodes.begin(), nodes.end());
  }
  if (!capturing) return free_now(h);
  std::lock_guard<std::mutex> g(capture_mu);
  held.push_back(std::move(h));
  held_count.store(held.size(), std::memory_order_relaxed);
}

// The held blocks that may go to cuarena now, taken out of the list: those
// whose capture is over, and (with `stream` capturing, `nodes` its last
// captured nodes) those of `stream` whose marks its nodes descend from.
std::vector<HeldFree> take_released(cudaStream_t stream, unsigned long long id,
                                    const std::vector<cudaGraphNode_t>* nodes) {
  std::vector<HeldFree> out;
  std::unordered_set<cudaGraphNode_t> above;
  bool searched = false;
  std::map<cudaStream_t, bool> capturing;  // (each stream asked once a call)
  auto busy = [&](cudaStream_t s) {
    auto it = capturing.find(s);
    return it != capturing.end() ? it->second : (capturing[s] = stream_capturing(s));
  };
  std::lock_guard<std::mutex> g(capture_mu);
  for (size_t i = 0; i < held.size();) {
    HeldFree& h = held[i];
    bool over = !busy(h.stream) && std::none_of(h.uses.begin(), h.uses.end(), busy);
    bool joined = false;
    if (!over && nodes && h.joinable && h.stream == stream && h.capture == id) {
      if (!searched) {  // (once a call, upward until every candidate's marks are seen)
        std::unordered_set<cudaGraphNode_t> wanted;
        for (const HeldFree& c : held)
          if (c.joinable && c.stream == stream && c.capture == id)
            wanted.insert(c.marks.begin(), c.marks.end());
        ancestors(*nodes, wanted, &above);
        searched = true;
      }
      // (a search cut short finds fewer marks: no join, which is safe)
      joined = std::all_of(h.marks.begin(), h.marks.end(),
                           [&](cudaGraphNode_t m) { return above.count(m) != 0; });
    }
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
  return out;
}

// Before an allocation on `stream`: the held blocks it may have, and those
// of captures that are over, to cuarena.
void release_held(cudaStream_t stream) {
  if (held_count.load(std::memory_order_relaxed) == 0) return;
  unsigned long long id = 0;
  std::vector<cudaGraphNode_t> nodes;
  bool capturing = capture_of(stream, &id, &nodes);
  for (const HeldFree& h : take_released(stream, id, capturing ? &nodes : nullptr)) free_now(h);
}

// The held blocks whose capture is over, to cuarena (before a query of the
// pools, an empty_cache, a pool's release).
void release_over() {
  if (held_count.load(std::memory_order_relaxed) == 0) return;
  for (const HeldFree& h : take_released(nullptr, 0, nullptr)) free_now(h);
}

// True when torch freed `p` and it waits here (not live for torch).
bool is_held(void* p) {
  if (held_count.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard<std::mutex> g(capture_mu);
  return std::any_of(held.begin(), held.end(), [&](const HeldFree& h) { return h.ptr == p; });
}

// `p` leaves torch by another way (a checkpoint's restore frees it): its
// kept side streams are forgotten.
void forget_uses(void* p) {
  if (uses_count.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> g(capture_mu);
  capture_uses.erase(p);
  uses_count.store(capture_uses.size(), std::memory_order_relaxed);
}

}  // namespace
