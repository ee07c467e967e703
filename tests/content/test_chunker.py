"""Heading-aware chunking: paths, anchors, whole blocks, overlap and the token cap."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookchat.content.chunker import TextChunk, chunk_document
from bookchat.content.markdown import estimate_tokens
from bookchat.content.splitting import without_code_part

SMALL = {"target_tokens": 120, "overlap_tokens": 20, "max_tokens": 200}
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "textbook-a"


def sentence(index: int) -> str:
    return f"Sentence number {index} explains one more detail about robots."


def prose(count: int, start: int = 0) -> str:
    return " ".join(sentence(i) for i in range(start, start + count))


def code_fence(lines: int, info: str = "python") -> str:
    body = "\n".join(f"value_{i} = compute(value_{i - 1}, {i})" for i in range(lines))
    return f"```{info}\n{body}\n```"


def assert_valid(chunks: list[TextChunk], max_tokens: int) -> None:
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.token_count == estimate_tokens(chunk.embedding_text)
        assert chunk.token_count <= max_tokens


def fences_of(text: str) -> list[str]:
    """The fenced blocks of a chunk's text (opening line to closing line)."""
    fences: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if current is None and line.startswith("```"):
            current = [line]
        elif current is not None:
            current.append(line)
            if line == "```":
                fences.append("\n".join(current))
                current = None
    assert current is None, "a chunk ends inside an open fence"
    return fences


class TestEstimateTokens:
    def test_words_symbols_and_whitespace(self) -> None:
        assert estimate_tokens("") == 0
        assert estimate_tokens("   \n\t") == 0
        assert estimate_tokens("robot arm") == 2
        assert estimate_tokens("a.b") == 3
        assert estimate_tokens("communication") == 3

    def test_code_and_urls_count_their_symbols(self) -> None:
        assert estimate_tokens("self.get_logger().info('x')") == 14
        url = "https://docs.ros.org/en/humble/index.html"
        assert estimate_tokens(url) >= len([c for c in url if not c.isalnum()])

    def test_numbers_and_other_scripts_are_denser(self) -> None:
        assert estimate_tokens("1234567890") == 5
        assert estimate_tokens("机器人学") == 4
        assert estimate_tokens("روبوٹ") >= 2

    def test_is_additive_over_lines(self) -> None:
        lines = ["# Title", "Some prose, with punctuation!", "x = f(y)  # code"]
        assert estimate_tokens("\n".join(lines)) == sum(estimate_tokens(line) for line in lines)


