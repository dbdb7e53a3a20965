// The public face of LiveTrace: one import gives the whole runtime.
@_exported import LiveTraceSites
@_exported import LiveTracePatching
@_exported import LiveTraceTrampolines
@_exported import LiveTraceRecording
