/*
 * consumer.c - a program outside the source tree that uses an installed (or
 * subproject) cuarena: its version, and one allocation on the host backend.
 * The only argument is the version it must find; it prints one line and exits
 * 0 when everything agrees.
 */
#include <cuarena.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *want = argc > 1 ? argv[1] : CUA_VERSION;
    if (strcmp(cua_version(), want) != 0 || strcmp(CUA_VERSION, want) != 0) {
        fprintf(stderr, "consumer: cua_version() \"%s\", CUA_VERSION \"%s\", expected \"%s\"\n",
                cua_version(), CUA_VERSION, want);
        return 1;
    }
    cua_arena_config cfg;
    cua_arena_config_init(&cfg); /* backend NULL: CUDA where there is a GPU, else host */
    cfg.name = "consumer";
    cua_arena *arena = NULL;
    unsigned char *p = NULL;
    const size_t size = (size_t)3 << 20;
    if (cua_arena_create(&cfg, &arena) != CUA_OK ||
        cua_arena_alloc(arena, size, 0, (void **)&p) != CUA_OK) {
        fprintf(stderr, "consumer: %s\n", cua_last_error());
        return 1;
    }
    memset(p, 0xab, size); /* host backend: the block is host memory */
    cua_stats st;
    if (p[size - 1] != 0xab || cua_arena_get_stats(arena, &st) != CUA_OK ||
        st.live_bytes != size || cua_free(p) != CUA_OK ||
        cua_arena_destroy(arena, 0) != CUA_OK) {
        fprintf(stderr, "consumer: %s\n", cua_last_error());
        return 1;
    }
    printf("consumer: cuarena %s, allocated and freed %zu bytes\n", cua_version(), size);
    return 0;
}
