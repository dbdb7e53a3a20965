/* Prints its environment, one entry a line, in the order it got it: under
 * `livetrace record` the entries are the same and in the same order, the
 * shim's variables (LD_PRELOAD, LIVETRACE_*) aside. */
#include <stdio.h>

extern char **environ;

int main(void) {
    for (char **entry = environ; *entry != NULL; entry++) puts(*entry);
    return 0;
}
