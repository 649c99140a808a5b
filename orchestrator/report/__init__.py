"""Build reports: console display, JSON."""
