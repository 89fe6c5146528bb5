/*
 * test-arenas.c - component arenas (host backend): the registry (list, find
 * by name), the device report with the bytes no arena accounts for, and the
 * headroom. The checker runs after every step (CUA_ARENA_CHECK_ALWAYS).
 */
#include "test.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>


static cua_backend *make_backend(void)
{
    cua_backend *bk = NULL;
    return test_host_backend(256 * MiB, 0, &bk) == CUA_OK ? bk : NULL;
}

static cua_arena *make_cfg(cua_backend *bk, const char *name, int device, size_t floor,
                           unsigned idle_ms, int priority);

static cua_arena *make(cua_backend *bk, const char *name, int device)
{
    return make_cfg(bk, name, device, 0, 0, 0);
}

/* Destroy the arenas of the list (ending with NULL) with `flags`, then
 * backend bk: the first failure's status. */
static cua_status destroy_all(cua_backend *bk, unsigned flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    cua_status first = CUA_OK;
    for (cua_arena *a = va_arg(ap, cua_arena *); a; a = va_arg(ap, cua_arena *)) {
        cua_status st = cua_arena_destroy(a, flags);
        if (first == CUA_OK) first = st;
    }
    va_end(ap);
    cua_status st = cua_backend_destroy(bk);
    return first != CUA_OK ? first : st;
}

/* Is a in the list of device d? */
static int listed(int d, cua_arena *a)
{
    cua_arena *v[64];
    size_t n = 0;
    if (cua_arena_list(d, v, 64, &n) != CUA_OK) return -1;
    for (size_t i = 0; i < n && i < 64; i++)
        if (v[i] == a) return 1;
    return 0;
}

TEST(list_in_creation_order_per_device)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *te = make(bk, "text_encoder", 3), *tr = make(bk, "transformer", 3),
              *vae = make(bk, "vae", 4);
    CHECK(te && tr && vae);
    cua_arena *v[2];
    size_t n = 0;
    CHECK_OK(cua_arena_list(3, v, 2, &n));
    CHECK(n == 2 && v[0] == te && v[1] == tr);
    CHECK_OK(cua_arena_list(3, v, 1, &n)); /* too little room: the count says so */
    CHECK(n == 2 && v[0] == te);
    CHECK_OK(cua_arena_list(3, NULL, 0, &n));
    CHECK(n == 2);
    CHECK(listed(4, vae) == 1 && listed(4, te) == 0 && listed(CUA_ALL_DEVICES, vae) == 1);
    CHECK_OK(cua_arena_destroy(tr, 0));
    CHECK_OK(cua_arena_list(3, v, 2, &n));
    CHECK(n == 1 && v[0] == te);
    CHECK_ST(cua_arena_list(3, NULL, 2, &n), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_list(-2, v, 2, &n), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_list(3, v, 2, NULL), CUA_ERR_INVALID_ARG);
    CHECK_OK(destroy_all(bk, 0, te, vae, (cua_arena *)NULL));
}

TEST(find_by_name)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *kv = make(bk, "kv_cache", 5), *kv6 = make(bk, "kv_cache", 6), *got = NULL;
    CHECK(kv && kv6);
    CHECK_OK(cua_arena_find(5, "kv_cache", &got));
    CHECK(got == kv);
    CHECK_OK(cua_arena_find(6, "kv_cache", &got));
    CHECK(got == kv6);
    CHECK_OK(cua_arena_find(CUA_ALL_DEVICES, "kv_cache", &got));
    CHECK(got == kv); /* the first one created */
    CHECK_ST(cua_arena_find(5, "vae", &got), CUA_ERR_NOT_FOUND);
    CHECK(got == NULL && strstr(cua_last_error(), "vae") != NULL);
    CHECK_OK(cua_arena_destroy(kv, 0));
    CHECK_ST(cua_arena_find(5, "kv_cache", &got), CUA_ERR_NOT_FOUND);
    CHECK_OK(cua_arena_find(CUA_ALL_DEVICES, "kv_cache", &got));
    CHECK(got == kv6);
    CHECK_ST(cua_arena_find(5, NULL, &got), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_arena_find(5, "kv_cache", NULL), CUA_ERR_INVALID_ARG);
    CHECK_OK(destroy_all(bk, 0, kv6, (cua_arena *)NULL));
}

