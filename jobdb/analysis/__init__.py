"""Reading what jobs produced: results tables, best-of, plots and the HTML report.

Pure parts (no I/O): :mod:`where` parses ``--where`` conditions,
:mod:`table` shapes rows into result tables, :mod:`plotdata` builds what a
plot shows, :mod:`html` renders the report. Read-only queries live in
:mod:`fetch` (and :mod:`report` gathers an experiment); :mod:`plotting`
draws with matplotlib, imported only when a plot is drawn.
"""
