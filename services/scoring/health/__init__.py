"""Health inside each rung, on the service side (the numbers are in `services.scoring.domain.health`).

marks     one customer's health from its order days: status, P(alive), the due moment, the message on a change
models    the numbered model versions in `health_models`, and which one is in force
scan      the time-driven pass: customers due, and customers stamped with another model version
refit     the maximum-likelihood refit over every customer with an order, and the loop that runs both
backtest  fit before a cutoff, compare the forecast with what happened after it
"""
