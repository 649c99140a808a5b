"""Content keys: contexts and .dockerignore, digests, input manifests, keys, parallel hashing, manifests."""
