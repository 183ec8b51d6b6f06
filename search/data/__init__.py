"""Data shipped with mnas-surrogate search (the fitted anb accuracy surrogate)."""
