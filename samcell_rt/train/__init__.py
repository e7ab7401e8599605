"""The bundled trainer (extra `train`): fine-tune SAMCell on annotated images."""
