"""Every function in src/ fits on a screen: at most 60 lines, docstring included (a longer
one is missing a helper)."""

from __future__ import annotations

import ast

from . import imports

LIMIT = 60


def long_functions(limit: int = LIMIT) -> list[str]:
    out = []
    for name, path in imports.modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > limit:
                    out.append(f"{name}.{node.name}: {lines} lines")
    return out


def test_no_function_over_60_lines():
    assert long_functions() == []


def test_the_count_sees_a_long_function():
    assert long_functions(limit=5), "every module has only functions of 5 lines or fewer?"
