"""The worker: a pure state machine (`state`) behind a thin I/O shell (`server`)."""
