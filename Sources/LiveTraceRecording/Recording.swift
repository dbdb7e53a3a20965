// Placeholder until recording lands (issue 5).
import LiveTraceSites
