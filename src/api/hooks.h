/*
 * hooks.h - what the framework entry points (torch.c, cupy.c) share with
 * the public API.
 */
#ifndef CUA_API_HOOKS_H
#define CUA_API_HOOKS_H

#include "arena/types.h"
#include "cuarena_frameworks.h" /* their declarations: CUA_API exports them */

/* The arena a framework's allocation hook (PyTorch, CuPy) takes memory from
 * on `device` when it names none: the calling thread's current arena when it
 * is on that device, else the device's default arena (NULL when that cannot
 * be made: cua_last_error() says why). */
cua_arena *_cua_hook_arena(int device);

#endif /* CUA_API_HOOKS_H */
