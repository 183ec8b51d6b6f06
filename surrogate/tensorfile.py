"""Read a torch file of tensors and plain values, never unpickling anything else.

The one owner of the package's ``torch.load`` and of its refusal message: a file that
holds other objects (a pickled class, a callable) is refused in one line naming the
file, without passing on torch's advice to load it with ``weights_only=False``.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["TensorFileError", "load_tensors"]


class TensorFileError(ValueError):
    """A torch file that is refused (other objects than tensors) or unreadable."""


def load_tensors(path: str | os.PathLike, *, what: str = "", advice: str = "",
                 map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; errors are one line naming the file.

    ``what`` (e.g. ``"checkpoint"``) is put before the path, ``advice`` (e.g. ``"delete it
    and retrain"``) after the reason. A missing file raises :class:`FileNotFoundError`; a
    file with objects other than tensors and plain values, or a damaged one,
    :class:`TensorFileError` (a ``ValueError``).
    """
    import pickle
    import warnings

    import torch

    name = f"{what} {path}" if what else str(path)
    tail = f"; {advice}" if advice else ""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not for the user
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: missing") from None
    except IsADirectoryError:
        raise TensorFileError(f"{name}: is a folder, not a torch tensor file{tail}") from None
    except OSError as exc:
        raise TensorFileError(f"{name}: cannot be read ({exc.strerror or exc}){tail}") from None
    except pickle.UnpicklingError as exc:
        # torch wraps every refusal of its weights-only unpickler in this error, forbidden
        # objects ("GLOBAL ...") and bytes that are no pickle at all alike
        why = ("it holds objects other than tensors and plain values" if "GLOBAL" in str(exc)
               else "it holds objects other than tensors and plain values, or is damaged")
        raise TensorFileError(f"{name}: not a weights-only tensor file ({why}); it will not be "
                              f"unpickled{tail}") from None
    except EOFError:
        raise TensorFileError(f"{name}: empty or truncated, not a torch tensor file{tail}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip, a foreign format, ...
        first = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else ""
        why = f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__
        raise TensorFileError(f"{name}: not a readable torch tensor file ({why}){tail}") from None
