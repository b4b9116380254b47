"""The kernel tests with Numba's JIT off (``NUMBA_DISABLE_JIT=1``, ``make test-nojit``):
the kernels then run as plain Python, so a coverage tool sees their bodies and a
failure shows a Python traceback into them.

Numba intrinsics cannot run as Python. The kernels' only ones are cache prefetch
hints (``_prefetch*`` in ``wattline.kernels``), which never change a result, so
``replace_prefetch_hints`` swaps them for no-ops; tests/conftest.py calls it at
start-up when the JIT is off. Everything else runs unchanged.
"""

from __future__ import annotations

import importlib
import pkgutil

import numba

JIT_DISABLED = bool(numba.config.DISABLE_JIT)


def _no_prefetch(*args: object) -> None:
    """A prefetch hint, as Python: nothing to do."""


def replace_prefetch_hints() -> list[str]:
    """Swap every ``_prefetch*`` intrinsic of the kernel modules for a no-op; their names.

    With the JIT off a kernel is its Python function, which looks the hint up in its
    module at each call, so the swap takes effect whenever the module was imported.
    """
    from numba.core.extending import _Intrinsic

    import wattline.kernels

    replaced = []
    for info in pkgutil.iter_modules(wattline.kernels.__path__, "wattline.kernels."):
        module = importlib.import_module(info.name)
        for name, value in list(vars(module).items()):
            if name.startswith("_prefetch") and isinstance(value, _Intrinsic):
                setattr(module, name, _no_prefetch)
                replaced.append(f"{info.name}.{name}")
    return replaced
