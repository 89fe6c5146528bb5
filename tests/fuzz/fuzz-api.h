/*
 * fuzz-api.h - what the API fuzzer's single-threaded files share (fuzz-api.c:
 * the model, its checks and the operations; fuzz-callbacks.c: the callbacks
 * that re-enter; fuzz-run.c: one input from start to end, and the corpus
 * runner): the model's state and the helpers the operations and the callbacks
 * both use.
 */
#ifndef CUA_FUZZ_API_H
#define CUA_FUZZ_API_H

#include "cuarena.h"
#include "cuarena_backend.h"

#include <stddef.h>
#include <stdint.h>


#define NARENAS 4
#define NSTREAMS 4
#define MAX_LIVE 256
#define MAX_FREED 64
#define MAX_DEAD 16
#define GRAN ((size_t)512 << 10)
#define CAPACITY ((size_t)256 << 20)

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;
typedef reader *reader_ptr;

typedef struct block {
    unsigned char *p;
    size_t size;
    int arena;
    uint32_t seed;
} block;

typedef struct slot {
    cua_arena *a;
    int offloaded, discarded;
    uint64_t live; /* the model's live bytes */
} slot;

/* The model: the arenas, their live blocks, and what the callbacks read. */
typedef struct world {
    cua_backend *host, *fault;
    /* A supplier backend over the fault backend (Note [memory from a
     * supplier]): whole segments of host memory from fuzz-run.c's
     * callbacks, the nth of which fails when supply_fail_at says so. */
    cua_backend *supplied;
    uint64_t supply_live, supply_allocs, supply_fail_at;
    slot s[NARENAS];
    block live[MAX_LIVE];
    int nlive;
    void *freed[MAX_FREED]; /* recently freed pointers, for double frees */
    int nfreed;
    cua_arena *dead[MAX_DEAD]; /* destroyed handles */
    int ndead;
    uint64_t ops, inputs, creates;
    unsigned touched; /* arenas the current call may have changed */
    /* Callbacks that re-enter (fuzz-callbacks.c): they read their
     * actions from the input too. */
    reader_ptr in;     /* the input being run */
    int asker;         /* the slot of the operation running (its arena "asks") */
    int depth;         /* callbacks nested in callbacks */
    int quiet;         /* settling: callbacks do nothing */
    unsigned dying;    /* slots whose destroy runs: their blocks are gone already */
    unsigned moving;   /* slots whose offload or restore runs: their bytes are in flux */
    uint64_t cb_calls, cb_actions, cb_destroys;
} world;

extern world W;
/* The op byte of the operation running (or last run). */
extern unsigned last_op;
extern const cua_stream streams[NSTREAMS];

/* CUA_FUZZ_TRACE's level (0: no trace). */
int trace_level(void);

/* ---- input (fuzz-api.c) */
/* One byte of the input (0 once it is used up); two bytes, low first. */
unsigned u8(reader *r);
unsigned u16(reader *r);

/* ---- checks (fuzz-api.c): a violation aborts, naming the operation */
void die(const char *what, const char *detail);
void expect(int ok, const char *what);
/* A failure must say what happened in words. */
void expect_fail(cua_status st, const char *what);
void check_pattern(const block *b);
/* The checks after a call: the arenas of `mask`, every live block's pattern. */
void check_arenas(unsigned mask);
void check_all(void);

/* ---- the model and the arenas (fuzz-api.c) */
void remember_freed(void *p);
void drop_block(int j);
void create_slot(int i, unsigned cfgbits, unsigned v);
/* A destroyed handle joins the dead ones (bad frees and calls use them). */
void bury(cua_arena *a);
void restore_slot(int i);
void free_live(void *p);
size_t pick_size(reader *r);
void add_live(int i, void *p, size_t size);
int is_offloaded(cua_arena *a);
/* One operation, as the input says. */
void one_op(reader *r);

/* ---- callbacks that re-enter (fuzz-callbacks.c), set once by fuzz-run.c */
void on_event(const cua_arena_event *ev, void *user);
size_t on_evict(int device, size_t need, void *user);

#endif /* CUA_FUZZ_API_H */
