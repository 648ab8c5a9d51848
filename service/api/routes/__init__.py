"""One module per public contract: a controller that parses, calls one use case
(``service/jobs/``) and presents. No route module imports another."""