/* The number after "key": in a JSON text, or -1. */
static long long json_num(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

TEST(device_report_names_arenas_and_the_unaccounted_bytes)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    /* Device 7's two arenas, and memory of the same backend that device 7's
     * arenas do not account for (an arena on another device stands for
     * another library). */
    cua_arena *enc = make(bk, "encoder", 7), *unet = make(bk, "unet", 7), *other = make(bk, "other", 8);
    CHECK(enc && unet && other);
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(enc, 3 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(unet, 1 * MiB, 0, &q));
    CHECK_OK(cua_arena_alloc(other, 8 * MiB, 0, &r));
    char buf[16384];
    size_t len = 0;
    CHECK_OK(cua_device_report_json(7, buf, sizeof buf, &len));
    CHECK(len < sizeof buf && strlen(buf) == len);
    CHECK(buf[0] == '{' && buf[len - 1] == '}');
    CHECK(json_num(buf, "device") == 7);
    CHECK(json_num(buf, "mapped_bytes") == (long long)(6 * MiB)); /* 4 + 2 MiB pages */
    CHECK(json_num(buf, "live_bytes") == (long long)(4 * MiB));
    CHECK(json_num(buf, "driver_used_bytes") == (long long)(14 * MiB));
    CHECK(json_num(buf, "unaccounted_bytes") == (long long)(8 * MiB));
    CHECK(json_num(buf, "peak_mapped_bytes") >= (long long)(6 * MiB));
    CHECK(strstr(buf, "\"encoder\"") && strstr(buf, "\"unet\"") && !strstr(buf, "\"other\""));
    /* Cut short: the length still says how much is needed. */
    char small[32];
    size_t need = 0;
    CHECK_OK(cua_device_report_json(7, small, sizeof small, &need));
    CHECK(need == len && strlen(small) == sizeof small - 1);
    CHECK_OK(cua_device_report_json(7, NULL, 0, &need));
    CHECK(need == len);
    /* A device without arenas: zeros and an empty list. */
    CHECK_OK(cua_device_report_json(9, buf, sizeof buf, &len));
    CHECK(json_num(buf, "driver_total_bytes") == 0 && strstr(buf, "\"arenas\":[]"));
    CHECK_ST(cua_device_report_json(-1, buf, sizeof buf, &len), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_device_report_json(7, NULL, 8, &len), CUA_ERR_INVALID_ARG);
    CHECK_OK(destroy_all(bk, CUA_DESTROY_FORCE, enc, unet, other, (cua_arena *)NULL));
}

/* The value of the sample that starts with `head` (name and labels) in a
 * Prometheus text, or -1. */
static long long prom_value(const char *text, const char *head)
{
    size_t n = strlen(head);
    for (const char *line = text; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : "")
        if (strncmp(line, head, n) == 0 && line[n] == ' ') return atoll(line + n + 1);
    return -1;
}

/* Every line a HELP or TYPE comment or a sample "name{labels} value", each
 * family's samples right after its TYPE line; 1 when so. */
static int prom_well_formed(const char *text)
{
    char family[128] = "";
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end) return 0; /* every line ends with \n */
        if (strncmp(line, "# HELP ", 7) == 0) {
            size_t k = strcspn(line + 7, " \n");
            if (k >= sizeof family) return 0;
            memcpy(family, line + 7, k);
            family[k] = 0;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            if (strncmp(line + 7, family, strlen(family)) != 0) return 0;
        } else if (strncmp(line, family, strlen(family)) != 0 || line[strlen(family)] != '{') {
            return 0; /* a sample of another family than the last HELP's */
        }
        line = end + 1;
    }
    return 1;
}

TEST(device_report_prometheus_labels_escapes_and_sizes)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    /* A name with every character the format escapes, one with bytes that are
     * no UTF-8, two arenas of one name, and an arena on another device. */
    cua_arena *odd = make(bk, "kv \"q\"\\x\ny", 7), *bad = make(bk, "bad\xff\xc3", 7);
    cua_arena *twin1 = make(bk, "twin", 7), *twin2 = make(bk, "twin", 7), *other = make(bk, "other", 8);
    CHECK(odd && bad && twin1 && twin2 && other);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(odd, 3 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(twin2, 1 * MiB, 0, &q));
    static char buf[65536];
    size_t len = 0;
    CHECK_OK(cua_device_report_prometheus(7, buf, sizeof buf, &len));
    CHECK(len < sizeof buf && strlen(buf) == len && prom_well_formed(buf));
    CHECK(prom_value(buf, "cuarena_arena_live_bytes{device=\"7\",arena=\"kv \\\"q\\\"\\\\x\\ny\"}") ==
          (long long)(3 * MiB));
    CHECK(prom_value(buf, "cuarena_arena_live_bytes{device=\"7\",arena=\"bad\xef\xbf\xbd\xef\xbf\xbd\"}") == 0);
    CHECK(prom_value(buf, "cuarena_arena_live_bytes{device=\"7\",arena=\"twin\"}") == 0);
    CHECK(prom_value(buf, "cuarena_arena_live_bytes{device=\"7\",arena=\"twin#2\"}") == (long long)MiB);
    CHECK(prom_value(buf, "cuarena_arena_allocations_total{device=\"7\",arena=\"twin#2\"}") == 1);
    CHECK(prom_value(buf, "cuarena_device_mapped_bytes{device=\"7\"}") == (long long)(6 * MiB));
    CHECK(prom_value(buf, "cuarena_device_arenas{device=\"7\"}") == 4);
    CHECK(prom_value(buf, "cuarena_device_driver_total_bytes{device=\"7\"}") == (long long)(256 * MiB));
    CHECK(strstr(buf, "# TYPE cuarena_arena_oom_total counter\n") && !strstr(buf, "other"));
    /* Every device: device 8 too. */
    CHECK_OK(cua_device_report_prometheus(CUA_ALL_DEVICES, buf, sizeof buf, &len));
    CHECK(prom_well_formed(buf));
    CHECK(prom_value(buf, "cuarena_arena_live_bytes{device=\"8\",arena=\"other\"}") == 0);
    CHECK(prom_value(buf, "cuarena_device_arenas{device=\"8\"}") == 1);
    /* Cut short, or only sized: the length says how much is needed. */
    CHECK_OK(cua_device_report_prometheus(7, buf, sizeof buf, &len));
    char small[48];
    size_t need = 0;
    CHECK_OK(cua_device_report_prometheus(7, small, sizeof small, &need));
    CHECK(need == len && strlen(small) == sizeof small - 1 && strncmp(small, buf, sizeof small - 1) == 0);
    CHECK_OK(cua_device_report_prometheus(7, NULL, 0, &need));
    CHECK(need == len);
    /* A device with no arena: the families, zeros. */
    CHECK_OK(cua_device_report_prometheus(9, buf, sizeof buf, &len));
    CHECK(prom_well_formed(buf) && prom_value(buf, "cuarena_device_arenas{device=\"9\"}") == 0);
    CHECK(!strstr(buf, "arena=\""));
    CHECK_ST(cua_device_report_prometheus(-2, buf, sizeof buf, &len), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_device_report_prometheus(7, NULL, 8, &len), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_device_report_prometheus(7, buf, sizeof buf, NULL), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    cua_arena *all[] = { odd, bad, twin1, twin2, other };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) CHECK_OK(cua_arena_destroy(all[i], 0));
    CHECK_OK(cua_backend_destroy(bk));
}

