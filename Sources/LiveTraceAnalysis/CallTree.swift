// The calling-context tree of a trace: one node per distinct call path
// (main;fib;leaf), all threads merged, with the calls, total and self time
// of the calls on that path. Memory grows with the number of distinct
// paths, never with the number of events. Folded stacks and the flame graph
// are drawn from it.
import LiveTraceRecording

public struct CallTree {
    public struct Node {
        public var function: Int
        public var parent: Int
        public var calls: UInt64 = 0
        public var totalTicks: UInt64 = 0
        public var selfTicks: UInt64 = 0
        public var children: [Int] = []
    }

    /// Node 0 is the root (no function): the threads' outermost calls are
    /// its children.
    public private(set) var nodes: [Node] = [Node(function: -1, parent: -1)]
    public private(set) var names: FunctionNames
    public let clock: ClockCalibration
    private var childIndex: [UInt64: Int] = [:]
    private var path: [Int] = [0]

    public init(names: FunctionNames, clock: ClockCalibration) {
        self.names = names
        self.clock = clock
    }

    /// The tree of the trace in `directory`, and the damage met.
    public static func build(
        directory: String, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> (tree: CallTree, info: TraceInfo, damage: [RecordingError]) {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        var tree = CallTree(names: FunctionNames(objects), clock: info.clock)
        var walk = TraceWalk(tolerateDamage: true, progress: progress)
        try walk.run(directory: directory, into: &tree)
        return (tree, info, walk.damage)
    }

    public func nanoseconds(_ ticks: UInt64) -> UInt64 { clock.wholeNanoseconds(ticks: ticks) }

    public func name(_ node: Int) -> String { node == 0 ? "all" : names.string(nodes[node].function) }

    /// The children of `node`, by name (Brendan Gregg's layout).
    public func sortedChildren(_ node: Int) -> [Int] {
        nodes[node].children.sorted { (name($0), $0) < (name($1), $1) }
    }

    /// The sum of the outermost calls' durations.
    public var rootTicks: UInt64 { nodes[0].children.reduce(0) { $0 &+ nodes[$1].totalTicks } }
}

extension CallTree: CallVisitor {
    public mutating func beginThread(_ identity: StreamIdentity) {
        path = [0]
    }

    public mutating func enter(_ call: OpenCall, depth: Int) {
        let function = names.id(call.address)
        let parent = path[path.count - 1]
        let key = UInt64(UInt32(parent)) << 32 | UInt64(UInt32(function))
        let node: Int
        if let existing = childIndex[key] {
            node = existing
        } else {
            node = nodes.count
            nodes.append(Node(function: function, parent: parent))
            nodes[parent].children.append(node)
            childIndex[key] = node
        }
        path.append(node)
    }

    public mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
        let node = path.removeLast()
        nodes[node].calls += 1
        nodes[node].totalTicks &+= duration
        nodes[node].selfTicks &+= duration >= call.children ? duration - call.children : 0
    }
}

/// `livetrace dump --folded`: one line per call path with self time,
/// `main;fib;leaf 1234` (nanoseconds), the input of flamegraph.pl, inferno
/// and speedscope. Paths in depth-first order, children by name.
public enum FoldedStacks {
    public static func write(
        directory: String, to output: TextOutput, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> [RecordingError] {
        let (tree, _, damage) = try CallTree.build(directory: directory, progress: progress)
        var stack: [(node: Int, prefix: [UInt8])] = tree.sortedChildren(0).reversed().map { ($0, []) }
        while let (node, prefix) = stack.popLast() {
            var path = prefix
            if !path.isEmpty { path.append(UInt8(ascii: ";")) }
            path.append(contentsOf: tree.names.name(tree.nodes[node].function))
            let selfNs = tree.nanoseconds(tree.nodes[node].selfTicks)
            if selfNs > 0 {
                output.write(path)
                output.byte(0x20)
                output.number(selfNs)
                output.byte(0x0a)
            }
            for child in tree.sortedChildren(node).reversed() { stack.append((child, path)) }
        }
        output.flush()
        return damage
    }
}
