"""Markdown to sanitised HTML: the one place letters become markup.

Python-Markdown (tables, smart quotes, footnotes) renders, then nh3 keeps only an
allowlist: no script, style, iframe, form, event handler or ``javascript:`` /
``data:`` URL reaches a page, an email or a PDF.  ``render`` also reports what the
sanitiser removed, so the editor can warn the author.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import markdown
import nh3

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "strong", "b", "em", "i", "u", "s", "del", "ins", "mark", "small",
        "sup", "sub", "blockquote", "q", "cite", "abbr", "code", "pre",
        "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd",
        "a", "table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "div", "span",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "id", "class"},
    "abbr": {"title"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "td": {"colspan", "rowspan", "align"},
    "ol": {"start"},
    "li": {"id"},
    "sup": {"id"},
    "div": {"class"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Footnotes are the only source of ids and classes, and only these.
_FOOTNOTE_ID = re.compile(r"^fn(ref)?:[\w-]{1,40}(-\d+)?$")
_FOOTNOTE_CLASS = frozenset({"footnote", "footnote-ref", "footnote-backref"})
_DROP_CONTENT = {"script", "style", "template", "iframe", "object", "embed", "noscript", "svg", "math", "textarea"}


# What a browser ignores when it reads a URL's scheme: "java\tscript:" is "javascript:".
_URL_NOISE = re.compile(r"[\s\x00-\x1f\x7f]+")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")


def _safe_url(value: str) -> bool:
    """True for relative URLs and http, https and mailto ones, judged as a browser would read them.

    nh3 checks the scheme too, but a URL it takes for relative ("java   script:…")
    could still read as a scheme to a lenient client: drop anything that looks like one.
    """
    match = _SCHEME.match(_URL_NOISE.sub("", value).lower())
    return match is None or match.group(1) in URL_SCHEMES


def _filter_attribute(tag: str, name: str, value: str) -> str | None:
    if name == "href":
        return value if _safe_url(value) else None
    if name == "id":
        return value if _FOOTNOTE_ID.match(value) else None
    if name == "class":
        kept = [c for c in value.split() if c in _FOOTNOTE_CLASS]
        return " ".join(kept) or None
    return value


def sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=_DROP_CONTENT,
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_filter_attribute,
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


class _Inventory(HTMLParser):
    """Counts the elements and attributes of a fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.attributes: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, _ in attrs:
            self.attributes[name] = self.attributes.get(name, 0) + 1

    handle_startendtag = handle_starttag


def _inventory(html: str) -> _Inventory:
    parser = _Inventory()
    parser.feed(html)
    parser.close()
    return parser


@dataclass(frozen=True)
class Rendered:
    html: str
    #: What the sanitiser took out, for the author: "<script> element", "onclick attribute".
    removed: list[str] = field(default_factory=list)


def _markdown(text: str) -> str:
    return markdown.markdown(
        text,
        extensions=["tables", "smarty", "footnotes", "sane_lists"],
        extension_configs={"footnotes": {"UNIQUE_IDS": False}},
        output_format="html",
    )


def render(text: str) -> Rendered:
    """Markdown to sanitised HTML, with a list of what was removed."""
    raw = _markdown(text)
    clean = sanitise(raw)
    before, after = _inventory(raw), _inventory(clean)
    removed = [f"<{tag}> element" for tag, count in sorted(before.tags.items()) if count > after.tags.get(tag, 0)]
    removed += [
        f"{name} attribute"
        for name, count in sorted(before.attributes.items())
        if count > after.attributes.get(name, 0)
    ]
    return Rendered(html=clean, removed=removed)


def plain_text(html: str) -> str:
    """The text of a sanitised fragment, paragraphs kept apart (for plain-text emails and feeds)."""
    text = re.sub(r"(?i)<br\s*/?>", "\n", html)
    text = re.sub(r"(?i)</(p|h[1-6]|li|tr|blockquote|div)>", "\n\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    from html import unescape

    return re.sub(r"\n{3,}", "\n\n", unescape(text)).strip()