class TestStructure:
    def test_empty_and_blank_bodies(self) -> None:
        assert chunk_document("", title="T") == []
        assert chunk_document("\n \n\t\n", title="T") == []

    def test_heading_paths_and_anchors(self) -> None:
        body = (
            "# Nodes, Topics, and Services\n\n"
            f"{prose(8)}\n\n"
            "## Topics: Publish-Subscribe Communication\n\n"
            f"{prose(8, 10)}\n\n"
            "### Quality of Service {#qos}\n\n"
            f"{prose(8, 20)}\n\n"
            "## Services\n\n"
            f"{prose(8, 30)}\n"
        )
        chunks = chunk_document(body, title="Ignored title", **SMALL)
        assert_valid(chunks, 200)
        described = [(chunk.heading_path, chunk.anchor) for chunk in chunks]
        assert described == [
            # Docusaurus renders the h1 (the page title) without an id: links go to the page.
            (("Nodes, Topics, and Services",), None),
            (
                ("Nodes, Topics, and Services", "Topics: Publish-Subscribe Communication"),
                "topics-publish-subscribe-communication",
            ),
            (
                (
                    "Nodes, Topics, and Services",
                    "Topics: Publish-Subscribe Communication",
                    "Quality of Service",
                ),
                "qos",
            ),
            (("Nodes, Topics, and Services", "Services"), "services"),
        ]
        assert chunks[1].text.startswith("## Topics: Publish-Subscribe Communication\n\n")
        assert chunks[1].embedding_text.startswith(
            "Nodes, Topics, and Services > Topics: Publish-Subscribe Communication\n\n## Topics"
        )

    def test_title_is_the_root_without_h1_and_text_before_headings_has_no_anchor(self) -> None:
        body = f"{prose(8)}\n\n## Setup\n\n{prose(8, 10)}"
        chunks = chunk_document(body, title="My Page", **SMALL)
        assert [(c.heading_path, c.anchor) for c in chunks] == [
            (("My Page",), None),
            (("My Page", "Setup"), "setup"),
        ]

    def test_duplicate_headings_get_numbered_anchors(self) -> None:
        body = "\n\n".join(
            f"## {name}\n\n{prose(8, i * 10)}" for i, name in enumerate(["Example"] * 3)
        )
        chunks = chunk_document(body, title="T", **SMALL)
        assert [chunk.anchor for chunk in chunks] == ["example", "example-1", "example-2"]

    def test_the_h1_still_counts_for_repeated_headings(self) -> None:
        # Docusaurus slugs the h1 too (then drops its id): the next "Example" is example-1.
        body = f"# Example\n\n{prose(8)}\n\n## Example\n\n{prose(8, 10)}"
        chunks = chunk_document(body, title="T", **SMALL)
        assert [chunk.anchor for chunk in chunks] == [None, "example-1"]

    def test_hash_line_inside_a_fence_is_not_a_heading(self) -> None:
        fence = (
            "```bash\n# Install the package\nsudo apt install ros-humble-desktop\n## also not\n```"
        )
        body = f"# Setup\n\nRun this:\n\n{fence}\n\nDone."
        [chunk] = chunk_document(body, title="T")
        assert chunk.heading_path == ("Setup",)
        assert fence in chunk.text


class TestWholeBlocks:
    def test_table_and_admonition_stay_whole(self) -> None:
        table = "| Feature | Go2 | G1 |\n|---|---|---|\n" + "\n".join(
            f"| row {i} | {i} kg | {i * 2} kg |" for i in range(12)
        )
        admonition = ":::warning Careful\n" + prose(6) + "\n\n:::note Inner\nNested.\n:::\n:::"
        body = (
            f"## Specs\n\n{prose(6)}\n\n{table}\n\n{prose(6, 50)}\n\n{admonition}\n\n{prose(6, 90)}"
        )
        chunks = chunk_document(body, title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) > 1
        assert sum(table in chunk.text for chunk in chunks) == 1
        assert sum(admonition in chunk.text for chunk in chunks) == 1

    def test_oversized_fence_is_split_with_reopened_fences(self) -> None:
        fence = code_fence(60, 'python title="demo.py"')
        chunks = chunk_document(f"## Code\n\nIntro.\n\n{fence}\n\nOutro.", title="T", **SMALL)
        assert_valid(chunks, 200)
        pieces = [f for chunk in chunks for f in fences_of(chunk.text)]
        assert len(pieces) > 1
        # Each piece says it is one: a model or the offline answerer never takes it for the
        # whole block.
        for number, piece in enumerate(pieces, 1):
            assert piece.startswith(f'```python title="demo.py" (part {number} of {len(pieces)})\n')
            assert piece.endswith("\n```")
        code_lines = [line for piece in pieces for line in piece.split("\n")[1:-1]]
        assert code_lines == fence.split("\n")[1:-1]

    def test_oversized_table_repeats_its_header(self) -> None:
        header = "| Name | Value |\n|------|-------|"
        rows = [f"| parameter_{i} | {i * 1000} |" for i in range(80)]
        chunks = chunk_document(header + "\n" + "\n".join(rows), title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) > 1
        for chunk in chunks:
            assert chunk.text.startswith(header + "\n")
        seen = [line for chunk in chunks for line in chunk.text.split("\n")[2:]]
        assert seen == rows

    def test_oversized_admonition_is_reopened(self) -> None:
        inner = "\n\n".join(prose(4, i * 10) for i in range(12))
        chunks = chunk_document(f":::tip Remember\n{inner}\n:::", title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) > 1
        for chunk in chunks:
            assert chunk.text.startswith(":::tip Remember\n")
            assert chunk.text.endswith("\n:::")


