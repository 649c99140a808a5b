"""OCI registries: the client (the only HTTP to registries), the registry cache, publishing, pins."""
