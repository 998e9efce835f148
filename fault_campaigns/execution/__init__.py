"""Stage 2, execution: simulator workers, local and Dask executors, the software-level injector, replay."""
