/*
 * fuzz-mt.h - the fuzzer's multi-threaded mode (fuzz-mt.c), which fuzz-api.c
 * runs instead of its own when CUA_FUZZ_THREADS is 2 or more.
 */
#ifndef CUA_FUZZ_MT_H
#define CUA_FUZZ_MT_H

#include <stddef.h>
#include <stdint.h>

/* The threads CUA_FUZZ_THREADS asks for (2 to 8), or 0: the single-threaded mode. */
int fuzz_mt_threads(void);

/* Run one input on `nthreads` threads; aborts on a violation. */
void fuzz_mt_input(const uint8_t *data, size_t size, int nthreads);

/* Inputs run, operations made and arenas created by this mode so far. */
void fuzz_mt_counts(uint64_t *inputs, uint64_t *ops, uint64_t *creates);

#endif /* CUA_FUZZ_MT_H */
