"""The `openstack xfer ...` commands: an OpenStack CLI plugin (entry point group
`openstack.cli.extension`, commands in `openstack.xfer.v1`)."""
