"""The package's layers follow the data's path, and no import runs back up a layer; tensor names
are spelled in io_spec alone. Read from the source with ``ast`` (imports inside functions count)."""
from __future__ import annotations

import ast
from pathlib import Path

import fbinfer

ROOT = Path(fbinfer.__file__).parent
# lowest first: a module may import its own layer and any layer below it
LAYERS = [
    {"errors", "fileio", "verify", "output_paths", "threads", "machine", "dictconfig", "terminal"},
    {"model", "checkpoint"},
    {"bundle"},
    {"data"},
    {"backends"},
    {"evaluation"},
    {"training"},
    {"distill"},
    {"export", "build"},
    {"runtime"},
    {"bench"},
    {"tune"},
    {"search"},
    {"serve"},
    {"recipes", "demo", "cli", "__init__"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def part(module: str) -> str:
    """fbinfer.x.y -> x (the package or top-level module of fbinfer it belongs to)."""
    return module.split(".")[1] if module.count(".") else "__init__"


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fbinfer"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fbinfer"))
    return out


def modules() -> dict[str, Path]:
    return {"fbinfer." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in ROOT.rglob("*.py")}


def test_every_module_has_a_layer():
    assert {part(m) for m in modules()} <= set(LEVEL)


def test_no_import_runs_back_up_a_layer():
    upward = sorted(f"{m} imports {i}" for m, path in modules().items() for i in imports(path)
                    if i != "fbinfer" and LEVEL[part(i)] > LEVEL[part(m)])
    assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while component[-1:] != [v]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    """No two modules import each other, directly or round a circle (the package itself, which
    every import passes through, aside)."""
    mods = modules()
    graph = {m: {i for i in imports(path) if i in mods and i not in (m, "fbinfer")} for m, path in mods.items()}
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_layer_check_would_catch_an_upward_import(tmp_path):
    """The check reads what a module imports: an upward import in a module is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from fbinfer.runtime.matcher import Matcher\n")
    assert [i for i in imports(probe) if LEVEL[part(i)] > LEVEL["export"]] == ["fbinfer.runtime.matcher"]


def test_tensor_names_are_spelled_in_io_spec_only():
    names = ('"input_ids"', '"attention_mask"', '"logit"', "'input_ids'", "'logit'")
    spelled = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                     if p.name != "io_spec.py" and any(n in p.read_text() for n in names))
    assert spelled == []
