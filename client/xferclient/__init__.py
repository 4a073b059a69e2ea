"""python-xferclient: xfer's Python API (Client) and its `openstack xfer ...` commands
(xferclient.osc)."""

from xferclient.client import SERVICE_TYPE, TERMINAL_STATES, Client
from xferclient.exceptions import ApiError, ClientError

__all__ = ["SERVICE_TYPE", "TERMINAL_STATES", "ApiError", "Client", "ClientError"]
