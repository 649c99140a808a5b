"""One build: plan (pure), requests, execution on an engine, records, promotion, the scheduler, the summary."""
