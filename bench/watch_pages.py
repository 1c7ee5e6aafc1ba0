"""Pages for bench/watch.py: realistic shop pages (50-200 KB) with noise, served by a process of
their own (so that their CPU is not counted with the checks').

A page is a product page as shops serve them: a head with meta tags, a large inline JSON state
(with the session id) and JSON-LD, a navigation of ~150 links with the session id, the product
(`#offer`: price and stock), its description and specification, reader reviews, related
products, a footer with the time it was served, and scripts. Run as
`python bench/watch_pages.py PORT`; paths are `/{scenario}/{kb}/{n}`:

- `static`: the same bytes every time, with ETag and Last-Modified: a conditional request is
  answered 304;
- `same`: the same bytes every time, without validators (a 200 each time);
- `noise`: a new session id, CSRF token, visitor count and time on every answer, outside the
  product (nav, footer, scripts, meta tags): the readable text and `#offer` stay the same;
- `text`: noise as above, and the price changes on every answer (in `#offer`, and in the
  readable text).

`/w/{kb}/{n}` serves the scenario last set with `/mode/{scenario}` (a worker's tasks keep their
URLs while the benchmark moves them from one scenario to the next). `/stats` answers
`{"requests", "not_modified", "body_bytes"}` (the bytes of every 200 body).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCENARIOS = ("static", "same", "noise", "text")
VOCABULARY = (
    "espresso machine grinder portafilter steam wand boiler pressure crema roast bean milk "
    "frother warranty delivery stainless steel temperature shot double basket tamper descaling "
    "water tank capacity litre compact design quiet pump brew group heating seconds"
)
WORDS = VOCABULARY.split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def shop_page(kb: int, n: int) -> str:
    """A product page of about `kb` KB; `{SESSION}`, `{CSRF}`, `{ONLINE}`, `{STAMP}` and
    `{PRICE}` are filled in when it is served."""
    rng = random.Random(kb * 100_003 + n)
    title = f"Barista {n} espresso machine"
    state = {
        "session": "{SESSION}",
        "cart": {"items": [], "currency": "EUR"},
        "catalogue": [
            {"id": i, "name": _sentence(rng, 3), "price": rng.randint(20, 900)} for i in range(60)
        ],
        "flags": {f"experiment_{i}": rng.random() < 0.5 for i in range(40)},
    }
    head = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | Example Shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{{CSRF}}"><meta property="og:title" content="{title}">
<meta name="description" content="{_sentence(rng, 18)}">
<link rel="stylesheet" href="/static/shop.css">
<link rel="preload" href="/static/app.js" as="script">
<script type="application/ld+json">{json.dumps({"@type": "Product", "name": title})}</script>
<script>window.__STATE__ = {json.dumps(state)};</script>
</head><body>
<header><nav class="main-nav">""" + "".join(
        f'<a href="/c/{i}">{_sentence(rng, 2)}</a>' for i in range(150)
    )
    head += """<span class="session">Session {SESSION} · {ONLINE} shoppers online</span></nav>
</header>"""
    offer = f"""<main><article class="product"><h1>{title}</h1>
<div id="offer"><p class="price">{{PRICE}}</p><p class="stock">In stock, ships in 2 days</p></div>
<p>Now {{PRICE}} for the {title}. {_sentence(rng, 20)}</p>
"""
    description = "".join(f"<p>{_sentence(rng, 28)}</p>\n" for _ in range(12))
    specs = (
        '<table class="specs">'
        + "".join(
            f"<tr><th>{_sentence(rng, 2)}</th>"
            f"<td>{rng.randint(1, 99)} {rng.choice(WORDS)}</td></tr>"
            for _ in range(25)
        )
        + "</table>\n"
    )
    footer = """<footer><p>Example Shop GmbH. Prices include VAT.</p>
<p class="served">Served {STAMP} · request {SESSION}</p></footer>
<script src="/static/app.js"></script>
<script>track("view", {"session": "{SESSION}", "t": "{STAMP}"});</script>
</body></html>
"""
    reviews: list[str] = []
    related: list[str] = []
    page = head + offer + description + specs
    while len((page + "".join(reviews) + "".join(related) + footer).encode()) < kb * 1024:
        if len(reviews) <= len(related) // 2:
            stars = rng.randint(1, 5)
            reviews.append(
                f'<div class="review"><span class="stars">{stars} of 5</span>'
                f"<p>{_sentence(rng, rng.randint(15, 45))}</p></div>\n"
            )
        else:
            k = len(related)
            related.append(
                f'<div class="card"><a href="/p/{k}"><img src="/i/{k}.jpg" alt="">'
                f'<span>{_sentence(rng, 4)}</span></a><span class="p">{rng.randint(20, 900)}.99 €'
                "</span></div>\n"
            )
    return (
        page
        + '<section class="reviews"><h2>Reviews</h2>\n'
        + "".join(reviews)
        + '</section>\n</article>\n<aside class="related">'
        + "".join(related)
        + "</aside></main>\n"
        + footer
    )


