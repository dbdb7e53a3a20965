// `livetrace dump --chrome`: Chrome's Trace Event Format (the JSON that
// chrome://tracing and the Perfetto UI load), written as the trace is read:
//
//   {"displayTimeUnit":"ns","otherData":{...},"traceEvents":[
//   {"name":"process_name","ph":"M","pid":P,"tid":P,"args":{"name":"./prog"}},
//   {"name":"thread_name","ph":"M","pid":P,"tid":T,"args":{"name":"tid T"}},
//   {"name":"main","cat":"function","ph":"B","ts":12.345,"pid":P,"tid":T},
//   {"ph":"E","ts":15.000,"pid":P,"tid":T},
//   ...]}
//
// One B and one E per call (duration events nest by their order on a
// thread); `ts` in microseconds since the recording started, exact to the
// nanosecond. An E whose call did not return says how it ended in `args`
// (unwound, left without exit, unfinished). LOST records are instant events
// ("ph":"i") named "N events lost".
import LiveTraceRecording

public enum ChromeTrace {
    public static func write(
        directory: String, to output: TextOutput, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> [RecordingError] {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        var writer = Writer(info: info, names: FunctionNames(objects), output: output)
        writer.json.raw("{\"displayTimeUnit\":\"ns\",\"otherData\":{\"command\":")
        writer.json.string(info.command.joined(separator: " "))
        writer.json.raw(",\"producer\":\"livetrace\"},\"traceEvents\":[")
        var walk = TraceWalk(order: .firstEvent, tolerateDamage: true, progress: progress)
        try walk.run(directory: directory, into: &writer)
        writer.json.raw("\n]}\n")
        writer.flush(force: true)
        return walk.damage
    }

    struct Writer: CallVisitor {
        let info: TraceInfo
        var names: FunctionNames
        let output: TextOutput
        var json = JSONWriter(reservingCapacity: 1 << 18)
        var first = true
        var pid: UInt64 = 0, tid: UInt64 = 0
        var processes = Set<UInt64>()
        /// Per function id, its JSON string literal.
        var quotedNames: [[UInt8]] = []

        init(info: TraceInfo, names: FunctionNames, output: TextOutput) {
            self.info = info
            self.names = names
            self.output = output
        }

        mutating func flush(force: Bool = false) {
            if force || json.bytes.count >= 1 << 18 {
                json.take { output.write($0) }
            }
        }

        mutating func separator() {
            json.raw(first ? "\n" : ",\n")
            first = false
        }

        func microseconds(_ tsc: UInt64) -> UInt64 {
            info.clock.nanosecondsSinceStart(tsc: tsc)
        }

        mutating func ids() {
            json.raw(",\"pid\":")
            json.number(pid)
            json.raw(",\"tid\":")
            json.number(tid)
        }

        mutating func beginThread(_ identity: StreamIdentity) {
            pid = identity.pid
            tid = identity.tid
            if processes.insert(pid).inserted {
                separator()
                json.raw("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":")
                json.number(pid)
                json.raw(",\"tid\":")
                json.number(pid)
                json.raw(",\"args\":{\"name\":")
                json.string(info.command.first ?? "pid \(pid)")
                json.raw("}}")
            }
            separator()
            json.raw("{\"name\":\"thread_name\",\"ph\":\"M\"")
            ids()
            json.raw(",\"args\":{\"name\":")
            json.string("tid \(tid)")
            json.raw("}}")
        }

        mutating func enter(_ call: OpenCall, depth: Int) {
            let id = names.id(call.address)
            while quotedNames.count <= id {
                var quoted = JSONWriter()
                quoted.string(names.string(quotedNames.count))
                quotedNames.append(quoted.bytes)
            }
            separator()
            json.raw("{\"name\":")
            json.raw(json: quotedNames[id])
            json.raw(",\"cat\":\"function\",\"ph\":\"B\",\"ts\":")
            json.thousandths(microseconds(call.entry))
            ids()
            json.raw("}")
            flush()
        }

        mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
            separator()
            json.raw("{\"ph\":\"E\",\"ts\":")
            json.thousandths(microseconds(time))
            ids()
            if let note = end.note {
                json.raw(",\"args\":{\"end\":")
                json.string(note)
                json.raw("}")
            }
            json.raw("}")
            flush()
        }

        mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {
            separator()
            json.raw("{\"name\":")
            json.string("\(count) events lost")
            json.raw(",\"cat\":\"livetrace\",\"ph\":\"i\",\"s\":\"t\",\"ts\":")
            json.thousandths(microseconds(time))
            ids()
            json.raw("}")
        }
    }
}
