"""Reading WORKSPACE, BUILD and .star files (Starlark)."""
