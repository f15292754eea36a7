"""tau2's `calculate` tool without `eval`: the same characters, the same arithmetic, the same rounding."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

from concierge.core.errors import ToolError

ALLOWED_CHARACTERS = frozenset("0123456789+-*/(). ")
_MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _value(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):  # not bool, not str
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolError("Exponent too large")
        return _BINARY[type(node.op)](left, right)
    raise ToolError("Invalid expression")


def calculate(expression: str) -> str:
    """The expression's value rounded to 2 decimals, as text; arithmetic errors read as Python words them."""
    if not all(char in ALLOWED_CHARACTERS for char in expression):
        raise ToolError("Invalid characters in expression")
    try:
        tree = ast.parse(expression, mode="eval")
        return str(round(float(_value(tree.body)), 2))
    except SyntaxError as exc:
        raise ToolError(f"{exc.msg} (<string>, line {exc.lineno})") from None
    except (ZeroDivisionError, OverflowError) as exc:
        raise ToolError(str(exc)) from None
