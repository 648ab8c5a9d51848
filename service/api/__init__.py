"""The HTTP API (Litestar): ``app.py`` builds it; ``routes/`` holds one module per public
contract, ``schemas/`` their shapes and the functions that map a stored job onto them, ``http/``
the plumbing every route shares (bodies, multipart, errors, middleware, SSE framing)."""
