"""Per-URL selectors: which part of a page a run reads (docs/api.md §4, "URL targets").

A selector is CSS (plain), XPath (`xpath:` prefix) or, for JSON documents, a JSON path
(`json:` prefix, JSONPath as jsonpath-ng reads it). Only the selected part becomes the text a
run reads, fingerprints, compares and shows to the model; noise elsewhere on the page does not
count. Libraries are imported on first use (lxml is large).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

SelectorKind = Literal["css", "xpath", "json"]
_PREFIXES: tuple[tuple[str, SelectorKind], ...] = (("xpath:", "xpath"), ("json:", "json"))

# Elements after which the text breaks a line, so a selected block reads line by line.
_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)


class SelectorMissError(Exception):
    """The selector matched nothing (or the document is not what the selector reads)."""


def split_selector(selector: str) -> tuple[SelectorKind, str]:
    """(kind, expression) of a selector as the user wrote it."""
    stripped = selector.strip()
    for prefix, kind in _PREFIXES:
        if stripped.lower().startswith(prefix):
            return kind, stripped[len(prefix) :].strip()
    return "css", stripped


def selector_problem(selector: str) -> str | None:
    """Why `selector` cannot be used (a sentence), or None. Checks syntax only."""
    kind, expression = split_selector(selector)
    if not expression:
        return "The selector is empty after its prefix"
    try:
        if kind == "css":
            from cssselect import GenericTranslator

            GenericTranslator().css_to_xpath(expression)
        elif kind == "xpath":
            from lxml import etree

            etree.XPath(expression)
        else:
            from jsonpath_ng.ext.parser import parse

            parse(expression)
    except Exception:
        name = {"css": "a CSS selector", "xpath": "an XPath expression", "json": "a JSON path"}
        return f"Not {name[kind]} that can be read (check its syntax)"
    return None


def _element_text(element: Any) -> str:
    """An element's text, a line per block element, whitespace collapsed within lines."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in ("script", "style", "noscript", "template"):
            if node.tail:
                parts.append(node.tail)
            return
        block = tag.lower() in _BLOCKS
        if block:
            parts.append("\n")
        if node.text and tag:
            parts.append(node.text)
        for child in node:
            walk(child)
        if block:
            parts.append("\n")
        if node.tail:
            parts.append(node.tail)

    tail, element.tail = element.tail, None  # the element's own tail is outside the selection
    try:
        walk(element)
    finally:
        element.tail = tail
    return _lines("".join(parts).split("\n"))


def _lines(pieces: Iterable[str]) -> str:
    lines = (" ".join(piece.split()) for piece in pieces)
    return "\n".join(line for line in lines if line)


def _show_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def select_text(body: bytes, content_type: str, selector: str) -> str:
    """The text `selector` selects in a response body; SelectorMissError when nothing matches.
    CPU work: call it in a thread."""
    kind, expression = split_selector(selector)
    if kind == "json":
        from jsonpath_ng.ext.parser import parse

        try:
            document = json.loads(body)
        except ValueError:
            raise SelectorMissError(f"json:{expression} needs a JSON document") from None
        found = [match.value for match in parse(expression).find(document)]
        if not found:
            raise SelectorMissError(f"The JSON path {expression} matched nothing")
        return _lines(_show_json(value) for value in found)
    import parsel

    text = body.decode(_charset(content_type), errors="replace")
    media = content_type.split(";")[0].strip().lower()
    page = parsel.Selector(text=text, type="xml" if media.endswith("/xml") else "html")
    matches = page.css(expression) if kind == "css" else page.xpath(expression)
    if not matches:
        what = "CSS selector" if kind == "css" else "XPath expression"
        raise SelectorMissError(f"The {what} {expression} matched nothing")
    texts = []
    for match in matches:
        root = match.root
        texts.append(_lines(root.split("\n")) if isinstance(root, str) else _element_text(root))
    return "\n".join(t for t in texts if t)


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            import codecs

            try:
                return codecs.lookup(value.strip("\"' ")).name
            except LookupError:
                break
    return "utf-8"
