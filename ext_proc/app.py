"""Process wiring: config → engine → servers; clean shutdown on SIGTERM/SIGINT.

``python -m ext_proc --config FILE.yaml``. Everything runs on one asyncio loop
(gRPC via grpc.aio, the HTTP fast path as a Protocol), so there is one policy
evaluator per process; the metrics server, the config watcher and the decision-log
writer are daemon threads that never touch the request path.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from ext_proc import claims, uds
from ext_proc.config import SidecarConfig, load_config
from ext_proc.decision_log import DecisionLog
from ext_proc.engine import Engine
from ext_proc.grpc_common import bind, make_server, set_serving
from ext_proc.grpc_server import make_handlers
from ext_proc.http_server import start_http
from ext_proc.logutil import describe
from ext_proc.metrics import make_registry, serve_metrics
from ext_proc.source import ConfigSource, FileConfigSource
from ext_proc.stats import Stats
from ext_proc.xds_source import XdsConfigSource
from policies.core.errors import ConfigError

log = logging.getLogger("ext_proc")


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve(cfg: SidecarConfig, source: ConfigSource) -> int:
    stats = Stats()
    dlog = None
    if cfg.decision_log_path is not None or cfg.decision_log_url is not None:
        try:
            dlog = DecisionLog(
                cfg.decision_log_path, cfg.decision_log_queue, max_bytes=cfg.decision_log_max_bytes,
                url=cfg.decision_log_url, timeout=cfg.decision_log_timeout,
                batch_bytes=cfg.decision_log_batch_bytes,
            )
        except OSError as err:
            raise ConfigError(f"{cfg.source}: decision_log.path: {err}") from None
        dlog.start()

    def load_failed(message: str) -> None:
        stats.add_load_failure()

    claims.configure(cfg.claims_cache_size, cfg.claims_cache_max_bytes)
    engine = Engine(
        cfg.tenant, cfg.entrypoint, cfg.cache_size, stats, dlog,
        cache_bytes=cfg.cache_max_bytes, max_path=cfg.max_path, input_kind=cfg.input_kind,
    )  # fmt: skip
    source.start(engine.apply, load_failed)

    metrics = None
    if cfg.metrics_address:
        try:
            metrics = serve_metrics(cfg.metrics_address, make_registry(engine))
        except OSError as err:
            raise ConfigError(f"{cfg.source}: metrics_address: {err}") from None

    sockets: list[tuple[str, tuple[int, int]]] = []  # unix sockets we bound, removed at exit
    server, health = make_server(make_handlers(engine))
    where = f"{cfg.source}: grpc_address"
    with uds.binding(cfg.grpc_address, where, sockets):
        try:
            bind(server, cfg.grpc_address)
        except Exception as err:  # grpc raises RuntimeError on bind failures
            raise ConfigError(f"{where}: cannot bind {cfg.grpc_address}: {err}") from None
    await server.start()

    http = None
    if cfg.http_address:
        where = f"{cfg.source}: http_address"
        with uds.binding(cfg.http_address, where, sockets):
            try:
                http = await start_http(engine, cfg.http_address)
            except OSError as err:
                raise ConfigError(f"{where}: {err}") from None

    # SERVING only once every door is bound: the launcher's readiness probe asks gRPC.
    await set_serving(health, True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "serving grpc=%s http=%s metrics=%s policy=%s cells=%s",
        cfg.grpc_address,
        cfg.http_address or "-",
        cfg.metrics_address or "-",
        engine.policy_version,
        engine.snapshot.cells.version if engine.snapshot is not None else "-",
    )
    await stop.wait()

    log.info("shutting down")
    await set_serving(health, False)
    if http is not None:
        http.close()
    await server.stop(grace=1.0)
    source.stop()
    if dlog is not None:
        dlog.stop()
        log.info("decision log flushed: %d written, %d dropped", dlog.written, dlog.dropped)
    if metrics is not None:
        metrics.shutdown()  # type: ignore[attr-defined]
    for path, ident in sockets:
        uds.remove_if_ours(path, ident)
    log.info("stopped")
    return 0


def make_source(cfg: SidecarConfig) -> ConfigSource:
    """The source ``cfg`` selects: files (the default), or ADS with last-known-good on disk.

    The file source loads here, so a bad file fails before any port is bound; the
    xDS source loads in ``start`` (it may wait ``boot_timeout`` for the control plane).
    """
    if cfg.xds is not None:
        return XdsConfigSource(cfg.xds, cfg.entrypoint, input_kind=cfg.input_kind)
    assert cfg.policy_module is not None and cfg.cells_table is not None
    source = FileConfigSource(
        cfg.policy_module, cfg.cells_table, cfg.entrypoint, cfg.watch_interval
    )
    source.load_initial()
    return source


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ext_proc", description=__doc__)
    parser.add_argument("--config", required=True, help="sidecar YAML config")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    setup_logging(getattr(logging, args.log_level))
    try:
        cfg = load_config(args.config)
        return asyncio.run(serve(cfg, make_source(cfg)))
    except ConfigError as err:
        print(f"ext_proc: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug, still reported as one line (traceback at DEBUG)
        log.debug("startup failed", exc_info=True)
        print(f"ext_proc: {args.config}: cannot start: {describe(err)}", file=sys.stderr)
        return 1
