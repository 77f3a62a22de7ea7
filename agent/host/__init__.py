"""Host adapters: the one layer between the subsystems and the host.

Scripts (split, run as a user, security), inotify, the kernel's process
events, netlink sessions, notify FIFOs and mail.  VRRP, the checker and BFD
all use them; they import nothing from a subsystem, only ``config`` and
``trackers`` (the sans-I/O tracked objects they feed).
"""
