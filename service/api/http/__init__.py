"""HTTP plumbing shared by the routes: request bodies and multipart forms read as they arrive,
the one exception mapper, request ids and metrics, dependencies, SSE framing, image URLs."""
