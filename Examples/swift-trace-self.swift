// swift-trace-self.swift — a Swift program that traces its own Swift
// functions through the C API of liblivetrace.so.
//
// Swift has no flag for entry nops: Examples/swift-trace-self.sh compiles this
// file to LLVM IR, gives every function the attribute
// "patchable-function-entry"="5", and compiles the IR with clang. livetrace.h
// comes in as the bridging header.

@inline(never) func fib(_ n: Int) -> Int { n < 2 ? n : fib(n - 1) + fib(n - 2) }

struct Greeter {
    var greeting: String
    @inline(never) func greet(_ name: String) -> String { "\(greeting), \(name)!" }
}

/// The callback: counts calls per function, reads the first argument.
import Glibc

let onEntry: lt_func = { ip, _, ops, regs in
    guard let ops, let regs, let data = lt_ops_data(ops) else { return }
    let counters = data.assumingMemoryBound(to: Int.self)
    counters[0] += 1
    counters[1] = Int(truncatingIfNeeded: regs.pointee.rdi)
    _ = ip
}

func check(_ rc: Int32, _ what: String) {
    if rc != 0 {
        print("\(what): \(String(cString: lt_strerror(rc)))")
        exit(1)
    }
}

let counters = UnsafeMutablePointer<Int>.allocate(capacity: 2)
counters.initialize(repeating: 0, count: 2)
guard let ops = lt_ops_create(onEntry, counters, UInt32(LT_OPS_SAVE_REGS)) else { fatalError("lt_ops_create") }
check(lt_ops_set_filter(ops, "*.fib(*"), "filter")
check(lt_ops_register(ops), "register")
let result = fib(15)
check(lt_ops_unregister(ops), "unregister")
print("fib(15) = \(result); traced calls: \(counters[0]); last argument seen: \(counters[1])")

counters[0] = 0
check(lt_ops_set_filter(ops, "*Greeter.greet*"), "filter")
check(lt_ops_register(ops), "register")
let line = Greeter(greeting: "Hello").greet("LiveTrace")
check(lt_ops_unregister(ops), "unregister")
lt_ops_destroy(ops)
print("\(line) traced calls of fib and greet: \(counters[0])")
exit(result == 610 ? 0 : 1)
