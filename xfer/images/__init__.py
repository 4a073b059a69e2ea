"""Glance image copies: the flow that reads a source image with its user's rights, copies its
data Swift to Swift through the engine, and registers it as a new image in the target Glance."""
