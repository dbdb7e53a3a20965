// A Swift program built with plain swiftc (no entry sites): it counts the
// calls of its own functions and prints the counts, for `record -P`.
nonisolated(unsafe) var workCalls = 0
nonisolated(unsafe) var stepCalls = 0

@inline(never) func step(_ x: Int) -> Int {
    stepCalls += 1
    return x &* 3 &+ 1
}

@inline(never) func work(_ n: Int) -> Int {
    workCalls += 1
    var total = 0
    for i in 0..<n { total &+= step(i) }
    return total
}

var sum = 0
for round in 0..<200 { sum &+= work(round % 17) }
print("sum \(sum) work \(workCalls) step \(stepCalls)")
