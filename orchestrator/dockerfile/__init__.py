"""Dockerfiles: the lexer and analysis (stages, references, ARGs), and the rewrites (rebinding, labels)."""
