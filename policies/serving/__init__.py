"""Policies across process boundaries: serve any ``Policy``, and use a served one as a ``Policy``.

- ``wire``: msgpack with numpy arrays, byte-compatible with openpi's ``msgpack_numpy``.
- ``sessions``: one policy state per client episode, bounded, with idle expiry.
- ``http_server`` / ``http_client``: this suite's HTTP protocol (``PolicyServer``, ``RemotePolicy``).
- ``openpi_server`` / ``openpi_client``: openpi's websocket policy protocol both ways
  (``OpenPIServer`` for ``openpi_client.WebsocketClientPolicy``; ``OpenPIPolicy`` for any
  openpi-protocol server, e.g. pi0 served by openpi).

``python -m policies.remote serve --policy module:factory [--protocol http|openpi]`` runs a server.
Servers bind loopback (127.0.0.1) by default; bind another address only on a network you trust
(there is no authentication).
"""
