"""The command line (typer): the only place that prints, colours and exits."""
