"""`loopml local up`: the local cloud served to real clients until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

from rich.console import Console

from infra import declaration as decl
from infra.local.api_gateway import ApiServer
from infra.local.cloud import LocalCloud
from infra.local.rest_api import local_api_key


def serve(
    *,
    port: int,
    api_port: int,
    tls: bool,
    drift_every: float | None,
    console: Console,
    host: str = "127.0.0.1",
    stop: threading.Event | None = None,
) -> None:
    from moto.server import ThreadedMotoServer

    stop = stop or threading.Event()
    cloud = LocalCloud()
    cloud.start()
    os.environ["MOTO_PORT"] = str(port)  # where moto's Step Functions interpreter finds the endpoint
    aws = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    aws.start()
    api = ApiServer(cloud, host=host, port=api_port, tls=tls).start()
    info_path = cloud.state_dir / "local.json"
    info: dict[str, Any] = {
        **cloud.info(aws_endpoint=f"http://{host}:{port}", api_url=api.url),
        "ca_cert": str(api.cert_path) if api.cert_path else None,
        "api_key": local_api_key(cloud.client("apigateway")),
        "pid": os.getpid(),
    }
    # Before local.json announces the cloud: a client (or test) that sees it may signal at once.
    if threading.current_thread() is threading.main_thread():
        _stop_on_signals(stop)
    info_path.write_text(json.dumps(info, indent=2))

    interval = drift_every or decl.DRIFT_SCHEDULE.rate_minutes * 60.0

    def tick() -> None:
        while not stop.wait(interval):
            try:
                checks = cloud.fire_schedule()["checks"]
                for check in checks:
                    console.print(f"[dim]drift schedule:[/] {check['model']} {check['status']} {check['action']}")
            except Exception as error:
                console.print(f"[red]drift schedule failed:[/] {error}")

    ticker = threading.Thread(target=tick, name="drift-schedule", daemon=True)
    ticker.start()
    console.print(
        f"[bold green]LoopML local cloud is up[/]\n"
        f"  AWS endpoint   {info['aws_endpoint']}\n"
        f"  inference API  {info['api_url']}" + (f"  (CA: {info['ca_cert']})" if tls else "") + "\n"
        f"  API key        {info['api_key']}  (header {decl.API.api_key_header}; `loopml keys` makes more)\n"
        f"  data bucket    {info['data_bucket']}\n"
        f"  drift schedule every {interval:.0f}s\n"
        f"  function logs  {info['logs']}\n"
        "Ctrl-C to stop."
    )
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        console.print("[dim]stopping…[/]")
        info_path.unlink(missing_ok=True)
        api.stop()
        aws.stop()
        # What is still running (a training, say) is abandoned with the process, as it is with every other state.
        cloud.stop(drain_timeout=STOP_DRAIN_S)
        console.print("local cloud stopped")


STOP_DRAIN_S = 1.0  # how long stopping waits for queued uploads and running executions before giving up on them


def _stop_on_signals(stop: threading.Event) -> None:
    """Ctrl-C and SIGTERM stop the cloud; a second one exits at once.

    Handlers are installed for both signals explicitly: a shell starts a background job (`loopml local up &`) with
    SIGINT ignored, and Python then leaves it ignored instead of raising KeyboardInterrupt.
    """

    def on_signal(signum: int, _frame: object) -> None:
        # Only set the event: a handler runs between two bytecodes of the main thread, which may be half-way through
        # an import that printing here would need too (rich imports lazily).
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
