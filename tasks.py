"""`invoke` in this repository: the tasks of the installed `imagematrix` command (src/imagematrix/tasks.py)."""

from invoke import Collection

from imagematrix.cli import tasks

ns = Collection.from_module(tasks)
