"""The instructor's commands: grade (sandboxed), release, gradescope, expected, docs, site and figures (the book)."""