class TestLongSections:
    def test_overlap_between_consecutive_chunks_of_one_section(self) -> None:
        paragraphs = [prose(3, i * 3) for i in range(12)]
        chunks = chunk_document("## Long\n\n" + "\n\n".join(paragraphs), title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) >= 3
        for previous, current in itertools.pairwise(chunks):
            first_line = current.text.split("\n")[0]
            assert first_line.endswith("robots.")
            assert first_line in previous.text
            assert estimate_tokens(first_line) <= 20
            assert current.heading_path == ("T", "Long")

    def test_no_overlap_across_sections(self) -> None:
        body = f"## A\n\n{prose(9)}\n\n## B\n\n{prose(9, 20)}"
        chunks = chunk_document(body, title="T", **SMALL)
        assert chunks[1].text.startswith("## B")

    def test_long_paragraph_splits_at_sentences(self) -> None:
        chunks = chunk_document(prose(60), title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) > 1
        for chunk in chunks:
            assert chunk.text.endswith(".")
        text = " ".join(chunk.text for chunk in chunks)
        for i in range(60):
            assert sentence(i) in text

    def test_giant_word_is_cut_under_the_cap(self) -> None:
        word = "x" * 5000
        chunks = chunk_document(f"# Big\n\n{word}", title="T")
        assert_valid(chunks, 480)
        assert "".join(c.text.split("\n")[-1] for c in chunks if "x" in c.text) == word

    def test_giant_symbol_line_and_giant_table_row(self) -> None:
        row = "| " + " | ".join(f"c{i}" for i in range(2000)) + " |"
        body = f"{'=' * 3000}\n\n| a | b |\n|---|---|\n{row}"
        chunks = chunk_document(body, title="T")
        assert_valid(chunks, 480)
        assert sum(chunk.text.count("=") for chunk in chunks) == 3000

    def test_giant_heading_is_capped(self) -> None:
        heading = "## " + " ".join(f"word{i}" for i in range(900))
        chunks = chunk_document(f"# Top\n\n{heading}\n\nBody.", title="T")
        assert_valid(chunks, 480)
        assert any("Body." in chunk.text for chunk in chunks)

    def test_heading_only_document(self) -> None:
        chunks = chunk_document("# A\n\n## B\n\n### C\n\n## D", title="T")
        assert_valid(chunks, 480)
        assert len(chunks) == 1
        assert chunks[0].text == "# A\n\n## B\n\n### C\n\n## D"


