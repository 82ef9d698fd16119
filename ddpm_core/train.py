"""The training command: ``python -m ddpm_core.train ...``, or ``torchrun ... -m ddpm_core.train ...``.

Only the command lives here; it is built in :mod:`ddpm_core.training.cli` and trains with
:func:`ddpm_core.train`. Keeping the two apart lets ``python -m`` run a module that the package
has not imported already (Python warns otherwise), and keeps the name ``ddpm_core.train`` for the
function.
"""

import contextlib

if __name__ != "__main__":
    raise ImportError("ddpm_core.train is the training command (python -m ddpm_core.train --help); "
                      "the trainer is `import ddpm_core as dc; dc.train(...)` (package ddpm_core.training)")

from ddpm_core.training.cli import main  # noqa: E402

with contextlib.suppress(KeyboardInterrupt):
    main()
