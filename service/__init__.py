"""pdf-chapter-jobs: the HTTP API and the domain it shares with the worker."""
