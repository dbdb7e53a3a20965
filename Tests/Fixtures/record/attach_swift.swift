// A running Swift program for `livetrace record -p` (AttachTests.swift):
// plain swiftc, no entry sites, so its functions are reached by relocating
// their prologues. It reads commands from stdin: "w N" calls work N times
// and prints "worked N TOTAL" (its own count of work calls); "q" prints
// "ok" and exits.
#if canImport(Glibc)
import Glibc
#endif

var workCalls = 0

@inline(never)
func work(_ value: Int) -> Int {
    workCalls += 1
    return value &* 31 &+ 7
}

setvbuf(stdout, nil, _IOLBF, 0)
print("ready \(getpid())")
while let line = readLine() {
    if line.hasPrefix("w ") {
        let count = Int(line.dropFirst(2)) ?? 0
        var sum = 0
        for index in 0..<count { sum &+= work(index) }
        let expected = (0..<count).reduce(0) { $0 &+ ($1 &* 31 &+ 7) }
        guard sum == expected else {
            print("INVARIANT work")
            exit(2)
        }
        print("worked \(count) \(workCalls)")
    } else if line == "q" {
        print("ok")
        exit(0)
    }
}
