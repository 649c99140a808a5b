"""Pure values every layer shares: labels, image references, platforms, the DAG, the frozen models."""
