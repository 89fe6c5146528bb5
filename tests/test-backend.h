/*
 * test-backend.h - what the backend tests (test-backend.c, test-fault.c)
 * share: a host backend of given size, and its live counters.
 */
#ifndef CUA_TEST_BACKEND_H
#define CUA_TEST_BACKEND_H

#include "backend/host.h"
#include "backend/fault.h"
#include "test.h"

static inline cua_backend *host_make(size_t capacity, size_t granularity, int manual_events)
{
    cua_backend *b = NULL;
    unsigned opts = manual_events ? TEST_MANUAL_EVENTS : 0;
    return test_host_backend_with(capacity, granularity, opts, &b) == CUA_OK ? b : NULL;
}

static inline int64_t live(cua_backend *b, const char *what)
{
    if (!strcmp(what, "reservations")) return atomic_load(&b->reservations);
    if (!strcmp(what, "handles")) return atomic_load(&b->handles);
    if (!strcmp(what, "mappings")) return atomic_load(&b->mappings);
    if (!strcmp(what, "events")) return atomic_load(&b->events);
    if (!strcmp(what, "host_buffers")) return atomic_load(&b->host_buffers);
    if (!strcmp(what, "host_bytes")) return atomic_load(&b->host_bytes);
    if (!strcmp(what, "streams")) return atomic_load(&b->streams);
    return atomic_load(&b->handle_bytes);
}

static inline int all_zero(cua_backend *b)
{
    return live(b, "reservations") == 0 && live(b, "handles") == 0 && live(b, "mappings") == 0 &&
           live(b, "events") == 0 && live(b, "handle_bytes") == 0 && live(b, "host_buffers") == 0 &&
           live(b, "host_bytes") == 0 && live(b, "streams") == 0;
}

#endif /* CUA_TEST_BACKEND_H */
