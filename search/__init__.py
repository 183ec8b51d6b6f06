"""mnas-surrogate search: objectives, reward, sweeps and controllers, the ``mnas`` CLI."""
