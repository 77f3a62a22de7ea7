"""BFD engine (RFC 5880), sans-I/O."""
