"""The books one deployment serves: each with its own pages, settings and readers' data."""
