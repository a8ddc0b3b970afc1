"""``python -m convscope ...`` and ``torchrun --nproc_per_node N -m convscope ...``: the command line."""

from .cli import main

if __name__ == "__main__":
    main()
