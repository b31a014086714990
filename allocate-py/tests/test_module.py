"""The compiled module: declared once, every class and exception naming it as its module."""

from __future__ import annotations

import pickle
import sys

import allocate
from allocate import _allocate


def test_every_class_says_the_compiled_module() -> None:
    classes = [v for v in vars(_allocate).values() if isinstance(v, type)]
    assert len(classes) >= 30
    for cls in classes:
        assert cls.__module__ == "allocate._allocate", cls
        assert getattr(sys.modules[cls.__module__], cls.__qualname__) is cls
        assert getattr(allocate, cls.__name__) is cls


def test_exceptions_keep_their_code_and_pickle() -> None:
    assert (allocate.AllocateError.code, allocate.ConnectionLost.code) == ("error", "connection_lost")
    assert allocate.NotFound.code == "not_found" and issubclass(allocate.NotFound, allocate.AllocateError)
    error = pickle.loads(pickle.dumps(allocate.AllocationTimeout("waited 1 s")))
    assert type(error) is allocate.AllocationTimeout and str(error) == "waited 1 s"
    assert error.code == "allocation_timeout"
    assert isinstance(_allocate.__version__, str)
