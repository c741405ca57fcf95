"""The architecture rules of DESIGN §1, checked on the source: no import circles, no upward imports,
one LightningModule subclass and one place that constructs a Trainer."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lifelong"


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def top_level_imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The package's modules imported at module level (imports inside functions are lazy and allowed)."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found & known


def graph() -> dict[str, set[str]]:
    trees = modules()
    return {name: top_level_imports(tree, set(trees)) - {name} for name, tree in trees.items()}


def related(a: str, b: str) -> bool:
    """A package and its own submodule (a package's __init__ imports its submodules: not a circle)."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def test_no_import_circles():
    g, state, stack, circles = graph(), {}, [], []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in g[node]:
            if state.get(nxt) is None:
                visit(nxt)
            elif state[nxt] == "open":
                circle = stack[stack.index(nxt) :]
                if not all(any(related(a, b) for b in circle if b != a) for a in circle):
                    circles.append(circle)
        stack.pop()
        state[node] = "done"

    for name in g:
        if state.get(name) is None:
            visit(name)
    assert circles == []


def test_nothing_imports_upward():
    forbidden = {
        "lifelong.metrics": ("lifelong.strategies", "lifelong.tracking"),
        "lifelong.strategies": (
            "lifelong.tracking",
            "lifelong.loop",
            "lifelong.cli",
            "lifelong.module",
            "lifelong.run",
        ),
        "lifelong.models": ("lifelong.strategies",),
        "lifelong.data": ("lifelong.strategies",),
    }
    bad = [
        (name, dep)
        for name, deps in graph().items()
        for layer, banned in forbidden.items()
        if name.startswith(layer)
        for dep in deps
        if dep.startswith(banned)
    ]
    entry_points = ("lifelong.cli", "lifelong.__main__")  # `python -m lifelong` runs the command
    bad += [(n, d) for n, deps in graph().items() if n not in entry_points for d in deps if d == "lifelong.cli"]
    # config reads YAML through safety's bounds and finds shipped experiments through shipped
    leaves = ("lifelong.registry", "lifelong.errors", "lifelong.safety", "lifelong.shipped")
    bad += [("lifelong.config", d) for d in graph()["lifelong.config"] if d not in leaves]
    bad += [("lifelong.safety", d) for d in graph()["lifelong.safety"] if d != "lifelong.errors"]
    bad += [("lifelong.shipped", d) for d in graph()["lifelong.shipped"] if d != "lifelong.errors"]
    assert bad == []


def test_one_lightning_module_and_one_trainer_constructor():
    subclasses, constructors = [], []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("LightningModule") for b in node.bases):
                subclasses.append(f"{name}.{node.name}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] == "Trainer":
                constructors.append(name)
    assert subclasses == ["lifelong.module.ContinualModule"]
    assert constructors == ["lifelong.build"]