def fill(template: str, *, price: str, session: str, stamp: str, online: int) -> bytes:
    return (
        template.replace("{PRICE}", price)
        .replace("{SESSION}", session)
        .replace("{CSRF}", hashlib.sha256(session.encode()).hexdigest())
        .replace("{ONLINE}", str(online))
        .replace("{STAMP}", stamp)
        .encode()
    )


class Pages:
    """The templates (one per size and page number, made on first use) and the counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.templates: dict[tuple[int, int], str] = {}
        self.static: dict[tuple[int, int], bytes] = {}
        self.changes: dict[str, int] = {}
        self.requests = 0
        self.not_modified = 0
        self.body_bytes = 0
        self.mode = "static"  # what /w/ paths serve

    def template(self, kb: int, n: int) -> str:
        key = (kb, n % 16)  # 16 different pages per size are plenty; the price tells tasks apart
        with self.lock:
            if key not in self.templates:
                self.templates[key] = shop_page(kb, key[1])
            return self.templates[key]

    def body(self, scenario: str, kb: int, n: int, path: str) -> bytes:
        template = self.template(kb, n)
        price = f"{100 + n},{n % 100:02d} €"  # every task its own text: no sharing flatters storage
        if scenario in ("static", "same"):
            key = (kb, n)
            with self.lock:
                if key not in self.static:
                    self.static[key] = fill(
                        template, price=price, session="0" * 32, stamp="2026-12-01", online=7
                    )
                return self.static[key]
        if scenario == "text":
            with self.lock:
                self.changes[path] = self.changes.get(path, 0) + 1
                changed = self.changes[path]
            price = f"{100 + n + changed},{n % 100:02d} €"
        return fill(
            template,
            price=price,
            session=uuid.uuid4().hex,
            stamp=datetime.now(UTC).isoformat(timespec="microseconds"),
            online=random.randint(10, 999),
        )


PAGES = Pages()
LAST_MODIFIED = formatdate(time.time() - 86_400, usegmt=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/stats":
            with PAGES.lock:
                stats = {
                    "requests": PAGES.requests,
                    "not_modified": PAGES.not_modified,
                    "body_bytes": PAGES.body_bytes,
                }
            self._send(200, json.dumps(stats).encode(), {"Content-Type": "application/json"})
            return
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "mode" and parts[1] in SCENARIOS:
            with PAGES.lock:
                PAGES.mode = parts[1]
            self._send(200, b"ok", {"Content-Type": "text/plain"})
            return
        if len(parts) == 3 and parts[0] == "w":
            with PAGES.lock:
                parts[0] = PAGES.mode
        if len(parts) != 3 or parts[0] not in SCENARIOS:
            self._send(404, b"not found", {"Content-Type": "text/plain"})
            return
        scenario, kb, n = parts[0], int(parts[1]), int(parts[2])
        body = PAGES.body(scenario, kb, n, self.path)
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if scenario == "static":
            etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
            headers.update({"ETag": etag, "Last-Modified": LAST_MODIFIED})
            if self.headers.get("If-None-Match") == etag:
                with PAGES.lock:
                    PAGES.requests += 1
                    PAGES.not_modified += 1
                self._send(304, b"", headers)
                return
        with PAGES.lock:
            PAGES.requests += 1
            PAGES.body_bytes += len(body)
        self._send(200, body, headers)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
