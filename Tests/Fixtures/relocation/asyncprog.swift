// Swift async/await with tasks and an actor, built with plain swiftc (no
// entry sites): recorded by prologue relocation, its async functions entry
// only. It counts its own calls and prints them:
//   "fetch F leaf L add A sum S"
// F: calls of fetch(_:) (async), L: calls of leaf(_:) (synchronous, called
// from async code), A: calls of Tally.add(_:) (actor method), S: a checksum.
import Synchronization

let fetchCalls = Atomic<Int>(0)
let leafCalls = Atomic<Int>(0)

@inline(never) func leaf(_ x: Int) -> Int {
    leafCalls.add(1, ordering: .relaxed)
    return x &* 7 &+ 3
}

@inline(never) func fetch(_ x: Int) async -> Int {
    fetchCalls.add(1, ordering: .relaxed)
    if x % 3 == 0 { await Task.yield() }
    return leaf(x)
}

actor Tally {
    var total = 0
    var adds = 0
    @inline(never) func add(_ x: Int) {
        adds += 1
        total &+= x
    }
}

@main struct Program {
    static func main() async {
        let tally = Tally()
        let tasks = 8, rounds = 300
        await withTaskGroup(of: Int.self) { group in
            for t in 0..<tasks {
                group.addTask {
                    var local = 0
                    for r in 0..<rounds {
                        let v = await fetch(t * rounds + r)
                        local &+= v
                        if r % 10 == 0 { await tally.add(v) }
                    }
                    return local
                }
            }
            for await local in group { await tally.add(local) }
        }
        let sum = await tally.total, adds = await tally.adds
        print("fetch \(fetchCalls.load(ordering: .relaxed)) leaf \(leafCalls.load(ordering: .relaxed)) add \(adds) sum \(sum)")
    }
}
