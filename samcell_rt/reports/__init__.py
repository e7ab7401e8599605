"""What is derived from a finished run's output folder: timelines, plate maps, plots and `report.html`.

Read from the folder's summary rows (and run.json, overlays, cells tables), never from in-memory
results, so a resumed run and `samcell-rt report` on an old folder give the same outputs.
The batch driver (`runs/`) never imports this package; its callers run it after a run.
"""
