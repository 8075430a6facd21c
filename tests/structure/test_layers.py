"""The layers of docs/architecture.md against the imports of src/: no import circle, no
upward import, and the table's "imports of jaxconv" column exactly what each row imports."""

from __future__ import annotations

import re
from pathlib import Path

from . import imports

ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def documented() -> dict[str, set[str]]:
    """The layer table, top row first: package -> the jaxconv packages it may import."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`jaxconv[\w.]*`", cells[0]):
            layers[cells[0].strip("`")] = set(re.findall(r"`(jaxconv[\w.]*)`", cells[1]))
    return layers


def actual(layers: list[str]) -> dict[str, set[str]]:
    """Which layers each layer's modules import (besides its own)."""
    out: dict[str, set[str]] = {layer: set() for layer in layers}
    for module, deps in imports.graph().items():
        mine = imports.layer_of(module, layers)
        out[mine] |= {imports.layer_of(d, layers) for d in deps} - {mine}
    return out


def test_no_import_circle_anywhere_in_src():
    assert imports.cycles(imports.graph()) == []


def test_the_cycle_finder_finds_a_circle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert imports.cycles(edges) == [["a", "b", "c"], ["e"]]


def test_every_module_belongs_to_a_documented_layer():
    layers = list(documented())
    assert {"jaxconv.app", "jaxconv.train", "jaxconv.ops", "jaxconv.run_layout"} <= set(layers)
    stray = [m for m in imports.modules() if imports.layer_of(m, layers) == ""]
    assert stray == []


def test_the_table_lists_exactly_what_each_layer_imports():
    table = documented()
    assert actual(list(table)) == table


def test_no_layer_imports_one_above_it():
    order = list(documented())  # top row first
    upward = [
        f"{layer} imports {dep}"
        for layer, deps in actual(order).items()
        for dep in deps
        if order.index(dep) < order.index(layer)
    ]
    assert upward == []
