/* Compiled with clang -fpatchable-function-entry=5 and linked into the Swift
 * program: record_fixture_sum_squares(n) calls record_fixture_square n times. */
#include "swift_sum.h"

__attribute__((noinline)) long record_fixture_square(long x) { return x * x; }

__attribute__((noinline)) long record_fixture_sum_squares(long count) {
    long total = 0;
    for (long i = 0; i < count; i++) total += record_fixture_square(i);
    return total;
}
