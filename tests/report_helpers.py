"""Reading a report page the way a browser would."""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """What a browser would build from the page: its tables (rows of cell texts), images
    (their src) and gallery cells (their data- attributes)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.cells: list[dict] = []
        self._row: list[str] | None = None
        self._text: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append({"class": attrs.get("class", ""), "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._text = []
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "figure" and "cell" in attrs.get("class", "").split():
            self.cells.append({k[5:]: v for k, v in attrs.items() if k.startswith("data-")})

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._text is not None and self._row is not None:
            self._row.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def table(self, css_class: str) -> list[list[str]]:
        return next(t["rows"] for t in self.tables if t["class"] == css_class)
