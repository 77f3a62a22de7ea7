"""BFD (RFC 5880, 5881 single hop, 5883 multihop): the engine and the BFD process.

Sans-I/O: ``packet`` (the Control packet: encode into a buffer, decode with a
reason per discard) and ``engine`` (``Session``, one BFD session as a state
machine on a clock passed in, integer microseconds).

The process (``main``, declared in ``child``): ``spec`` (keepalived's
``bfd_instance`` resolved), ``transport`` (the sockets), ``sessions`` (the
engine's sessions on their sockets, timers, reload as a difference),
``runner`` (the select loop on absolute deadlines and the line to the parent),
``realtime`` (bfd_priority, bfd_rt_priority, bfd_no_swap, bfd_cpu_affinity),
``status`` and ``dumps`` (what people see).  docs/bfd.md describes them all.
"""
