"""Development tooling: embedded MongoDB/Redis, `make run`, development tokens and jobs.

Not imported by the service or the worker. The tests start their servers with ``embedded``.
"""
