"""bookchat: chat with a Markdown/Docusaurus textbook."""

__version__ = "0.1.0"
