"""``orchestrator init``: adopt a tree of Dockerfiles by writing a WORKSPACE and BUILD files.

:func:`plan` gives every Dockerfile of the tree one ``image()`` and checks the result the way the
loader will, before anything is written; every problem it finds is raised at once as
:class:`InitProblems`. :func:`apply` writes the files, loads the workspace with the normal loader
and, should that still fail, puts every file back as it was.

The modules, in the order a plan uses them:

- ``scan``: finding the Dockerfiles and reading from each what the plan needs;
- ``mapping``: the mapping file (``images.toml``);
- ``naming``: valid repositories and tags, target names and repositories made from paths;
- ``assign``: each Dockerfile's name, repository and tags (mapping, else LABELs, else the path);
- ``inference``: the Dockerfile a reference names through the tree (``repo:a-b`` -> ``repo/.../a/b/``);
- ``references``: tags other Dockerfiles ask for, references produced twice, near-miss hints;
- ``render``: the text of BUILD and WORKSPACE files, and the header that marks them generated;
- ``writing``: what happens to each file (``--force``), writing, and rollback;
- ``planning``: :func:`plan`, which runs the steps and checks the whole tree;
- ``planned`` and ``problems``: the values these pass around and return.
"""

from orchestrator.adopt.planned import FileAction, InitPlan, PlannedFile, PlannedImage
from orchestrator.adopt.planning import plan
from orchestrator.adopt.problems import InitProblems, OutOfDateBuildFiles, Problem
from orchestrator.adopt.render import GENERATED_MARK
from orchestrator.adopt.writing import apply

__all__ = ["GENERATED_MARK", "FileAction", "InitPlan", "InitProblems", "PlannedFile", "PlannedImage", "Problem"]
__all__ += ["OutOfDateBuildFiles", "apply", "plan"]
