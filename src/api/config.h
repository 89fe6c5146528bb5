/*
 * config.h - what config.c shares with the rest of cuarena and its tools.
 */
#ifndef CUA_CONFIG_H
#define CUA_CONFIG_H

#include "base/internal.h"

/**
 * Parse a byte count: a decimal integer with an optional unit suffix K, M, G
 * or T (powers of 1024, any case), which may be followed by "B" or "iB"
 * ("512", "512B", "64k", "2GiB", "3mb"). A bare "B" after the number is
 * accepted too. Whitespace around the text is ignored; nothing else may
 * follow. Fractions ("1.5G") and signs are refused.
 * `s` needs no NUL: exactly `len` bytes are read.
 * Returns CUA_OK and *out, CUA_ERR_INVALID_ARG (s or out NULL), CUA_ERR_CONFIG
 * (malformed or overflowing; the message says why). *out is untouched on error.
 */
cua_status _cua_config_parse_size(const char *s, size_t len, size_t *out);

/** One key of the option table, in words, for tools that document it
 *  (tools/options-doc writes README.md's and docs/tuning.md's tables). */
typedef struct cua_option_info {
    const char *name;     /**< the key */
    const char *syntax;   /**< the value it takes */
    const char *fallback; /**< the built-in default */
    const char *help;     /**< what it does, one sentence */
} cua_option_info;

/**
 * The i-th key of the option table (in the table's order) into *out.
 * Returns false, and leaves *out as it was, when i is past the last key or
 * out is NULL.
 */
bool _cua_config_option(size_t i, cua_option_info *out);

/* The size of cua_arena_config in the first release that had struct_size:
 * a caller's config of fewer bytes was not filled by cua_arena_config_init. */
#define CUA_CONFIG_SIZE_V1 sizeof(cua_arena_config)

/**
 * A caller's config (any release's size) as this library's: defaults for the
 * fields the caller's header did not have. CUA_ERR_INVALID_ARG when it was
 * not initialised, CUA_ERR_NOT_SUPPORTED when it sets fields of a newer
 * release.
 */
cua_status _cua_config_import(const cua_arena_config *in, cua_arena_config *out);

#endif /* CUA_CONFIG_H */
