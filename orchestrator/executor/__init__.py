"""Running builds: the Executor protocol and its implementations (Docker Engine, fake)."""
