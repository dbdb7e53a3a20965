#if canImport(Glibc)
import Glibc
#endif

// The Swift runtime's demangler. `@_silgen_name` binds the declaration to the
// runtime's exported C symbol at link time (it is not in any importable
// header); its arguments are pointers and integers, which the Swift and C
// calling conventions pass identically on x86-64. Binding at link time, not
// through dlsym, keeps it working when LiveTrace is linked with a private
// copy of the Swift runtime (the LD_PRELOAD shim), whose symbols are local.
@_silgen_name("swift_demangle")
private func swift_demangle(
    _ mangledName: UnsafePointer<CChar>?, _ mangledNameLength: Int,
    _ outputBuffer: UnsafeMutablePointer<CChar>?, _ outputBufferSize: UnsafeMutablePointer<Int>?,
    _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?

/// The C++ ABI's demangler, `__cxa_demangle`, found with dlsym in the
/// libstdc++ already loaded (the Swift runtime links it on Linux). It is not
/// linked directly so that LiveTrace adds no dependency; when no libstdc++ is
/// loaded, C++ names stay mangled.
private typealias CxaDemangle = @convention(c) (
    UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UnsafeMutablePointer<Int32>?
) -> UnsafeMutablePointer<CChar>?

private let cxaDemangle: CxaDemangle? = {
    // RTLD_DEFAULT is ((void *)0) in <dlfcn.h>; Swift does not import the macro.
    guard let symbol = dlsym(nil, "__cxa_demangle") else { return nil }
    return unsafeBitCast(symbol, to: CxaDemangle.self)
}()

/// Turns symbol names into the names people write: Swift (`$s…`, `_T0…`,
/// `$S…`) through the Swift runtime, C++ (`_Z…`) through `__cxa_demangle`.
/// Anything else (C) is returned unchanged, as is a name either demangler
/// refuses. Both demanglers return malloc'd memory, freed here.
public enum Demangler {
    public static func demangle(_ symbol: String) -> String {
        if isSwiftMangled(symbol) {
            return symbol.withCString { name in
                guard let result = swift_demangle(name, strlen(name), nil, nil, 0) else { return symbol }
                defer { free(result) }
                return String(cString: result)
            }
        }
        if symbol.hasPrefix("_Z"), let cxaDemangle {
            return symbol.withCString { name in
                var status: Int32 = 0
                guard let result = cxaDemangle(name, nil, nil, &status), status == 0 else { return symbol }
                defer { free(result) }
                return String(cString: result)
            }
        }
        return symbol
    }

    /// Swift's mangling prefixes: `$s` (Swift 5+), `$S` (4.2), `_T0` (4.0), `$e` (embedded).
    static func isSwiftMangled(_ symbol: String) -> Bool {
        symbol.hasPrefix("$s") || symbol.hasPrefix("$S") || symbol.hasPrefix("_T0") || symbol.hasPrefix("$e")
    }

    /// A cheap first test: does the name start like a Swift or C++ mangling?
    static func isMangled(_ symbol: String) -> Bool {
        var bytes = symbol.utf8.makeIterator()
        guard let a = bytes.next(), let b = bytes.next() else { return false }
        return (a == UInt8(ascii: "$") && (b == UInt8(ascii: "s") || b == UInt8(ascii: "S") || b == UInt8(ascii: "e")))
            || (a == UInt8(ascii: "_") && (b == UInt8(ascii: "Z") || b == UInt8(ascii: "T")))
    }
}
