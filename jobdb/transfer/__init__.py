"""Moving data between databases and files, apart from the CLI that drives it.

- :mod:`~jobdb.transfer.copy`: a whole database into another one (``jobdb db copy``).
- :mod:`~jobdb.transfer.jsonl`: the experiment file format, pure.
- :mod:`~jobdb.transfer.export` / :mod:`~jobdb.transfer.importing`: one
  experiment out of a database into that format, and back into any database.
- :mod:`~jobdb.transfer.tables`: which tables move and how their rows stay exact.
"""
