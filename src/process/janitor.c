/*
 * janitor.c - the optional thread that calls cua_trim_idle() every period,
 * for engines that have no loop of their own to call it from. It exists only
 * between cua_janitor_start() and cua_janitor_stop(): cuarena never starts a
 * thread the user did not ask for.
 */
#include "process/registry.h"

#include <errno.h>

static cua_mutex jan_lock = CUA_MUTEX_INIT(JANITOR);
static pthread_cond_t jan_wake = PTHREAD_COND_INITIALIZER;
static pthread_t jan_thread;
static bool jan_running, jan_stop;
static unsigned jan_period_ms;

static void *janitor_main(void *arg)
{
    (void)arg;
    _cua_mutex_lock(&jan_lock);
    while (!jan_stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)jan_period_ms * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        while (!jan_stop && pthread_cond_timedwait(&jan_wake, &jan_lock.m, &until) != ETIMEDOUT) {
        }
        if (jan_stop) break;
        _cua_mutex_unlock(&jan_lock);
        _cua_registry_trim_idle(CUA_ALL_DEVICES, NULL); /* failures show in the arenas' events and stats */
        _cua_mutex_lock(&jan_lock);
    }
    _cua_mutex_unlock(&jan_lock);
    return NULL;
}

cua_status cua_janitor_start(unsigned period_ms)
{
    if (period_ms == 0) return _cua_error(CUA_ERR_INVALID_ARG, "the janitor's period is 0 ms");
    _cua_mutex_lock(&jan_lock);
    if (jan_running) {
        _cua_mutex_unlock(&jan_lock);
        return _cua_error(CUA_ERR_BUSY, "the janitor is already running");
    }
    jan_stop = false;
    jan_period_ms = period_ms;
    int rc = pthread_create(&jan_thread, NULL, janitor_main, NULL);
    jan_running = rc == 0;
    _cua_mutex_unlock(&jan_lock);
    if (rc) return _cua_error(CUA_ERR_OUT_OF_MEMORY, "cannot start the janitor thread (error %d)", rc);
    return CUA_OK;
}

cua_status cua_janitor_stop(void)
{
    _cua_mutex_lock(&jan_lock);
    if (!jan_running || jan_stop) { /* none, or another thread is stopping it */
        _cua_mutex_unlock(&jan_lock);
        return CUA_OK;
    }
    /* From the janitor's own thread (a callback of its trim): it cannot wait
     * for itself, and an OK would say it stopped. */
    if (pthread_equal(pthread_self(), jan_thread)) {
        _cua_mutex_unlock(&jan_lock);
        return _cua_error(CUA_ERR_BUSY, "cua_janitor_stop() was called from the janitor's own "
                          "thread (a callback of its trim): it cannot wait for itself; call it "
                          "from another thread");
    }
    jan_stop = true;
    pthread_cond_signal(&jan_wake);
    pthread_t t = jan_thread;
    _cua_mutex_unlock(&jan_lock);
    pthread_join(t, NULL);
    _cua_mutex_lock(&jan_lock);
    jan_running = false;
    _cua_mutex_unlock(&jan_lock);
    return CUA_OK;
}
