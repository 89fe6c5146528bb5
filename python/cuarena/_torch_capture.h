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

}  // namespace
