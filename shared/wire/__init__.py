"""What crosses Kafka: the shop's events and their validation, the internal facts between ingest and scoring,
the stage-change messages, dead letters, and the rule for ids. No I/O."""
