// _torch_pools.h - the private memory pools of the torch shim
// (_torch_shim.cpp, which includes this once): CUDA-graph captures' pools and
// torch.cuda.MemPool's, each an arena of its own, and which of them takes an
// allocation. Kept apart for size; not a header for anything else.
#pragma once

#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "cuarena.h"
#include "cuarena_backend.h"
#include "cuarena_inspect.h"
}

namespace {

// Private memory pools (CUDA graph capture): while a
// pool is allocated to, what the streams its filter accepts allocate goes to
// an arena of its own, named torch_pool_<a>_<b> after the pool id. Its blocks,
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
  int device = 0;
  int uses = 0;
};

using PoolKey = std::pair<uint64_t, uint64_t>;

// Note [pools allocated to]: as torch's captures_underway, one entry per
// beginAllocateToPool not yet ended: a capture's filter takes the streams
// that capture, use_mem_pool's takes the thread that began it (the filter
// is asked on the allocating thread). The last begun that takes an
// allocation has it, so nested use_mem_pool blocks send it to the innermost
// pool. A pool is allocated to by one begin at a time, as in torch.
struct Underway {
  PoolKey id;
  int device;
  std::function<bool(cudaStream_t)> filter;
};

std::mutex pools_mu;
std::map<PoolKey, Pool> pools;
std::vector<Underway> underway;  // (pools_mu) in the order begun
std::atomic<int> underway_n{0};

std::string pool_name(c10::cuda::MempoolId_t id) {
  return "torch_pool_" + std::to_string(id.first) + "_" + std::to_string(id.second);
}

bool is_default(c10::cuda::MempoolId_t id) { return id.first == 0 && id.second == 0; }

// Something is allocated to a pool on `device` (pools_mu held).
bool busy_locked(int device) {
  for (const Underway& u : underway)
    if (u.device == device) return true;
  return false;
}

// A pool no graph or MemPool holds goes, with its arena and its supplier
// backend, once no block of it is live (pools_mu held). Returns whether it went.
bool drop_locked(std::map<PoolKey, Pool>::iterator it) {
  Pool& p = it->second;
  if (p.uses > 0) return false;
  if (p.arena && cua_arena_destroy(p.arena, 0) != CUA_OK) return false;
  if (p.backend) cua_backend_destroy(p.backend);  // (its segments went back)
  pools.erase(it);
  return true;
}

// The arena of the pool that takes an allocation of n bytes on `device`
// for `stream` (Note [pools allocated to]): *taken says whether one does;
// then the block, or null when the pool's arena has none to give.
void* pool_alloc(size_t n, int device, cudaStream_t stream, bool* taken) {
  *taken = false;
  if (!underway_n.load(std::memory_order_relaxed)) return nullptr;
  std::lock_guard<std::mutex> g(pools_mu);
  for (auto u = underway.rbegin(); u != underway.rend(); ++u) {
    if (u->device != device || !u->filter || !u->filter(stream)) continue;
    *taken = true;
    auto it = pools.find(u->id);
    void* ptr = nullptr;
    if (it == pools.end() || !it->second.arena ||
        cua_arena_alloc(it->second.arena, n ? n : 1, reinterpret_cast<cua_stream>(stream), &ptr) !=
            CUA_OK)
      return nullptr;
    return ptr;
  }
  return nullptr;
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
        {reinterpret_cast<void*>(r->address), r->requested,
         reinterpret_cast<cudaStream_t>(r->stream)});
}

// The live blocks of a pool's arena (none when the pool has no arena on
// `device`), in address order; *arena gets the arena. Not the blocks torch
// freed that wait in _torch_capture.h (held frees: not live for torch).
std::vector<LiveBlock> pool_blocks(c10::DeviceIndex device, c10::cuda::MempoolId_t id,
                                   cua_arena** arena = nullptr) {
  release_over();
  std::vector<LiveBlock> live;
  {
    std::lock_guard<std::mutex> g(pools_mu);
    auto it = pools.find({id.first, id.second});
    cua_arena* a = it != pools.end() && it->second.device == device ? it->second.arena : nullptr;
    if (a) cua_arena_walk(a, collect_live, &live);
    if (arena) *arena = a;
  }
  live.erase(std::remove_if(live.begin(), live.end(), [](const LiveBlock& b) { return is_held(b.ptr); }),
             live.end());
  return live;
}

// A segment of a pool's own allocator (the supplier backend's callbacks;
// called under the pool arena's lock, and under pools_mu: the allocator
// must not allocate through torch's CUDA allocator). No exception crosses
// into C: a failure is a null segment, cuarena's out-of-memory answer.
void* supplier_alloc(size_t size, int device, void* ctx) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    return static_cast<c10::cuda::CUDACachingAllocator::CUDAAllocator*>(ctx)->raw_alloc(size);
  } catch (...) {
    return nullptr;
  }
}
void supplier_free(void* ptr, size_t, int device, void* ctx) {
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    static_cast<c10::cuda::CUDACachingAllocator::CUDAAllocator*>(ctx)->raw_delete(ptr);
  } catch (...) {
  }
}

// The pool of id, with its arena made on first use (pools_mu held); with
// `supplier`, an arena whose segments come from that allocator.
Pool& pool_locked(
    c10::DeviceIndex device, c10::cuda::MempoolId_t id,
    std::shared_ptr<c10::cuda::CUDACachingAllocator::CUDAAllocator> supplier = nullptr) {
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

}  // namespace
