"""Sans-IO wire protocols: build requests and parse replies; no sockets here."""
