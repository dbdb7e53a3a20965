// Function-graph fixture: C++ exceptions unwinding through hooked frames.
// Compiled with g++ -O0 -fpatchable-function-entry=5; gx_* are traced.
#include <stdexcept>

extern "C" {
int gx_leaf(int x) { return x + 1; }
void gx_cleanup() {}
}

struct Guard {
    ~Guard() { gx_cleanup(); }
};

extern "C" {
int gx_thrower(int x) {
    gx_leaf(x);
    throw std::runtime_error("thrown through hooked frames");
}
int gx_middle(int x) {
    Guard guard;
    return gx_thrower(x) + 1;
}
int gx_catcher(int x) {
    try {
        return gx_middle(x);
    } catch (const std::exception &) {
        return gx_leaf(100);
    }
}
int gx_outer(int x) { return gx_catcher(x) + gx_leaf(1); }

// A rethrow from a catch clause, caught one frame up.
int gx_rethrower(int x) {
    try {
        return gx_thrower(x);
    } catch (...) {
        gx_leaf(2);
        throw;
    }
}
int gx_rethrow_outer(int x) {
    try {
        return gx_rethrower(x);
    } catch (const std::runtime_error &) {
        return gx_leaf(3);
    }
}
}
