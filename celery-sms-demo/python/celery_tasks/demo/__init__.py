"""Small tasks with results, for result-backend interop tests (not in the blog)."""
