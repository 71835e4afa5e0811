"""The user-facing client: `Client`, `Future`, and the helpers over futures."""
