"""The clients of the outside world both services share: Kafka, PostgreSQL, HTTP serving, Prometheus metrics."""
