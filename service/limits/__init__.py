"""What one user may do and hold: rate limits, upload slots and quotas, counted in Redis or MongoDB
so that every API process sees the same figures. No HTTP."""
