"""mmengine's config text (``Config.pretty_text``, a checkpoint's ``meta["cfg"]``), read without running it."""
import ast
from typing import Any, Dict


def parse_config_text(text: str) -> Dict[str, Any]:
    """The top-level assignments of mmengine's ``Config.pretty_text`` (the ``meta["cfg"]`` of its
    checkpoints) whose values are literals: constants, lists, tuples, dicts and ``dict(...)`` calls.
    Nothing is executed; other assignments are left out."""
    values = {}
    for statement in ast.parse(text).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 \
                and isinstance(statement.targets[0], ast.Name):
            try:
                values[statement.targets[0].id] = _literal(statement.value)
            except (ValueError, TypeError, SyntaxError):
                continue
    return values


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {keyword.arg: _literal(keyword.value) for keyword in node.keywords if keyword.arg is not None}
    if isinstance(node, ast.Dict):
        return {_literal(key): _literal(value) for key, value in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    return ast.literal_eval(node)  # constants and signed numbers; raises ValueError on anything else
