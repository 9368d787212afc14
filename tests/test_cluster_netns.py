"""Workers that share nothing with the driver but the network: Beam's SDK worker pool
(``worker_pool_main``, what the Flink and Spark profiles run beside each task manager) in a Linux
network namespace of its own, reached over a veth pair, with a private ``/tmp``. The job goes
through ``PortableRunner --job_endpoint=embed --environment_type=EXTERNAL``; its inputs and outputs
are only on an S3 server (moto) that both hosts reach over the network. The result equals the local
runner's.

The endpoint: the driver and the reference run (whose SDK workers are subprocesses Beam starts
with the pipeline options) get only Beam's ``--s3_endpoint_url``. A bare ``worker_pool_main`` starts
its workers without the pipeline options (Beam's container boot is what hands them over), so the
worker host gets the standard ``AWS_ENDPOINT_URL``, as a worker image or a task manager's
environment would.

Needs root, ``ip`` (iproute2) and ``unshare`` (util-linux); skipped, saying why, without them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.objectstore

pytest.importorskip("moto.server", reason="moto[server] is in the dev extras")
pytest.importorskip("s3fs", reason="s3fs is in the dev extras")

from test_object_store import CREDS as S3_CREDS  # noqa: E402
from test_object_store import REPO, STAGES, members, start_s3, tables  # noqa: E402

DRIVER = "vidcurate-driver"  # the driver's host name, as the worker's /etc/hosts knows it
CREDS = {**S3_CREDS, "VIDCURATE_ALLOW_HTTP_ENDPOINT": "1"}  # plain http on a private veth link


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def worker_host():
    """(namespace, host-side address, worker address): a network namespace joined to this host
    by a veth pair, its own /etc/hosts naming the driver."""
    if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("unshare")):
        pytest.skip("needs root, ip (iproute2) and unshare (util-linux) to give the workers a host of their own")
    n = os.getpid() % 250
    ns, host_if, ns_if = f"vidcurate-w{n}", f"vch{n}", f"vcn{n}"
    host_ip, worker_ip = f"10.231.{n}.1", f"10.231.{n}.2"
    hosts = Path("/etc/netns") / ns
    try:
        sh("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a network namespace here: {exc.stderr.decode(errors='replace').strip()}")
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        for cmd in (("ip", "addr", "add", f"{worker_ip}/30", "dev", ns_if), ("ip", "link", "set", ns_if, "up"),
                    ("ip", "link", "set", "lo", "up")):
            sh("ip", "netns", "exec", ns, *cmd)
        hosts.mkdir(parents=True, exist_ok=True)  # `ip netns exec` binds this over /etc/hosts
        (hosts / "hosts").write_text(f"127.0.0.1 localhost\n{host_ip} {DRIVER}\n")
        yield ns, host_ip, worker_ip
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(hosts, ignore_errors=True)


@pytest.fixture(scope="module")
def s3_on_the_link(worker_host):
    """An S3 server on the host side of the link, the videos uploaded; its endpoint."""
    _, host_ip, _ = worker_host
    server, endpoint, _ = start_s3(host_ip)
    try:
        yield endpoint
    finally:
        server.stop()


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **CREDS, **extra}


def private_tmp_script(command: list[str]) -> str:
    """A shell script for ``unshare --mount``: an empty tmpfs over /tmp, keeping only the
    interpreter and the code (a worker image has them), then exec ``command``."""
    keep = sorted({p for p in (str(REPO), sys.prefix, os.path.realpath(sys.prefix)) if p.startswith("/tmp/")})
    lines = ["set -e"]
    for i, path in enumerate(keep):
        lines += [f"mkdir -p /run/vidcurate-keep{i}", f"mount --bind '{path}' /run/vidcurate-keep{i}"]
    lines.append("mount -t tmpfs tmpfs /tmp")
    for i, path in enumerate(keep):
        lines += [f"mkdir -p '{path}'", f"mount --bind /run/vidcurate-keep{i} '{path}'"]
    return "\n".join(lines + ["exec " + " ".join(f"'{a}'" for a in command)])


def wait_for_port(host: str, port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def test_workers_on_another_host_with_only_s3_between_them(worker_host, s3_on_the_link, tmp_path, monkeypatch):
    ns, host_ip, worker_ip = worker_host
    endpoint = s3_on_the_link
    # The worker pool: its own network, its own /tmp; nothing of the driver's but the link.
    pool = subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "--mount", "sh", "-c",
         private_tmp_script([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             "--service_port=50000"])],
        cwd="/", env=clean_env(AWS_ENDPOINT_URL=endpoint), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "pool.log", "w"),
        start_new_session=True)
    try:
        wait_for_port(worker_ip, 50000)
        flags = [f"--s3_endpoint_url={endpoint}"]
        ref = str(tmp_path / "local")
        common = ["-m", "pipeline.cli", "run", "--input", "s3://raw-videos/incoming/", "--stages", STAGES]
        r = subprocess.run([sys.executable, *common, "--output", ref, *flags, "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2"], cwd=REPO, env=clean_env(),
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        # The driver, under a host name the workers resolve to its side of the link (Beam's
        # embedded job server tells EXTERNAL workers to call back to socket.getfqdn()).
        hosts = tmp_path / "driver-hosts"
        hosts.write_text(f"127.0.0.1 localhost\n{host_ip} {DRIVER}\n")
        driver = (f"hostname {DRIVER} && mount --bind '{hosts}' /etc/hosts && exec " +
                  " ".join(f"'{a}'" for a in [sys.executable, *common, "--output", "s3://curated/netns", *flags,
                                               "--runner=PortableRunner", "--job_endpoint=embed",
                                               "--environment_type=EXTERNAL", f"--environment_config={worker_ip}:50000"]))
        r = subprocess.run(["unshare", "--mount", "--uts", "sh", "-c", driver], cwd=REPO, env=clean_env(),
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:] + (tmp_path / "pool.log").read_text()[-3000:]
        assert pool.poll() is None  # the work went to the pool (a LOOPBACK fallback would not need it)
    finally:
        os.killpg(pool.pid, signal.SIGKILL)
        pool.wait()
    for k, v in {**CREDS, "AWS_ENDPOINT_URL": endpoint}.items():  # only to read the result back here
        monkeypatch.setenv(k, v)
    assert tables("s3://curated/netns") == tables(ref)
    assert members("s3://curated/netns") == members(ref)
