// Swift functions compiled by the tests at -Onone and -O: their prologue
// verdicts (functions without sites: swiftc leaves none).
public struct Point { public var x: Int; public var y: Int }

@inline(never) public func relArea(_ p: Point) -> Int { p.x * p.y }

@inline(never) public func relSum(_ values: [Int]) -> Int {
    var s = 0
    for v in values { s &+= v }
    return s
}

public final class RelCounter {
    public var count = 0
    public init() {}
    @inline(never) public func bump(by n: Int) -> Int { count &+= n; return count }
}
