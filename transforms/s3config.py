"""How vidcurate reaches S3 and S3-compatible stores (MinIO, Ceph): the standard ``AWS_*``
environment (``AWS_ENDPOINT_URL`` included) and Beam's own ``--s3_*`` / ``--aws_*`` pipeline
options (``--s3_endpoint_url``, ``--s3_region_name``, ...), which Beam hands to every SDK worker
through ``FileSystems.set_options``. An option set on the command line wins over the environment."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from transforms.errors import UnreadableInput

LOOPBACK = ("localhost", "127.0.0.1", "::1")
SETTINGS = ("access_key_id", "secret_access_key", "session_token", "endpoint_url", "region_name", "verify",
            "disable_ssl")


def is_s3(url: str) -> bool:
    return url.startswith(("s3://", "s3a://"))


def beam_settings() -> dict:
    """The effective ``--s3_*`` / ``--aws_*`` settings of this process's pipeline options (set by
    Beam on workers, by ``pipeline.run`` on the driver); ``{}`` when there are none."""
    try:
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.options.pipeline_options import S3Options
    except ImportError:
        return {}
    opts = FileSystems._pipeline_options  # Beam's S3 filesystem reads its options from here too
    if opts is None:
        return {}
    s3 = opts.view_as(S3Options)
    try:
        from apache_beam.options.pipeline_options import AwsOptions  # Beam >= 2.78: --aws_* defaults
        got = opts.view_as(AwsOptions).get_client_settings(s3)
    except (ImportError, AttributeError):
        got = {k: getattr(s3, f"s3_{k}", None) for k in SETTINGS}
    return {k: v for k, v in got.items() if v}


ENVIRONMENT = {"endpoint_url": "AWS_ENDPOINT_URL_S3", "access_key_id": "AWS_ACCESS_KEY_ID",
               "secret_access_key": "AWS_SECRET_ACCESS_KEY", "session_token": "AWS_SESSION_TOKEN"}


def export_to_environment() -> list[str]:
    """Put the ``--s3_*`` endpoint and credentials in this process's environment, for the worker
    processes it starts: Beam's local runner starts its SDK workers without the pipeline options
    (only its container boot on Dataflow/Flink hands them over). Returns the variables set."""
    got = beam_settings()
    for key, var in ENVIRONMENT.items():
        if got.get(key):
            os.environ[var] = str(got[key])
    return [var for key, var in ENVIRONMENT.items() if got.get(key)]


def fs_options(url: str) -> dict:
    """Keyword arguments for fsspec/s3fs reaching ``url`` (empty for anything but S3), after
    checking that credentials would not cross the network in plain http."""
    if not is_s3(url):
        return {}
    got = beam_settings()
    # The endpoint goes to s3fs explicitly even when it comes from the environment: fsspec caches
    # one filesystem per set of arguments, so an endpoint changed later in the process is not
    # answered by a cached client still bound to the old one.
    got.setdefault("endpoint_url", os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    check_endpoint(got["endpoint_url"])
    out, client = {}, {}
    for ours, theirs in (("access_key_id", "key"), ("secret_access_key", "secret"), ("session_token", "token"),
                         ("endpoint_url", "endpoint_url")):
        if got.get(ours):
            out[theirs] = got[ours]
    if got.get("region_name"):
        client["region_name"] = got["region_name"]
    if got.get("verify") is not None and "verify" in got:
        verify = got["verify"]
        client["verify"] = False if str(verify).lower() in ("false", "0", "no") else verify
    if got.get("disable_ssl"):
        out["use_ssl"] = False
    if client:
        out["client_kwargs"] = client
    return out


def check_endpoint(endpoint: str | None) -> None:
    """Credentials go only over https or to this machine: a plain-http endpoint elsewhere is
    refused unless ``VIDCURATE_ALLOW_HTTP_ENDPOINT=1`` says the network is trusted."""
    if not endpoint or not endpoint.lower().startswith("http://"):
        return
    host = (urlsplit(endpoint).hostname or "").lower()
    if host in LOOPBACK or host.startswith("127.") or os.environ.get("VIDCURATE_ALLOW_HTTP_ENDPOINT") == "1":
        return
    raise UnreadableInput(f"S3 endpoint {endpoint} is plain http to another host: requests signed with your "
                          "credentials and your data would cross the network unencrypted. Use https, or set "
                          "VIDCURATE_ALLOW_HTTP_ENDPOINT=1 if that network is trusted")
