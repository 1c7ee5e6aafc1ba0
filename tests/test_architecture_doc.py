"""docs/architecture.md is the map of the code: every file, package and name it cites exists."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "torale"
DOC = ROOT / "docs" / "architecture.md"

# `code` spans that look like a path (a/b, x.py) or a dotted name (module.symbol).
stdlib = sys.stdlib_module_names
SPAN = re.compile(r"`([^`\n]+)`")
PATHLIKE = re.compile(r"^[A-Za-z_][\w./-]*$")


def _spans() -> list[str]:
    text = DOC.read_text()
    # The source-layout block lists files too: read its first column and the names after it.
    spans = SPAN.findall(text)
    block = re.search(r"```\nsrc/torale/\n(.*?)```", text, re.S)
    assert block, "the source layout block is missing"
    return spans + _layout_entries(block.group(1))


def _layout_entries(block: str) -> list[str]:
    """The layout block's files: `pkg/  a.py, sub/ (b.py)` → pkg/a.py, pkg/sub/b.py."""
    entries: list[str] = []
    package = ""
    stack: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            package, stack = "", []  # tests/, bench/: described, not listed
            continue
        text = line.strip()
        if line.startswith("  ") and not line.startswith("   "):
            first, _, text = text.partition(" ")
            package, stack = ("", []) if not first.endswith("/") else (first, [])
            entries.append(first)
        if not package:
            continue
        for token in re.finditer(r"([a-z_]+/)\s*\(|([a-z_]+\.py)\b|\(|\)", text):
            sub, name = token.group(1), token.group(2)
            if sub:
                stack.append(sub)
            elif name:
                entries.append(package + "".join(s for s in stack if s) + name)
            elif token.group(0) == "(":
                stack.append("")
            elif stack:
                stack.pop()
    return entries


def _exists_as_path(span: str) -> bool:
    """`notify/outbox.py`, `scheduling/`, `schemas.py` (anywhere), `search/http.request_json`."""
    if span.endswith("/"):
        name = span.rstrip("/")
        return (ROOT / name).is_dir() or any(p.is_dir() for p in SRC.rglob(name))
    if "/" not in span:
        return (ROOT / span).exists() or any(SRC.rglob(span))
    path, _, symbol = span.partition(".")
    if symbol in ("py", "md", "toml") or not symbol:
        return any((base / span).exists() for base in (ROOT, SRC, ROOT / "tests"))
    module = next((m for m in SRC.rglob(path + ".py")), None)
    return module is not None and symbol in _module_names(module)


def _module_names(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def _resolves_as_dotted(span: str) -> bool:
    """`tasks.actions`, `net.guarded_client`, `run.run_execution`, `base.Scheduler` …"""
    parts = span.removeprefix("torale.").split(".")
    if not _bases(parts[0])[1:] and not (SRC / parts[0]).exists() and parts[0] in stdlib:
        return True  # `asyncio.Lock`, `os.environ`: the standard library, not ours
    for split in range(len(parts), 0, -1):
        module_parts, rest = parts[:split], parts[split:]
        for base in _bases(module_parts[0]):
            path = base.joinpath(*module_parts)
            module = path.with_suffix(".py")
            if path.is_dir() and not rest:
                return True
            if module.is_file():
                return not rest or rest[0] in _module_names(module)
    return False


def _bases(first: str) -> list[Path]:
    """A dotted name may start at the package root or inside any domain package."""
    bases = [SRC]
    bases += [p.parent for p in SRC.rglob(f"{first}.py")]
    bases += [p.parent for p in SRC.rglob(first) if p.is_dir()]
    return bases


def _is_reference(span: str) -> bool:
    if not PATHLIKE.match(span) or span.startswith(("TORALE_", "-")):
        return False
    if "/" in span:
        return not span.startswith(("/api", "/admin", "/auth", "/mcp", "/docs", "/redoc"))
    return span.endswith(".py") or bool(re.match(r"^[a-z_]+(\.[A-Za-z_]+)+$", span))


def test_the_architecture_doc_names_only_what_exists() -> None:
    missing = []
    for span in _spans():
        if not _is_reference(span):
            continue
        if "/" in span or span.endswith(".py"):
            ok = _exists_as_path(span)
        else:
            ok = _resolves_as_dotted(span)
        if not ok:
            missing.append(span)
    assert not missing, f"docs/architecture.md names what does not exist: {sorted(set(missing))}"


def test_the_source_layout_lists_every_module() -> None:
    text = DOC.read_text()
    block = re.search(r"```\nsrc/torale/\n(.*?)```", text, re.S)
    assert block
    listed = set(_layout_entries(block.group(1)))
    modules = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "__init__.py" and "versions" not in path.parts
    }
    missing = sorted(m for m in modules if m not in listed)
    assert not missing, f"docs/architecture.md's source layout does not list {missing}"
