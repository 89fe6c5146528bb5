/*
 * fault.h - the fault backend: forwards every call to an inner backend and
 * fails the chosen ones (the nth call of a kind, a run of calls, or at
 * random), for the fault sweep and the fuzzer.
 */
#ifndef CUA_BACKEND_FAULT_H
#define CUA_BACKEND_FAULT_H

#include "backend/backend.h"

cua_status _cua_backend_fault_create(cua_backend *inner, cua_backend **out);
/* Fail `count` calls of `call` in a row from the nth (1-based, counted from
 * now; nth 0 takes the rule away): cua_fault_fail_calls. */
cua_status _cua_fault_fail_calls(cua_backend *b, cua_call call, uint64_t nth, uint64_t count,
                                 cua_status fail);
cua_status _cua_fault_fail_random(cua_backend *b, double p, uint64_t seed);
/* A second rule for `call`, beside the one of _cua_fault_fail_calls (pairs of
 * failures: the nth call of the kind fails too, once). */
cua_status _cua_fault_fail_also(cua_backend *b, cua_call call, uint64_t nth, cua_status fail);
/* The calls of each kind made so far (now) and when the first failure was
 * injected (at_first; that call counted): false when none was. */
bool _cua_fault_calls(cua_backend *b, uint64_t at_first[CUA_CALL_COUNT],
                      uint64_t now[CUA_CALL_COUNT]);
cua_status _cua_fault_injected(cua_backend *b, uint64_t *count);

#endif /* CUA_BACKEND_FAULT_H */