TEST(headroom_counts_driver_free_and_what_trim_returns)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make(bk, "weights", 11), *b = make(bk, "activations", 11);
    CHECK(a && b);
    size_t h0 = 0, h1 = 0, h2 = 0, h3 = 0;
    CHECK_OK(cua_headroom(11, &h0));
    CHECK(h0 == 254 * MiB); /* one page kept back for the driver's own needs */
    void *w, *x;
    CHECK_OK(cua_arena_alloc(a, 64 * MiB, 0, &w));
    CHECK_OK(cua_arena_alloc(b, 32 * MiB, 0, &x));
    CHECK_OK(cua_headroom(11, &h1));
    CHECK(h1 == h0 - 96 * MiB);
    CHECK_OK(cua_free(x)); /* cached: still mapped, but a trim gives it back */
    CHECK_OK(cua_headroom(11, &h2));
    CHECK(h2 == h0 - 64 * MiB);
    CHECK_OK(cua_arena_trim(b, 0, NULL));
    CHECK_OK(cua_headroom(11, &h3));
    CHECK(h3 == h2);
    /* And the headroom is real: that much can be allocated. */
    void *kv;
    CHECK_OK(cua_arena_alloc(b, h3, 0, &kv));
    CHECK_OK(cua_free(kv));
    CHECK_OK(cua_headroom(12, &h0));
    CHECK(h0 == 0); /* no arena on device 12 */
    CHECK_ST(cua_headroom(11, NULL), CUA_ERR_INVALID_ARG);
    CHECK_OK(destroy_all(bk, CUA_DESTROY_FORCE, a, b, (cua_arena *)NULL));
}

/* ---- events ---------------------------------------------------------------------- */

typedef struct seen {
    cua_arena_event ev[32];
    char reason[32][32];
    int n;
    uint64_t stats_live; /* what a cuarena call from inside the callback read */
    int stats_ok;
} seen;

static void record(const cua_arena_event *e, void *user)
{
    seen *s = user;
    if (s->n < 32) {
        s->ev[s->n] = *e;
        snprintf(s->reason[s->n], sizeof s->reason[0], "%s", e->reason);
        s->n++;
    }
    /* The arena's lock is not held: asking it about itself must work. */
    cua_stats st;
    if (e->kind != CUA_ARENA_DESTROYED && cua_arena_get_stats(e->arena, &st) == CUA_OK) {
        s->stats_ok++;
        s->stats_live = st.live_bytes;
    }
    cua_arena_check(NULL); /* sets this thread's message: the caller's must survive */
}

static int count(const seen *s, cua_arena_event_kind k, const char *reason)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->ev[i].kind == k && (!reason || !strcmp(s->reason[i], reason))) n++;
    return n;
}

