"""Container engines behind the Executor protocol (``api.py``); the only package that imports the docker SDK."""
