"""Chapter Markdown to HTML: the loader's heading anchors, admonitions, nothing executable."""

from __future__ import annotations

from bookchat.content.docusaurus import HeadingSlugger
from bookchat.content.markdown import parse_blocks
from bookchat.web.render import render_chapter

BODY = """\
# Nodes {#start}

## Quality of Service {#qos}

## Topics

:::note[Heads up]
### Topics
A heading inside an admonition takes an id too.
:::

## Topics

```python
# not a heading
print("<b>")
```

<script>alert(1)</script> and [a link](javascript:alert(1)).
"""


def test_headings_get_the_chunkers_anchors() -> None:
    html = render_chapter("Nodes", BODY)
    chunker = [b.anchor for b in parse_blocks(BODY.split("\n"), HeadingSlugger()) if b.anchor]
    assert chunker == ["start", "qos", "topics", "topics-2"]
    assert '<h1 id="start">Nodes</h1>' in html
    assert '<h2 id="qos">Quality of Service</h2>' in html
    assert '<h2 id="topics">Topics</h2>' in html
    assert '<h3 id="topics-1">Topics</h3>' in html
    assert '<h2 id="topics-2">Topics</h2>' in html
    assert "{#" not in html


def test_admonitions_become_asides() -> None:
    html = render_chapter("Nodes", BODY)
    assert '<aside class="admonition admonition-note">' in html
    assert '<p class="admonition-title">Heads up</p>' in html
    warning = render_chapter("x", ":::warning Real hardware\nCareful.\n:::\n\n:::tip\nHi\n:::")
    assert '<p class="admonition-title">Real hardware</p>' in warning
    assert '<p class="admonition-title">Tip</p>' in warning
    # An opening without its closing line is just text.
    assert "aside" not in render_chapter("x", ":::tip\nnever closed")


def test_code_fences_stay_code() -> None:
    html = render_chapter("Nodes", BODY)
    assert '<code class="language-python"># not a heading\nprint(&quot;&lt;b&gt;&quot;)' in html


def test_raw_html_and_unsafe_links_are_text() -> None:
    html = render_chapter("Nodes", BODY)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript' not in html


def test_a_page_without_h1_shows_its_title() -> None:
    html = render_chapter("Walking <fast>", "Intro.\n\n## Gait\n")
    assert html.startswith("<h1>Walking &lt;fast&gt;</h1>")
    assert '<h2 id="gait">Gait</h2>' in html
