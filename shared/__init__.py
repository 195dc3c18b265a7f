"""The project's own package, shared by both services (it imports no service):

- `shared.wire`: what crosses Kafka (events, validation, facts, stage changes, dead letters);
- `shared.adapters`: Kafka, PostgreSQL, HTTP and metrics clients;
- the process's own: `settings` (read once, frozen), `logging`, `runtime` (GC, back-off, child processes),
  `frozen` (fast frozen dataclasses) and `faults` (crash points for the fault tests, off in production).
"""
