/*
 * lockrank.h - the lock order of cuarena as code: every internal lock has a
 * rank, and a thread may take a lock only when its rank is greater than that
 * of every lock it holds (like jemalloc's witness). Builds without NDEBUG
 * check it on every take (lock.c keeps the ranks each thread holds) and
 * abort through the assert mechanism, naming both locks; release builds
 * compile it out. A try-lock is not checked (it cannot wait, so it cannot
 * deadlock) but is recorded, so that what is taken under it is checked.
 *
 * The order, outermost first, and why (X: an edge of "held -> taken" in the
 * code; docs/design.md, "Threads and locks", says the same in prose):
 *
 *   BACKEND_INIT  held while a device's shared CUDA backend is made (its
 *               driver calls): taken alone, only by the first user of that
 *               device; the threads that wait for it need that backend. The
 *               registry lock is not held meanwhile (made backends are read
 *               without a lock).
 *   ARENA_SUPPLIED  the lock of an arena on a supplier backend (Note [memory
 *               from a supplier], backend/supplier.c): the supplier's callbacks
 *               run under it and may allocate from, or free into, an arena of
 *               ARENA's rank (ARENA_SUPPLIED -> ARENA); one supplied arena's
 *               supplier cannot use another supplied arena.
 *   ARENA       every call on an arena takes it first, with no other cuarena
 *               lock held; never two arenas at once (out-of-memory relief, the
 *               registry's walks and reports lock arenas one at a time).
 *   TCACHE      a thread cache: its thread takes it alone on the fast path;
 *               the arena takes it under its lock to flush, close, kill or sum
 *               its caches (ARENA -> TCACHE).
 *   REGISTRY    the arena list and default arenas: destroy drops its default
 *               under the arena lock (ARENA -> REGISTRY); walks take it alone
 *               and lock arenas only after releasing it.
 *   STAGE       a backend's staging area, held for a whole offload or restore
 *               copy under the arena lock (ARENA -> STAGE): the copies' backend
 *               calls and the copy crew run under it.
 *   GRAVE_FWD   the graves of a backend that forwards to another (fault): its
 *               retries call the forwarding hooks, which take FAULT.
 *   FAULT       a fault backend's tables: held while it forwards create,
 *               release, map and unmap to the inner backend, whose wrappers
 *               retry the inner backend's graves (FAULT -> GRAVE).
 *   GRAVE       the graves of a backend that calls the driver (host, CUDA):
 *               taken by its wrappers under the arena lock, the staging lock
 *               or FAULT; its retries call that backend's hooks (-> HOST).
 *   HOST        a host backend's state (leaf: under every backend caller).
 *   CUDA_PEER   a CUDA backend's peer contexts (leaf: grant_peer, under ARENA).
 *   HISTORY     a device's allocation history (leaf: under ARENA or TCACHE).
 *   ADDRMAP     the address map's writer (leaf: under ARENA as segments come
 *               and go; tombstones are forgotten after RANGES is released).
 *   RANGES      the address map's whole-segment ranges (leaf, read-write).
 *   CREW        an offload's copy crew (leaf: under STAGE; its threads hold
 *               no other lock).
 *   EVICT       the eviction callbacks (leaf: copied, then called unlocked).
 *   EVENT_CB    the event callback (leaf: read, then called unlocked).
 *   JANITOR     the janitor's state (leaf: its thread drops it to trim).
 *
 * The leaves hold nothing under them: their order among themselves is only
 * the one that keeps it so. A new lock gets a row here, in its place.
 */
#ifndef CUA_BASE_LOCKRANK_H
#define CUA_BASE_LOCKRANK_H

/* X(NAME, "what it guards"), outermost first. */
#define CUA_LOCK_RANKS(X)                                                                  \
    X(BACKEND_INIT, "the lock that makes a device's shared backend")                       \
    X(ARENA_SUPPLIED, "the lock of an arena on a supplier backend")                        \
    X(ARENA, "an arena's lock")                                                            \
    X(TCACHE, "a thread cache's lock")                                                     \
    X(REGISTRY, "the registry lock")                                                       \
    X(STAGE, "a backend's staging lock")                                                   \
    X(GRAVE_FWD, "a forwarding backend's grave lock")                                      \
    X(FAULT, "a fault backend's lock")                                                     \
    X(GRAVE, "a backend's grave lock")                                                     \
    X(HOST, "a host backend's lock")                                                       \
    X(CUDA_PEER, "a CUDA backend's peer lock")                                             \
    X(HISTORY, "a device's history lock")                                                  \
    X(ADDRMAP, "the address map's lock")                                                   \
    X(RANGES, "the address map's range lock")                                              \
    X(CREW, "a copy crew's mutex")                                                         \
    X(EVICT, "the eviction-callback lock")                                                 \
    X(EVENT_CB, "the event-callback lock")                                                 \
    X(JANITOR, "the janitor's lock")

/* The ranks: 0 is no rank (a lock never initialised: the witness refuses it). */
typedef enum cua_lock_rank {
    CUA_LOCK_RANK_NONE = 0,
#define CUA_LOCK_RANK_ENUM_(name, text) CUA_LOCK_RANK_##name,
    CUA_LOCK_RANKS(CUA_LOCK_RANK_ENUM_)
#undef CUA_LOCK_RANK_ENUM_
    CUA_LOCK_RANK_COUNT
} cua_lock_rank;

#endif /* CUA_BASE_LOCKRANK_H */
