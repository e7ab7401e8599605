"""`python -m samcell_rt.cli`: the same program as the `samcell-rt` console script."""

from . import main

main()
