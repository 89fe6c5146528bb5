/*
 * host.h - the host backend: host memory with CUDA's virtual-memory rules (a
 * sparse memfd is the "device memory", reservations are PROT_NONE address
 * space, a handle maps whole, at offset 0, once, and is inaccessible until
 * access is set), and simulated events and streams. Code that passes on it
 * is legal on the GPU.
 */
#ifndef CUA_BACKEND_HOST_H
#define CUA_BACKEND_HOST_H

#include "backend/backend.h"

cua_status _cua_backend_host_create(const cua_host_config *cfg, cua_backend **out);
/* What cua_host_config_init sets: an 80 GiB device of 2 MiB pages. */
void _cua_host_config_defaults(cua_host_config *cfg);
/* Mark every event recorded on `stream` complete. */
cua_status _cua_host_stream_complete(cua_backend *b, cua_stream stream);
cua_status _cua_host_stream_destroy(cua_backend *b, cua_stream stream);
cua_status _cua_host_stream_capture(cua_backend *b, cua_stream stream, int on);
/* For tests: the devices (bit d: device d) that may access the mapping or
 * whole segment holding `addr`, into *mask. CUA_ERR_INVALID_ARG when addr is
 * in none (or b is not a host backend). */
cua_status _cua_host_access(cua_backend *b, uintptr_t addr, uint64_t *mask);

#endif /* CUA_BACKEND_HOST_H */
