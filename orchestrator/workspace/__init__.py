"""The workspace on disk: its root, BUILD evaluation (``buildfile/``), the load cache, images.lock, changed files."""
