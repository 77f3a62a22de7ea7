"""Process supervision, control socket and logging (the daemon issue)."""
