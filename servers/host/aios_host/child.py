"""One supervised child server: its process, its long-lived MCP session, its restarts.

The host owns each child process (so it knows the pid, the exit code and the stderr) and keeps
one long-lived, multiplexed MCP session to it: concurrent forwarded calls share the session, and
each call carries its own progress callback. When the process exits, every call in flight on it
is cancelled at once and answered ``subsystem_unavailable``; the child is restarted with
backoff within its restart intensity, or marked failed past it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import httpx2
import mcp_types as types
from anyio.abc import Process, TaskStatus
from mcp import Client
from mcp.client.session import ClientRequestContext, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict

from aios_host.catalog import ChildCatalog
from aios_host.config import ChildSpec, HostSettings
from aios_host.stdio_transport import process_transport
from aios_host.supervision import RestartIntensity, decide_restart
from aios_shared.errors import SubsystemUnavailable

__all__ = ["ChildHooks", "ChildServer", "ChildStatus", "PeerAddress"]

logger = logging.getLogger(__name__)

ChildState = Literal["starting", "running", "restarting", "failed", "stopped"]

_STDERR_TAIL_LINES = 20
_EXIT_POLL_S = 0.05
_TERMINATE_GRACE_S = 5.0
_HOST_ONLY_VARIABLES = frozenset(
    {f"AIOS_{name.upper()}" for name in HostSettings.model_fields} | {"AIOS_PEERS"}
) - {"AIOS_HOME", "AIOS_LOG_LEVEL"}


class PeerAddress(BaseModel):
    """How a child reaches one of its peers (passed in ``AIOS_PEERS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    token: str


class ChildStatus(BaseModel):
    """A child as the host status reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    state: ChildState
    transport: Literal["stdio", "http"]
    pid: int | None
    url: str | None
    prefix: str
    restarts_in_period: int
    restarts_total: int
    tools: int
    detail: str | None
    server_info: str | None


class ChildHooks(Protocol):
    """What a child reports to the host (implemented by the upstream router)."""

    async def catalog_changed(self, child: str) -> None: ...

    async def resource_updated(self, child: str, uri: str) -> None: ...

    async def log(self, child: str, params: types.LoggingMessageNotificationParams) -> None: ...

    async def sampling(
        self, child: str, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData: ...

    async def elicitation(
        self, child: str, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData: ...

    async def list_roots(self, child: str) -> types.ListRootsResult | types.ErrorData: ...


class ChildStartError(Exception):
    """The child did not come up (spawn failed, exited, never became ready)."""


class ChildServer:
    """Supervises one child; ``run`` is its supervision loop."""

    def __init__(
        self,
        spec: ChildSpec,
        hooks: ChildHooks,
        run_dir: Path,
        *,
        peers: Callable[[], dict[str, PeerAddress]],
        home: Path,
        list_pages_max: int = 100,
    ) -> None:
        self.spec = spec
        self.token = secrets.token_urlsafe(32)
        self.state: ChildState = "starting"
        self.detail: str | None = None
        self.catalog = ChildCatalog()
        self.url: str | None = None
        self.pid: int | None = None
        self.server_info: str | None = None
        self.restarts_total = 0
        self.intensity = RestartIntensity(
            max_restarts=spec.max_restarts,
            period_s=spec.restart_period_s,
            backoff_initial_s=spec.backoff_initial_s,
            backoff_max_s=spec.backoff_max_s,
        )
        self._hooks = hooks
        self._run_dir = run_dir
        self._peers = peers
        self._home = home
        self._list_pages_max = list_pages_max
        self._client: Client | None = None
        self._port = 0
        self._inflight: set[anyio.CancelScope] = set()
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> ChildStatus:
        return ChildStatus(
            name=self.spec.name,
            state=self.state,
            transport=self.spec.transport,
            pid=self.pid,
            url=self.url,
            prefix=self.spec.namespace,
            restarts_in_period=self.intensity.recent(anyio.current_time()),
            restarts_total=self.restarts_total,
            tools=len(self.catalog.tools),
            detail=self.detail,
            server_info=self.server_info,
        )

    def peer_address(self) -> PeerAddress | None:
        if self.spec.transport != "http" or self.url is None:
            return None
        return PeerAddress(url=self.url, token=self.token)

    # ---- supervision ----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start, serve, restart, until failed, stopped or cancelled. ``task_status`` is
        signalled once the first start attempt has settled (running, failed or stopped), so
        the host can start dependants in order."""
        reported = False
        while True:
            exit_code: int | None = None
            try:
                async with self._connected() as process:
                    self.state = "running"
                    self.detail = None
                    await self._hooks.catalog_changed(self.spec.name)
                    if not reported:
                        task_status.started()
                        reported = True
                    exit_code = await self._wait_for_exit(process)
                    self.detail = f"exited with code {exit_code}" + self._stderr_hint()
            except ChildStartError as error:
                self.detail = str(error)
                # The old port may be taken now; the next attempt lets the OS pick one (the
                # host then restarts dependants, whose peer URL changed).
                self._port = 0
                logger.error(
                    "child.start_failed", extra={"child": self.spec.name, "error": str(error)}
                )
            self._fail_inflight()
            decision = decide_restart(
                self.spec.restart, exit_code, self.intensity, anyio.current_time()
            )
            logger.warning(
                "child.exited",
                extra={"child": self.spec.name, "exit_code": exit_code, "decision": decision},
            )
            if decision != "restart":
                self.state = "failed" if decision == "fail" else "stopped"
                if decision == "fail":
                    self.detail = (
                        f"failed: more than {self.spec.max_restarts} restarts in "
                        f"{self.spec.restart_period_s:g} s; last: {self.detail}"
                    )
                await self._hooks.catalog_changed(self.spec.name)
                if not reported:
                    task_status.started()
                return
            self.state = "restarting"
            self.restarts_total += 1
            await self._hooks.catalog_changed(self.spec.name)
            await anyio.sleep(self.intensity.backoff_s())

    async def _wait_for_exit(self, process: Process) -> int:
        # Polls the return code: process.wait() also waits for pipe EOF, which a grandchild
        # holding the pipes would delay (the SDK's stdio client polls for the same reason).
        while process.returncode is None:  # noqa: ASYNC110 - no event exists for a process exit
            await anyio.sleep(_EXIT_POLL_S)
        return process.returncode

    def _fail_inflight(self) -> None:
        self.state = "restarting"
        for scope in list(self._inflight):
            scope.cancel()

    def _stderr_hint(self) -> str:
        if not self._stderr_tail:
            return ""
        return "; last stderr: " + " | ".join(list(self._stderr_tail)[-3:])

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[Process]:
        """Spawn the process, connect, initialize, read the catalog; on exit close the session
        and stop the process (SIGTERM to its group, SIGKILL after a grace period)."""
        self.state = "starting" if self.restarts_total == 0 else "restarting"
        self._stderr_tail.clear()
        ready_file = self._run_dir / f"{self.spec.name}.ready"
        ready_file.unlink(missing_ok=True)
        try:
            process = await anyio.open_process(
                self._argv(ready_file),
                env=self._environment(),
                cwd=self.spec.cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise ChildStartError(f"cannot start {self._argv(ready_file)[0]!r}: {error}") from error
        self.pid = process.pid
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._pump_stderr, process)
                try:
                    with anyio.fail_after(self.spec.start_timeout_s):
                        transport = await self._transport(process, ready_file)
                    async with AsyncExitStack() as stack:
                        client = await self._open_client(stack, transport)
                        self._client = client
                        with anyio.fail_after(self.spec.start_timeout_s):
                            await self._refresh_catalog()
                        yield process
                except TimeoutError as error:
                    raise ChildStartError(
                        f"not ready within {self.spec.start_timeout_s:g} s{self._stderr_hint()}"
                    ) from error
                except MCPError as error:
                    if process.returncode is not None:
                        raise ChildStartError(
                            f"exited with code {process.returncode} during start"
                            f"{self._stderr_hint()}"
                        ) from error
                    raise ChildStartError(f"MCP handshake failed: {error}") from error
                finally:
                    self._client = None
                    with anyio.CancelScope(shield=True):
                        await _stop_process(process)
                    group.cancel_scope.cancel()
        finally:
            self.pid = None

    def _argv(self, ready_file: Path) -> list[str]:
        argv = list(self.spec.command or [sys.executable, "-m", str(self.spec.module)])
        if self.spec.transport == "http":
            argv += ["--transport", "http", "--host", "127.0.0.1", "--port", str(self._port)]
            argv += ["--ready-file", str(ready_file)]
        return argv

    def _environment(self) -> dict[str, str]:
        # The host's own serving settings and secrets stay with the host; children keep their
        # data under the host's data directory unless the layout says otherwise.
        inherited = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY_VARIABLES}
        environment = {**inherited, "AIOS_HOME": str(self._home), **self.spec.env}
        if self.spec.transport == "http":
            environment["AIOS_AUTH_TOKEN"] = self.token
        peers = self._peers()
        if peers:
            environment["AIOS_PEERS"] = json.dumps(
                {name: address.model_dump() for name, address in peers.items()}
            )
        return environment

    async def _pump_stderr(self, process: Process) -> None:
        """Child stderr lines go to the host log (tagged with the child) and a short tail
        that start-failure messages quote."""
        if process.stderr is None:
            return
        buffer = b""
        try:
            async for chunk in process.stderr:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line:
                        self._stderr_tail.append(line[:500])
                        logger.debug("child.stderr", extra={"child": self.spec.name, "line": line})
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            return

    async def _transport(self, process: Process, ready_file: Path) -> Any:
        if self.spec.transport == "stdio":
            self.url = None
            return process_transport(process, self.spec.name)
        url = await self._await_ready_file(process, ready_file)
        self.url = url
        self._port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        return url

    async def _await_ready_file(self, process: Process, ready_file: Path) -> str:
        """The child writes its URL atomically once it listens (``aios_shared.runner``)."""
        ready = anyio.Path(ready_file)
        while not await ready.exists():
            if process.returncode is not None:
                raise ChildStartError(
                    f"exited with code {process.returncode} before listening{self._stderr_hint()}"
                )
            await anyio.sleep(_EXIT_POLL_S)
        document = json.loads(await ready.read_text(encoding="utf-8"))
        url = document["url"]
        assert isinstance(url, str), document
        return url

    async def _open_client(self, stack: AsyncExitStack, transport: Any) -> Client:
        if isinstance(transport, str):
            http = await stack.enter_async_context(
                httpx2.AsyncClient(
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=httpx2.Timeout(30.0, read=self.spec.call_timeout_s),
                )
            )
            transport = streamable_http_client(transport, http_client=http)
        client = Client(
            transport,
            mode="legacy",
            client_info=types.Implementation(name="aios-host", version="0.1.0"),
            sampling_callback=self._on_sampling,
            elicitation_callback=self._on_elicitation,
            list_roots_callback=self._on_list_roots,
            logging_callback=self._on_log,
            message_handler=self._on_message,
        )
        await stack.enter_async_context(client)
        info = client.server_info
        self.server_info = f"{info.name} {info.version}".strip() if info is not None else None
        return client

    # ---- catalog --------------------------------------------------------------------------

    async def _refresh_catalog(self) -> None:
        client = self._require_client()
        capabilities = client.server_capabilities
        tools: list[types.Tool] = []
        prompts: list[types.Prompt] = []
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        if capabilities.tools is not None:
            tools = await self._paged(lambda cursor: client.list_tools(cursor=cursor), "tools")
        if capabilities.prompts is not None:
            prompts = await self._paged(
                lambda cursor: client.list_prompts(cursor=cursor), "prompts"
            )
        if capabilities.resources is not None:
            resources = await self._paged(
                lambda cursor: client.list_resources(cursor=cursor), "resources"
            )
            templates = await self._paged(
                lambda cursor: client.list_resource_templates(cursor=cursor), "resource_templates"
            )
        self.catalog = ChildCatalog(
            tools=tools, prompts=prompts, resources=resources, templates=templates
        )

    async def _paged(self, fetch: Callable[[str | None], Awaitable[Any]], field: str) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(self._list_pages_max):
            page = await fetch(cursor)
            items.extend(getattr(page, field))
            cursor = page.next_cursor
            if not cursor:
                return items
        logger.warning("child.list_truncated", extra={"child": self.spec.name, "list": field})
        return items

    # ---- forwarding -----------------------------------------------------------------------

    def _require_client(self) -> Client:
        if self._client is None or self.state not in ("running", "starting", "restarting"):
            raise self.unavailable()
        return self._client

    def unavailable(self) -> SubsystemUnavailable:
        name = self.spec.name
        if self.state == "failed":
            return SubsystemUnavailable(
                f"Server {name!r} has failed and is no longer restarted ({self.detail}).",
                hint="Check its log, fix the cause and restart the host.",
                details={"server": name, "state": self.state},
            )
        what = "lost its connection" if self.state == "running" else f"is {self.state}"
        return SubsystemUnavailable(
            f"Server {name!r} {what}.",
            hint="Retry in a few seconds; the host restarts it.",
            details={"server": name, "state": self.state},
        )

    @asynccontextmanager
    async def forwarding(self) -> AsyncIterator[Client]:
        """Run one forwarded request; if the child dies meanwhile, it ends at once with
        ``SubsystemUnavailable`` instead of waiting on a dead peer."""
        if self.state != "running" or self._client is None:
            raise self.unavailable()
        client = self._client
        with anyio.CancelScope() as scope:
            self._inflight.add(scope)
            try:
                yield client
            except MCPError as error:
                # The transport gave up on the request: the child died or dropped the stream.
                if error.code == types.CONNECTION_CLOSED:
                    raise self.unavailable() from error
                raise
            finally:
                self._inflight.discard(scope)
        if scope.cancelled_caught:
            raise self.unavailable()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        progress: ProgressFnT | None,
        meta: types.RequestParamsMeta | None,
    ) -> types.CallToolResult:
        async with self.forwarding() as client:
            return await client.call_tool(
                name,
                arguments,
                read_timeout_seconds=self.spec.call_timeout_s,
                progress_callback=progress,
                meta=meta,
            )
        raise AssertionError("unreachable: forwarding() raises when the call was cancelled")

    # ---- callbacks from the child ---------------------------------------------------------

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.warning(
                "child.transport_error", extra={"child": self.spec.name, "error": str(message)}
            )
            return
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceListChangedNotification,
        ):
            await self._refresh_catalog()
            await self._hooks.catalog_changed(self.spec.name)
        elif isinstance(message, types.ResourceUpdatedNotification):
            await self._hooks.resource_updated(self.spec.name, str(message.params.uri))

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        await self._hooks.log(self.spec.name, params)

    async def _on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
        return await self._hooks.sampling(self.spec.name, params)

    async def _on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        return await self._hooks.elicitation(self.spec.name, params)

    async def _on_list_roots(
        self, context: ClientRequestContext
    ) -> types.ListRootsResult | types.ErrorData:
        return await self._hooks.list_roots(self.spec.name)

    async def kill(self) -> None:
        """Operator action: stop the current process so the supervisor restarts it."""
        if self.pid is not None:
            os.killpg(self.pid, signal.SIGTERM)


async def _stop_process(process: Process) -> None:
    """SIGTERM the child's process group, SIGKILL it after a grace period, reap it."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(_TERMINATE_GRACE_S):
            while process.returncode is None:  # noqa: ASYNC110 - see _wait_for_exit
                await anyio.sleep(_EXIT_POLL_S)
    # The group may hold grandchildren even after the leader exited.
    _signal_group(process.pid, signal.SIGKILL)
    with anyio.move_on_after(1.0):
        await process.wait()
    await process.aclose()


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return
