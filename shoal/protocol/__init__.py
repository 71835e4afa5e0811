"""Pure protocol layer: typed wire messages, serialization and framing. No I/O."""
