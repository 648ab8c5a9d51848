"""One run of one job: the job function, its pages, the lease it holds, its heartbeat, and its
patience with MongoDB outages."""
