"""Running jobs: from a claimed job to a recorded verdict.

Pure parts (no I/O): :mod:`command` renders argv, :mod:`best` picks a
best-of winner, :mod:`slots` hands out GPUs and CPU slots. Effects:
:mod:`launch` reads what a job needs from the database and lays out its
files, :mod:`child` starts and reaps program processes, :mod:`engine` is the
supervising loop that ``jobdb run``, ``jobdb dispatch --executor local`` and
``jobdb worker`` share.
"""
