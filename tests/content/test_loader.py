"""Loading Docusaurus docs folders and single Markdown texts."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from bookchat.content.loader import (
    LoadedDocument,
    LoaderError,
    clean_body,
    is_doc_file,
    load_folder,
    parse_markdown,
)

BASE = "https://example.org/book"
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "textbook-a"


def parse(text: str, source_path: str = "module-1/page.md") -> LoadedDocument:
    document = parse_markdown(text, source_path, BASE)
    assert document is not None
    return document


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


class TestFrontmatter:
    def test_fields_are_read(self) -> None:
        document = parse(
            "---\n"
            "title: Nodes and Topics\n"
            "description: How nodes talk\n"
            "keywords: [ros2, nodes]\n"
            "sidebar_position: 2\n"
            "custom: 7\n"
            "---\n"
            "# Ignored H1\n\nBody text.\n",
            "module-1-ros2/02-nodes.md",
        )
        assert document.title == "Nodes and Topics"
        assert document.description == "How nodes talk"
        assert document.keywords == ["ros2", "nodes"]
        assert document.sidebar_position == 2.0
        assert document.frontmatter["custom"] == 7
        assert document.route == "/module-1-ros2/nodes"
        assert document.page_url == f"{BASE}/module-1-ros2/nodes"
        assert document.body == "# Ignored H1\n\nBody text."

    def test_title_falls_back_to_h1_then_file_name(self) -> None:
        assert parse("Intro.\n\n# The **Real** Title {#top}\n").title == "The Real Title"
        assert parse("No heading here.", "guides/03-getting-started.md").title == (
            "Getting Started"
        )

    def test_keywords_as_comma_string(self) -> None:
        assert parse("---\nkeywords: a, b ,c\n---\nx").keywords == ["a", "b", "c"]

    def test_id_and_slug_change_the_url(self) -> None:
        assert parse("---\nid: custom\n---\nx", "g/page.md").page_url == f"{BASE}/g/custom"
        assert parse("---\nslug: /elsewhere\n---\nx", "g/page.md").route == "/elsewhere"

    def test_draft_is_skipped_and_unlisted_is_kept(self) -> None:
        assert parse_markdown("---\ndraft: true\n---\n# Draft\n", "d.md", BASE) is None
        assert parse("---\nunlisted: true\n---\n# Hidden page\n").title == "Hidden page"

    def test_malformed_yaml_names_the_file(self) -> None:
        with pytest.raises(LoaderError, match=r"module-9/broken\.md"):
            parse_markdown("---\ntitle: [unclosed\n---\nx", "module-9/broken.md", BASE)

    def test_non_mapping_frontmatter_is_an_error(self) -> None:
        with pytest.raises(LoaderError, match=r"list\.md.*mapping"):
            parse_markdown("---\n- a\n- b\n---\nx", "list.md", BASE)

    def test_unclosed_frontmatter_is_an_error(self) -> None:
        with pytest.raises(LoaderError, match=r"open\.md"):
            parse_markdown("---\ntitle: x\n\nbody", "open.md", BASE)

    def test_empty_frontmatter(self) -> None:
        assert parse("---\n---\n# T\n").frontmatter == {}

    def test_crlf_and_bom(self) -> None:
        document = parse("\ufeff---\r\ntitle: Windows\r\n---\r\n# H\r\n\r\nLine one.\r\n")
        assert document.title == "Windows"
        assert document.body == "# H\n\nLine one."

    def test_content_hash_covers_body_and_url(self) -> None:
        document = parse("# Same\n\nText.", "a/page.md")
        expected = hashlib.sha256(f"{document.page_url}\n{document.body}".encode()).hexdigest()
        assert document.content_hash == expected
        assert parse("# Same\n\nText.", "b/page.md").content_hash != document.content_hash
        assert parse("# Same\n\nOther.", "a/page.md").content_hash != document.content_hash


class TestBodyCleaning:
    def test_mdx_imports_exports_and_jsx_are_removed_text_kept(self) -> None:
        body = clean_body(
            "import Tabs from '@theme/Tabs';\n"
            "import TabItem from '@theme/TabItem';\n"
            "import {\n  Foo,\n  Bar,\n} from '../components';\n"
            "export const meta = {\n  level: 2,\n  tags: ['a', 'b'],\n};\n"
            "\n"
            "# Title\n"
            "\n"
            '<Tabs groupId="lang">\n'
            '<TabItem value="py" label="Python">\n'
            "\n"
            "Python text stays.\n"
            "\n"
            "</TabItem>\n"
            "</Tabs>\n"
            "\n"
            "Some <b>bold</b> words. <!-- a comment -->\n"
            "{/* an MDX comment */}\n"
            "<DocCardList />\n"
            "Last line.\n"
        )
        assert "import" not in body
        assert "export" not in body
        assert "<" not in body
        assert "comment" not in body
        assert "Python text stays." in body
        assert "Some bold words." in body
        assert body.startswith("# Title")
        assert body.endswith("Last line.")

    def test_multiline_jsx_tag_vanishes(self) -> None:
        body = clean_body(
            "<Tabs\n  groupId='os'\n  values={[{label: 'A', value: 'a'}]}>\nKept\n</Tabs>"
        )
        assert body == "Kept"

    def test_code_fences_are_untouched(self) -> None:
        fence = (
            "```python\n"
            "import rclpy\n"
            "export = 1\n"
            "# <b>not a tag</b> <!-- kept -->\n"
            "\n\n\n\n"
            "x = List<int>()\n"
            "```"
        )
        body = clean_body(f"import Foo from './foo';\n\nBefore.\n\n{fence}\n\nAfter.")
        assert fence in body
        assert body.startswith("Before.")

    def test_indented_and_tilde_fences_are_untouched(self) -> None:
        text = "1. Step:\n\n   ~~~~bash\n   <b>x</b>\n   ~~~\n   <i>still code</i>\n   ~~~~\n"
        assert clean_body(text) == text.rstrip("\n")

    def test_inline_code_keeps_tags(self) -> None:
        assert clean_body("Use `<div>` and `List<T>`.") == "Use `<div>` and `List<T>`."

    def test_admonitions_tables_and_links_are_kept(self) -> None:
        text = (
            ":::tip Title\n"
            "Keep **this**.\n"
            ":::\n"
            "\n"
            "| a | b<br/> |\n"
            "|---|---|\n"
            "| 1 | 2 |\n"
            "\n"
            "See <https://example.org> and [docs](https://x.org)."
        )
        assert clean_body(text) == text

    def test_blank_runs_collapse_to_two(self) -> None:
        assert clean_body("a\n\n\n\n\n\nb\n\n\nc") == "a\n\n\nb\n\n\nc"

    def test_prose_import_without_from_is_kept(self) -> None:
        assert clean_body("imports, exports and more.") == "imports, exports and more."


class TestIsDocFile:
    @pytest.mark.parametrize(
        "path",
        ["intro.md", "guides/setup.mdx", "a/b/c.MD"],
    )
    def test_docs(self, path: str) -> None:
        assert is_doc_file(Path(path))

    @pytest.mark.parametrize(
        "path",
        [
            "_partial.md",
            ".hidden.md",
            "guides/setup.md.backup",
            "guides/setup.md.bak",
            "guides/setup.md~",
            "guides/setup.md.orig",
            "_private/secret.md",
            "guides/.drafts/x.md",
            "node_modules/pkg/readme.md",
            "image.png",
            "_category_.json",
        ],
    )
    def test_not_docs(self, path: str) -> None:
        assert not is_doc_file(Path(path))


class TestLoadFolder:
    def test_loads_docs_with_modules(self, tmp_path: Path) -> None:
        write(tmp_path, "intro.md", "# Welcome\n\nHello.")
        write(tmp_path, "01-basics/_category_.json", '{"label": "Module 1: Basics"}')
        write(tmp_path, "01-basics/02-nodes.md", "---\ntitle: Nodes\n---\nText.")
        write(tmp_path, "01-basics/deeper/topic.md", "# Deep topic")
        write(tmp_path, "module-2-sim/physics.mdx", "# Physics")
        write(tmp_path, "broken-cat/_category_.json", "{not json")
        write(tmp_path, "broken-cat/page.md", "# Page")
        write(tmp_path, "01-basics/02-nodes.md.backup", "# Old copy")
        write(tmp_path, "_private/secret.md", "# Secret")
        write(tmp_path, "01-basics/_snippet.mdx", "# Partial")
        write(tmp_path, "drafts/wip.md", "---\ndraft: true\n---\n# WIP")
        write(tmp_path, "img/diagram.png", "not markdown")

        documents = load_folder(tmp_path, BASE)

        by_path = {document.source_path: document for document in documents}
        assert [document.source_path for document in documents] == sorted(by_path)
        assert set(by_path) == {
            "01-basics/02-nodes.md",
            "01-basics/deeper/topic.md",
            "broken-cat/page.md",
            "intro.md",
            "module-2-sim/physics.mdx",
        }
        assert by_path["intro.md"].module is None
        assert by_path["01-basics/02-nodes.md"].module == "Module 1: Basics"
        assert by_path["01-basics/deeper/topic.md"].module == "Module 1: Basics"
        assert by_path["module-2-sim/physics.mdx"].module == "Module 2 Sim"
        assert by_path["broken-cat/page.md"].module == "Broken Cat"
        assert by_path["01-basics/02-nodes.md"].page_url == f"{BASE}/basics/nodes"
        assert by_path["01-basics/deeper/topic.md"].route == "/basics/deeper/topic"

    def test_reads_crlf_and_bom_files(self, tmp_path: Path) -> None:
        (tmp_path / "win.md").write_bytes("\ufeff---\r\ntitle: Win\r\n---\r\nA\r\nB\r\n".encode())
        [document] = load_folder(tmp_path, BASE)
        assert document.title == "Win"
        assert document.body == "A\nB"

    def test_malformed_file_names_the_file(self, tmp_path: Path) -> None:
        write(tmp_path, "mod/bad.md", "---\ntitle: : :\n  - x\n---\n")
        with pytest.raises(LoaderError, match=r"mod/bad\.md"):
            load_folder(tmp_path, BASE)

    def test_undecodable_file_names_the_file(self, tmp_path: Path) -> None:
        (tmp_path / "latin1.md").write_bytes(b"caf\xe9")
        with pytest.raises(LoaderError, match=r"latin1\.md"):
            load_folder(tmp_path, BASE)


@pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"benchmark corpus not found at {CORPUS} (fresh clone)"
)
class TestTextbookCorpus:
    def test_loads_every_chapter_with_docusaurus_urls(self) -> None:
        documents = load_folder(CORPUS, BASE)

        assert len(documents) == 18
        urls = {document.source_path: document.page_url for document in documents}
        assert urls["module-1-ros2/nodes-topics-services.md"] == (
            "https://example.org/book/module-1-ros2/nodes-topics-services"
        )
        assert urls["intro.md"] == "https://example.org/book/intro"
        pattern = re.compile(r"^https://example\.org/book(/[a-z0-9][a-z0-9-]*)+$")
        for url in urls.values():
            assert pattern.match(url), url
        assert len(set(urls.values())) == len(urls)
        for document in documents:
            assert document.title
            assert document.body
            if "/" in document.source_path:
                assert document.module is not None
                assert document.module.startswith(("Module", "Hardware"))
