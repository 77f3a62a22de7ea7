"""BFD (RFC 5880, 5881 single hop, 5883 multihop), sans-I/O.

``packet``: the Control packet (encode into a buffer, decode with a reason per discard).
``engine``: ``Session``, one BFD session as a state machine on a clock passed in
(integer microseconds).  docs/bfd.md describes both and what their caller must do.
"""
