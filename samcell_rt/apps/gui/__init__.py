"""Local web GUI for biologists (extra `gui`): drop images, see cells, read the numbers."""
