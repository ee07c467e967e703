"""The question file: what each line may say, and the message a malformed line gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bookchat.content.loader import load_folder
from bookchat.evaluation.questions import Question, QuestionFileError, load_questions

REPO = Path(__file__).parents[2]
QUESTIONS = REPO / "benchmarks" / "questions"
CORPUS = REPO.parent / "shared" / "corpus"


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class TestValidLines:
    def test_each_kind_of_question(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            '{"id": "q1", "question": "What is a topic?", "pages": ["a.md", "b.md"],'
            ' "kind": "definition", "section": "Topics"}',
            "",
            '{"id": "off", "question": "What is the capital of France?", "pages": []}',
            '{"id": 7, "question": "Best lasagna?", "refuse": true}',
            '{"id": "f1", "history": ["What is a topic?", "And a service?"],'
            ' "question": "And an action?", "pages": ["a.md"]}',
            '{"id": "t1", "history": ["What is a topic?"], "question": "Who painted it?",'
            ' "pages": [], "refuse": true}',
            '{"id": "s1", "question": "Why?", "selection": "Because.", "selection_answers": true}',
            '{"id": "s2", "question": "How?", "selection": "Because.",'
            ' "selection_answers": false, "refuse": true, "pages": []}',
        )

        questions = load_questions(path)

        assert questions[0] == Question(
            id="q1",
            question="What is a topic?",
            pages=("a.md", "b.md"),
            kind="definition",
            section="Topics",
        )
        assert [(q.id, q.category, q.refuse) for q in questions] == [
            ("q1", "answerable", False),
            ("off", "off_topic", True),
            ("7", "off_topic", True),
            ("f1", "follow_up", False),
            ("t1", "topic_switch", True),
            ("s1", "selection_answers", False),
            ("s2", "selection_refuses", True),
        ]
        assert questions[3].history == ("What is a topic?", "And a service?")
        assert questions[5].selection == "Because."
        # Retrieval alone is scored on first questions that name pages.
        assert [q.id for q in questions if q.ranked] == ["q1"]

    @pytest.mark.parametrize("name", ["sample-book.jsonl", "textbook-a.jsonl"])
    def test_the_projects_question_sets_load(self, name: str) -> None:
        questions = load_questions(QUESTIONS / name)
        categories = {q.category for q in questions}
        assert categories == {
            "answerable",
            "follow_up",
            "off_topic",
            "topic_switch",
            "selection_answers",
            "selection_refuses",
        }

    def test_every_expected_page_of_the_sample_set_is_in_the_sample_book(self) -> None:
        pages = {d.source_path for d in load_folder(REPO / "sample_book", "https://e.org")}
        named = {p for q in load_questions(QUESTIONS / "sample-book.jsonl") for p in q.pages}
        assert named
        assert named <= pages

    def test_every_expected_page_of_the_textbook_set_is_in_textbook_a(self) -> None:
        if not (CORPUS / "textbook-a").is_dir():
            pytest.skip("../shared/corpus/textbook-a is not here (a fresh clone has no corpus)")
        pages = {d.source_path for d in load_folder(CORPUS / "textbook-a", "https://e.org")}
        named = {p for q in load_questions(QUESTIONS / "textbook-a.jsonl") for p in q.pages}
        assert named <= pages


class TestMalformedLines:
    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("not json", "not JSON"),
            ('["q1", "What?"]', "not a JSON object"),
            ('{"id": "q1"}', "question: Field required"),
            ('{"id": "q1", "question": "  ", "pages": []}', "question: must not be empty"),
            ('{"id": "q1", "question": "What?"}', '"pages" is missing'),
            ('{"id": "q1", "question": "What?", "pages": "a.md"}', "pages: Input should be"),
            ('{"id": "q1", "question": "What?", "pages": [], "sections": "x"}', "unknown field"),
            (
                '{"id": "q1", "question": "What?", "pages": ["a.md"], "refuse": true}',
                "a question to refuse has no pages",
            ),
            (
                '{"id": "q1", "question": "What?", "pages": [], "refuse": false}',
                "names its pages",
            ),
            ('{"id": "q1", "question": "What?", "pages": [], "history": "x"}', "history"),
            (
                '{"id": "q1", "question": "What?", "pages": [], "history": [" "]}',
                "history holds an empty question",
            ),
            (
                '{"id": "q1", "question": "What?", "selection": "Text."}',
                '"selection_answers"',
            ),
            (
                '{"id": "q1", "question": "What?", "selection": "Text.",'
                ' "selection_answers": true, "pages": ["a.md"]}',
                "selection alone: no pages",
            ),
            (
                '{"id": "q1", "question": "What?", "selection": "Text.",'
                ' "selection_answers": true, "refuse": true}',
                "contradicts",
            ),
            (
                '{"id": "q1", "question": "What?", "pages": [], "selection_answers": false}',
                'needs a "selection"',
            ),
            (
                '{"id": "q1", "question": "What?", "pages": [], "refuse": "yes"}',
                "refuse: Input should be a valid boolean",
            ),
        ],
    )
    def test_the_message_names_the_line_and_the_problem(
        self, tmp_path: Path, line: str, message: str
    ) -> None:
        good = json.dumps({"id": "q0", "question": "Fine?", "pages": ["a.md"]})
        path = write(tmp_path, good, "", line)

        with pytest.raises(QuestionFileError) as raised:
            load_questions(path)

        assert str(raised.value).startswith(f"{path}:3: ")
        assert message in str(raised.value)

    def test_a_repeated_id_names_both_lines(self, tmp_path: Path) -> None:
        line = json.dumps({"id": "q1", "question": "Fine?", "pages": ["a.md"]})
        path = write(tmp_path, line, line)

        with pytest.raises(QuestionFileError, match=r":2: id 'q1' is already used on line 1"):
            load_questions(path)
