"""`bookchat eval`: a question set asked of a book in a scratch store, scored twice.

- `questions.py`: the JSONL question file and its checks;
- `ranking.py`: retrieval alone (hit@1, hit@k, MRR per retrieval mode);
- `checks.py`: what one answer shows the reader (refusal, citations, selection isolation);
- `answers.py`: every question asked through the real chat path, then checked;
- `report.py`: the totals, the table and the JSON;
- `run.py`: the scratch store, the book ingested into it, and the two passes.
"""
