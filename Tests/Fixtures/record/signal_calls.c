/* Calls from signal handlers, counted by the program itself: three workers
 * call sig_f 200,000 times each; two of them get SIGALRM every 100 us from a
 * timer of their own, whose handler (on_alarm) calls sig_g twice; the third
 * blocks every signal. Prints "f=N g=M alarms=K" and exits 0. With sites on
 * every function, on_alarm often interrupts the tracer itself. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

#define WORKERS 3
#define CALLS 200000

static uint64_t made_f, made_g, alarms;

NOINLINE long sig_f(long x) {
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}
NOINLINE long sig_g(long x) {
    __asm__ volatile("" ::: "memory");
    return x ^ 0x55;
}

static void on_alarm(int signal) {
    (void)signal;
    int saved = errno;
    sig_g(1);
    sig_g(2);
    __atomic_fetch_add(&made_g, 2, __ATOMIC_RELAXED);
    __atomic_fetch_add(&alarms, 1, __ATOMIC_RELAXED);
    errno = saved;
}

static void *worker(void *argument) {
    int index = (int)(intptr_t)argument;
    timer_t timer;
    int timed = 0;
    if (index == 0) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    } else {
        struct sigevent event;
        memset(&event, 0, sizeof event);
        event.sigev_notify = SIGEV_THREAD_ID;
        event.sigev_signo = SIGALRM;
        event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
        struct itimerspec spec = {{0, 100000}, {0, 100000}};
        timed = timer_create(CLOCK_MONOTONIC, &event, &timer) == 0 && timer_settime(timer, 0, &spec, NULL) == 0;
    }
    long sink = 0;
    for (long i = 0; i < CALLS; i++) sink += sig_f(i);
    if (timed) timer_delete(timer);
    __atomic_fetch_add(&made_f, CALLS, __ATOMIC_RELAXED);
    return (void *)sink;
}

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGALRM, &action, NULL) != 0) return 2;
    pthread_t threads[WORKERS];
    for (int i = 0; i < WORKERS; i++) pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < WORKERS; i++) pthread_join(threads[i], NULL);
    printf("f=%llu g=%llu alarms=%llu\n", (unsigned long long)made_f, (unsigned long long)made_g,
           (unsigned long long)alarms);
    return 0;
}
