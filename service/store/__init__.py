"""Storage: MongoDB and object stores."""
