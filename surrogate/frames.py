"""pandas on the read side: records -> a typed :class:`pandas.DataFrame`.

pandas is imported only here and only when a frame is asked for, so the rest of
the package works without it (it comes with the ``predict`` and ``search`` extras).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def require_pandas():
    """The pandas module, or an ImportError that says how to install it."""
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is in the predict/search extras
        raise ImportError("DataFrames need pandas: pip install 'mnas-surrogate[predict]'") from None
    return pandas


def records_frame(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
                  ints: Iterable[str] = (), floats: Iterable[str] = (), bools: Iterable[str] = (),
                  categories: Mapping[str, Sequence[str]] | None = None):
    """A DataFrame of ``rows`` with typed columns.

    ``ints`` -> int64, ``floats`` -> float64, ``bools`` -> bool, ``categories``
    (column -> allowed values) -> a categorical with exactly those categories; other
    columns stay as pandas infers them. Names of absent columns are ignored.
    """
    pd = require_pandas()
    df = pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)
    types: dict[str, Any] = {}
    types.update({c: "int64" for c in ints if c in df.columns})
    types.update({c: "float64" for c in floats if c in df.columns})
    types.update({c: "bool" for c in bools if c in df.columns})
    for c, values in (categories or {}).items():
        if c in df.columns:
            types[c] = pd.CategoricalDtype(list(values))
    return df.astype(types) if types else df
