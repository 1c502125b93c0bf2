"""Opening what the settings point at, failing fast with one line that names the wrong setting."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPException
from urllib.parse import urlparse

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from sqlalchemy.exc import DBAPIError

from .history import HistoryStore
from .settings import Settings, SettingsError
from .state.sqlite import SqliteStateStore
from .state.store import StateStore
from .state.zookeeper import ZkStateStore

_HOST_PORT = re.compile(r"^[A-Za-z0-9_.-]+(:\d{1,5})?$")


def open_state_store(settings: Settings) -> StateStore:
    if settings.mode == "local":
        return SqliteStateStore(settings.state_path)
    hosts = settings.zk_hosts or ""
    if not all(_HOST_PORT.match(h.strip()) for h in hosts.split(",")):
        raise SettingsError(f"zk_hosts: '{hosts}' is not a comma-separated list of host:port")
    try:
        return ZkStateStore(hosts, settings.zk_root, timeout=settings.zk_session_timeout)
    except Exception as exc:  # kazoo raises several kinds; all mean the same to the operator
        raise SettingsError(f"zk_hosts: cannot reach ZooKeeper at {hosts} within "
                            f"{settings.zk_session_timeout:g} s ({type(exc).__name__}: {exc})") from exc


async def open_history(settings: Settings) -> HistoryStore:
    try:
        return await HistoryStore.open(settings.history_url,
                                       query_timeout_seconds=settings.history_read_timeout_seconds)
    except Exception as exc:
        where = "db_url" if settings.db_url else "data_dir"
        safe = re.sub(r"//[^@/]*@", "//***@", settings.history_url)
        # The driver's own error, without SQLAlchemy's wrapping (the statement, a link on a second line).
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        detail = " ".join(str(cause).split())
        raise SettingsError(f"{where}: cannot open the history database {safe} ({type(cause).__name__}: "
                            f"{detail})") from exc


def resolve_mesos_master(text: str, probe_timeout: float = 3.0) -> str:
    """Turn what an operator writes into what pymesos accepts.

    pymesos takes `zk://hosts/path` or one `host:port`; it crashes on comma lists and `http://` URLs. A
    list becomes its first master that answers `GET /version` (a non-leading Mesos master redirects
    pymesos to the leader). Asked over HTTP, not just connected to: a hung master still accepts
    connections. Called again for each subscription, so that a master that died or went silent is
    left for the next one in the list.
    """
    text = text.strip()
    if text.startswith(("zk://", "zoo://")):
        rest = text.split("://", 1)[1]
        hosts, _, path = rest.partition("/")
        if not path or not all(_HOST_PORT.match(h) for h in hosts.split(",")):
            raise SettingsError(f"mesos_master: '{text}' is not zk://host:port[,host:port]/path")
        return text
    candidates = []
    for item in text.split(","):
        item = item.strip()
        if item.startswith(("http://", "https://")):
            item = urlparse(item).netloc
        if not _HOST_PORT.match(item):
            raise SettingsError(f"mesos_master: '{item}' is not host:port, http://host:port or zk://hosts/path")
        candidates.append(item if ":" in item else f"{item}:5050")
    if len(candidates) == 1:
        if _answers(candidates[0], probe_timeout):
            return candidates[0]
    else:
        # All asked at once: a dead or hung master early in the list costs one timeout, not one each.
        pool = ThreadPoolExecutor(len(candidates), thread_name_prefix="sing-master-probe")
        try:
            probes = [pool.submit(_answers, candidate, probe_timeout) for candidate in candidates]
            for candidate, probe in zip(candidates, probes, strict=True):
                if probe.result():
                    return candidate
        finally:
            pool.shutdown(wait=False)
    raise SettingsError(f"mesos_master: no Mesos master answers at {', '.join(candidates)}")


def check_master_in_zookeeper(text: str, timeout: float = 3.0) -> None:
    """For a master given as zk://hosts/path: the leading master registered there must answer, as
    resolve_mesos_master asks the others to. pymesos would wait without a word for a master that an
    unreachable ensemble, a wrong path or a dead master never gives it."""
    hosts, _, path = text.split("://", 1)[1].partition("/")
    client = KazooClient(hosts=hosts, timeout=timeout)
    try:
        client.start(timeout=timeout)
    except Exception as exc:  # kazoo raises several kinds; all mean the same to the operator
        client.close()
        raise SettingsError(f"mesos_master: cannot reach ZooKeeper at {hosts} (of {text}) within {timeout:g} s "
                            f"({type(exc).__name__})") from exc
    try:
        try:
            # As pymesos chooses: the lowest sequence number, log_replicas aside.
            children = [child for child in client.get_children(f"/{path}") if child != "log_replicas"]
        except NoNodeError:
            children = []
        if not children:
            raise SettingsError(f"mesos_master: no Mesos master is registered in ZooKeeper at {text}")
        node = f"/{path}/{min(children)}"
        data, _ = client.get(node)
        try:
            address = json.loads(data)["address"]
            master = f"{address['ip']}:{int(address['port'])}"
        except (ValueError, KeyError, TypeError) as exc:
            raise SettingsError(f"mesos_master: {node} in ZooKeeper at {hosts} is not a Mesos master's JSON "
                                "MasterInfo") from exc
    finally:
        client.stop()
        client.close()
    if not _answers(master, timeout):
        raise SettingsError(f"mesos_master: no Mesos master answers at {master}, the leader registered in {text}")


def _answers(address: str, timeout: float) -> bool:
    """Whether a Mesos master answers GET /version at `address` within `timeout` (connect and answer)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    conn = HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.connect()
        conn.sock.settimeout(max(deadline - time.monotonic(), 0.01))
        conn.request("GET", "/version")
        return conn.getresponse().status == 200
    except (OSError, HTTPException):  # refused, timed out, or something that does not speak HTTP
        return False
    finally:
        conn.close()
