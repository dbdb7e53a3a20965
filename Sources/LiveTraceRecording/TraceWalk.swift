// One pass over every thread of a trace directory: each stream read by a
// StreamReader, its events matched into calls by a CallWalker and handed to
// a CallVisitor. Memory: one read buffer and one call stack at a time.
//
// Damage: with `tolerateDamage`, a stream that turns out damaged ends at the
// damage (its open calls close as unfinished at the last event before it),
// the error is kept in `damage`, and the walk goes on with the next stream
// (each stream is its own file: the others are intact). Without it, the
// first damage is thrown.

public struct TraceWalk {
    /// In which order the threads are visited.
    public enum Order: Sendable {
        /// File-name order (pid, tid, ring, generation as text).
        case files
        /// By the timestamp of each stream's first event (the order the
        /// threads started in), then by file name; empty streams first.
        case firstEvent
    }

    public var order: Order
    public var tolerateDamage: Bool
    /// Called now and then with (bytes read, bytes of all streams).
    public var progress: ((Int, Int) -> Void)?
    /// The damage met when `tolerateDamage` is set, in the order met.
    public var damage: [RecordingError] { damageMet }
    /// Threads whose stream went into the walk (damaged ones included).
    public var threads: Int { threadsWalked }
    @usableFromInline var damageMet: [RecordingError] = []
    @usableFromInline var threadsWalked = 0

    public init(order: Order = .files, tolerateDamage: Bool = false, progress: ((Int, Int) -> Void)? = nil) {
        self.order = order
        self.tolerateDamage = tolerateDamage
        self.progress = progress
    }

    /// Walks the streams of the trace in `directory`.
    @inlinable
    public mutating func run<V: CallVisitor>(directory: String, into visitor: inout V) throws(RecordingError) {
        try run(paths: try TraceReader.streamPaths(directory: directory), into: &visitor)
    }

    /// Walks the streams at `paths` (generic and inlinable, so that each
    /// visitor gets its own specialized loop, whatever its module).
    @inlinable
    public mutating func run<V: CallVisitor>(paths: [String], into visitor: inout V) throws(RecordingError) {
        let ordered = try orderedPaths(paths)
        let total = ordered.reduce(0) { $0 + TraceWalk.fileSize($1) }
        var done = 0
        var walker = CallWalker()
        for path in ordered {
            let reader: StreamReader
            do throws(RecordingError) {
                reader = try StreamReader(path: path)
            } catch {
                if !tolerateDamage { throw error }
                damageMet.append(error)
                done += TraceWalk.fileSize(path)
                continue
            }
            threadsWalked += 1
            visitor.beginThread(reader.identity)
            var cut: RecordingError?
            do throws(RecordingError) {
                if let progress {
                    var sinceProgress = 0
                    try reader.forEach { event in
                        walker.feed(event, into: &visitor)
                        sinceProgress += 1
                        if sinceProgress == 1 << 16 {
                            sinceProgress = 0
                            progress(done + reader.offset, total)
                        }
                    }
                } else {
                    try reader.forEach { walker.feed($0, into: &visitor) }
                }
            } catch {
                if !tolerateDamage { throw error }
                damageMet.append(error)
                cut = error
            }
            walker.finish(into: &visitor)
            visitor.endThread(reader.identity, damage: cut)
            done += reader.fileSize
            progress?(done, total)
        }
    }

    @usableFromInline
    static func fileSize(_ path: String) -> Int { Sys.fileSizeOrZero(path) }

    /// `paths` in the walk's order.
    @usableFromInline
    func orderedPaths(_ paths: [String]) throws(RecordingError) -> [String] {
        guard order == .firstEvent else { return paths }
        var keyed: [(first: UInt64, index: Int, path: String)] = []
        for (index, path) in paths.enumerated() {
            var first: UInt64 = 0
            do throws(RecordingError) {
                first = try StreamReader(path: path, bufferBytes: 1 << 12).next()?.timestamp ?? 0
            } catch {
                if !tolerateDamage { throw error }
            }
            keyed.append((first, index, path))
        }
        return keyed.sorted { ($0.first, $0.index) < ($1.first, $1.index) }.map(\.path)
    }
}
