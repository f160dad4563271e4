"""The Slurm executor (DESIGN §4, ``dispatch --executor slurm``).

Split the way submitit splits it: pure functions that decide (:mod:`.options`
reads the spec's settings, :mod:`.render` writes sbatch scripts, :mod:`.parse`
reads what Slurm prints and maps its states to verdicts), one thin place that
runs Slurm's commands (:mod:`.commands`), and the effects built on them:
submitting (:mod:`.submit`), watching (:mod:`.poll`) and stopping
(:mod:`.stop`). State changes go through :mod:`jobdb.queries` like every
other executor's.

Submission protocol, so that a dispatcher killed at any instant never makes
a job run twice: claim (ready → queued, committed) → ``sbatch --hold``
(Slurm cannot start it) → record the Slurm id on the job (committed) →
``scontrol release``. A held Slurm job nobody recorded never ran and is
cancelled by the next pass once its submitter is dead; a recorded one that
is still held is released. Jobs submitted behind their parents' Slurm jobs
(``--slurm-dependencies``, ``afterok``) follow the same protocol.
"""
