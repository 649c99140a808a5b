"""OCI annotations describing where an image came from: time, revision and source (from git)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from orchestrator.workspace.vcs import git_value

CREATED = "org.opencontainers.image.created"
REVISION = "org.opencontainers.image.revision"
SOURCE = "org.opencontainers.image.source"
BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


def workspace_labels(root: Path) -> dict[str, str]:
    """created (SOURCE_DATE_EPOCH, else the commit time), revision and source, where known."""
    labels: dict[str, str] = {}
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        labels[CREATED] = dt.datetime.fromtimestamp(int(epoch), dt.UTC).isoformat().replace("+00:00", "Z")
    elif (committed := git_value(root, "log", "-1", "--format=%cI")) is not None:
        labels[CREATED] = committed
    if (revision := git_value(root, "rev-parse", "HEAD")) is not None:
        labels[REVISION] = revision
    if (remote := git_value(root, "remote", "get-url", "origin")) is not None:
        labels[SOURCE] = remote
    return labels