TEST(events_reach_the_callback_outside_the_lock)
{
    static seen s;
    memset(&s, 0, sizeof s);
    CHECK_OK(cua_set_event_callback(record, &s));
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make(bk, "events", 13);
    CHECK(a);
    CHECK(s.n == 1 && s.ev[0].kind == CUA_ARENA_CREATED && s.ev[0].arena == a &&
          !strcmp(s.ev[0].name, "events") && s.ev[0].device == 13);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 8 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK(count(&s, CUA_ARENA_TRIMMED, "trim") == 1);
    CHECK(s.ev[s.n - 1].bytes == 8 * MiB && s.ev[s.n - 1].mapped_bytes == 0);
    /* Over the limit: the out-of-memory event, and the caller's message intact
     * although the callback set another one. */
    CHECK_OK(cua_arena_set_limit(a, 4 * MiB));
    CHECK_ST(cua_arena_alloc(a, 6 * MiB, 0, &q), CUA_ERR_LIMIT);
    CHECK(strstr(cua_last_error(), "limit") != NULL);
    CHECK(count(&s, CUA_ARENA_OUT_OF_MEMORY, "limit") == 1);
    CHECK(s.ev[s.n - 1].bytes == 6 * MiB);
    /* A release threshold of 0: the free gives its pages back at once. */
    CHECK_OK(cua_arena_set_limit(a, 0));
    CHECK_OK(cua_arena_set_release_threshold(a, 0));
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, 0, &q));
    CHECK_OK(cua_free(q));
    CHECK(count(&s, CUA_ARENA_TRIMMED, "release_threshold") == 1);
    CHECK(s.stats_ok >= 3 && s.stats_live == 0);
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK(s.ev[s.n - 1].kind == CUA_ARENA_DESTROYED && s.ev[s.n - 1].arena == a);
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    int n = s.n;
    cua_arena *b = make(bk, "quiet", 13);
    CHECK(b && s.n == n); /* no callback: nothing */
    CHECK_OK(destroy_all(bk, 0, b, (cua_arena *)NULL));
}

/* ---- floor, idle trim, janitor ------------------------------------------------------ */

/* chunk_large of the arenas make_cfg makes (a test that counts bytes trimmed
 * by the page sets CUA_CHUNK_LARGE_NONE). */
static size_t chunk_large = 0;

static cua_arena *make_cfg(cua_backend *bk, const char *name, int device, size_t floor,
                           unsigned idle_ms, int priority)
{
    char conf[160];
    snprintf(conf, sizeof conf, "device:%d,floor:%zu,idle_ms:%u,priority:%d,chunk_large:%s",
             device, floor, idle_ms, priority, chunk_large == CUA_CHUNK_LARGE_NONE ? "none" : "0");
    return test_arena_with(bk, name, CUA_ARENA_CHECK_ALWAYS, conf);
}

static uint64_t mapped_of(cua_arena *a)
{
    cua_stats s;
    return cua_arena_get_stats(a, &s) == CUA_OK ? s.mapped_bytes : UINT64_MAX;
}

TEST(floor_stays_through_trims_but_not_for_an_allocation)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make_cfg(bk, "floored", 14, 8 * MiB, 0, 0);
    CHECK(a);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(a, 20 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    size_t released = 0;
    CHECK_OK(cua_arena_trim(a, 0, &released));
    CHECK(released == 12 * MiB && mapped_of(a) == 8 * MiB);
    /* Limits and floors must agree. */
    CHECK_ST(cua_arena_set_limit(a, 4 * MiB), CUA_ERR_INVALID_ARG);
    CHECK(strstr(cua_last_error(), "floor") != NULL);
    CHECK_OK(cua_arena_set_limit(a, 16 * MiB));
    CHECK_ST(cua_arena_set_floor(a, 32 * MiB), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_arena_set_limit(a, 0));
    /* An allocation that can only succeed with the floor's pages gets them:
     * the device (256 MiB) is full but for 4 MiB, the kept 8 MiB lie below a
     * live block, and 12 MiB are asked above it. */
    cua_arena *other = make_cfg(bk, "other", 14, 0, 0, 0);
    void *sep, *hog;
    CHECK(other);
    CHECK_OK(cua_arena_alloc(a, 2 * MiB, 0, &sep)); /* at 8 MiB, above the kept pages */
    CHECK(mapped_of(a) == 10 * MiB);
    CHECK_OK(cua_arena_alloc(other, 242 * MiB, 0, &hog));
    CHECK_OK(cua_arena_alloc(a, 12 * MiB, 0, &q));
    CHECK(mapped_of(a) == 14 * MiB); /* the 8 kept went, 12 new came */
    CHECK_OK(cua_free(q));
    CHECK_OK(cua_free(sep));
    CHECK_OK(cua_arena_destroy(other, CUA_DESTROY_FORCE));
    CHECK_OK(cua_arena_set_floor(a, 0));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK(mapped_of(a) == 0);
    /* create refuses a floor above the limit */
    CHECK(!test_arena_with(bk, NULL, 0, "limit:4M,floor:8M"));
    CHECK(strstr(cua_last_error(), "floor 8388608 is above the limit 4194304") != NULL);
    CHECK_OK(destroy_all(bk, 0, a, (cua_arena *)NULL));
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

TEST(idle_arenas_give_back_their_cache_lowest_priority_first)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *busy = make_cfg(bk, "busy", 15, 0, 20, 0);
    cua_arena *idle = make_cfg(bk, "idle", 15, 4 * MiB, 20, 0);
    cua_arena *never = make_cfg(bk, "never", 15, 0, 0, 0);
    CHECK(busy && idle && never);
    cua_arena *all[3] = {busy, idle, never};
    void *p;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(cua_arena_alloc(all[i], 16 * MiB, 0, &p));
        CHECK_OK(cua_free(p)); /* 16 MiB cached in each */
    }
    size_t released = 0;
    CHECK_OK(cua_trim_idle(15, &released)); /* the first look only notes the time */
    CHECK(released == 0);
    sleep_ms(40);
    CHECK_OK(cua_arena_alloc(busy, 1 * MiB, 0, &p)); /* busy is not idle */
    CHECK_OK(cua_trim_idle(15, &released));
    CHECK(released == 12 * MiB); /* idle, down to its floor */
    CHECK(mapped_of(idle) == 4 * MiB && mapped_of(busy) == 16 * MiB && mapped_of(never) == 16 * MiB);
    CHECK_OK(cua_free(p));
    sleep_ms(40);
    CHECK_OK(cua_trim_idle(15, &released)); /* busy's free was an op: it looks again */
    CHECK(released == 0);
    sleep_ms(40);
    CHECK_OK(cua_trim_idle(CUA_ALL_DEVICES, &released));
    CHECK(released == 16 * MiB && mapped_of(busy) == 0);
    CHECK_ST(cua_trim_idle(-2, &released), CUA_ERR_INVALID_ARG);
    for (int i = 0; i < 3; i++) CHECK_OK(cua_arena_destroy(all[i], 0));
    CHECK_OK(cua_backend_destroy(bk));
}

