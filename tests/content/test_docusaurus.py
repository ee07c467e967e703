"""Docusaurus routing: heading anchors, doc routes and page URLs."""

from __future__ import annotations

from typing import Any

import pytest

from bookchat.content.docusaurus import (
    HeadingSlugger,
    doc_route,
    page_url,
    slugify_heading,
    split_heading_id,
    strip_number_prefix,
)


class TestSlugifyHeading:
    @pytest.mark.parametrize(
        ("heading", "anchor"),
        [
            ("Nodes: The Building Blocks", "nodes-the-building-blocks"),
            ("Topics (Pub/Sub)", "topics-pubsub"),
            ("Données multimodales: vision", "données-multimodales-vision"),
            ("`rclpy` API", "rclpy-api"),
            ("**Bold** and *italic* words", "bold-and-italic-words"),
            ("See [the docs](https://example.org/x) now", "see-the-docs-now"),
            ("Install <code>ros2</code> here", "install-ros2-here"),
            ("snake_case names", "snake_case-names"),
            ("Two  spaces", "two--spaces"),
            ("C++ & C#", "c--c"),
            ("🤖 Module 1: ROS 2 - The Nervous System", "-module-1-ros-2---the-nervous-system"),
            ("Phase 3: Entry ($16,000-$30,000)", "phase-3-entry-16000-30000"),
        ],
    )
    def test_matches_github_slugger(self, heading: str, anchor: str) -> None:
        assert slugify_heading(heading) == anchor

    def test_keeps_non_latin_letters(self) -> None:
        assert slugify_heading("روبوٹ کا تعارف") == "روبوٹ-کا-تعارف"
        assert slugify_heading("हिन्दी पाठ") == "हिन्दी-पाठ"


class TestHeadingSlugger:
    def test_duplicates_get_numbered(self) -> None:
        slugger = HeadingSlugger()
        anchors = [slugger.slug(text) for text in ["Example", "Example", "Example", "Setup"]]
        assert anchors == ["example", "example-1", "example-2", "setup"]

    def test_a_heading_that_looks_numbered_does_not_collide(self) -> None:
        slugger = HeadingSlugger()
        anchors = [slugger.slug(text) for text in ["Example", "Example", "Example 1"]]
        assert anchors == ["example", "example-1", "example-1-1"]

    def test_slugs_are_per_document(self) -> None:
        assert HeadingSlugger().slug("Example") == HeadingSlugger().slug("Example") == "example"

    def test_explicit_id_wins_and_leaves_the_text(self) -> None:
        slugger = HeadingSlugger()
        assert slugger.heading("Quality of Service {#qos}") == ("Quality of Service", "qos")
        assert slugger.heading("**Bold** heading") == ("Bold heading", "bold-heading")

    def test_explicit_ids_do_not_count_as_occurrences(self) -> None:
        slugger = HeadingSlugger()
        assert slugger.slug("Intro {#example}") == "example"
        assert slugger.slug("Example") == "example"

    def test_split_heading_id(self) -> None:
        assert split_heading_id("Setup {#setup-guide}") == ("Setup", "setup-guide")
        assert split_heading_id("No id here") == ("No id here", None)


class TestNumberPrefix:
    @pytest.mark.parametrize(
        ("segment", "stripped"),
        [
            ("01-intro", "intro"),
            ("2. Setup", "Setup"),
            ("3_basics", "basics"),
            ("10 - Advanced", "Advanced"),
            ("2021", "2021"),
            ("intro", "intro"),
            ("2021-01-31-release", "2021-01-31-release"),
            ("1.2-notes", "1.2-notes"),
            ("module-1-ros2", "module-1-ros2"),
        ],
    )
    def test_strip(self, segment: str, stripped: str) -> None:
        assert strip_number_prefix(segment) == stripped


class TestDocRoute:
    @pytest.mark.parametrize(
        ("source_path", "frontmatter", "route"),
        [
            ("intro.md", {}, "/intro"),
            ("module-1-ros2/nodes-topics-services.md", {}, "/module-1-ros2/nodes-topics-services"),
            ("01-basics/02-first-steps.mdx", {}, "/basics/first-steps"),
            ("2. Setup/1. Install.md", {}, "/Setup/Install"),
            ("2021/notes.md", {}, "/2021/notes"),
            ("Guides/Getting-Started.md", {}, "/Guides/Getting-Started"),
            ("index.md", {}, "/"),
            ("README.md", {}, "/"),
            ("guides/index.mdx", {}, "/guides"),
            ("guides/readme.md", {}, "/guides"),
            ("guides/guides.md", {}, "/guides"),
            ("01-guides/01-guides.md", {}, "/guides"),
            ("a/b/index.md", {}, "/a/b"),
        ],
    )
    def test_file_based_routes(
        self, source_path: str, frontmatter: dict[str, Any], route: str
    ) -> None:
        assert doc_route(source_path, frontmatter) == route

    def test_id_replaces_the_last_segment(self) -> None:
        assert doc_route("01-guides/02-setup.md", {"id": "install"}) == "/guides/install"
        assert doc_route("setup.md", {"id": "install"}) == "/install"

    def test_absolute_slug_is_the_whole_route(self) -> None:
        assert doc_route("guides/setup.md", {"slug": "/start/here/"}) == "/start/here"
        assert doc_route("guides/intro.md", {"slug": "/"}) == "/"

    def test_relative_slug_is_resolved_against_the_folder(self) -> None:
        assert doc_route("01-guides/setup.md", {"slug": "install"}) == "/guides/install"
        assert doc_route("guides/setup.md", {"slug": "../install"}) == "/install"
        assert doc_route("setup.md", {"slug": "start"}) == "/start"

    def test_slug_beats_id_and_index(self) -> None:
        frontmatter = {"id": "ignored", "slug": "/chosen"}
        assert doc_route("guides/index.md", frontmatter) == "/chosen"

    def test_case_is_kept(self) -> None:
        assert doc_route("API/Reference.md", {}) == "/API/Reference"


class TestPageUrl:
    @pytest.mark.parametrize(
        ("base", "route", "url"),
        [
            ("https://x.org/book/", "/a/b", "https://x.org/book/a/b"),
            ("https://x.org/book", "/a/b", "https://x.org/book/a/b"),
            ("https://x.org/book", "/", "https://x.org/book/"),
            ("https://x.org", "/intro", "https://x.org/intro"),
        ],
    )
    def test_joins_without_double_slashes(self, base: str, route: str, url: str) -> None:
        assert page_url(base, route) == url

    def test_appends_the_anchor(self) -> None:
        url = page_url("https://x.org/book/", "/m1/nodes", "topics-pubsub")
        assert url == "https://x.org/book/m1/nodes#topics-pubsub"
