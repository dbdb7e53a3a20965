/* For -t: slow (20 ms, sleeping) runs twice, fast (a few ns) 1000 times,
 * medium calls fast once and sleeps 1 ms. With -t 5ms only main and slow
 * stay; with -t 500us medium stays too (but not the fast call inside it). */
#include <stdio.h>
#include <unistd.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void fast(int i) { sink += i; }
NOINLINE void slow(void) { usleep(20000); }
NOINLINE void medium(void) {
    fast(1);
    usleep(1000);
}

int main(void) {
    for (int i = 0; i < 1000; i++) fast(i);
    slow();
    medium();
    slow();
    printf("done\n");
    return 0;
}
