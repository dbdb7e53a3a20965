// swift-tools-version:6.0
//
// LiveTrace: a live-patching function tracer for user-space Swift and C
// programs on Linux x86-64. One module per mechanism; see docs/ARCHITECTURE.md.
import Foundation
import PackageDescription

/// libstdc++ linked statically (see Linker/static-libstdc++/libstdc++.so for
/// why): -lstdc++ finds that linker script first. The archive's eh_catch.o
/// also defines `__cxa_begin_catch`, which lt_unwind.c interposes:
/// --allow-multiple-definition keeps the first definition, ours (objects
/// come before archives), with GNU ld (gold rejects the archive's probe note
/// that refers to the discarded copy).
let staticLibstdcxx = ["-Xclang-linker", "-L" + URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Linker/static-libstdc++",
                       "-Xclang-linker", "-fuse-ld=bfd", "-Xlinker", "--allow-multiple-definition"]

let package = Package(
    name: "LiveTrace",
    products: [
        .library(name: "LiveTrace", targets: ["LiveTrace"]),
        .executable(name: "livetrace", targets: ["livetrace"]),
        // The C API (include/livetrace.h) as a self-contained shared library.
        // Built as libLiveTraceC.so with soname liblivetrace.so (`make lib`
        // links the name): a product may not share the executable's name.
        .library(name: "LiveTraceC", type: .dynamic, targets: ["LiveTraceC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // elfutils' libdw (Debian libdw-dev): its header only, nothing is
        // linked; libdw is loaded when source lines are first read
        // (SourceLines.swift's LibDW), so no process pays for mapping it
        // (and its libelf, libz, liblzma, libbz2) at start.
        .systemLibrary(
            name: "CElfutils",
            providers: [.apt(["libelf-dev", "libdw-dev"])]
        ),
        // Zydis (Debian libzydis-dev): the one x86-64 decoder and encoder.
        .systemLibrary(name: "CZydis", providers: [.apt(["libzydis-dev"])]),
        // The small C layer the machine demands: syscall wrappers, the
        // async-signal-safe trap handler, thread-local state, trampolines.
        .target(
            name: "CLiveTraceShims",
            // lt_unwind.c interposes the unwinder's entry points: an
            // executable that links this target statically must export them,
            // or libstdc++ and libc keep calling their own. Likewise
            // lt_sigmask.c's signal-mask and sigaction entry points, so that
            // libraries loaded later (dlopen) reach them too; and lt_unload.c's
            // dlclose.
            linkerSettings: [.unsafeFlags(["-Xlinker", "--export-dynamic-symbol=sigaction",
                                           "-Xlinker", "--export-dynamic-symbol=signal",
                                           "-Xlinker", "--export-dynamic-symbol=sigprocmask",
                                           "-Xlinker", "--export-dynamic-symbol=pthread_sigmask",
                                           "-Xlinker", "--export-dynamic-symbol=_Unwind_RaiseException",
                                           "-Xlinker", "--export-dynamic-symbol=_Unwind_Resume_or_Rethrow",
                                           "-Xlinker", "--export-dynamic-symbol=_Unwind_ForcedUnwind",
                                           "-Xlinker", "--export-dynamic-symbol=__cxa_begin_catch",
                                           "-Xlinker", "--export-dynamic-symbol=pthread_exit",
                                           "-Xlinker", "--export-dynamic-symbol=backtrace",
                                           "-Xlinker", "--export-dynamic-symbol=_Unwind_Backtrace",
                                           "-Xlinker", "--export-dynamic-symbol=dlclose"])]
        ),
        // Finding sites in ELF objects (files and the loaded process).
        .target(name: "LiveTraceSites", dependencies: ["CElfutils", "CZydis", "CLiveTraceShims"]),
        // The text poke: normal form, batched int3 protocol, trap handler.
        .target(name: "LiveTracePatching", dependencies: ["LiveTraceSites", "CLiveTraceShims"]),
        // JIT memory, trampolines and ops.
        .target(name: "LiveTraceTrampolines", dependencies: ["LiveTracePatching", "CLiveTraceShims", "CZydis"]),
        // Per-thread event buffers, the trace directory format, its reader.
        .target(name: "LiveTraceRecording", dependencies: ["LiveTraceSites", "CLiveTraceShims"]),
        // Reading traces for people and tools: replay, dump (Chrome JSON,
        // Perfetto protobuf, folded stacks, SVG flame graph), info, report
        // diffs. Not linked into liblivetrace.so.
        .target(name: "LiveTraceAnalysis", dependencies: ["LiveTraceRecording", "LiveTraceSites"]),
        // The LD_PRELOAD shim's environment and its control channel to
        // `livetrace record` (Glibc and the system-call layer only: it is
        // linked into liblivetrace.so).
        .target(name: "LiveTracePreload", dependencies: ["LiveTraceSites"]),
        // The public Swift API: re-exports the mechanisms above.
        .target(name: "LiveTrace", dependencies: ["LiveTraceSites", "LiveTracePatching", "LiveTraceTrampolines", "LiveTraceRecording"]),
        // The @_cdecl functions of livetrace.h; the Swift runtime is linked in.
        // Nothing it depends on may import Foundation (it cannot be linked
        // into liblivetrace.so): LiveTrace brings GraphRecording (lt_trace_start).
        .target(
            name: "LiveTraceC",
            dependencies: ["LiveTrace", "LiveTraceTrampolines", "LiveTracePreload", "CLiveTraceShims"],
            linkerSettings: [.unsafeFlags(["-static-stdlib", "-Xlinker", "-soname=liblivetrace.so"] + staticLibstdcxx)]
        ),
        // Benchmarks/tramp-cost.sh: cost per call of an enabled site.
        .executableTarget(name: "livetrace-tramp-bench", dependencies: ["LiveTrace"], path: "Benchmarks/tramp-bench"),
        // Benchmarks/poke-batch.sh: time to switch 100k sites in one batch.
        .executableTarget(name: "livetrace-poke-bench", dependencies: ["LiveTrace"], path: "Benchmarks/poke-bench"),
        // Benchmarks/reloc-batch.sh: relocate and restore every function of an object.
        .executableTarget(name: "livetrace-reloc-bench", dependencies: ["LiveTrace"], path: "Benchmarks/reloc-bench"),
        // Benchmarks/graph-cost.sh: cost per call of recording entry and exit.
        .executableTarget(name: "livetrace-graph-bench", dependencies: ["LiveTrace"], path: "Benchmarks/graph-bench"),
        // -no-pie in release builds: a position-dependent executable has no
        // relative relocations for the loader to apply at every start
        // (75,000 with the Swift runtime linked in: docs/ARCHITECTURE.md,
        // start-up). Not in debug builds, which link libswiftCore.so
        // dynamically: there the loader warns at every start of a
        // position-dependent executable that refers directly to one of its
        // protected functions.
        .executableTarget(
            name: "livetrace",
            dependencies: ["LiveTrace", "LiveTracePreload", "LiveTraceAnalysis", "CLiveTraceShims", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-no-pie"] + staticLibstdcxx, .when(configuration: .release))]
        ),
        .target(name: "TestSupport", dependencies: ["LiveTrace"], path: "Tests/TestSupport"),
        .testTarget(name: "SiteDiscoveryTests", dependencies: ["LiveTrace", "TestSupport"]),
        .testTarget(name: "TextPokeTests", dependencies: ["LiveTrace", "TestSupport"]),
        .testTarget(name: "TrampolineTests", dependencies: ["LiveTrace", "TestSupport"]),
        .testTarget(name: "RecordingTests", dependencies: ["LiveTrace", "TestSupport"]),
        .testTarget(name: "FunctionGraphTests", dependencies: ["LiveTrace", "TestSupport"]),
        .testTarget(name: "RecordCommandTests", dependencies: ["LiveTrace", "LiveTracePreload", "TestSupport", "livetrace", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(name: "TraceReadingTests", dependencies: ["LiveTrace", "LiveTraceAnalysis", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
