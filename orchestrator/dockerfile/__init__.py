"""Dockerfiles: the lexer, the analysis (stages, references, ARGs), and the rewrites (rebind, labels).

The package's public names, from its three modules:

    lexer.py     decode, read                    the text, read the way BuildKit reads it
    analysis.py  analyze, analyze_image, ...     stages, the images they build on, LABEL and USER
    rewrite.py   rebind, with_label_instruction  the copy of a Dockerfile that is sent to the engine
"""

from orchestrator.dockerfile.analysis import (
    DockerfileInfo,
    ImageRef,
    Stage,
    StageConfig,
    analyze,
    analyze_image,
    stage_configs,
)
from orchestrator.dockerfile.lexer import decode, read
from orchestrator.dockerfile.rewrite import rebind, with_label_instruction

__all__ = [
    "DockerfileInfo",
    "ImageRef",
    "Stage",
    "StageConfig",
    "analyze",
    "analyze_image",
    "decode",
    "read",
    "rebind",
    "stage_configs",
    "with_label_instruction",
]
