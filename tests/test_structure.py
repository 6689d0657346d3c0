"""The package's shape: imports run one way (no cycles, counting imports inside functions), the light
install's paths import no heavy packages, and the README's module map names every module."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "genrekit"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """genrekit modules imported anywhere in ``path`` (module level and inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != "genrekit":
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "static" not in p.parts]
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imports_of(p, modules) for p in files}
    # a module inside a package imports that package's __init__ first: a submodule's own package is not a
    # dependency it chose, so edges to ancestors are left out
    return {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                found.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def test_no_import_cycles_even_inside_functions():
    assert cycles(import_graph()) == []


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_inference_does_not_import_training():
    graph = import_graph()

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for dep in graph.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for module in ("genrekit.prediction", "genrekit.tagger", "genrekit.tagging", "genrekit.runtime"):
        assert not {m for m in reachable(module) if m.startswith("genrekit.training")}, module


@pytest.mark.parametrize("code", [
    "import genrekit, sys\nr = genrekit.predict(sys.argv[1])\n",
    "import genrekit.tagger as t, sys\nt.taggram(sys.argv[1], 'msd')\n",
])
def test_light_paths_import_no_heavy_package(code, tmp_path):
    import numpy as np
    import soundfile as sf

    wav = tmp_path / "chord.wav"
    t = np.arange(4 * 16000) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 2 * t)).astype(np.float32), 16000)
    check = "heavy = [m for m in ('torch', 'scipy', 'sklearn', 'pandas', 'matplotlib') if m in sys.modules]\nprint(heavy)"
    out = subprocess.run([sys.executable, "-c", code + check, str(wav)], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_readme_module_map_matches_the_tree():
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- module map -->")
    end = readme.index("<!-- /module map -->")
    listed = {line.split()[0].rstrip("/") for line in readme[start:end].splitlines()[2:] if line.strip()
              and not line.startswith("```")}
    files = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py") and "static" not in p.parts}
    packages = {str(p.parent.relative_to(REPO)) for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    assert listed == files | packages, (sorted(files | packages - listed), sorted(listed - files - packages))