class TestMerging:
    def test_small_sections_merge_into_the_first_ones_path(self) -> None:
        body = "# Guide\n\nShort intro.\n\n## Overview\n\nTiny.\n\n## Details\n\n" + prose(4)
        [chunk] = chunk_document(body, title="T")
        assert chunk.heading_path == ("Guide",)
        assert chunk.anchor is None  # the h1: the top of the page
        assert "## Overview" in chunk.text
        assert "## Details" in chunk.text

    def test_no_merge_into_a_shallower_section(self) -> None:
        body = f"## A\n\n{prose(8)}\n\n### A.1\n\nTiny.\n\n## B\n\nTiny too.\n\n## C\n\nSmall."
        chunks = chunk_document(body, title="T")
        assert [chunk.anchor for chunk in chunks] == ["a", "a1", "b", "c"]

    def test_a_small_section_keeps_its_own_link_beside_a_small_sibling(self) -> None:
        # A citation of "Next Steps" must land on "Next Steps", not on the section before it.
        body = (
            "# Sensors\n\n## Common Issues\n\nNoise is too low.\n\n"
            "### Drift\n\nThe IMU drifts.\n\n## Next Steps\n\nRead the Isaac chapter."
        )
        chunks = chunk_document(body, title="Sensors")
        by_anchor = {chunk.anchor: chunk.text for chunk in chunks}
        assert "Read the Isaac chapter." in by_anchor["next-steps"]
        assert "Read the Isaac chapter." not in by_anchor["common-issues"]
        assert "The IMU drifts." in by_anchor["common-issues"]  # a subsection still joins

    def test_big_sections_are_not_merged(self) -> None:
        body = f"## A\n\n{prose(8)}\n\n## B\n\n{prose(8, 10)}"
        chunks = chunk_document(body, title="T")
        assert [chunk.anchor for chunk in chunks] == ["a", "b"]

    def test_bare_heading_leads_the_next_sections_first_chunk(self) -> None:
        body = "## Planning\n\n### Decomposition\n\n" + "\n\n".join(prose(3, i) for i in range(30))
        chunks = chunk_document(body, title="T", **SMALL)
        assert_valid(chunks, 200)
        assert len(chunks) > 1
        assert chunks[0].text.startswith("## Planning\n\n### Decomposition\n\n")
        for chunk in chunks:
            assert chunk.heading_path == ("T", "Planning", "Decomposition")
            assert chunk.anchor == "decomposition"

    def test_bare_h1_hands_its_label_to_the_first_section_with_text(self) -> None:
        body = "# Walking\n\n## Balance\n\nKeep the point inside.\n\n## Gait\n\nStance, swing."
        balance, gait = chunk_document(body, title="Walking")
        assert balance.text == "# Walking\n\n## Balance\n\nKeep the point inside."
        assert balance.heading_path == ("Walking", "Balance")
        assert balance.anchor == "balance"
        assert (gait.anchor, gait.text) == ("gait", "## Gait\n\nStance, swing.")


class TestParameters:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"max_tokens": 10},
            {"target_tokens": 500, "max_tokens": 480},
            {"overlap_tokens": 400},
            {"target_tokens": 0},
        ],
    )
    def test_invalid_parameters(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError, match="tokens"):
            chunk_document("text", title="T", **kwargs)


# ---- property-based -------------------------------------------------------------------------

_WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
_CODE_LINES = st.sampled_from(
    ["x = 1", "# comment", "## not a heading", "def f():", "    return 2", "", "::: not a close"]
)


@st.composite
def _paragraph(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.lists(_WORDS, min_size=1, max_size=25), min_size=1, max_size=4))
    return "\n".join(" ".join(words).capitalize() + "." for words in lines)


@st.composite
def _fence(draw: st.DrawFn) -> str:
    marker = draw(st.sampled_from(["```", "````", "~~~"]))
    info = draw(st.sampled_from(["", "python", "bash title=x.sh"]))
    body = draw(
        st.lists(st.one_of(_CODE_LINES, st.lists(_WORDS, max_size=8).map(" ".join)), max_size=70)
    )
    return "\n".join([marker + info, *body, marker])