TEST(janitor_trims_idle_arenas_and_stops)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make_cfg(bk, "janitored", 16, 0, 10, 0);
    CHECK(a);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 8 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    CHECK_ST(cua_janitor_start(0), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_janitor_start(5));
    CHECK_ST(cua_janitor_start(5), CUA_ERR_BUSY);
    uint64_t m = 1;
    for (int i = 0; i < 400 && m; i++) { /* up to 2 s on a slow machine */
        sleep_ms(5);
        m = mapped_of(a);
    }
    CHECK_OK(cua_janitor_stop());
    CHECK_OK(cua_janitor_stop()); /* twice is fine */
    CHECK(m == 0);
    CHECK_OK(destroy_all(bk, 0, a, (cua_arena *)NULL));
}

/* cua_janitor_stop() from the janitor's own thread (an event callback of its
 * trim) cannot wait for that thread: it answers BUSY, not an OK that stopped
 * nothing; from another thread it stops it. */
static _Atomic int stop_from_janitor = -1;
static void stop_in_callback(const cua_arena_event *ev, void *user)
{
    (void)user;
    if (ev->kind == CUA_ARENA_TRIMMED && atomic_load(&stop_from_janitor) == -1)
        atomic_store(&stop_from_janitor, (int)cua_janitor_stop());
}

TEST(janitor_stop_from_the_janitors_thread_answers_busy)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make_cfg(bk, "janitored_self", 17, 0, 10, 0);
    CHECK(a);
    void *p;
    CHECK_OK(cua_arena_alloc(a, 8 * MiB, 0, &p));
    CHECK_OK(cua_free(p));
    atomic_store(&stop_from_janitor, -1);
    CHECK_OK(cua_set_event_callback(stop_in_callback, NULL));
    CHECK_OK(cua_janitor_start(5));
    for (int i = 0; i < 400 && atomic_load(&stop_from_janitor) == -1; i++) sleep_ms(5);
    CHECK_ST((cua_status)atomic_load(&stop_from_janitor), CUA_ERR_BUSY);
    CHECK_ST(cua_janitor_start(5), CUA_ERR_BUSY); /* still running */
    CHECK_OK(cua_janitor_stop());
    CHECK_OK(cua_set_event_callback(NULL, NULL));
    CHECK_OK(cua_janitor_start(5)); /* stopped: it starts again */
    CHECK_OK(cua_janitor_stop());
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_backend_destroy(bk));
}

/* ---- out of memory: other arenas, eviction callbacks, the verdict ---------------------- */

static uint64_t trimmed_of(cua_arena *a)
{
    cua_stats s;
    return cua_arena_get_stats(a, &s) == CUA_OK ? s.trimmed_bytes : UINT64_MAX;
}

TEST(pressure_takes_only_what_is_missing_lowest_priority_first)
{
    cua_backend *bk = make_backend(); /* 256 MiB */
    CHECK(bk);
    chunk_large = CUA_CHUNK_LARGE_NONE; /* 2 MiB handles: a trim can take exactly 24 MiB */
    cua_arena *low = make_cfg(bk, "low", 17, 0, 0, 0), *high = make_cfg(bk, "high", 17, 0, 0, 9),
              *want = make_cfg(bk, "wants", 17, 0, 0, 5);
    chunk_large = 0;
    CHECK(low && high && want);
    void *p;
    CHECK_OK(cua_arena_alloc(high, 60 * MiB, 0, &p));
    CHECK_OK(cua_free(p)); /* 60 MiB cached in high */
    CHECK_OK(cua_arena_alloc(low, 100 * MiB, 0, &p));
    CHECK_OK(cua_free(p)); /* 100 MiB cached in low */
    /* 96 MiB free at the driver; 120 asked: 24 are missing, low gives them. */
    CHECK_OK(cua_arena_alloc(want, 120 * MiB, 0, &p));
    CHECK(trimmed_of(low) == 24 * MiB && mapped_of(low) == 76 * MiB);
    CHECK(trimmed_of(high) == 0 && mapped_of(high) == 60 * MiB);
    /* 136 MiB free in caches, 0 at the driver: the next 100 take low's 76 and 24 of high's. */
    void *q;
    CHECK_OK(cua_arena_alloc(want, 100 * MiB, 0, &q));
    CHECK(mapped_of(low) == 0 && mapped_of(high) == 36 * MiB);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_free(q));
    CHECK_OK(destroy_all(bk, 0, low, high, want, (cua_arena *)NULL));
}

