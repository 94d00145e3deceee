"""The light pieces both stages share: logging, devices, command-line options, the Hugging
Face model loader, the challenge's dataset layout and the task itself (labels, ids)."""
