// A Swift library with no entry sites (plain swiftc): each function counts
// its own calls, so a tracer's counts can be checked against the program's.
nonisolated(unsafe) var counters = [Int](repeating: 0, count: 6)

@inline(never) public func fib(_ n: Int) -> Int {
    counters[0] += 1
    return n < 2 ? n : fib(n - 1) + fib(n - 2)
}

public struct Shape {
    public var w: Int, h: Int
    @inline(never) public func area() -> Int { counters[1] += 1; return w * h }
}

open class Animal {
    public init() {}
    @inline(never) open func speak() -> Int { counters[2] += 1; return 1 }
}

public final class Dog: Animal {
    @inline(never) public override func speak() -> Int { counters[3] += 1; return 2 }
}

public protocol Sound { func loudness() -> Int }
public struct Bell: Sound {
    public init() {}
    @inline(never) public func loudness() -> Int { counters[4] += 1; return 3 }
}

public struct Odd: Error {}
@inline(never) public func checked(_ x: Int) throws -> Int {
    counters[5] += 1
    if x & 1 == 1 { throw Odd() }
    return x / 2
}

@_cdecl("swiftfix_run")
public func run(_ rounds: Int) -> Int {
    var total = 0
    let animals: [Animal] = [Animal(), Dog(), Dog()]
    let sounds: [any Sound] = [Bell(), Bell()]
    for i in 0..<rounds {
        total &+= fib(i % 12)
        total &+= Shape(w: i, h: 3).area()
        for a in animals { total &+= a.speak() }
        for s in sounds { total &+= s.loudness() }
        do { total &+= try checked(i) } catch { total &+= 1 }
    }
    return total
}

@_cdecl("swiftfix_counter")
public func counter(_ i: Int) -> Int { counters[i] }
