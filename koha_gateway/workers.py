"""Several gateway processes sharing the listening sockets (``--workers N``).

One Python process runs the SIP2 path on one core. To use more cores the master process (the
one twistd started) creates the listening socket of every ``<service>`` of SIPconfig.xml
itself, then starts N-1 worker processes that inherit those sockets and serves connections
too. The kernel hands each new connection to whichever process accepts it first; a connection
stays with the process that accepted it for its whole life, so a kiosk's session state
(login, protocol version, error detection) never moves between processes.

Every process builds its own :class:`~koha_gateway.service.Gateway`: its own database pool and
its own authenticator (so a password verified in one process is verified again, once, by the
bcrypt pool of another). The database is what they share: SQLite serialises the writers of
all processes with its file lock, and the request journal's unique key makes a resent request
apply once even when the copies reach two processes.

Pieces, in the order the master and the workers use them:

* :func:`listening_sockets` (master, at start-up, before privileges are dropped): one bound,
  listening socket per ``ServiceConfig``, honouring its host, port and IPv4/IPv6 family;
* :func:`adopted_endpoint` (every process): the ``IStreamServerEndpoint`` listening on such a
  socket, used instead of the TCP endpoint a ``Listener`` would create;
* :func:`spawn_workers` (master): a :class:`WorkerSupervisor` service that starts the workers
  with the same command line plus the hidden option ``--adopt-listeners`` naming the inherited
  descriptors, forwards SIGHUP (reload) to them, stops them with SIGTERM when the master stops,
  and restarts a worker that died;
* :func:`adopt_listeners` (worker): reads ``--adopt-listeners`` back into endpoints;
* :func:`watch_master` (worker): stops the worker when the master is gone, even after a
  SIGKILL of the master (the worker's standard input is a pipe from the master; its end of
  file says the master exited).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence

from twisted.application.service import Service
from twisted.internet import defer, endpoints, fdesc, protocol
from twisted.internet.abstract import FileDescriptor
from twisted.logger import Logger

from koha_gateway import clock

__all__ = [
    "ADOPT_OPTION",
    "WorkerSupervisor",
    "adopt_listeners",
    "adopted_endpoint",
    "listening_sockets",
    "spawn_workers",
    "watch_master",
    "worker_arguments",
]

log = Logger(namespace="koha_gateway.workers")

#: The hidden plugin option by which the master tells a worker which descriptors to adopt.
ADOPT_OPTION = "adopt-listeners"
#: Default listen queue length: a restart makes every kiosk reconnect at once, and a short
#: queue turns that burst into dropped handshakes that the kiosks retry seconds later (the
#: same as ``listeners.LISTEN_BACKLOG``; the kernel caps it at ``net.core.somaxconn``).
BACKLOG = 4096
#: Seconds a worker must have run to count as healthy; one that dies sooner is restarted
#: after a growing delay (1 s doubling up to :data:`MAX_RESTART_DELAY`).
HEALTHY_AFTER = 10.0
MAX_RESTART_DELAY = 30.0
#: Seconds the master waits for its workers to stop after SIGTERM before it kills them.
STOP_TIMEOUT = 15.0

_WORKER_OPTIONS = ("--workers", f"--{ADOPT_OPTION}")


# -- sockets ------------------------------------------------------------------------------------


def _family(address) -> socket.AddressFamily:
    """AF_INET6 for ``/IPv6`` or an IPv6 literal host, else AF_INET (as ``listeners``)."""
    family = (getattr(address, "family", None) or "").strip().lower()
    if family in ("ipv6", "6", "inet6", "tcp6"):
        return socket.AF_INET6
    if family in ("ipv4", "4", "inet", "tcp4"):
        return socket.AF_INET
    return socket.AF_INET6 if ":" in (getattr(address, "host", "") or "") else socket.AF_INET


def listening_sockets(services: Iterable, backlog: int = BACKLOG) -> dict[str, socket.socket]:
    """One listening TCP socket per ``ServiceConfig``, keyed by ``service.address.spec``.

    Host ``""`` or ``*`` is every interface (``0.0.0.0``, or ``::`` for IPv6); SO_REUSEADDR is
    set as Twisted does, so a restart does not wait for old connections in TIME_WAIT. The
    sockets are inheritable: they are meant to be passed to worker processes. Raises
    ``OSError`` (port in use, address not available, permission denied) after closing the
    sockets already made.
    """
    made: dict[str, socket.socket] = {}
    try:
        for service in services:
            address = service.address
            family = _family(address)
            host = (getattr(address, "host", "") or "").strip("[]")
            if host == "*":
                host = ""
            if not host:
                host = "::" if family == socket.AF_INET6 else "0.0.0.0"
            sock = socket.socket(family, socket.SOCK_STREAM)
            made[address.spec] = sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, int(address.port)))
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on {address.spec}: {exc.strerror}"
                ) from None
            sock.listen(backlog)
            sock.set_inheritable(True)
    except BaseException:
        for sock in made.values():
            sock.close()
        raise
    return made


def adopted_endpoint(reactor, fileno: int, family: int, *, duplicate: bool = True):
    """An ``IStreamServerEndpoint`` serving the listening socket ``fileno``.

    Twisted's ``AdoptedStreamServerEndpoint`` closes the descriptor it was given once the port
    is listening (``reactor.adoptStreamPort`` works on its own copy). With ``duplicate`` (the
    master) a copy is handed over, so that the original stays open for workers started later;
    a worker passes ``duplicate=False``.
    """
    if duplicate:
        fileno = os.dup(fileno)
    return endpoints.AdoptedStreamServerEndpoint(reactor, fileno, family)


# -- the master's side ------------------------------------------------------------------------


def worker_arguments(plugin_argv: Sequence[str], sockets: Mapping[str, socket.socket]) -> list:
    """The plugin arguments of a worker: the master's without ``--workers``, plus
    ``--adopt-listeners`` naming each inherited descriptor, its family and its service."""
    args: list[str] = []
    rest = list(plugin_argv)
    while rest:
        arg = rest.pop(0)
        name, has_value = arg.split("=", 1)[0], "=" in arg
        if name in _WORKER_OPTIONS:
            if not has_value and rest:
                rest.pop(0)
            continue
        args.append(arg)
    table = [
        {"spec": spec, "fd": sock.fileno(), "family": int(sock.family)}
        for spec, sock in sockets.items()
    ]
    return args + [f"--{ADOPT_OPTION}", json.dumps(table, separators=(",", ":"))]


class _WorkerProtocol(protocol.ProcessProtocol):
    def __init__(self, supervisor: WorkerSupervisor, slot: int):
        self.supervisor = supervisor
        self.slot = slot
        self.started = 0.0
        self.ended: defer.Deferred = defer.Deferred()

    def connectionMade(self):  # noqa: N802 (Twisted interface name)
        # The pipe to the worker's standard input stays open and silent: the worker reads its
        # end of file as "the master is gone" (watch_master).
        self.started = self.supervisor.reactor.seconds()

    def processEnded(self, reason):  # noqa: N802
        self.supervisor._ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(Service):
    """Starts, watches, signals and stops the worker processes of one master.

    A child service of the gateway's service: when it starts it spawns ``count`` workers and
    chains the process's SIGHUP handler so that a reload reaches every worker too; when it
    stops it sends SIGTERM to the workers and, after :data:`STOP_TIMEOUT` seconds, SIGKILL.
    """

    name = "workers"

    def __init__(
        self,
        count: int,
        sockets: Mapping[str, socket.socket],
        plugin_argv: Sequence[str],
        *,
        reactor=None,
        twistd_args: Sequence[str] = (),
        executable: str | None = None,
        env: Mapping[str, str] | None = None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.count = count
        self.sockets = dict(sockets)
        self.executable = executable or sys.executable
        self.argv = [
            self.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            *twistd_args,
            "koha-gateway",
            *worker_arguments(plugin_argv, self.sockets),
        ]
        self.env = dict(os.environ if env is None else env)
        self.workers: dict[int, _WorkerProtocol] = {}
        self._delays: dict[int, float] = {}
        self._pending: dict[int, object] = {}
        self._previous_hup = None

    # -- lifecycle ------------------------------------------------------------------------

    def startService(self):  # noqa: N802
        super().startService()
        for slot in range(self.count):
            self._spawn(slot)
        try:
            self._previous_hup = signal.getsignal(signal.SIGHUP)
            signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:  # not the main thread (embedded use): no signal forwarding
            self._previous_hup = None

    def stopService(self):  # noqa: N802
        super().stopService()
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        running = list(self.workers.values())
        for worker in running:
            self._signal(worker, "TERM")
        if not running:
            return defer.succeed(None)
        done = defer.DeferredList([w.ended for w in running])
        kill = self.reactor.callLater(STOP_TIMEOUT, self._kill_remaining)
        done.addBoth(lambda _: kill.cancel() if kill.active() else None)
        return done

    def _kill_remaining(self):
        for worker in list(self.workers.values()):
            log.warn("worker {pid} did not stop; killing it", pid=worker.transport.pid)
            self._signal(worker, "KILL")

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        self._pending.pop(slot, None)
        worker = _WorkerProtocol(self, slot)
        child_fds: dict[int, int | str] = {0: "w", 1: 1, 2: 2}
        for sock in self.sockets.values():
            child_fds[sock.fileno()] = sock.fileno()
        self.reactor.spawnProcess(
            worker,
            self.executable,
            self.argv,
            env=clock.default().environment(self.env),
            childFDs=child_fds,
        )
        self.workers[slot] = worker
        log.info("worker {slot} started as process {pid}", slot=slot + 1, pid=worker.transport.pid)

    def _ended(self, worker: _WorkerProtocol, reason) -> None:
        if self.workers.get(worker.slot) is worker:
            del self.workers[worker.slot]
        pid = getattr(worker.transport, "pid", None)
        status = reason.value
        if not self.running:
            log.info("worker {slot} (process {pid}) stopped", slot=worker.slot + 1, pid=pid)
            return
        lived = self.reactor.seconds() - worker.started
        delay = (
            1.0
            if lived >= HEALTHY_AFTER
            else min(MAX_RESTART_DELAY, 2 * self._delays.get(worker.slot, 0.5))
        )
        self._delays[worker.slot] = delay
        log.error(
            "worker {slot} (process {pid}) died after {lived:.0f}s ({status}); "
            "restarting it in {delay:.0f}s",
            slot=worker.slot + 1,
            pid=pid,
            lived=lived,
            status=status,
            delay=delay,
        )
        self._pending[worker.slot] = self.reactor.callLater(delay, self._spawn, worker.slot)

    def _signal(self, worker: _WorkerProtocol, name: str) -> None:
        try:
            worker.transport.signalProcess(name)
        except Exception as exc:  # ProcessExitedAlready, or the process vanished
            log.debug("cannot signal worker: {error}", error=exc)

    def signal_workers(self, name: str) -> None:
        """Send signal ``name`` (``"HUP"``, ``"TERM"`` ...) to every running worker."""
        for worker in list(self.workers.values()):
            self._signal(worker, name)

    def _on_sighup(self, signum, frame):
        self.reactor.callFromThread(self.signal_workers, "HUP")
        previous = self._previous_hup
        if callable(previous):
            previous(signum, frame)


def spawn_workers(
    count: int,
    sockets: Mapping[str, socket.socket],
    plugin_argv: Sequence[str],
    *,
    reactor=None,
    twistd_args: Sequence[str] = (),
) -> WorkerSupervisor:
    """The service that runs ``count`` workers serving ``sockets`` (see the module docstring).

    ``plugin_argv`` is the master's command line after ``koha-gateway`` (the plugin's options);
    ``twistd_args`` are twistd options for the workers (such as ``--logfile PATH``): workers
    always run with ``-n`` and without a pid file, under the master. Nothing starts until the
    returned service is started (``setServiceParent`` on the gateway's service).
    """
    if count < 1:
        raise ValueError("spawn_workers needs at least one worker")
    return WorkerSupervisor(count, sockets, plugin_argv, reactor=reactor, twistd_args=twistd_args)


# -- the worker's side -------------------------------------------------------------------------


def adopt_listeners(reactor, value: str | None) -> dict[str, object]:
    """The endpoints of a worker, keyed by service address spec, from ``--adopt-listeners``.

    Raises ``ValueError`` when the value is not what :func:`worker_arguments` writes, or a
    descriptor is not an open socket.
    """
    if not value:
        return {}
    try:
        table = json.loads(value)
        entries = [(str(e["spec"]), int(e["fd"]), int(e["family"])) for e in table]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"--{ADOPT_OPTION}: not a listener table ({exc})") from None
    found = {}
    for spec, fd, family in entries:
        try:
            kind = socket.socket(fileno=os.dup(fd))
        except OSError as exc:
            raise ValueError(f"--{ADOPT_OPTION}: descriptor {fd} ({spec}): {exc}") from None
        try:
            if kind.type != socket.SOCK_STREAM or kind.family != family:
                raise ValueError(f"--{ADOPT_OPTION}: descriptor {fd} is not the {spec} listener")
        finally:
            kind.close()
        found[spec] = adopted_endpoint(reactor, fd, family, duplicate=False)
    return found


class _MasterWatch(FileDescriptor):
    """Reads the worker's standard input, the pipe from the master; its end means the master
    exited."""

    def __init__(self, reactor, fd: int, gone: Callable[[], None]):
        super().__init__(reactor)
        self._fd = fd
        self._gone = gone
        fdesc.setNonBlocking(fd)

    def fileno(self):
        return self._fd

    def doRead(self):  # noqa: N802
        return fdesc.readFromFD(self._fd, lambda data: None)

    def connectionLost(self, reason):  # noqa: N802
        super().connectionLost(reason)
        self._gone()


def watch_master(reactor, on_gone: Callable[[], None] | None = None, fd: int = 0) -> None:
    """Stop this worker (``reactor.stop()``, or ``on_gone``) when the master has exited."""

    def gone():
        log.warn("the master process is gone; this worker stops")
        if on_gone is not None:
            on_gone()
        elif reactor.running:
            reactor.stop()

    watch = _MasterWatch(reactor, fd, gone)
    watch.startReading()
