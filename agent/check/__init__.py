"""Health checkers and virtual/real server state."""
