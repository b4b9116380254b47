"""Which folder may import which: the layout in docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What the kernels may import besides NumPy, Numba and llvmlite: standard-library
# modules that do no I/O.
PURE_STDLIB = {"__future__", "bisect", "collections", "dataclasses", "enum", "functools",
               "itertools", "math", "typing"}


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Every module each .py file under ``folder`` imports (absolute names)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_kernels_import_only_numpy_numba_llvmlite_and_pure_stdlib() -> None:
    allowed = {"numpy", "numba", "llvmlite"} | PURE_STDLIB
    for path, names in imported_modules("kernels").items():
        for name in names:
            if name.startswith("wattline."):
                assert name.startswith("wattline.kernels"), (path, name)
            else:
                assert top(name) in allowed, (path, name)


def test_kernels_do_no_file_or_network_io() -> None:
    io_modules = {"os", "io", "pathlib", "tempfile", "shutil", "socket", "logging"}
    for path, names in imported_modules("kernels").items():
        assert not {top(n) for n in names} & io_modules, path


def test_simulators_never_import_the_daemon() -> None:
    for path, names in imported_modules("simulators").items():
        assert not any(n.startswith("wattline.ingest") for n in names), path


def test_the_contract_imports_neither_the_daemon_nor_the_simulators() -> None:
    for path, names in imported_modules("contract").items():
        assert not any(n.startswith(("wattline.ingest", "wattline.simulators",
                                     "wattline.benchmarks")) for n in names), path


def test_the_daemon_imports_simulators_and_benchmarks_only_from_its_app_shell() -> None:
    for path, names in imported_modules("ingest").items():
        if path.startswith("ingest/app/"):
            continue
        assert not any(n.startswith(("wattline.simulators", "wattline.benchmarks"))
                       for n in names), path



def test_no_module_of_the_daemon_is_over_400_lines() -> None:
    # One module, one job: past about 400 lines a module usually does two.
    long = {str(path.relative_to(REPO)): n for path in sorted((REPO / "ingest").rglob("*.py"))
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"split these modules by job: {long}"
