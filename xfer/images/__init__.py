"""The image feature, whole: the flow that copies a Glance image with its user's rights (its
data Swift to Swift through the engine, registered as a new image in the target Glance), what
a copy carries over, where an image's bytes are and how they are read, the Glance-compatible
read endpoint's logic and metrics, the cleanup of what a failed copy made, and their records."""
