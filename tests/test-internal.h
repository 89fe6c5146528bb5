/*
 * test-internal.h - for the tests that look inside an arena: the memory a
 * public handle names (a handle is a slot and a generation, not an address).
 */
#ifndef CUA_TEST_INTERNAL_H
#define CUA_TEST_INTERNAL_H

#include "process/registry.h"

/* The arena memory handle h names (NULL when h is no handle). */
static inline cua_arena *test_mem(cua_arena *h)
{
    uint32_t gen;
    return _cua_arena_of(h, &gen);
}

#endif /* CUA_TEST_INTERNAL_H */
