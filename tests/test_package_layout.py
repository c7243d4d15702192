"""The shape of the Python packages: their modules import one another without a cycle, and
the tokenizer and its command lines stay clear of torch."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("pybpe", "training")


def module_names() -> dict[str, Path]:
    """Every module of the packages by dotted name (the extension `_core` has no source)."""
    names = {"pybpe._core": ROOT / "pybpe" / "_core.abi3.so"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).iterdir()):
            stem = path.name.split(".")[0]
            if path.suffix in (".py", ".so"):
                names[package if stem == "__init__" else f"{package}.{stem}"] = path
    return names


def imported_modules(path: Path, package: str, modules: set[str]) -> set[str]:
    """The package modules a source file imports, at module level or inside functions: for
    `from A import B`, the module A.B where there is one, else A."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = package + (f".{base}" if base else "")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found & modules


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported_modules(path, name.split(".")[0], set(modules)) - {name}
            for name, path in modules.items() if path.suffix == ".py"}


def find_cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    modules = {"pkg.a", "pkg.b"}
    graph = {f"pkg.{m}": imported_modules(tmp_path / f"{m}.py", "pkg", modules) for m in "ab"}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_the_packages_import_one_another_without_a_cycle():
    graph = import_graph()
    assert "pybpe.cli" in graph and "training.train" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_of_pybpe_imports_the_command_line():
    """The command line sits on top: the commands and the library never reach back into it."""
    graph = import_graph()
    assert [name for name, deps in graph.items() if "pybpe.cli" in deps] == ["pybpe.__main__"]


NO_TORCH = textwrap.dedent("""
    import runpy, sys
    module, args = sys.argv[1], sys.argv[2:]
    sys.argv = [module, *args]
    try:
        if args:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            __import__(module)
    except SystemExit as e:
        assert not e.code, e.code
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("torch loaded" if loaded else "no torch", file=sys.stderr)
""")


@pytest.mark.parametrize("command", [["pybpe"], ["pybpe", "--help"], ["pybpe", "train", "--help"],
                                     ["training", "prepare", "--help"]],
                         ids=["import pybpe", "pybpe --help", "pybpe train --help", "training prepare --help"])
def test_the_tokenizer_and_its_command_lines_do_not_import_torch(command):
    result = subprocess.run([sys.executable, "-c", NO_TORCH, *command], capture_output=True, cwd=ROOT, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert stderr.strip().splitlines()[-1] == "no torch", stderr
