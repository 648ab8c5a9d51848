"""The HTTP API (Litestar): one module per public contract."""
