"""Protecting Markdown from a language model: what is hidden, what stays prose, exact restore."""

from __future__ import annotations

import random
import time

import pytest

from bookchat.chapters.protect import PLACEHOLDER_RE, placeholder_problems, protect, restore
from tests.chapters.fakes import CHAPTER, KEPT

MDX = """---
title: "Tabs: a guide"
tags: [ros, tabs]
---

import Tabs from '@theme/Tabs';

# Tabs ⟦not a placeholder⟧ #

<Tabs groupId="os" values={[{label: 'Linux', value: 'linux'}]}>
<TabItem value="linux">

Use `echo "⟦P0⟧"` and $E = mc^2$, which costs $5 or $10. See <https://ros.org> or
https://en.wikipedia.org/wiki/Robot_(disambiguation). Footnote[^1], **bold** text.

</TabItem>
</Tabs>

<!--
  A comment over
  several lines
-->

$$
\\tau = J^T F
$$

1. A list item with a fence:
   ```python
   print("indented")
   ```
2. :::note Inside
   A note inside a list item.
   :::

[^1]: https://example.org/footnote
"""


class TestProtect:
    @pytest.mark.parametrize("text", [CHAPTER, MDX, "", "plain words", "```\nunclosed fence"])
    def test_restore_gives_back_every_byte(self, text: str) -> None:
        protected = protect(text)
        assert restore(protected.text, protected) == text
        assert placeholder_problems(protected.text, protected) == []

    def test_the_model_sees_prose_only(self) -> None:
        sent = protect(CHAPTER).text
        for kept in KEPT:
            assert kept not in sent
        for hidden in ("```", "http", "`", "title:", "/img/"):
            assert hidden not in sent
        # Headings, link texts, image descriptions and admonition titles stay translatable.
        for prose in ("Simulation on a GPU", "install guide", "A warehouse scene"):
            assert prose in sent
        assert "Driver version" in sent
        assert "| GPU | RTX 3070 |" in sent  # table cells are prose, the delimiter row is not

    def test_mdx_markup_math_and_comments_are_hidden(self) -> None:
        protected = protect(MDX)
        sent = protected.text
        for hidden in ("<Tabs", "<TabItem", "</Tabs>", "<!--", "$E", "\\tau", "import Tabs"):
            assert hidden not in sent, hidden
        assert "costs $5 or $10" in sent  # dollars are not math
        assert "(disambiguation)" not in sent  # a bare URL keeps its parentheses
        kinds = {span.kind for span in protected.spans}
        assert {"frontmatter", "esm", "tag", "comment", "math", "url", "target", "fence"} <= kinds
        frontmatter = protected.spans[0]
        assert frontmatter.text.startswith("---\ntitle:")
        assert frontmatter.whole_line

    def test_placeholders_are_numbered_from_first(self) -> None:
        protected = protect("Run `ls` then `pwd`.", first=7)
        assert [int(m.group(1)) for m in PLACEHOLDER_RE.finditer(protected.text)] == [7, 8]
        assert restore("⟦P8⟧ after ⟦P7⟧", protected) == "`pwd` after `ls`"

    def test_a_literal_bracket_inside_code_comes_back(self) -> None:
        protected = protect('Use `echo "⟦P0⟧"` here ⟦ and ⟧.')
        # The brackets inside the code span are nested in it: only the outer ones are expected.
        assert len(protected.expected) < len(protected.spans)
        assert restore(protected.text, protected) == 'Use `echo "⟦P0⟧"` here ⟦ and ⟧.'


class TestPlaceholderProblems:
    def test_missing_repeated_and_unknown(self) -> None:
        protected = protect("Run `ls` and `pwd`.")
        assert placeholder_problems("Run ⟦P0⟧ and ⟦P1⟧.", protected) == []
        assert placeholder_problems("Run ⟦ P0 ⟧ and ⟦P1⟧.", protected) == []
        assert placeholder_problems("Run ⟦P0⟧.", protected) == ["⟦P1⟧ is missing"]
        assert placeholder_problems("⟦P0⟧ ⟦P0⟧ ⟦P1⟧", protected) == ["⟦P0⟧ appears 2 times"]
        assert placeholder_problems("⟦P0⟧ ⟦P1⟧ ⟦P9⟧", protected) == ["⟦P9⟧ is not in the original"]

    def test_block_placeholders_must_stay_in_place(self) -> None:
        protected = protect("## Title\n\n```\ncode\n```\n")
        assert protected.text == "⟦P0⟧Title\n\n⟦P1⟧\n"
        assert placeholder_problems("Intro ⟦P0⟧Title\n\n⟦P1⟧\n", protected) == [
            "⟦P0⟧ must start its line"
        ]
        assert placeholder_problems("⟦P0⟧Title\n\n⟦P1⟧ see above\n", protected) == [
            "⟦P1⟧ must stand alone on its line"
        ]


class TestHostileInput:
    @pytest.mark.parametrize(
        "text",
        [
            "<!--" * 50_000,
            "{/*" * 60_000,
            " ".join("`" * n for n in range(1, 600)),
            "<A b={" * 30_000,
            "http://a" + "(a" * 60_000,
        ],
        ids=["comments", "mdx-comments", "backtick-runs", "jsx", "url-parens"],
    )
    def test_unclosed_openers_stay_linear(self, text: str) -> None:
        # `<!--.*?-->` as a regex took 40 s on the first of these: every opener scanned to the end.
        started = time.perf_counter()
        protected = protect(text[:200_000])
        assert time.perf_counter() - started < 2.0
        assert restore(protected.text, protected) == text[:200_000]

    def test_random_markup_round_trips(self) -> None:
        chars = "`<>!-{}/*[]()$#:|\n \tabc⟦⟧P0123\"'=.^~"
        generator = random.Random(7)
        for _ in range(2000):
            text = "".join(generator.choice(chars) for _ in range(generator.randint(0, 120)))
            protected = protect(text)
            assert restore(protected.text, protected) == text
            assert placeholder_problems(protected.text, protected) == []
