"""Readable text and titles of pages (engine/fetch.py), checked against trafilatura's own full
extraction: reading the title alone, without the rest of its metadata, changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.fakes import article_html
from torale.engine.fetch import body_hash, extract_text

PAGES = {
    "article": article_html(
        "Apple sets the date",
        ["Apple will release the iPhone 18 on September 9.", "Orders open a week before."],
        nav_noise="session 1234",
    ),
    "json-ld headline": (
        "<html><head><title>Shop | Example</title><script type='application/ld+json'>"
        + json.dumps(
            {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Price cut"}
        )
        + "</script></head><body><main><article><h1>Espresso</h1>"
        + "".join(f"<p>The espresso machine now costs {n} euros less.</p>" for n in range(20))
        + "</article></main></body></html>"
    ),
    "title element only": (
        "<html><head><title>Release notes</title></head><body><div>"
        + "".join(f"<p>Version 1.{n} fixes bug number {n * 7}.</p>" for n in range(30))
        + "</div></body></html>"
    ),
    "no title": "<html><body><p>Just one line of text on a page.</p></body></html>",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_text_and_title_are_what_a_full_extraction_gives(name: str) -> None:
    import trafilatura

    body = PAGES[name].encode()
    full = trafilatura.bare_extraction(
        body, url="https://example.com/", with_metadata=True, include_comments=False,
        include_tables=True,
    )  # fmt: skip
    assert isinstance(full, trafilatura.settings.Document)
    title, text = extract_text(body, "text/html; charset=utf-8", "https://example.com/")
    assert title == (full.title or "")
    assert text == (full.text or trafilatura.html2txt(body))


def test_the_body_hash_covers_the_media_type_and_the_bytes() -> None:
    body = b"<html><body><p>one</p></body></html>"
    assert body_hash(body, "text/html; charset=utf-8") == body_hash(body, "TEXT/HTML")
    assert body_hash(body, "text/html") != body_hash(body, "text/plain")
    assert body_hash(body, "text/html") != body_hash(body + b" ", "text/html")
