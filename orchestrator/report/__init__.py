"""Build reports: the console display, the JSON report, the plan as JSON or a job matrix, JUnit, the step summary."""
