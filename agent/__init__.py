"""keepalived-py: a keepalived-compatible high-availability agent."""

__version__ = "0.1.0"
