"""Agent events: the versioned schema, a producer with priority backpressure, and the bus."""
