"""napari plugin (extra `napari`): a dock widget that segments image layers with samcell-rt, a reader
for samcell-rt outputs, and the demo image as sample data. Declared in `napari.yaml` (npe2)."""
