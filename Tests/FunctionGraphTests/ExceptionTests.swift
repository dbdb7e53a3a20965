// C++ exceptions unwinding through hooked frames: the unwinder must see the
// real stack (lt_unwind.c restores it), the exception must reach its catch,
// the frames it left must be recorded as unwound exits, and the surviving
// frames must still record their normal exits.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class ExceptionTests: XCTestCase {
    typealias IntToInt = @convention(c) (Int32) -> Int32

    func library() throws -> UnsafeMutableRawPointer {
        let handle = try GraphFixtures.library("graph_exceptions.cpp", compiler: "g++")
        GraphFixtures.nameFunctions(handle, [
            "gx_leaf", "gx_cleanup", "gx_thrower", "gx_middle", "gx_catcher", "gx_outer", "gx_rethrower", "gx_rethrow_outer",
        ])
        return handle
    }

    func testExceptionThroughHookedFramesIsCaughtAndFramesAreUnwound() throws {
        let outer = try GraphFixtures.symbol(try library(), "gx_outer", as: IntToInt.self)
        XCTAssertEqual(outer(5), 103, "untraced")
        var result: Int32 = 0
        let recorded = try recordGraph(["gx_*"]) { result = outer(5) }
        XCTAssertEqual(result, 103)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> gx_outer 0", "> gx_catcher 1", "> gx_middle 2", "> gx_thrower 3", "> gx_leaf 4", "< gx_leaf 4",
            // The destructor in gx_middle's cleanup runs after gx_thrower is gone.
            "<! gx_thrower 3", "> gx_cleanup 3", "< gx_cleanup 3",
            // Caught in gx_catcher: gx_middle was left by the exception.
            "<! gx_middle 2", "> gx_leaf 2", "< gx_leaf 2", "< gx_catcher 1",
            "> gx_leaf 1", "< gx_leaf 1", "< gx_outer 0",
        ])
        XCTAssertEqual(FunctionGraph.currentThreadDepth, 0)
    }

    func testRethrowFromACatchClauseIsCaughtOneFrameUp() throws {
        let outer = try GraphFixtures.symbol(try library(), "gx_rethrow_outer", as: IntToInt.self)
        XCTAssertEqual(outer(5), 4, "untraced")
        var result: Int32 = 0
        let recorded = try recordGraph(["gx_*"]) { result = outer(5) }
        XCTAssertEqual(result, 4)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> gx_rethrow_outer 0", "> gx_rethrower 1", "> gx_thrower 2", "> gx_leaf 3", "< gx_leaf 3",
            "<! gx_thrower 2", "> gx_leaf 2", "< gx_leaf 2",
            "<! gx_rethrower 1", "> gx_leaf 1", "< gx_leaf 1", "< gx_rethrow_outer 0",
        ])
    }
}
