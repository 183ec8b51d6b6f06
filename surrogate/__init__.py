"""mnas-surrogate latency: device measurement, latency tables and predictors."""
