"""Reading pages that need JavaScript: Chromium driven by Playwright, inside the outbound policy.

`pool` keeps one browser per process (launched, or reached over CDP), `guard` makes every
request a page makes on Torale's side of the outbound policy, `render` loads one page in a
fresh context and `fetcher` turns it into the `FetchedPage` every run reads. Playwright is the
`browser` extra; nothing here is imported unless a browser is configured.
"""
