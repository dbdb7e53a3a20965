/* Calls a traced function, says "ready", then waits for its standard input
 * to close: a recorded process that stays alive as long as the test wants. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int step(int x) { return x * 2 + 1; }

int main(void) {
    volatile int sum = 0;
    for (int i = 0; i < 10; i++) sum += step(i);
    printf("ready %d\n", sum);
    fflush(stdout);
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0) {}
    return 0;
}
