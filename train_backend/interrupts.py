"""Where a stop signal may raise: never inside an import (no torch here, so the CLI's entry point can use it)."""


def inside_import(frame) -> bool:
    """Whether `frame` runs inside an import. An exception raised there can be swallowed by the imported code or
    leave a half-initialised module behind (seen: a SIGINT in torch's lazy import of sympy, then "module 'sympy'
    has no attribute 'core'"), so a stop signal that lands there is acted on once the import is over."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
