"""Real ML work for jobdb to schedule: the seed documents' pipelines on PyTorch.

Everything here runs inside a job's own process (``task: tasks.kws:select``);
jobdb itself never imports this package, so the CLI and the dispatcher stay
free of torch. All data is synthesised locally from a seed (``tasks.synth``,
``tasks.corpus``): nothing is downloaded.

Modules, by layer:

* data: ``synth`` (formant speech), ``corpus`` (languages, lexicons, speakers),
  ``wav``, ``shards`` (tar shards + manifest + reader), ``loaders``;
* features and models: ``features`` (torchaudio), ``kmeans``, ``lm`` (LSTM),
  ``encoder`` (keyword embeddings), ``abx``, ``selection``, ``classifier``;
* training: ``seeding``, ``training`` (precision, accumulation, checkpoints);
* job entry points: ``kws`` and ``infquery`` (``fn(params, ctx) -> metrics``),
  ``modelroot`` (builds the InfQuery model tree).
"""
