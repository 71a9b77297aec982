"""Answering-machine detection corpus and accuracy benchmark (issue 4)."""
