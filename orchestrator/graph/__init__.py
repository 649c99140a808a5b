"""The target graph built from loaded targets, the queries over it, and its renderings."""
