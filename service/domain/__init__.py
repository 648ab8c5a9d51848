"""The job itself: statuses, the transition table, phases, stages and error codes. Pure: no I/O, no
web framework, no database driver."""