@st.composite
def _table(draw: st.DrawFn) -> str:
    rows = draw(st.lists(st.tuples(_WORDS, _WORDS), min_size=1, max_size=25))
    return "\n".join(["| key | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


@st.composite
def _admonition(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["note", "tip Title", "warning"]))
    inner = draw(st.lists(st.one_of(_paragraph(), _fence()), min_size=1, max_size=3))
    return f":::{kind}\n" + "\n\n".join(inner) + "\n:::"


@st.composite
def _heading(draw: st.DrawFn) -> str:
    level = draw(st.integers(min_value=1, max_value=4))
    words = draw(st.lists(_WORDS, min_size=1, max_size=5))
    return "#" * level + " " + " ".join(words).title()


@st.composite
def _document(draw: st.DrawFn) -> str:
    blocks = draw(
        st.lists(
            st.one_of(_heading(), _paragraph(), _fence(), _table(), _admonition()),
            max_size=14,
        )
    )
    return "\n\n".join(blocks)


def _fence_blocks(body: str) -> list[list[str]]:
    """Top-level fences of a generated document, as lists of lines."""
    fences: list[list[str]] = []
    current: list[str] | None = None
    marker = ""
    for line in body.split("\n"):
        if current is None:
            for candidate in ("````", "```", "~~~"):
                if line.startswith(candidate):
                    current, marker = [line], candidate
                    break
        else:
            current.append(line)
            if line == marker:
                fences.append(current)
                current = None
    return fences


@settings(max_examples=200, deadline=None)
@given(body=_document(), small=st.booleans())
def test_chunking_properties(body: str, small: bool) -> None:
    limits = SMALL if small else {"target_tokens": 350, "overlap_tokens": 50, "max_tokens": 480}
    max_tokens = limits["max_tokens"]
    chunks = chunk_document(body, title="Generated Page", **limits)

    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.token_count == estimate_tokens(chunk.embedding_text) <= max_tokens

    chunk_lines = {line for chunk in chunks for line in chunk.text.split("\n")}
    for line in body.split("\n"):
        if line.strip():
            assert line in chunk_lines, f"lost line: {line!r}"

    for fence in _fence_blocks(body):
        text = "\n".join(fence)
        # Headings are short: their path costs well under 60 tokens.
        if estimate_tokens(text) <= max_tokens - 60:
            assert any(text in chunk.text for chunk in chunks), "a fitting fence was split"

    for chunk in chunks:
        assert_links_cover_the_text(chunk)

    assert chunk_document(body, title="Generated Page", **limits) == chunks


def assert_links_cover_the_text(chunk: TextChunk) -> None:
    """Everything after the heading a chunk links to sits under that heading: a later heading
    in the chunk is deeper (a subsection), never a sibling or a shallower one."""
    outside_fences = "\n".join(line for block in _unfenced(chunk.text) for line in block)
    lines = [line for line in outside_fences.split("\n") if line.strip()]
    if chunk.anchor is None or not lines or not _heading_level(lines[0]):
        return  # the page's top covers it all; a continuation has no heading to check
    # The labelled heading is the last of those leading the chunk (bare ones hand it on).
    leading = list(itertools.takewhile(_heading_level, lines))
    level = _heading_level(leading[-1])
    later = [_heading_level(line) for line in lines[len(leading) :]]
    assert all(deeper > level for deeper in later if deeper), chunk.text


def _heading_level(line: str) -> int:
    marks, _, title = line.partition(" ")
    return len(marks) if marks and set(marks) == {"#"} and title.strip() else 0


def _unfenced(text: str) -> list[list[str]]:
    """The text's lines outside fenced code blocks, in runs."""
    runs: list[list[str]] = [[]]
    marker = ""
    for line in text.split("\n"):
        if marker:
            if line == marker:
                marker = ""
                runs.append([])
            continue
        opening = next((m for m in ("````", "```", "~~~") if line.startswith(m)), "")
        if opening:
            marker = opening
            continue
        runs[-1].append(line)
    return runs


@pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"benchmark corpus not found at {CORPUS} (fresh clone)"
)
def test_textbook_corpus_chunks_under_the_cap_and_loses_no_line() -> None:
    from bookchat.content.loader import load_folder

    documents = load_folder(CORPUS, "https://example.org/book")
    chunks = [chunk_document(d.body, title=d.title) for d in documents]
    for document, document_chunks in zip(documents, chunks, strict=True):
        assert_valid(document_chunks, 480)
        lines = {
            without_code_part(line)  # a split block's pieces open as it did, marked
            for chunk in document_chunks
            for line in chunk.text.split("\n")
        }
        assert all(line in lines for line in document.body.split("\n") if line.strip())
