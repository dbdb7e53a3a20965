// The call-matching rules every reader of a thread's events shares (report,
// replay, dump): a stack of open calls, fed one event at a time, bounded by
// the call depth, never by the number of events.
//
// Rules (docs/FORMAT.md, "report --json"):
//   - entry: a call opens on top of the stack;
//   - exit: it closes the innermost open call of the same function; calls
//     above that one close at the same time (they were left without an exit
//     event: `leftWithoutExit`); an exit that matches no open call is
//     `unmatchedExit`, and changes nothing else;
//   - an exit with the UNWOUND flag closes its call as `unwound` (longjmp,
//     an exception);
//   - an entry with the ENTRY_ONLY flag (a function whose return is not
//     hooked: Swift async) opens a call and closes it at once as
//     `entryOnly`, duration 0: it never holds callees;
//   - at the end of the stream, calls still open close at its last
//     timestamp as `unfinished` (the thread was running, or died);
//   - a timestamp earlier than its call's entry gives a duration of 0.

/// How a call ended.
public enum CallEnd: Sendable, Equatable {
    case returned
    /// Left by longjmp or an exception (the exit carried UNWOUND).
    case unwound
    /// Closed by the exit of a call below it on the stack.
    case leftWithoutExit
    /// Still open at the end of the stream.
    case unfinished
    /// Recorded entry only (the entry carried ENTRY_ONLY): no duration.
    case entryOnly
}

extension CallEnd {
    /// How every output (replay, Chrome JSON, Perfetto) names an end other
    /// than a return; nil for a return.
    public var note: String? {
        switch self {
        case .returned: return nil
        case .unwound: return "unwound"
        case .leftWithoutExit: return "left without exit"
        case .unfinished: return "unfinished"
        case .entryOnly: return "entry only"
        }
    }
}

/// A call on the stack; `children` sums the durations of its direct callees
/// in ticks.
public struct OpenCall: Sendable, Equatable {
    public var address: UInt64
    public var entry: UInt64
    public var children: UInt64

    public init(address: UInt64, entry: UInt64, children: UInt64 = 0) {
        self.address = address
        self.entry = entry
        self.children = children
    }
}

/// What a reader does with the calls of one thread. `depth` is the number
/// of calls open below this one (0: outermost).
public protocol CallVisitor {
    /// A thread's stream starts; every call after it is that thread's.
    mutating func beginThread(_ identity: StreamIdentity)
    /// Its stream ended (its open calls were closed as unfinished first);
    /// `damage` is the error that cut it short, if any.
    mutating func endThread(_ identity: StreamIdentity, damage: RecordingError?)
    mutating func enter(_ call: OpenCall, depth: Int)
    /// `duration` is `time - call.entry` (0 when negative).
    mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int)
    mutating func lost(_ count: UInt64, at time: UInt64, depth: Int)
    mutating func unmatchedExit(_ address: UInt64, at time: UInt64, depth: Int)
}

extension CallVisitor {
    public mutating func beginThread(_ identity: StreamIdentity) {}
    public mutating func endThread(_ identity: StreamIdentity, damage: RecordingError?) {}
    public mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {}
    public mutating func unmatchedExit(_ address: UInt64, at time: UInt64, depth: Int) {}
}

/// One thread's open calls (the rules at the top of this file).
public struct CallWalker: Sendable {
    @usableFromInline var openCalls: [OpenCall] = []
    @usableFromInline var latest: UInt64 = 0

    public init() {}

    /// The open calls, outermost first.
    public var stack: [OpenCall] { openCalls }
    /// The latest timestamp fed since the last `finish`.
    public var lastTimestamp: UInt64 { latest }

    @inlinable
    public mutating func feed<V: CallVisitor>(_ event: TraceEvent, into visitor: inout V) {
        if event.timestamp > latest { latest = event.timestamp }
        switch event.kind {
        case .entry:
            let call = OpenCall(address: event.address, entry: event.timestamp)
            visitor.enter(call, depth: openCalls.count)
            if event.isEntryOnly {
                visitor.exit(call, at: event.timestamp, duration: 0, end: .entryOnly, depth: openCalls.count)
                return
            }
            openCalls.append(call)
        case .exit:
            var match = openCalls.count - 1
            while match >= 0 && openCalls[match].address != event.address { match -= 1 }
            guard match >= 0 else {
                visitor.unmatchedExit(event.address, at: event.timestamp, depth: openCalls.count)
                return
            }
            while openCalls.count > match + 1 { closeTop(at: event.timestamp, end: .leftWithoutExit, into: &visitor) }
            closeTop(at: event.timestamp, end: event.isUnwound ? .unwound : .returned, into: &visitor)
        case .lost:
            visitor.lost(event.address, at: event.timestamp, depth: openCalls.count)
        }
    }

    /// Closes every open call as unfinished at the last timestamp seen, and
    /// makes the walker ready for another thread.
    public mutating func finish<V: CallVisitor>(into visitor: inout V) {
        while !openCalls.isEmpty { closeTop(at: latest, end: .unfinished, into: &visitor) }
        latest = 0
    }

    @inlinable
    mutating func closeTop<V: CallVisitor>(at time: UInt64, end: CallEnd, into visitor: inout V) {
        let call = openCalls.removeLast()
        let duration = time >= call.entry ? time - call.entry : 0
        if !openCalls.isEmpty { openCalls[openCalls.count - 1].children &+= duration }
        visitor.exit(call, at: time, duration: duration, end: end, depth: openCalls.count)
    }
}

/// Run-time addresses to dense indices 0, 1, 2, ... in order of first
/// sight: an open-addressing table with a multiplicative hash, cheaper per
/// event than a Dictionary's seeded hash. Memory grows with the number of
/// distinct functions only.
public struct AddressIndex: Sendable {
    @usableFromInline var keys: [UInt64]
    @usableFromInline var values: [Int32]
    @usableFromInline var mask: Int
    /// The last address looked up and its index: calls come in runs of
    /// the same few functions.
    @usableFromInline var lastAddress: UInt64 = 0
    @usableFromInline var lastIndex = -1
    public private(set) var addresses: [UInt64] = []

    public init() {
        keys = Array(repeating: 0, count: 64)
        values = Array(repeating: -1, count: 64)
        mask = 63
    }

    public var count: Int { addresses.count }

    /// The index of `address`, given a new one at first sight.
    @inlinable
    public mutating func index(of address: UInt64) -> Int {
        if address == lastAddress && lastIndex >= 0 { return lastIndex }
        var slot = Int(truncatingIfNeeded: (address &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
        while true {
            let value = values[slot]
            if value < 0 { break }
            if keys[slot] == address {
                lastAddress = address
                lastIndex = Int(value)
                return lastIndex
            }
            slot = (slot + 1) & mask
        }
        return insert(address, at: slot)
    }

    @usableFromInline
    mutating func insert(_ address: UInt64, at slot: Int) -> Int {
        let index = addresses.count
        keys[slot] = address
        values[slot] = Int32(index)
        addresses.append(address)
        if addresses.count * 2 > keys.count { grow() }
        return index
    }

    private mutating func grow() {
        let size = keys.count * 2
        keys = Array(repeating: 0, count: size)
        values = Array(repeating: -1, count: size)
        mask = size - 1
        for (index, address) in addresses.enumerated() {
            var slot = Int(truncatingIfNeeded: (address &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
            while values[slot] >= 0 { slot = (slot + 1) & mask }
            keys[slot] = address
            values[slot] = Int32(index)
        }
    }
}
