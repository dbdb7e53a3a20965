/* A program with a known call tree, for `livetrace record`:
 *   main 1, shout 1, fib 1973 (fib(15): 2*F(16)-1), worker 3 (threads),
 *   leaf 987 (fib's base cases, F(16)) + 1000 + 2000 + 3000 (workers) = 6987.
 * It reads one line from stdin and prints it upper-cased (stdin and stdout
 * pass through), and exits with status 7. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void leaf(long x) { sink += x; }

NOINLINE long fib(int n) {
    if (n < 2) {
        leaf(n);
        return n;
    }
    return fib(n - 1) + fib(n - 2);
}

NOINLINE void *worker(void *argument) {
    long count = (long)argument;
    for (long i = 0; i < count; i++) leaf(i);
    return NULL;
}

NOINLINE void shout(char *line) {
    for (size_t i = 0; line[i] != '\0'; i++) line[i] = (char)toupper((unsigned char)line[i]);
}

int main(void) {
    char line[256] = "";
    if (fgets(line, sizeof line, stdin) == NULL) line[0] = '\0';
    line[strcspn(line, "\n")] = '\0';
    shout(line);
    long value = fib(15);
    pthread_t threads[3];
    for (long i = 0; i < 3; i++) pthread_create(&threads[i], NULL, worker, (void *)(1000 * (i + 1)));
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    printf("%s fib(15)=%ld\n", line, value);
    return 7;
}
