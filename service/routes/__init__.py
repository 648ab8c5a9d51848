"""HTTP routes: one controller per resource, plus the ops endpoints."""
