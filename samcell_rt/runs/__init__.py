"""Many files: folder runs, resume manifest, plates, Dask and the writers shared by the CLI, GUI and service."""
