// Placeholder until trampolines land (issue 4).
import LiveTracePatching
