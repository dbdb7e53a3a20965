// Swift @convention(c) callbacks for Tracer.attach(callback:), compiled by
// SwiftCallbackTests with `swiftc -O -emit-library` and the C declarations
// of lt_tramp.h as a bridging header, as a user's release build would
// compile them. Each counts calls in the Atomic<UInt64> its ops's data
// points to.
import Synchronization

typealias Callback = @convention(c) (UInt, UInt, UnsafeMutablePointer<lt_ops>?, UnsafeMutablePointer<lt_regs>?) -> Void

/// A leaf: two tests, one load and one `lock inc` (wrappingAdd: `add`
/// would check for overflow and trap). The leaf stub takes it.
let countingCallback: Callback = { _, _, ops, _ in
    guard let data = ops?.pointee.data else { return }
    data.assumingMemoryBound(to: Atomic<UInt64>.self).pointee.wrappingAdd(1, ordering: .relaxed)
}

@inline(never)
func bump(_ counter: UnsafeMutablePointer<Atomic<UInt64>>) -> UInt64 {
    counter.pointee.wrappingAdd(1, ordering: .relaxed).newValue
}

/// Not a leaf: it calls `bump`, and stores its result in the next counter
/// afterwards (so the call is not a tail jump). The generic stub takes it.
let callingCallback: Callback = { _, _, ops, _ in
    guard let data = ops?.pointee.data else { return }
    let counter = data.assumingMemoryBound(to: Atomic<UInt64>.self)
    let count = bump(counter)
    (counter + 1).pointee.max(count, ordering: .relaxed)
}

@_cdecl("swift_fixture_counting_callback")
public func countingCallbackAddress() -> UnsafeRawPointer {
    unsafeBitCast(countingCallback, to: UnsafeRawPointer.self)
}

@_cdecl("swift_fixture_calling_callback")
public func callingCallbackAddress() -> UnsafeRawPointer {
    unsafeBitCast(callingCallback, to: UnsafeRawPointer.self)
}
