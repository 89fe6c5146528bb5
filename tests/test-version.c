/*
 * test-version.c - the versions agree: cua_version() of the library, the
 * header's CUA_VERSION / CUA_VERSION_MAJOR / MINOR / PATCH / NUMBER, and
 * meson.build's project version (given as the only argument).
 */
#include "cuarena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2 || !argv[1]) {
        fprintf(stderr, "usage: test-version MESON_PROJECT_VERSION\n");
        return 1;
    }
    const char *want = argv[1];
    int failed = 0;
    char parts[64];
    snprintf(parts, sizeof parts, "%d.%d.%d", CUA_VERSION_MAJOR, CUA_VERSION_MINOR,
             CUA_VERSION_PATCH);
    const char *have = cua_version();
    if (!have) have = "(NULL)";
    if (strcmp(have, want) != 0) {
        fprintf(stderr, "cua_version() is \"%s\", meson.build says \"%s\"\n", have, want);
        failed++;
    }
    if (strcmp(CUA_VERSION, want) != 0) {
        fprintf(stderr, "CUA_VERSION is \"%s\", meson.build says \"%s\"\n", CUA_VERSION, want);
        failed++;
    }
    if (strcmp(parts, want) != 0) {
        fprintf(stderr, "CUA_VERSION_MAJOR.MINOR.PATCH is %s, meson.build says %s\n", parts, want);
        failed++;
    }
    if (CUA_VERSION_NUMBER !=
        CUA_VERSION_MAJOR * 10000 + CUA_VERSION_MINOR * 100 + CUA_VERSION_PATCH) {
        fprintf(stderr, "CUA_VERSION_NUMBER is %d\n", CUA_VERSION_NUMBER);
        failed++;
    }
    printf("%d passed, %d failed\n", 4 - failed, failed);
    return failed ? 1 : 0;
}
