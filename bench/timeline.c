/*
 * timeline.c - the samples of a metrics run over time (cuarena-replay
 * --timeline): growable arrays of points and markers.
 */
#include "replay.h"

#include <stdlib.h>
#include <string.h>

/* Make room for one more element of `size` bytes in *arr (n used, *cap held). */
static int grow(void **arr, size_t n, size_t *cap, size_t size)
{
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 256;
    void *p = realloc(*arr, ncap * size);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

int timeline_point(timeline *tl, uint64_t event, uint64_t live, uint64_t mapped)
{
    if (grow((void **)&tl->points, tl->n_points, &tl->cap_points, sizeof *tl->points)) return -1;
    tl->points[tl->n_points++] = (tl_point){ event, live, mapped };
    return 0;
}

int timeline_marker(timeline *tl, uint64_t event, uint32_t name, uint64_t live, uint64_t mapped)
{
    if (grow((void **)&tl->marks, tl->n_marks, &tl->cap_marks, sizeof *tl->marks)) return -1;
    tl->marks[tl->n_marks++] = (tl_marker){ .event = event, .live = live, .mapped = mapped, .name = name };
    return 0;
}

void timeline_free(timeline *tl)
{
    free(tl->points);
    free(tl->marks);
    memset(tl, 0, sizeof *tl);
}
