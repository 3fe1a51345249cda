"""`python -m prefect_braket.endpoint`: the local Braket endpoint's command line."""

from prefect_braket.endpoint import main

main()
