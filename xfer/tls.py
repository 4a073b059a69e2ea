"""TLS, both ways: the one client context every connection xfer opens verifies servers with
(Keystone, Swift and Glance through aiohttp, and the bulk data path, clients/bulk_http.py),
and the server context `xfer serve` listens with when it terminates TLS itself.

Verification is never turned off: there is no "insecure" setting. A private CA is trusted by
naming its PEM bundle in XFER_CA_FILE, which then replaces the system's CAs (the way
keystoneauth's `cafile` and requests' `verify=PATH` do); hostnames are checked against the
certificate (an IP address against its IP SANs) on every connection.
"""

from __future__ import annotations

import functools
import ssl

from xfer.errors import ConfigError
from xfer.settings import Settings, env_name


def client_context(settings: Settings) -> ssl.SSLContext:
    """The context every https connection xfer opens uses; a ConfigError naming the setting
    when the CA bundle cannot be read. Made once per bundle: loading the system's CAs costs
    tens of milliseconds, and a context is safe to share between connections."""
    return _client_context(settings.ca_file)


@functools.cache
def _client_context(ca_file: str) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{env_name('ca_file')}={ca_file}: cannot load it as a PEM CA "
                          f"bundle ({_reason(exc)})") from None
    if ca_file and not context.get_ca_certs():
        raise ConfigError(f"{env_name('ca_file')}={ca_file} holds no CA certificate")
    return context


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context `xfer serve` listens with (None: plain http, e.g. behind a TLS proxy); a
    ConfigError naming the settings when the certificate or its key cannot be used."""
    if not settings.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            f"{env_name('tls_cert_file')}={settings.tls_cert_file} and "
            f"{env_name('tls_key_file')}={settings.tls_key_file}: cannot load the "
            f"certificate chain and its key ({_reason(exc)})") from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
