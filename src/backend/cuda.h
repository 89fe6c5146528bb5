/*
 * cuda.h - the CUDA backend: the driver's VMM API (cuMemAlloc without VMM),
 * events and streams; the driver is loaded at run time (dlopen of
 * libcuda.so.1, then cuGetProcAddress), so the library links and runs
 * without one. One backend per device, on its primary context. Built when
 * cuda.h is found (CUA_HAVE_CUDA).
 */
#ifndef CUA_BACKEND_CUDA_H
#define CUA_BACKEND_CUDA_H

#include "backend/backend.h"

cua_status _cua_backend_cuda_create(int device, cua_backend **out);

#endif /* CUA_BACKEND_CUDA_H */
