/* Functions with several names at one address: a global with a weak alias
 * whose name sorts first, and a local (static) function with a global alias.
 * Each alias pair is one function; `livetrace list` and a trace's report must
 * give it the same name (the one symbol index picks by binding: global,
 * then weak, then local; then the shorter name).
 * Calls: main 1, step_global (alias aa_weak_step) 5, scale_public (alias of
 * the static aa_local_scale) 3. Exit status 0; prints the sum. */
#include <stdio.h>

__attribute__((noinline)) int step_global(int x) { return x * 2 + 1; }
int aa_weak_step(int x) __attribute__((weak, alias("step_global")));

__attribute__((noinline)) static int aa_local_scale(int x) { return x * 3; }
int scale_public(int x) __attribute__((alias("aa_local_scale")));

int main(void) {
    volatile int (*step)(int) = (volatile int (*)(int))aa_weak_step;
    int sum = 0;
    for (int i = 0; i < 5; i++) sum += ((int (*)(int))step)(i);
    for (int i = 0; i < 3; i++) sum += scale_public(i);
    printf("sum %d\n", sum);
    return 0;
}
