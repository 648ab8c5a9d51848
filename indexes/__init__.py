"""The index specification of every collection, and the tool that applies and checks it.

``python -m indexes sync`` creates or updates indexes idempotently; ``python -m indexes check``
exits non-zero naming each missing or different index. The API and the worker never touch
indexes at boot.
"""