/* Blocks another arena freed while a second stream still used them
 * (record_stream) wait on its pending list; a device shortage elsewhere waits
 * for them as the arena's own last resort does (the fuzzer found a restore
 * that failed with them held). */
TEST(pressure_waits_for_blocks_other_streams_still_use)
{
    cua_backend *bk = NULL; /* stream 6's work stays in flight until waited for */
    CHECK_OK(test_host_backend_with(256 * MiB, 0, TEST_MANUAL_EVENTS, &bk));
    cua_arena *user = make_cfg(bk, "user", 18, 0, 0, 0), *want = make_cfg(bk, "wants", 18, 0, 0, 0);
    CHECK(user && want);
    void *p, *q;
    CHECK_OK(cua_arena_alloc(user, 100 * MiB, 5, &p));
    CHECK_OK(cua_record_stream(p, 6));
    CHECK_OK(cua_free(p));
    cua_stats st;
    CHECK_OK(cua_arena_get_stats(user, &st));
    CHECK(st.pending_bytes == 100 * MiB);
    /* 156 MiB at the driver, 200 asked: 44 must come from user's pending block. */
    CHECK_OK(cua_arena_alloc(want, 200 * MiB, 5, &q));
    CHECK_OK(cua_arena_get_stats(user, &st));
    CHECK(st.pending_bytes == 0 && st.mapped_bytes <= 56 * MiB);
    CHECK_OK(cua_free(q));
    CHECK_OK(destroy_all(bk, 0, user, want, (cua_arena *)NULL));
}

typedef struct evict_ctx {
    cua_arena *victim;
    void *blocks[8];
    int nblocks, calls;
    size_t last_need;
} evict_ctx;

/* Frees the victim's blocks one by one until what is needed is free. */
static size_t evict_some(int device, size_t need, void *user)
{
    evict_ctx *e = user;
    (void)device;
    e->calls++;
    e->last_need = need;
    size_t freed = 0;
    while (e->nblocks > 0 && freed < need) {
        cua_free(e->blocks[--e->nblocks]);
        freed += 16 * MiB;
    }
    cua_arena_trim(e->victim, 0, NULL); /* a callback may call cuarena */
    return freed;
}

static size_t evict_nothing(int device, size_t need, void *user)
{
    (void)device;
    (void)need;
    ++*(int *)user;
    return 0;
}

TEST(eviction_callbacks_run_in_priority_order_until_enough_is_free)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *floored = make_cfg(bk, "floored", 18, 64 * MiB, 0, 0);
    cua_arena *victim = make_cfg(bk, "victim", 18, 0, 0, 0), *want = make_cfg(bk, "wants", 18, 0, 0, 0);
    CHECK(floored && victim && want);
    void *p;
    CHECK_OK(cua_arena_alloc(floored, 64 * MiB, 0, &p));
    CHECK_OK(cua_free(p)); /* cached, but under its floor: pressure cannot take it */
    evict_ctx e = {.victim = victim};
    for (int i = 0; i < 8; i++) CHECK_OK(cua_arena_alloc(victim, 16 * MiB, 0, &e.blocks[i]));
    e.nblocks = 8; /* 128 MiB live in victim; 64 free at the driver */
    int nothing_calls = 0;
    CHECK_ST(cua_add_evict_callback(NULL, NULL, 0), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_add_evict_callback(evict_some, &e, 2));
    CHECK_OK(cua_add_evict_callback(evict_nothing, &nothing_calls, 1));
    CHECK_ST(cua_add_evict_callback(evict_some, &e, 0), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_arena_alloc(want, 96 * MiB, 0, &p)); /* 32 missing */
    CHECK(nothing_calls == 1 && e.calls == 1 && e.last_need == 32 * MiB);
    CHECK(e.nblocks == 6 && mapped_of(floored) == 64 * MiB);
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_remove_evict_callback(evict_some, &e));
    CHECK_OK(cua_remove_evict_callback(evict_nothing, &nothing_calls));
    CHECK_ST(cua_remove_evict_callback(evict_some, &e), CUA_ERR_NOT_FOUND);
    CHECK_OK(cua_arena_destroy(victim, CUA_DESTROY_FORCE));
    CHECK_OK(destroy_all(bk, 0, floored, want, (cua_arena *)NULL));
}

