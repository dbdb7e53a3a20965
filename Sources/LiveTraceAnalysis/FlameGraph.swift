import LiveTraceRecording
public enum FlameGraph {
    public static func write(directory: String, to path: String, progress: ((Int, Int) -> Void)? = nil) throws(RecordingError) -> [RecordingError] { [] }
}
public enum PerfettoTrace {
    public static func write(directory: String, to path: String, progress: ((Int, Int) -> Void)? = nil) throws(RecordingError) -> [RecordingError] { [] }
}
