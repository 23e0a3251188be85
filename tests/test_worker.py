"""The worker as it runs in the cluster: JSON logs with workflow context, Prometheus
metrics, and a graceful stop on request."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from pydantic import SecretStr

from onboarding.core.logs import configure_logging
from onboarding.domain.admission import prepare_subscription
from starter import start_application
from tests.support import data, drive
from tests.support.net import free_port
from worker import run_worker


async def test_worker_logs_json_exposes_metrics_and_stops_gracefully(dev_server, settings, pool,
                                                                    task_queue, capfd):
    metrics_port = free_port()
    worker_settings = settings.model_copy(update={
        "temporal_address": dev_server.client.service_client.config.target_host,
        "temporal_task_queue": task_queue,
        "metrics_port": metrics_port,
        "log_format": "json",
        "database_url": SecretStr(settings.database_url.get_secret_value()),
    })
    configure_logging(worker_settings)
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(worker_settings, stop))
    try:
        application = prepare_subscription(data.subscription_form(), settings)
        handle = await start_application(dev_server.client, worker_settings, application)
        await drive.signal_at(handle, "pre_verification", "pre_verification",
                              data.decision(data.REVIEWER, verdict="reject", note="out of scope"))
        assert (await drive.result(handle)).outcome == "rejected"

        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode())
        assert "temporal_workflow_completed" in metrics
        assert "temporal_local_activity_execution_latency" in metrics  # the commits
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
        configure_logging(settings)

    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()
             if line.startswith("{")]
    events = {line["event"] for line in lines}
    assert {"worker started", "worker stopped", "notice sent"} <= events
    # Sent by the relay (which sends whatever the shared database holds pending, too).
    assert any(line["event"] == "notice sent"
               and line["application_id"] == application.application_id for line in lines)
    refused_or_applied = [line for line in lines if line.get("workflow_type") == "SubscriptionApplication"]
    assert all(line["workflow_id"] == application.application_id for line in refused_or_applied)
