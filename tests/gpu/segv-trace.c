/* segv-trace.c - LD_PRELOAD it to print a native backtrace when a process
 * crashes (a debugging aid for the GPU machine, which has no debugger). */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_crash(int sig)
{
    void *bt[64];
    int n = backtrace(bt, 64);
    static const char msg[] = "segv-trace: native backtrace:\n";
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0) _exit(1);
    backtrace_symbols_fd(bt, n, 2);
    _exit(1);
}

__attribute__((constructor)) static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_crash;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}
