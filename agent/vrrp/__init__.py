"""VRRP engine (RFC 5798 / RFC 3768), sans-I/O (the VRRP issue)."""
