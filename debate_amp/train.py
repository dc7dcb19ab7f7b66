"""``python -m debate_amp.train RECIPE [key=value ...]``: the training entry point for ``accelerate launch``.

    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml -m debate_amp.train recipes/default.yaml

The same as ``debate-amp train RECIPE``.
"""

from __future__ import annotations

import sys

from debate_amp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
