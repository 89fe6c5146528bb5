/*
 * timeline.c - a replay's samples over time (--timeline of cuarena-replay and
 * cuarena-baseline): growable arrays of points and markers, and their JSON.
 */
#include "timeline.h"

#include <inttypes.h>
#include <stdio.h>
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

tl_marker *timeline_marker_at(timeline *tl, uint64_t event)
{
    if (!tl->n_marks || tl->marks[tl->n_marks - 1].event != event) return NULL;
    return &tl->marks[tl->n_marks - 1];
}

void bench_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

void timeline_json(const timeline *tl, const trace *t)
{
    printf(",\"timeline\":{\"every\":%" PRIu64 ",\"points\":[", tl->every);
    for (size_t i = 0; i < tl->n_points; i++)
        printf("%s[%" PRIu64 ",%" PRIu64 ",%" PRIu64 "]", i ? "," : "", tl->points[i].event,
               tl->points[i].live, tl->points[i].mapped);
    printf("],\"markers\":[");
    for (size_t i = 0; i < tl->n_marks; i++) {
        const tl_marker *m = &tl->marks[i];
        printf("%s{\"event\":%" PRIu64 ",\"name\":", i ? "," : "", m->event);
        bench_json_string(trace_marker_name(t, m->name));
        printf(",\"live\":%" PRIu64 ",\"mapped\":%" PRIu64 ",\"mapped_after_trim\":", m->live, m->mapped);
        if (m->trimmed) printf("%" PRIu64 "}", m->mapped_after_trim);
        else printf("null}");
    }
    printf("]}");
}
