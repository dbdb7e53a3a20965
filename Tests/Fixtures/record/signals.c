/* Waits for signals sent to `livetrace record` and forwarded to it:
 * prints "ready", then "usr1" when SIGUSR1 arrives (handled by on_usr1,
 * which calls the traced note_signal), then waits to be killed by SIGTERM
 * (default action). */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile sig_atomic_t usr1_seen;

NOINLINE void note_signal(int signal) { usr1_seen = signal; }

static void on_usr1(int signal) { note_signal(signal); }

int main(void) {
    signal(SIGUSR1, on_usr1);
    printf("ready\n");
    fflush(stdout);
    while (!usr1_seen) usleep(1000);
    printf("usr1\n");
    fflush(stdout);
    for (;;) pause();
}