TEST(out_of_memory_says_fragmentation_or_exhaustion)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make_cfg(bk, "halves", 19, 0, 0, 0), *b = make_cfg(bk, "asker", 19, 0, 0, 0);
    CHECK(a && b);
    /* 240 x 1 MiB, then every other one freed: 120 MiB free inside 120
     * half-used pages (nothing to trim), 16 MiB at the driver. */
    static void *blk[240];
    for (int i = 0; i < 240; i++) CHECK_OK(cua_arena_alloc(a, 1 * MiB, 0, &blk[i]));
    for (int i = 0; i < 240; i += 2) CHECK_OK(cua_free(blk[i]));
    void *p;
    CHECK_ST(cua_arena_alloc(b, 64 * MiB, 0, &p), CUA_ERR_OUT_OF_MEMORY);
    const char *m = cua_last_error();
    CHECK(strstr(m, "Verdict: fragmentation") && strstr(m, "'halves'") && strstr(m, "'asker'"));
    CHECK(strstr(m, "136.0 MiB free in total"));
    CHECK_ST(cua_arena_alloc(b, 200 * MiB, 0, &p), CUA_ERR_OUT_OF_MEMORY);
    CHECK(strstr(cua_last_error(), "Verdict: exhaustion"));
    CHECK_OK(cua_arena_check(a));
    CHECK_OK(cua_arena_check(b));
    CHECK_OK(cua_arena_destroy(a, CUA_DESTROY_FORCE));
    CHECK_OK(destroy_all(bk, 0, b, (cua_arena *)NULL));
}

TEST(device_peak_counts_every_arena_of_the_device_at_once)
{
    cua_backend *bk = make_backend();
    CHECK(bk);
    cua_arena *a = make(bk, "a", 20), *b = make(bk, "b", 20), *other = make(bk, "other", 21);
    CHECK(a && b && other);
    size_t peak = 1, now = 1;
    CHECK_OK(cua_device_peak(20, &peak, &now));
    CHECK(peak == 0 && now == 0);
    void *p, *q, *r;
    CHECK_OK(cua_arena_alloc(a, 64 * MiB, 0, &p));
    CHECK_OK(cua_arena_alloc(b, 32 * MiB, 0, &q));
    CHECK_OK(cua_arena_alloc(other, 8 * MiB, 0, &r)); /* another device: not counted */
    CHECK_OK(cua_free(p));
    CHECK_OK(cua_arena_trim(a, 0, NULL));
    CHECK_OK(cua_device_peak(20, &peak, &now));
    CHECK(peak == 96 * MiB && now == 32 * MiB); /* both at once, not the sum of their peaks */
    CHECK_OK(cua_device_reset_peak(20));
    CHECK_OK(cua_device_peak(20, &peak, NULL));
    CHECK(peak == 32 * MiB);
    CHECK_OK(cua_arena_offload(b)); /* offloaded pages are not mapped */
    CHECK_OK(cua_device_peak(20, NULL, &now));
    CHECK(now == 0);
    CHECK_OK(cua_arena_restore(b));
    CHECK_OK(cua_arena_destroy(b, CUA_DESTROY_FORCE));
    CHECK_OK(cua_arena_destroy(a, 0));
    CHECK_OK(cua_device_peak(20, &peak, &now));
    CHECK(now == 0 && peak == 32 * MiB);
    CHECK_ST(cua_device_peak(64, &peak, &now), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_device_peak(20, NULL, NULL), CUA_ERR_INVALID_ARG);
    CHECK_OK(destroy_all(bk, CUA_DESTROY_FORCE, other, (cua_arena *)NULL));
}

static uint64_t calls_of(cua_backend *bk, cua_call k)
{
    cua_backend_stats s;
    return cua_backend_get_stats(bk, &s) == CUA_OK ? s.calls[k] : 0;
}

static uint64_t handle_bytes_of(cua_backend *bk)
{
    cua_backend_stats s;
    return cua_backend_get_stats(bk, &s) == CUA_OK ? s.handle_bytes : 0;
}

