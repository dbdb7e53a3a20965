// Discovery fixture for Swift: no entry sites (Swift has no flag for them),
// so every function is listed as kind `none` with its demangled name.
struct Greeter {
    var greeting: String

    @inline(never)
    func greet(name: String) -> String { "\(greeting), \(name)!" }
}

@inline(never)
func fixtureCount(upTo limit: Int) -> Int {
    var total = 0
    for i in 0..<limit { total &+= i }
    return total
}

let greeter = Greeter(greeting: "Hello")
print(greeter.greet(name: "discovery"), fixtureCount(upTo: CommandLine.arguments.count + 10))
