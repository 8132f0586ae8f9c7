"""The LAN peer link: framing and session rules (pure), TLS, and the worker that owns sockets."""
