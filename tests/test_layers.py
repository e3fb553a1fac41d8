"""The package's layers (docs/ARCHITECTURE.md): a module imports its own layer or lower ones, and no two
modules import each other, directly or round a circle (read from the source, every import counted)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dynapose4d"
# Lowest first; a name is a module or a subpackage of dynapose4d (the most specific name decides). Every module
# must be listed.
LAYERS = [
    ("foundation", {"errors", "geometry", "threads", "downloads", "schedules", "registry", "rules", "media",
                    "checkpoint", "training_log"}),
    ("scene", {"cameras", "gaussians", "render", "densify"}),
    ("data and models", {"data", "pretrained", "keypoints", "keypoint_tracking", "deform", "losses", "priors"}),
    ("runs and scores", {"run", "run_dir", "eval", "weights", "data.inputs"}),  # inputs: read into a run
    ("stages", {"stages", "config_schema", "validation", "viewer", "export"}),  # export: moves meshes by phi
    ("application", {"pipeline", "sweeps", "cli"}),
]  # fmt: skip
LAYER = {name: index for index, (_, names) in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The dynapose4d modules `path` imports anywhere in it (inside functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x`: x is a submodule or a name of the package
                candidate = f"{target}.{alias.name}"
                found.add(candidate if module_path(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {target for target in found if target.split(".")[0] == "dynapose4d" and target != name}


def module_path(name: str) -> Path | None:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.exists()), None)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer(name: str) -> int | None:
    """The layer of module `name` (dynapose4d.x.y): that of x.y if listed, else of x; None for the package."""
    parts = name.split(".")[1:]
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYER:
            return LAYER[".".join(parts[:end])]
    return None


def test_every_module_has_a_layer():
    assert [name for name in MODULES if name != "dynapose4d" and layer(name) is None] == []


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for name, path in MODULES.items()
        if name != "dynapose4d"
        for target in imports(path)
        if target != "dynapose4d" and layer(target) > layer(name)
    ]
    assert upward == []


def test_no_import_circle():
    graph = {name: {target for target in imports(path) if target in MODULES} for name, path in MODULES.items()}
    circles, state = [], {}

    def visit(name, trail):
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []
