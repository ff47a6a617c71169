"""Markdown to sanitised HTML, and sandboxed personalisation: the one place text becomes markup.

Python-Markdown (tables, smart quotes, footnotes) renders, then nh3 keeps only an
allowlist: no script, style, iframe, form, event handler or ``javascript:`` /
``data:`` URL reaches a page, an email or a PDF.  ``render`` also reports what the
sanitiser removed, so the editor can warn the author.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import markdown
import nh3
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, nodes, pass_eval_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing

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


# Personalisation: subjects and introductions written by coordinators as Jinja templates
# and rendered once per recipient in the sandbox.  Undefined names are errors, the HTML
# part is autoescaped, the subject and text part stay plain ("O'Neill" stays "O'Neill").
# A template has output, conditions and loops (not nested), a short list of filters and no
# globals (no range, no lipsum), so it cannot recurse or loop without bound; the operators,
# filters and text methods that build large values are capped, and so is the output.

#: Longest text a template may produce for one recipient, and longest value it may build.
MAX_OUTPUT = 20_000
#: Largest integer a template may compute with ``**``, in bits.
_MAX_POWER_BITS = 4096
_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "int", "join",
    "last", "length", "list", "lower", "replace", "round", "sort", "string", "striptags", "title",
    "trim", "truncate", "unique", "upper", "wordcount",
)  # fmt: skip
#: Methods of text that build longer text; the ``replace`` and ``join`` filters do it within bounds.
_GROWING_METHODS = frozenset(
    {"center", "expandtabs", "format", "format_map", "join", "ljust", "replace", "rjust", "zfill"}
)
#: The statements a template may use, and the tag each refused one is written with.
_STATEMENTS = (nodes.Output, nodes.If, nodes.For)
_TAGS = {
    nodes.Extends: "extends", nodes.Include: "include", nodes.Import: "import",
    nodes.FromImport: "from … import", nodes.Macro: "macro", nodes.CallBlock: "call",
    nodes.Assign: "set", nodes.AssignBlock: "set", nodes.With: "with", nodes.Block: "block",
    nodes.FilterBlock: "filter", nodes.ScopedEvalContextModifier: "autoescape",
    nodes.EvalContextModifier: "autoescape",
}  # fmt: skip


class TemplateError(ValueError):
    """A template that does not compile or does not render; the message says where and why."""


class MergeFields(SimpleNamespace):
    """The fields of one thing a template may name (``contact``, ``letter``…), labelled for errors."""

    def __init__(self, label: str, /, **fields: Any) -> None:
        super().__init__(**fields)
        object.__setattr__(self, "_label", label)


class _Undefined(StrictUndefined):
    """Undefined names fail, with a message a coordinator can act on."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"{self._undefined_name!r} is not a merge field"
        if self._undefined_obj is None:
            return f"no value to take {self._undefined_name!r} from (is it empty for this letter?)"
        owner = getattr(self._undefined_obj, "_label", None)
        if owner is None:
            return f"{self._undefined_name!r} is not available here"
        return f"{owner} has no field {self._undefined_name!r}"


def _check_size(size: int) -> None:
    if size > MAX_OUTPUT:
        raise SecurityError("the result would be too long")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        sized = (str, bytes, list, tuple)
        if operator == "*":
            count, item = (right, left) if isinstance(left, sized) else (left, right)
            if isinstance(item, sized) and isinstance(count, int):
                _check_size(len(item) * count)
            return left * right
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 64:
                raise SecurityError("exponent too large")
            if isinstance(left, int) and isinstance(right, int) and abs(left).bit_length() * right > _MAX_POWER_BITS:
                raise SecurityError("the result would be too large")
            return left**right
        if isinstance(left, str | bytes):
            raise SecurityError("the % operator is not available for text; use the merge fields")
        return left % right

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # Otherwise ``'x'.ljust(10**9)`` allocates a gigabyte before the output is measured.
        if isinstance(obj, str | bytes) and attr in _GROWING_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """No ``str.format``: it reaches ``is_safe_attribute``, which refuses it."""
        return None


def _bounded_replace(replace: Callable[..., str]) -> Callable[..., str]:
    @pass_eval_context
    def bounded(eval_ctx: Any, value: Any, old: Any, new: Any, count: int | None = None) -> str:
        text, old_text, new_text = str(value), str(old), str(new)
        hits = text.count(old_text) if old_text else len(text) + 1
        if count is not None and count >= 0:
            hits = min(hits, count)
        # Escaping can make the new text up to six times longer ("'" is "&#39;").
        growth = len(new_text) * (6 if eval_ctx.autoescape else 1) - len(old_text)
        _check_size(len(text) + hits * max(growth, 0))
        return replace(eval_ctx, value, old, new, count)

    return bounded


def _bounded_join(join: Callable[..., str]) -> Callable[..., str]:
    @pass_eval_context
    def bounded(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> str:
        items = list(value)
        _check_size(len(str(d)) * max(len(items) - 1, 0))
        return join(eval_ctx, items, d, attribute)

    return bounded


@functools.cache
def _environment(html: bool) -> _Sandbox:
    env = _Sandbox(autoescape=html, undefined=_Undefined, keep_trailing_newline=False)
    env.filters = {name: env.filters[name] for name in _FILTERS}
    env.filters["replace"] = _bounded_replace(env.filters["replace"])
    env.filters["join"] = _bounded_join(env.filters["join"])
    env.globals = {}
    return env


def _check_statements(tree: nodes.Template) -> None:
    """Refuse what a mailing template has no use for and what could recurse or run long."""
    for node in tree.find_all(nodes.Stmt):
        if isinstance(node, nodes.Scope):
            continue  # {% autoescape %} wraps its node in one; that node is reported
        if not isinstance(node, _STATEMENTS):
            tag = _TAGS.get(type(node), type(node).__name__.lower())
            raise TemplateError(
                f"line {node.lineno}: {{% {tag} %}} is not available; use merge fields, {{% if %}} and {{% for %}}"
            )
        if isinstance(node, nodes.For) and node.recursive:
            raise TemplateError(f"line {node.lineno}: recursive loops are not available")
        if isinstance(node, nodes.For) and any(True for _ in node.find_all(nodes.For)):
            raise TemplateError(f"line {node.lineno}: a loop cannot contain another loop")
    for name in tree.find_all(nodes.Name):
        if name.name == "self":
            raise TemplateError(f"line {name.lineno}: 'self' is not a merge field")


def compile_template(source: str, *, html: bool = False) -> Template:
    """The template compiled in the sandbox, or a ``TemplateError`` naming the line."""
    env = _environment(html)
    try:
        tree = env.parse(source)
        _check_statements(tree)
        return env.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc


def _render(template: Template, context: dict[str, Any]) -> str:
    """The output, measured as it is produced: a long loop fails before it fills the memory."""
    chunks, size = [], 0
    for chunk in template.generate(context):
        size += len(chunk)
        if size > MAX_OUTPUT:
            raise TemplateError(f"the text is longer than {MAX_OUTPUT:,} characters")
        chunks.append(chunk)
    return "".join(chunks)


def personalise(source: str | Template, context: dict[str, Any], *, html: bool = False) -> str:
    """Render a template for one recipient; any failure becomes a ``TemplateError``."""
    template = compile_template(source, html=html) if isinstance(source, str) else source
    try:
        return _render(template, context)
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"not allowed: {exc}") from exc
    except UndefinedError as exc:
        raise TemplateError(str(exc.message)) from exc
    except TemplateSyntaxError as exc:
        raise TemplateError(f"line {exc.lineno}: {exc.message}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc


def paragraphs_html(escaped: str) -> str:
    """Already-escaped text as HTML paragraphs: blank lines part paragraphs, newlines break lines."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", escaped.replace("\r\n", "\n")) if block.strip()]
    return "\n".join('<p dir="auto">' + "<br>\n".join(block.split("\n")) + "</p>" for block in blocks)
