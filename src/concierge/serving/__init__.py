"""HTTP and WebSocket serving: the platform's front door."""
