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
cua_status _cua_parse_size(const char *s, size_t len, size_t *out);

/** The name of option i of the option string (0, 1, ...), NULL past the last:
 *  for tests that must cover every key. */
const char *_cua_option_name(size_t i);

#endif /* CUA_CONFIG_H */
