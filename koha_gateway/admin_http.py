"""The optional HTTP admin listener (``--admin-port``): ``/metrics``, ``/health``, ``/ready``.

* ``/metrics`` -- Prometheus text format (:mod:`koha_gateway.metrics`);
* ``/health`` -- 200 while the process answers;
* ``/ready`` -- 200 when the database answers a cheap query within :data:`READY_TIMEOUT`
  seconds, 503 (with the reason) otherwise.

It listens on 127.0.0.1 unless ``--admin-interface`` says otherwise: nothing here needs a
password, and nothing here shows patron data. With ``--workers`` only the master process
serves it (the numbers are the master's).
"""

from __future__ import annotations

from prometheus_client.twisted import MetricsResource
from twisted.application.internet import TCPServer
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

__all__ = ["READY_TIMEOUT", "admin_service", "install"]

log = Logger(namespace="koha_gateway.admin_http")

#: Seconds /ready waits for the database.
READY_TIMEOUT = 3.0


def _ping(txn):
    return txn.scalar("SELECT 1")


class _Text(Resource):
    isLeaf = True

    def _answer(self, request, status: int, text: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return (text + "\n").encode()


class Health(_Text):
    def render_GET(self, request):  # noqa: N802 (twisted.web interface)
        return self._answer(request, 200, "ok")


class Ready(_Text):
    """Ready when one read-only transaction with ``SELECT 1`` ends within the timeout."""

    def __init__(self, gateway, reactor, timeout: float = READY_TIMEOUT):
        super().__init__()
        self.gateway = gateway
        self.reactor = reactor
        self.timeout = timeout

    def render_GET(self, request):  # noqa: N802
        d = self.gateway.db.run(_ping, readonly=True)
        d.addTimeout(self.timeout, self.reactor)

        def ready(_):
            return 200, "ready"

        def not_ready(failure):
            if failure.check(defer.TimeoutError):
                reason = f"the database did not answer within {self.timeout:g}s"
            else:
                reason = f"the database does not answer: {failure.getErrorMessage()}"
            return 503, f"not ready: {reason}"

        def write(result):
            status, text = result
            if not request.finished and not getattr(request, "_disconnected", False):
                request.write(self._answer(request, status, text))
                request.finish()

        d.addCallbacks(ready, not_ready).addCallback(write)
        d.addErrback(lambda f: log.failure("/ready", f))
        return NOT_DONE_YET


class Root(Resource):
    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"koha-gateway admin: /metrics /health /ready\n"


def admin_site(gateway, metrics, reactor) -> Site:
    root = Root()
    root.putChild(b"", root)
    root.putChild(b"metrics", MetricsResource(registry=metrics.registry))
    root.putChild(b"health", Health())
    root.putChild(b"ready", Ready(gateway, reactor))
    site = Site(root)
    site.noisy = False
    site.displayTracebacks = False
    return site


def admin_service(gateway, metrics, port: int, interface: str, reactor=None) -> TCPServer:
    """The twistd service of the admin listener (a child of the gateway's service)."""
    if reactor is None:
        from twisted.internet import reactor
    site = admin_site(gateway, metrics, reactor)
    site.log = lambda request: None  # no access log: a scraper would fill the SIP log
    service = TCPServer(port, site, interface=interface)
    service.setName(f"admin-http:{interface}:{port}")
    return service


def install(service, port: int, interface: str, reactor=None):
    """Turn metrics on and add the admin listener to the gateway's ``service``.

    The LDAP directory of the authenticator is wrapped to be timed; the listeners are read
    when ``/metrics`` is scraped (open connections, certificate expiry).
    """
    from koha_gateway import metrics

    gateway = service.gateway
    m = metrics.enable(gateway, service.listeners)
    auth = gateway.auth
    if getattr(auth, "ldap", None) is not None:
        auth.ldap = m.instrument_ldap(auth.ldap)
    admin_service(gateway, m, port, interface, reactor).setServiceParent(service)
    log.info("admin listener on http://{interface}:{port}/", interface=interface, port=port)
    return m
