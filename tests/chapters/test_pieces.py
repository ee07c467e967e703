"""Cutting a chapter into pieces and checking a rewritten piece's structure."""

from __future__ import annotations

import pytest

from bookchat.chapters.pieces import (
    keep_edges,
    plan,
    shape_of,
    split_sections,
    structure_problems,
    unwrap,
)
from bookchat.content.markdown import estimate_tokens
from tests.chapters.fakes import BODY, CHAPTER, FENCE

LONG_SECTION = "## Long\n\n" + "\n\n".join(
    f"Paragraph {n} explains one more detail of the walking controller." for n in range(30)
)


class TestSplitSections:
    @pytest.mark.parametrize("budget", [10, 50, 100, 1200])
    @pytest.mark.parametrize("text", [CHAPTER, BODY, LONG_SECTION, "", "\n\n# A\n\n\n## B\n"])
    def test_pieces_join_back_exactly(self, text: str, budget: int) -> None:
        assert "\n".join(split_sections(text, budget)) == text

    def test_cuts_on_headings_and_packs_small_sections(self) -> None:
        assert split_sections(BODY, 1200) == [BODY]
        pieces = split_sections(BODY, 100)
        assert pieces[0].startswith("# Simulation on a GPU")
        assert pieces[-1].startswith("## Running a scene")
        assert all(estimate_tokens(piece) <= 100 for piece in pieces)

    def test_never_inside_a_fence_frontmatter_or_admonition(self) -> None:
        pieces = split_sections(CHAPTER, 10)
        for piece in pieces:
            assert piece.count("```") in (0, 2)
            assert piece.count(":::") in (0, 2)
        assert pieces[0] == "---\ntitle: Simulation on a GPU\nsidebar_position: 2\n---"
        assert any(piece.startswith(FENCE) for piece in pieces)

    def test_a_long_section_is_cut_between_blocks_keeping_its_heading(self) -> None:
        pieces = split_sections(LONG_SECTION, 60)
        assert len(pieces) > 3
        assert pieces[0].startswith("## Long\n\nParagraph 0")
        assert all(piece.strip().startswith(("## Long", "Paragraph")) for piece in pieces)

    def test_plan_numbers_placeholders_across_pieces(self) -> None:
        pieces = plan(BODY, 100)
        numbers = [n for piece in pieces for n in piece.protected.ids]
        assert numbers == list(range(len(numbers)))


class TestChecks:
    def test_structure_problems(self) -> None:
        shape = shape_of(BODY)
        assert structure_problems(shape, BODY.upper().replace("HTTPS", "https")) != []
        assert structure_problems(shape, BODY) == []
        assert structure_problems(shape, BODY + "\n## More\n") == [
            "the headings changed: 4 instead of 3, or at other levels"
        ]
        assert structure_problems(shape, BODY.replace("## Installing", "### Installing"))
        assert structure_problems(shape, BODY + "\n```\nnew()\n```\n") == [
            "code blocks were added, removed or changed"
        ]
        assert structure_problems(shape, BODY + "\nSee https://evil.example.\n") == [
            "links or URLs were added, removed or changed"
        ]
        assert structure_problems(shape, BODY.replace("| RAM | 32 GB |\n", "")) == [
            "3 table rows instead of 4"
        ]

    def test_unwrap_and_edges(self) -> None:
        assert unwrap("```markdown\n# Title\n\nText\n```\n") == "# Title\n\nText"
        assert unwrap("```\r\n# Title\r\n```") == "# Title"
        assert unwrap("# Title\n\n⟦P1⟧") == "# Title\n\n⟦P1⟧"
        assert keep_edges("\n\n## A\n\ntext\n\n", "## B\n\ntext") == "\n\n## B\n\ntext\n\n"
        assert keep_edges("## A\ntext", "\n  \n## B\ntext\n\n") == "## B\ntext"
