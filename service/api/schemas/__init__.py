"""The shapes of every request and response, one module per contract, each with the function
that maps a stored document onto it."""
