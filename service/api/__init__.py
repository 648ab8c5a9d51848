"""The HTTP API: the app, auth, middleware, one exception mapper, and one module per public
contract (controller, schemas and mapping function together)."""
