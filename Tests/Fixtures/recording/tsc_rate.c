// The oracle for the ring area's coarse TSC rate (RingBufferTests): TSC
// ticks per millisecond of CLOCK_MONOTONIC, measured over 100 ms with the
// compiler's __rdtsc and libc's clock, independently of LiveTrace.
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static unsigned long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

int main(void) {
    unsigned long long ns0 = now_ns(), tsc0 = __rdtsc();
    struct timespec pause = {0, 100000000};
    nanosleep(&pause, NULL);
    unsigned long long ns1 = now_ns(), tsc1 = __rdtsc();
    printf("%llu\n", (tsc1 - tsc0) * 1000000ull / (ns1 - ns0));
    return 0;
}
