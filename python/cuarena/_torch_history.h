// _torch_history.h - torch's allocation history, kept by the PyTorch shim
// (_torch_history.cpp; Note [torch's history in the shim] there). The shim's
// allocation and free functions call these around their call into cuarena;
// its snapshot() has the history fill in the frames and the device traces.

#pragma once

#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace cuarena_torch {

namespace CCA = c10::cuda::CUDACachingAllocator;
using Context = std::shared_ptr<c10::GatheredContext>;

// Set while torch's history is recorded (_record_memory_history): the one
// relaxed load the allocation and free paths make when it is off.
extern std::atomic<bool> history_on;

// One call of the shim into cuarena, as the history sees it.
struct HistoryCall {
  Context context;        // gathered before the call, as torch gathers it
  Context block_context;  // a free: the context the block was allocated with
  c10::cuda::MempoolId_t pool{0, 0};  // a free: the block's memory pool
  uint64_t start_ns = 0;  // CLOCK_MONOTONIC, cuarena's history clock
  bool on = false;        // history was on: the call makes entries
};

// Before a call (no lock held: the context recorder may take the GIL): the
// context torch would gather at `level` (STATE for an allocation, ALL for
// empty_cache) and the time; nothing while history is off (a hot path checks
// history_on first, saving the call).
HistoryCall history_begin(CCA::RecordContext level);

// Before a free: history_begin(ALL), and the block leaves the live ones
// (after the free its address may be handed out again).
HistoryCall history_begin_free(void* ptr);

// After the call: an allocation (ALLOC; a null ptr: OOM, with the device's
// free bytes), a free (FREE_REQUESTED and FREE_COMPLETED), a call that made
// no entry of its own (empty_cache): its window.
void history_alloc(const HistoryCall& call, void* ptr, size_t size, int device,
                   cudaStream_t stream);
void history_free(const HistoryCall& call, void* ptr, size_t size, int device,
                  cudaStream_t stream);
void history_window(const HistoryCall& call, int device);

// The allocator's calls of the same names.
void history_record(bool enabled, CCA::CreateContextFn recorder, size_t max_entries,
                    CCA::RecordContext when, bool clear, const std::vector<std::string>& skip);
bool history_enabled();
void history_push_compile(const std::string& name);
void history_pop_compile();
void history_set_metadata(const std::string& metadata);
std::string history_metadata();
void history_annotate(const std::vector<std::pair<std::string, std::string>>& md);

// snapshot(): the contexts of the live blocks and of the segments, the
// device traces of `devices` devices (when include_traces) and the
// annotations, into `info`, whose segments are filled in already.
void history_fill(CCA::SnapshotInfo& info, int devices, c10::cuda::MempoolId_t pool,
                  bool include_traces);

}  // namespace cuarena_torch
