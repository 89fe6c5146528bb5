/*
 * supplier.h - the supplier backend: whole segments from the user's two
 * callbacks, everything else from an inner backend (Note [memory from a
 * supplier] in supplier.c).
 */
#ifndef CUA_BACKEND_SUPPLIER_H
#define CUA_BACKEND_SUPPLIER_H

#include "backend/backend.h"

cua_status _cua_backend_supplier_create(cua_backend *inner, cua_supplier_alloc_fn alloc_fn,
                                        cua_supplier_free_fn free_fn, void *ctx,
                                        cua_backend **out);

#endif /* CUA_BACKEND_SUPPLIER_H */
