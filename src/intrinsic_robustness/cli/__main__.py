"""``python -m intrinsic_robustness.cli``: the ``irob`` command, also for ``torchrun -m intrinsic_robustness.cli``."""

from intrinsic_robustness.cli import run

run()
