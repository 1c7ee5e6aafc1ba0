"""Selectors: CSS, XPath and JSON paths read only the selected part; syntax errors are named."""

from __future__ import annotations

import json

import pytest

from torale.watch.selectors import SelectorMissError, select_text, selector_problem, split_selector

HTML = "text/html; charset=utf-8"
PAGE = b"""<html><head><title>Shop</title><script>var session = "abc123";</script></head>
<body><nav>Signed in as guest, session 5f2e</nav>
<div id="product"><h1>Espresso machine</h1>
<p class="price">Now <b>$1,299.00</b></p><p class="stock">In stock</p>
<script>track("view")</script></div>
<ul class="specs"><li>15 bar</li><li>1.8 l</li></ul>
<a class="more" href="/accessories">Accessories</a>
<footer>Served at 2025-01-01T10:00:00</footer></body></html>"""


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        ("#product", "Espresso machine\nNow $1,299.00\nIn stock"),
        (".price", "Now $1,299.00"),
        ("ul.specs li", "15 bar\n1.8 l"),
        ("a.more::attr(href)", "/accessories"),
        ("xpath://p[@class='stock']", "In stock"),
        ("XPATH: //h1/text()", "Espresso machine"),
        ("xpath://a/@href", "/accessories"),
    ],
)
def test_html_selectors_read_only_the_selected_part(selector: str, text: str) -> None:
    assert select_text(PAGE, HTML, selector) == text


def test_scripts_inside_a_selection_are_not_text() -> None:
    assert "track" not in select_text(PAGE, HTML, "#product")


DOC = {"product": {"name": "Espresso", "offers": [{"price": 1299.0, "currency": "USD"}]}}


@pytest.mark.parametrize(
    ("selector", "text"),
    [
        ("json:$.product.name", "Espresso"),
        ("json:$.product.offers[0].price", "1299.0"),
        ("json:$.product.offers[*].currency", "USD"),
        ("json:$.product.offers[0]", '{"currency": "USD", "price": 1299.0}'),
    ],
)
def test_json_paths(selector: str, text: str) -> None:
    assert select_text(json.dumps(DOC).encode(), "application/json", selector) == text


@pytest.mark.parametrize(
    ("body", "selector", "message"),
    [
        (PAGE, "#gone", "CSS selector #gone matched nothing"),
        (PAGE, "xpath://table", "XPath expression //table matched nothing"),
        (json.dumps(DOC).encode(), "json:$.missing", "JSON path $.missing matched nothing"),
        (PAGE, "json:$.price", "needs a JSON document"),
    ],
)
def test_a_selector_that_matches_nothing_says_so(body: bytes, selector: str, message: str) -> None:
    with pytest.raises(SelectorMissError, match=message.replace("$", r"\$").replace(".", r"\.")):
        select_text(body, HTML, selector)


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("div[", "CSS selector"),
        ("xpath://a[", "XPath expression"),
        ("json:$.[[", "JSON path"),
        ("xpath:", "empty"),
        ("#ok", None),
        ("xpath://a[@href]", None),
        ("json:$.items[*].price", None),
    ],
)
def test_selector_syntax_is_checked(selector: str, problem: str | None) -> None:
    found = selector_problem(selector)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_prefixes() -> None:
    assert split_selector("json: $.a") == ("json", "$.a")
    assert split_selector("div > p") == ("css", "div > p")
