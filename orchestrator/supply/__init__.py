"""The supply-chain step: what an image holds, read from its layers (pure: no engine, no store)."""
