// Swift async functions and their partial functions leave by tail calls,
// not through their return address: they are relocated, and the function
// graph records them entry only (EntryOnly.isSwiftAsync). relPlain is an
// ordinary function beside them.
@inline(never) public func relPlain(_ x: Int) -> Int { x &* 3 &+ 1 }

@inline(never) public func relAsync(_ x: Int) async -> Int {
    await Task.yield()
    return relPlain(x) + 1
}

public struct RelBox {
    public var value: Int
    public var twice: Int {
        _read { yield value * 2 }
        _modify { var v = value * 2; yield &v; value = v / 2 }
    }
}
