"""Security: TLS and peer identity (``tls``), client authorization (``auth``), refused peer
messages (``refusals``), a development CA (``certs``). Start with :mod:`dengine.security.tls`."""
