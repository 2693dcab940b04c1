"""The report of an ``adept bench`` root: tables with 95 % CIs, rliable aggregates, figures, one
HTML page.

A bench root holds ``bench.json`` (the spec and every cell's state) and one ordinary run
directory per cell, ``ROOT/<dataset>/<variant>/<agent>/seed<k>/``. A cell counts as finished
when its ``summary.json`` exists: the run directory, not bench.json's copy, is the source of the
scores. The modules, in the order a report is made: :mod:`~adept.report.load` reads the root,
:mod:`~adept.report.stats` and :mod:`~adept.report.analysis` compute the estimates and verdicts,
:mod:`~adept.report.figures` (with :mod:`~adept.report.plots`) draws, :mod:`~adept.report.document`
lays the report out, :mod:`~adept.report.render` writes it, and :mod:`~adept.report.command` is
``adept report``.
"""
