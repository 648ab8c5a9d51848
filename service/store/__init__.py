"""MongoDB and Redis: the connection, the job store (the one writer of job state), coalesced reads,
uploaded files, chapters and the queue's doorbell."""
