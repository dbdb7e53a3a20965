// Placeholder until the text poke lands (issue 3).
import LiveTraceSites
