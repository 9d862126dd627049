"""
docs/architecture.md's layer table is the package's real import graph: every module of
portshare is in exactly one layer, and imports only modules of its own layer or below.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "portshare"
DOC = ROOT / "docs" / "architecture.md"

#: a row of the table: "  7    tap workers service   what they are", or its continuation
_ROW = re.compile(r"^\s{2}(\d)\s{4}(\S.*?)\s{2,}\S")
_MORE = re.compile(r"^\s{7}([a-z_][a-z_ ]*?)\s{2,}\S")


def documentedLayers() -> dict[str, int]:
    """The layer of each top-level module (or subpackage) as the table gives it."""
    text = DOC.read_text()
    table = text[text.index("layer  modules") :].split("```", 1)[0]
    layers: dict[str, int] = {}
    layer = None
    for line in table.splitlines()[1:]:
        row = _ROW.match(line)
        more = _MORE.match(line)
        if row:
            layer, names = int(row.group(1)), row.group(2)
        elif more and layer is not None:
            names = more.group(1)
        else:
            continue
        for name in names.split():
            layers[name] = layer
    return layers


def unitOf(module: str) -> str:
    """C{portshare.broker.redis} -> C{broker}; C{portshare.ws} -> C{ws}."""
    return module.split(".")[1] if module.count(".") else ""


def imports() -> dict[str, set[str]]:
    """Each top-level unit of the package and the units it imports (client/ left out)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        unit = parts[1] if len(parts) > 1 else ""
        if unit in ("__init__", "client", "") or unit.startswith("__"):
            continue
        deps = graph.setdefault(unit, set())
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "portshare":
                    names = [f"portshare.{a.name}" for a in node.names]
                elif node.module.startswith("portshare."):
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("portshare.")]
            for name in names:
                dep = unitOf(name)
                if dep and dep != unit and dep != "__version__":
                    deps.add(dep)
    return graph


class LayerTests(SynchronousTestCase):
    def test_everyModuleHasOneLayer(self) -> None:
        """Every module of the package (but the client and __init__) is in the table once."""
        layers = documentedLayers()
        self.assertEqual(set(imports()), set(layers))

    def test_importsPointDown(self) -> None:
        """No module imports a module of a higher layer."""
        layers = documentedLayers()
        upward = [
            f"{unit} (layer {layers[unit]}) imports {dep} (layer {layers[dep]})"
            for unit, deps in sorted(imports().items())
            for dep in sorted(deps)
            if dep in layers and layers[dep] > layers[unit]
        ]
        self.assertEqual(upward, [])

    def test_tableIsRead(self) -> None:
        """The table parser finds the layers the doc names (so the checks above can fail)."""
        layers = documentedLayers()
        self.assertEqual((layers["tap"], layers["hub"], layers["errors"]), (7, 3, 1))
        self.assertEqual(layers["backpressure"], 4)
