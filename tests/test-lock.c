/*
 * test-lock.c - the lock order as code (src/base/lockrank.h, the witness in
 * src/base/lock.c). Each case runs its locks in a forked child, so that an
 * abort ends the child, not the test: the parent waits for it and reads the
 * message the child's SIGABRT handler writes to a pipe (the library never
 * prints; its assert leaves the message in cua_last_error()).
 *   - builds without NDEBUG: a take against the order aborts, naming both
 *     locks (cua_lock_t, mutexes, read-write locks; the same rank twice;
 *     the arena lock's try-first fast path too); the order itself passes; a
 *     try-lock is not checked but is recorded; releasing a lock not held
 *     aborts;
 *   - release builds: the witness is compiled out, nothing aborts.
 * The rest of the suite runs the library's real paths under the witness.
 */
#include "test.h"
#include "base/internal.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int msg_fd = -1;

static void on_abort(int sig)
{
    (void)sig;
    const char *m = cua_last_error();
    ssize_t w = write(msg_fd, m, strlen(m));
    (void)w;
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

/* What a child did: whether it aborted, and the message it left. */
typedef struct outcome {
    bool ran, aborted;
    char msg[1024];
} outcome;

/* Run fn in a child; the child exits 0 when fn returns. */
static outcome in_child(void (*fn)(void))
{
    outcome o = {0};
    int fds[2];
    if (pipe(fds) != 0) return o;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        msg_fd = fds[1];
        signal(SIGABRT, on_abort);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    char chunk[256];
    while (pid > 0 && (r = read(fds[0], chunk, sizeof chunk)) > 0) {
        size_t take = (size_t)r < sizeof o.msg - 1 - n ? (size_t)r : sizeof o.msg - 1 - n;
        memcpy(o.msg + n, chunk, take);
        n += take;
    }
    close(fds[0]);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return o;
    o.ran = true;
    o.aborted = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
    if (!o.aborted && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        snprintf(o.msg, sizeof o.msg, "the child ended with status %#x", status);
    return o;
}

/* fn aborts (in a build that checks the order) with a message naming `a` and `b`. */
#define CHECK_ABORTS(fn, a, b)                                                         \
    do {                                                                               \
        outcome o_ = in_child(fn);                                                     \
        CHECK(o_.ran);                                                                 \
        if (!CUA_LOCK_WITNESS) {                                                       \
            CHECK(!o_.aborted && !o_.msg[0]);                                          \
            break;                                                                     \
        }                                                                              \
        if (!o_.aborted || !strstr(o_.msg, a) || !strstr(o_.msg, b))                  \
            fprintf(stderr, "  the child %s: '%s'\n",                                  \
                    o_.aborted ? "aborted" : "did not abort", o_.msg);                 \
        CHECK(o_.aborted);                                                             \
        CHECK(strstr(o_.msg, "lock order") && strstr(o_.msg, a) && strstr(o_.msg, b)); \
    } while (0)

#define CHECK_PASSES(fn)                                                               \
    do {                                                                               \
        outcome o_ = in_child(fn);                                                     \
        if (o_.aborted) fprintf(stderr, "  the child aborted: '%s'\n", o_.msg);        \
        CHECK(o_.ran && !o_.aborted && !o_.msg[0]);                                    \
    } while (0)

static cua_lock_t arena1, arena2, tcache, host;

static void init_locks(void)
{
    _cua_lock_init(&arena1, CUA_LOCK_RANK_ARENA);
    _cua_lock_init(&arena2, CUA_LOCK_RANK_ARENA);
    _cua_lock_init(&tcache, CUA_LOCK_RANK_TCACHE);
    _cua_lock_init(&host, CUA_LOCK_RANK_HOST);
}

/* ---- the order itself passes ----------------------------------------------------- */

static void in_order(void)
{
    init_locks();
    _cua_lock(&arena1);
    _cua_lock(&tcache);
    _cua_lock(&host);
    _cua_unlock(&host);
    _cua_unlock(&tcache);
    _cua_lock(&host); /* after a release, a lower-ranked lock may be taken again */
    _cua_unlock(&host);
    _cua_unlock(&arena1);
    _cua_lock(&host); /* and with nothing held, any */
    _cua_unlock(&host);
}

TEST(locks_taken_in_order_pass) { CHECK_PASSES(in_order); }

static void out_of_order_release(void)
{
    init_locks();
    _cua_lock(&arena1);
    _cua_lock(&tcache);
    _cua_unlock(&arena1); /* released first: the witness keeps tcache */
    _cua_lock(&host);
    _cua_unlock(&host);
    _cua_unlock(&tcache);
}

TEST(releases_in_any_order_pass) { CHECK_PASSES(out_of_order_release); }

/* ---- against the order: abort, naming both ------------------------------------- */

static void host_then_arena(void)
{
    init_locks();
    _cua_lock(&host);
    _cua_lock(&arena1);
}

TEST(taking_a_lower_rank_aborts_naming_both)
{
    CHECK_ABORTS(host_then_arena, "an arena's lock (ARENA)", "a host backend's lock (HOST)");
}

static void two_arenas(void)
{
    init_locks();
    _cua_lock(&arena1);
    _cua_lock(&arena2);
}

TEST(two_locks_of_one_rank_abort)
{
    CHECK_ABORTS(two_arenas, "taking an arena's lock", "holding an arena's lock");
}

static cua_mutex registry = CUA_MUTEX_INIT(REGISTRY);
static cua_rwlock ranges = CUA_RWLOCK_INIT(RANGES);

static void mutex_then_tcache(void)
{
    init_locks();
    _cua_mutex_lock(&registry);
    _cua_lock(&tcache);
}

static void reader_then_mutex(void)
{
    _cua_rwlock_rdlock(&ranges);
    _cua_mutex_lock(&registry);
}

TEST(mutexes_and_rwlocks_are_ordered_too)
{
    CHECK_ABORTS(mutex_then_tcache, "taking a thread cache's lock", "holding the registry lock");
    CHECK_ABORTS(reader_then_mutex, "taking the registry lock", "the address map's range lock");
}

/* ---- try-locks: not checked, but recorded ------------------------------------------ */

static void try_under_higher(void)
{
    init_locks();
    _cua_lock(&host);
    if (!_cua_trylock(&arena1)) abort(); /* free: it cannot wait, so it may */
    _cua_unlock(&arena1);
    _cua_unlock(&host);
}

static void try_then_take(void)
{
    init_locks();
    _cua_lock(&tcache);
    if (!_cua_trylock(&arena1)) _exit(3);
    _cua_unlock(&tcache);
    _cua_lock(&arena2); /* arena1 is held, recorded by its try */
}

TEST(trylock_is_not_checked_but_recorded)
{
    CHECK_PASSES(try_under_higher);
    CHECK_ABORTS(try_then_take, "taking an arena's lock", "holding an arena's lock");
}

/* The arena lock's fast path is a try, but the take is a blocking one: an
 * entry point called while a host backend's lock is held must abort even
 * though the arena's lock is free. */
static void api_under_host_lock(void)
{
    init_locks();
    cua_arena_config cfg;
    test_config(&cfg);
    cua_arena *a = NULL;
    if (cua_arena_create(&cfg, &a) != CUA_OK) _exit(3);
    _cua_lock(&host);
    (void)cua_arena_trim(a, 0, NULL);
}

TEST(arena_entry_points_check_before_their_try)
{
    CHECK_ABORTS(api_under_host_lock, "taking an arena's lock", "holding a host backend's lock");
}

/* ---- bookkeeping ------------------------------------------------------------------ */

static void release_unheld(void)
{
    init_locks();
    _cua_unlock(&tcache);
}

static void no_rank(void)
{
    static cua_lock_t zeroed; /* never initialised: no rank */
    _cua_lock(&zeroed);
}

TEST(releasing_an_unheld_lock_or_taking_an_unranked_one_aborts)
{
    CHECK_ABORTS(release_unheld, "lock order: releasing", "does not hold");
    CHECK_ABORTS(no_rank, "a lock without a rank", "not in src/base/lockrank.h");
}

/* Every rank has a name, in the order of the table. */
TEST(ranks_follow_the_table)
{
    CHECK(CUA_LOCK_RANK_NONE == 0);
    CHECK(CUA_LOCK_RANK_BACKEND_INIT == 1);
    CHECK(CUA_LOCK_RANK_BACKEND_INIT < CUA_LOCK_RANK_ARENA);
    CHECK(CUA_LOCK_RANK_ARENA < CUA_LOCK_RANK_TCACHE);
    CHECK(CUA_LOCK_RANK_TCACHE < CUA_LOCK_RANK_REGISTRY);
    CHECK(CUA_LOCK_RANK_STAGE < CUA_LOCK_RANK_GRAVE_FWD);
    CHECK(CUA_LOCK_RANK_GRAVE_FWD < CUA_LOCK_RANK_FAULT);
    CHECK(CUA_LOCK_RANK_FAULT < CUA_LOCK_RANK_GRAVE);
    CHECK(CUA_LOCK_RANK_GRAVE < CUA_LOCK_RANK_HOST);
    CHECK(CUA_LOCK_RANK_JANITOR + 1 == CUA_LOCK_RANK_COUNT);
}
