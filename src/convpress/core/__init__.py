"""The ground floor: what every other part of convpress shares, and nothing that depends on them.

* :mod:`.errors` -- the error types a user can cause (one line and exit code 2 in the CLI);
* :mod:`.registry` -- :class:`~.registry.Registry`, the one name table type (models, operators,
  coders, codec models, benchmarks, ...), filled by registration and read by the CLI;
* :mod:`.atomic` -- the one atomic write (temporary file renamed into place);
* :mod:`.digest` -- the one state digest and run fingerprint;
* :mod:`.statedict` -- the one check that a state dict fits a model;
* :mod:`.varint` and :mod:`.rans` -- LEB128 varints and the one front-end over constriction's rANS;
* :mod:`.container` and :mod:`.checkpoint` -- the checksummed container and training checkpoints;
* :mod:`.training` -- the one resumable training loop (seeds per step, checkpoints, resume, DDP, progress);
* :mod:`.timing` -- the one median-after-warm-up timer (benchmarks, latency, acceleration);
* :mod:`.distributed`, :mod:`.progress`, :mod:`.memory` -- DDP helpers, progress bars, memory checks.

Nothing here imports another convpress package: ``core`` is the bottom layer of the contract
in ``pyproject.toml`` (``lint-imports`` checks it).
"""

__all__: list[str] = []
