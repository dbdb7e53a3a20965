// Function-graph fixture in Swift: `throws` returns normally with the error
// in r12, and tuples return in rax/rdx/rcx/r8 and xmm0-xmm3 (the Swift
// convention). Built as a shared library whose functions get entry sites
// from LLVM IR ("patchable-function-entry"="5"): FunctionGraphTests.
enum GraphError: Error {
    case tooBig(Int)
}

@inline(never) public func sw_check(_ x: Int) throws -> Int {
    if x > 2 { throw GraphError.tooBig(x) }
    return x * 10
}

@inline(never) public func sw_middle(_ x: Int) throws -> Int {
    try sw_check(x) + 1
}

@inline(never) public func sw_quad(_ x: Int) -> (Int, Int, Int, Int) {
    (x, x &+ 1, x &+ 2, x &+ 3)
}

@inline(never) public func sw_quad_double(_ x: Double) -> (Double, Double, Double, Double) {
    (x, x * 2, x * 3, x * 4)
}

/// sw_middle's value, or minus the payload of the error it threw.
@inline(never) public func sw_run(_ x: Int) -> Int {
    do {
        return try sw_middle(x)
    } catch GraphError.tooBig(let value) {
        return -value
    } catch {
        return -1000
    }
}

@_cdecl("sw_entry")
public func sw_entry(_ x: Int) -> Int { sw_run(x) }

/// 0, or the bit of the first result that differs from its definition.
@_cdecl("sw_check_returns")
public func sw_check_returns() -> Int {
    let four = sw_quad(5)
    if four.0 != 5 || four.1 != 6 || four.2 != 7 || four.3 != 8 { return 1 }
    let doubles = sw_quad_double(1.5)
    if doubles.0 != 1.5 || doubles.1 != 3 || doubles.2 != 4.5 || doubles.3 != 6 { return 2 }
    return 0
}
