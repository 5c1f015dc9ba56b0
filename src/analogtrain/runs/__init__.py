"""One run system for every command (``train``, ``reproduce``, ``sweep``).

* :mod:`.store` -- run folders: creating them, refusing to overwrite a run, what ``--resume``
  needs, atomic writes, the machine a run was made on;
* :mod:`.results` -- :class:`~analogtrain.runs.results.RunResult`, the typed and versioned
  ``results.json`` of a run, which every report reads;
* :mod:`.checkpoint` -- the checkpoint file format (a state dict in one safetensors file).
"""
