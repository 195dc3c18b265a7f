"""The benchmark (`make bench`) and the synthetic shop (`make demo`).

Nothing here is imported by the services: `bench.generator` makes realistic shop event streams,
`bench.demo` feeds a running system with one, `bench.run` measures the system against two baselines
(`bench.naive` is the one-transaction-per-event baseline).
"""
