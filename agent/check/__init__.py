"""keepalived-py agent."""
