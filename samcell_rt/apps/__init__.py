"""Programs built on the runtime: the HTTP service, its Python client and the local GUI."""
