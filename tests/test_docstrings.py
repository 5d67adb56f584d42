"""The reference page's docstrings, in one style (Google's): every public function, class and
method there says what it does, names each argument under ``Args:``, says what it returns
under ``Returns:`` (or ``Yields:``) when it returns something, and what it raises under
``Raises:`` when its own code raises. The site's reference is generated from them."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VAR_POSITIONAL, VAR_KEYWORD = inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
SECTION = re.compile(r"^(Args|Arguments|Returns|Yields|Raises|Examples?|Notes?|Attributes):\s*$")


def _documented_names() -> list[str]:
    """The names the reference page pulls in (its `::: name` lines)."""
    page = (ROOT / "docs" / "reference.md").read_text()
    return re.findall(r"^::: (\S+)", page, flags=re.M)


def _page_members(name: str) -> list[str] | None:
    """The `members: [...]` a `::: name` block narrows itself to, if any."""
    page = (ROOT / "docs" / "reference.md").read_text()
    block = re.search(rf"^::: {re.escape(name)}\n((?:    .*\n)*)", page, flags=re.M)
    listed = re.search(r"members: \[(.*)\]", block.group(1)) if block else None
    return [m.strip() for m in listed.group(1).split(",")] if listed else None


def _public(name: str) -> Iterator[tuple[str, Any]]:
    """Every public object of a module (its __all__, or the page's members list) or the one
    object a dotted name names, with the public methods and properties of each class."""
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(name)
        names = _page_members(name) or getattr(module, "__all__", None)
        assert names is not None, f"{name} has no __all__"
        objects = [(f"{name}.{n}", getattr(module, n)) for n in names]
    except ModuleNotFoundError:
        objects = [(name, getattr(importlib.import_module(module_name), attribute))]
    for qualified, obj in objects:
        yield qualified, obj
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") or member in ("__init__", "__call__"):
                    yield f"{qualified}.{member}", value


def _items() -> list[tuple[str, Any]]:
    seen: set[int] = set()
    found = []
    for name in _documented_names():
        for qualified, obj in _public(name):
            if id(obj) not in seen and not inspect.ismodule(obj):
                seen.add(id(obj))
                found.append((qualified, obj))
    return found


def _sections(doc: str) -> dict[str, str]:
    """Each Google section's body, by its heading ('' holds the text before any section)."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for line in doc.splitlines():
        heading = SECTION.match(line)
        if heading:
            current = heading.group(1)
            sections[current] = []
        else:
            sections[current].append(line)
    return {k: "\n".join(v) for k, v in sections.items()}


def _own_raises(function: Any) -> bool:
    """Whether the function's own body (not a function nested in it) has a raise with an
    exception."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    body = tree.body[0]
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Raise) and node.exc is not None:
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                 ast.ClassDef)):  # fmt: skip
            stack.extend(ast.iter_child_nodes(node))
    return False


def _problems(name: str, obj: Any, class_doc: str = "") -> list[str]:
    if isinstance(obj, property) or inspect.isgetsetdescriptor(obj):
        return [] if obj.__doc__ else [f"{name}: no docstring"]
    function = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    doc = inspect.getdoc(function) or ""
    if inspect.isclass(function):
        return [] if doc else [f"{name}: no docstring"]
    if not callable(function):
        return []
    is_init = name.endswith(".__init__")
    if is_init:  # the site shows a class's constructor arguments with the class
        doc = f"{class_doc}\n{doc if doc != inspect.getdoc(object.__init__) else ''}"
    elif not doc:
        return [f"{name}: no docstring"]
    sections = _sections(doc)
    problems = []
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return problems
    arguments = [p for p in signature.parameters.values() if p.name not in ("self", "cls")]
    if is_init and {a.kind for a in arguments} == {VAR_POSITIONAL, VAR_KEYWORD}:
        # an extension type's __init__ shows no signature: its class documents the real one
        return [] if "Args" in sections else [f"{name}: the class has no Args:"]
    args_text = sections.get("Args", "")
    for p in arguments:
        if not re.search(rf"^\s*\**{p.name}\b.*:", args_text, flags=re.M):
            problems.append(f"{name}: argument {p.name!r} is not under Args:")
    annotation = signature.return_annotation
    returns = annotation not in (None, "None", inspect.Signature.empty) and not is_init
    if returns and "Returns" not in sections and "Yields" not in sections:
        problems.append(f"{name}: returns {annotation} but has no Returns:")
    if _own_raises(function) and "Raises" not in sections:
        problems.append(f"{name}: raises but has no Raises:")
    return problems


ITEMS = _items()


@pytest.mark.source_tree
def test_the_reference_page_covers_the_public_api() -> None:
    names = {name for name, _ in ITEMS}
    expected = {"fastgrad._core.Tape.run", "fastgrad.optim.Adam", "fastgrad.nn.MLP",
                "fastgrad.functional.cross_entropy", "fastgrad._files.save",
                "fastgrad.optim.lr_scheduler.OneCycleLR", "fastgrad.transforms.jvp"}  # fmt: skip
    assert expected <= names
    assert len(ITEMS) > 150


@pytest.mark.source_tree
def test_every_public_docstring_has_its_sections() -> None:
    class_docs = {name: inspect.getdoc(obj) or "" for name, obj in ITEMS if inspect.isclass(obj)}
    problems = []
    for name, obj in ITEMS:
        owner = name.rpartition(".")[0]
        problems += _problems(name, obj, class_docs.get(owner, ""))
    assert not problems, "\n".join(problems)


def test_the_checker_finds_what_is_missing() -> None:
    def undocumented(x: int) -> int:
        """Twice x."""
        if x < 0:
            raise ValueError("x < 0")
        return 2 * x

    def documented(x: int) -> int:
        """Twice x.

        Args:
            x: a number.

        Returns:
            2 * x.

        Raises:
            ValueError: x < 0.
        """
        if x < 0:
            raise ValueError("x < 0")
        return 2 * x

    assert len(_problems("undocumented", undocumented)) == 3
    assert _problems("documented", documented) == []
