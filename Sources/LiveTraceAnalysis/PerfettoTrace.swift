// `livetrace dump --perfetto FILE`: Perfetto's native protobuf trace, which
// the Perfetto UI and trace_processor load far past the size where JSON
// viewers give up. Written by hand from Perfetto's published field numbers
// (protos/perfetto/trace/trace.proto, trace_packet.proto,
// track_event/track_event.proto, track_descriptor.proto,
// process_descriptor.proto, thread_descriptor.proto), only the messages
// needed, streamed as the trace is read:
//
//   Trace              { repeated TracePacket packet = 1; }
//   TracePacket        { uint64 timestamp = 8; uint32 trusted_packet_sequence_id = 10;
//                        TrackEvent track_event = 11; uint32 sequence_flags = 13;
//                        TrackDescriptor track_descriptor = 60; }
//   TrackDescriptor    { uint64 uuid = 1; string name = 2; ProcessDescriptor process = 3;
//                        ThreadDescriptor thread = 4; uint64 parent_uuid = 5; }
//   ProcessDescriptor  { int32 pid = 1; string process_name = 6; }
//   ThreadDescriptor   { int32 pid = 1; int32 tid = 2; string thread_name = 5; }
//   TrackEvent         { repeated DebugAnnotation debug_annotations = 4; Type type = 9;
//                        uint64 track_uuid = 11; string name = 23; }
//                        Type: SLICE_BEGIN 1, SLICE_END 2, INSTANT 3
//   DebugAnnotation    { string string_value = 6; string name = 10; }
//
// One track per process (uuid pid << 32) and one per thread (uuid
// pid << 32 | tid, parent the process); one SLICE_BEGIN at each entry and
// one SLICE_END at each exit, timestamps in CLOCK_MONOTONIC nanoseconds.
// A call that did not return normally says how it ended in a debug
// annotation `end` on its SLICE_END, as the Chrome JSON says it in
// `args.end`: "unwound", "left without exit", "unfinished", or "entry only"
// (a Swift async function recorded entry only: a slice of duration 0).
// LOST records are INSTANT events "N events lost". Every packet is on one
// sequence (id 1), the first marked SEQ_INCREMENTAL_STATE_CLEARED.
import LiveTraceRecording

public enum PerfettoTrace {
    enum Field {
        static let tracePacket = 1
        static let timestamp = 8, sequenceId = 10, trackEvent = 11, sequenceFlags = 13, trackDescriptor = 60
        static let uuid = 1, trackName = 2, process = 3, thread = 4, parentUuid = 5
        static let processPid = 1, processName = 6
        static let threadPid = 1, threadTid = 2, threadName = 5
        static let debugAnnotations = 4, eventType = 9, trackUuid = 11, eventName = 23
        static let annotationStringValue = 6, annotationName = 10
    }
    enum EventType { static let sliceBegin: UInt64 = 1, sliceEnd: UInt64 = 2, instant: UInt64 = 3 }
    static let sequenceId: UInt64 = 1
    static let incrementalStateCleared: UInt64 = 1

    public static func write(
        directory: String, to path: String, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> [RecordingError] {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        let output = try TextOutput(creating: path)
        var writer = Writer(info: info, names: FunctionNames(objects), output: output)
        var walk = TraceWalk(order: .firstEvent, tolerateDamage: true, progress: progress)
        try walk.run(directory: directory, into: &writer)
        output.flush()
        if let error = output.error { throw error }
        return walk.damage
    }

    /// Protocol buffer wire format: varints and length-delimited fields.
    struct Message {
        var bytes: [UInt8] = []

        mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                bytes.append(UInt8(v & 0x7f) | 0x80)
                v >>= 7
            }
            bytes.append(UInt8(v))
        }

        mutating func field(_ number: Int, varint value: UInt64) {
            varint(UInt64(number) << 3)
            varint(value)
        }

