"""The domain: the job and its rules, pure (no I/O)."""
