"""HTML mail as readable text, for a message that has no text/plain part.

A stdlib `html.parser` walk, enough for mail: script, style, head and title content is
dropped; block elements start new lines, `<br>` breaks one, `<li>` becomes "- ", `<hr>` a
rule; a link whose text differs from its target is followed by the target in angle
brackets; `<img>` shows its alt text; runs of white space collapse except inside `<pre>`;
character references are decoded by the parser. No new dependency for what this needs.

Standards: HTML Living Standard §13.2 (parsing, character references)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})
_BLOCKS = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "blockquote", "table", "tr",
        "ul", "ol", "dl", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "address",
        "form", "fieldset", "figure", "main", "nav", "aside",
    }
)  # fmt: skip
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._links: list[tuple[str | None, int]] = []  # href, where the link text starts

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            self._pre += tag == "pre"
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "hr":
            self.parts.append("\n" + "-" * 40 + "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "img" and attributes.get("alt"):
            self.parts.append(f"[{attributes['alt']}]")
        elif tag == "a":
            self._links.append((attributes.get("href"), len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            self._pre = max(0, self._pre - (tag == "pre"))
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            text = "".join(self.parts[start:]).strip()
            if href and not href.startswith("#") and href.removeprefix("mailto:") != text:
                self.parts.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if not self._pre:
            data = _SPACES.sub(" ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip()
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """The text a reader would see in `html`, wrapped only where the HTML breaks lines."""
    maker = _TextMaker()
    maker.feed(html)
    maker.close()
    text = "\n".join(line.rstrip() for line in "".join(maker.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"