TEST(reserve_now_yield_to_an_arena_later)
{
    cua_backend *bk = make_backend(); /* 256 MiB */
    CHECK(bk);
    cua_reservation *r = NULL, *r2 = NULL;
    CHECK_OK(cua_reserve(bk, 15 * MiB, &r)); /* rounded to 8 pages */
    CHECK(handle_bytes_of(bk) == 16 * MiB);
    /* Held: nobody else can have it. */
    cua_arena *other = make(bk, "other", 22);
    void *p;
    CHECK(other);
    CHECK_ST(cua_arena_alloc(other, 250 * MiB, 0, &p), CUA_ERR_OUT_OF_MEMORY);
    CHECK_ST(cua_reserve(bk, 512 * MiB, &r2), CUA_ERR_OUT_OF_MEMORY);
    CHECK(r2 == NULL && handle_bytes_of(bk) == 16 * MiB); /* a failed one keeps nothing */
    /* The KV cache arena adopts it: its growth maps those handles, creates none. */
    cua_arena *kv = make(bk, "kv_cache", 22);
    CHECK(kv);
    CHECK_OK(cua_arena_adopt(kv, r)); /* r is used up: like a freed pointer, not to be passed again */
    cua_stats s;
    CHECK_OK(cua_arena_get_stats(kv, &s));
    CHECK(s.adopted_bytes == 16 * MiB && s.mapped_bytes == 0);
    uint64_t creates = calls_of(bk, CUA_CALL_CREATE);
    CHECK_OK(cua_arena_alloc(kv, 12 * MiB, 0, &p));
    CHECK(calls_of(bk, CUA_CALL_CREATE) == creates);
    CHECK_OK(cua_arena_get_stats(kv, &s));
    CHECK(s.adopted_bytes == 4 * MiB && s.mapped_bytes == 12 * MiB);
    memset(p, 0x42, 12 * MiB);
    CHECK(handle_bytes_of(bk) == 16 * MiB);
    /* Destroy gives back the mapped and the adopted alike. */
    CHECK_OK(cua_arena_destroy(kv, CUA_DESTROY_FORCE));
    CHECK(handle_bytes_of(bk) == 0);
    /* A reservation given back unused; and one of another backend is refused. */
    CHECK_OK(cua_reserve(bk, 2 * MiB, &r));
    CHECK_OK(cua_reservation_release(r));
    CHECK(handle_bytes_of(bk) == 0);
    cua_backend *bk2 = make_backend();
    CHECK(bk2);
    CHECK_OK(cua_reserve(bk2, 2 * MiB, &r2));
    CHECK_ST(cua_arena_adopt(other, r2), CUA_ERR_INVALID_ARG);
    CHECK(handle_bytes_of(bk2) == 0); /* used up: given back */
    CHECK_ST(cua_reserve(NULL, 1, &r), CUA_ERR_INVALID_ARG);
    CHECK_ST(cua_reserve(bk, 0, &r), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_arena_destroy(other, CUA_DESTROY_FORCE));
    CHECK_OK(cua_backend_destroy(bk2));
    CHECK_OK(cua_backend_destroy(bk));
}

/* Releases the driver refuses - in cua_reservation_release, in the cleanup of
 * a cua_reserve that failed half way, in a failed adopt - are kept by the
 * backend and retried by its next reservation (and at its destroy), as an
 * arena's are: no handle is lost, and the backend can be destroyed. */
TEST(refused_releases_of_reservations_are_retried)
{
    cua_backend *host = make_backend(), *fault = NULL;
    CHECK(host);
    CHECK_OK(cua_backend_fault_create(host, &fault));
    cua_backend_stats s;
    /* release: the second handle's release fails */
    cua_reservation *r = NULL;
    CHECK_OK(cua_reserve(fault, 8 * MiB, &r));
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_RELEASE, 2, CUA_ERR_BACKEND));
    CHECK_ST(cua_reservation_release(r), CUA_ERR_BACKEND);
    CHECK_OK(cua_backend_get_stats(fault, &s));
    CHECK(s.pending_releases == 1 && handle_bytes_of(host) == 2 * MiB);
    /* the next reservation retries it first */
    CHECK_OK(cua_reserve(fault, 2 * MiB, &r));
    CHECK_OK(cua_backend_get_stats(fault, &s));
    CHECK(s.pending_releases == 0 && handle_bytes_of(host) == 2 * MiB);
    CHECK_OK(cua_reservation_release(r));
    /* a reserve that fails half way (the third create) and whose cleanup fails
     * once (the first of its two releases): the refused release waits */
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_CREATE, 3, CUA_ERR_OUT_OF_MEMORY));
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_RELEASE, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_reserve(fault, 8 * MiB, &r), CUA_ERR_OUT_OF_MEMORY);
    CHECK(r == NULL);
    CHECK_OK(cua_backend_get_stats(fault, &s));
    CHECK(s.pending_releases == 1 && handle_bytes_of(host) == 2 * MiB);
    CHECK_OK(cua_reserve(fault, 2 * MiB, &r));
    CHECK_OK(cua_backend_get_stats(fault, &s));
    CHECK(s.pending_releases == 0 && handle_bytes_of(host) == 2 * MiB);
    /* an adopt that fails (the arena is of another backend) whose release fails */
    cua_arena *other = make(host, "other_backend", 23);
    CHECK(other);
    CHECK_OK(cua_fault_fail_nth(fault, CUA_CALL_RELEASE, 1, CUA_ERR_BACKEND));
    CHECK_ST(cua_arena_adopt(other, r), CUA_ERR_INVALID_ARG);
    CHECK_OK(cua_backend_get_stats(fault, &s));
    CHECK(s.pending_releases == 1 && handle_bytes_of(host) == 2 * MiB);
    CHECK_OK(cua_arena_destroy(other, 0));
    /* the fault backend's destroy retries what is left */
    CHECK_OK(cua_backend_destroy(fault));
    CHECK(handle_bytes_of(host) == 0);
    CHECK_OK(cua_backend_destroy(host));
}