        mutating func field(_ number: Int, bytes value: [UInt8]) {
            varint(UInt64(number) << 3 | 2)
            varint(UInt64(value.count))
            bytes.append(contentsOf: value)
        }

        mutating func field(_ number: Int, string value: String) { field(number, bytes: Array(value.utf8)) }

        mutating func field(_ number: Int, message: Message) { field(number, bytes: message.bytes) }
    }

    struct Writer: CallVisitor {
        let info: TraceInfo
        var names: FunctionNames
        let output: TextOutput
        var processes = Set<UInt64>()
        var track: UInt64 = 0
        var first = true
        /// Per function id, its name as a TrackEvent name field.
        var nameFields: [[UInt8]] = []

        init(info: TraceInfo, names: FunctionNames, output: TextOutput) {
            self.info = info
            self.names = names
            self.output = output
        }

        func nanoseconds(_ tsc: UInt64) -> UInt64 {
            info.clock.wholeMonotonicNs(tsc: tsc)
        }

        /// Writes one `packet` of Trace.
        mutating func packet(_ build: (inout Message) -> Void) {
            var packet = Message()
            build(&packet)
            packet.field(Field.sequenceId, varint: PerfettoTrace.sequenceId)
            if first {
                packet.field(Field.sequenceFlags, varint: PerfettoTrace.incrementalStateCleared)
                first = false
            }
            var framed = Message()
            framed.field(Field.tracePacket, message: packet)
            output.write(framed.bytes)
        }

        mutating func beginThread(_ identity: StreamIdentity) {
            let processTrack = identity.pid << 32
            track = processTrack | (identity.tid & 0xffff_ffff)
            let track = self.track
            let processName = info.command.first ?? "pid \(identity.pid)"
            if processes.insert(identity.pid).inserted {
                packet { p in
                    var process = Message()
                    process.field(Field.processPid, varint: identity.pid)
                    process.field(Field.processName, string: processName)
                    var descriptor = Message()
                    descriptor.field(Field.uuid, varint: processTrack)
                    descriptor.field(Field.process, message: process)
                    p.field(Field.trackDescriptor, message: descriptor)
                }
            }
            packet { p in
                var thread = Message()
                thread.field(Field.threadPid, varint: identity.pid)
                thread.field(Field.threadTid, varint: identity.tid)
                thread.field(Field.threadName, string: "tid \(identity.tid)")
                var descriptor = Message()
                descriptor.field(Field.uuid, varint: track)
                descriptor.field(Field.parentUuid, varint: processTrack)
                descriptor.field(Field.thread, message: thread)
                p.field(Field.trackDescriptor, message: descriptor)
            }
        }

        mutating func event(_ type: UInt64, at time: UInt64, name: [UInt8]?, end: String? = nil) {
            let track = self.track
            let timestamp = nanoseconds(time)
            packet { p in
                p.field(Field.timestamp, varint: timestamp)
                var event = Message()
                if let end {
                    var annotation = Message()
                    annotation.field(Field.annotationName, string: "end")
                    annotation.field(Field.annotationStringValue, string: end)
                    event.field(Field.debugAnnotations, message: annotation)
                }
                event.field(Field.eventType, varint: type)
                event.field(Field.trackUuid, varint: track)
                if let name { event.bytes.append(contentsOf: name) }
                p.field(Field.trackEvent, message: event)
            }
        }

        mutating func enter(_ call: OpenCall, depth: Int) {
            let id = names.id(call.address)
            while nameFields.count <= id {
                var field = Message()
                field.field(Field.eventName, string: names.string(nameFields.count))
                nameFields.append(field.bytes)
            }
            event(EventType.sliceBegin, at: call.entry, name: nameFields[id])
        }

        mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
            event(EventType.sliceEnd, at: time, name: nil, end: end.note)
        }

        mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {
            var field = Message()
            field.field(Field.eventName, string: "\(count) events lost")
            event(EventType.instant, at: time, name: field.bytes)
        }
    }
}
