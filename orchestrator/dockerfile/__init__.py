"""Dockerfiles: the lexer, the analysis (stages, references, ARGs), the context reads, and the rewrites.

The package's public names, from its four modules:

    lexer.py     decode, read, syntax_directive  the text, read the way BuildKit reads it
    analysis.py  analyze, analyze_image, ...     stages, the images they build on, LABEL and USER
    reads.py     context_reads, onbuild_reads    what a build reads from its context (BuildKit's parser),
                 run_mounts                      and the RUN --mount types of the needed stages
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
from orchestrator.dockerfile.lexer import decode, read, syntax_directive
from orchestrator.dockerfile.reads import ContextReads, Mount, Read, context_reads, onbuild_reads, run_mounts
from orchestrator.dockerfile.rewrite import rebind, with_label_instruction

__all__ = [
    "ContextReads",
    "DockerfileInfo",
    "ImageRef",
    "Mount",
    "Read",
    "Stage",
    "StageConfig",
    "analyze",
    "analyze_image",
    "context_reads",
    "decode",
    "onbuild_reads",
    "read",
    "rebind",
    "run_mounts",
    "stage_configs",
    "syntax_directive",
    "with_label_instruction",
]
