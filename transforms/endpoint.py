"""Caption fusion through an OpenAI-compatible ``/chat/completions`` endpoint (a vLLM server,
a hosted API). The key goes only over https or to this machine, and never across a redirect to
another origin."""

from __future__ import annotations

import json
import urllib.request

from transforms.captions import FUSE_INSTRUCTION, clean_caption


def secret_allowed(url: str) -> bool:
    """A credential may go to ``url``: over https, or to this machine (loopback) over http."""
    import ipaddress
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def check_endpoint_secret(endpoint: str, api_key: str | None) -> None:
    if api_key and not secret_allowed(endpoint):
        raise ValueError(f"caption.fuser.endpoint {endpoint} is plain http to another host: refusing to send "
                         "OPENAI_API_KEY there. Use an https:// endpoint, a loopback address, or unset the key")


def _origin(url: str) -> tuple:
    import urllib.parse

    p = urllib.parse.urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port or {"http": 80, "https": 443}.get(p.scheme)


class _KeepSecretRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but the Authorization header only within the same origin."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and (_origin(newurl) != _origin(req.full_url) or not secret_allowed(newurl)):
            for name in list(new.headers):
                if name.lower() == "authorization":
                    del new.headers[name]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


def endpoint_fuse(endpoint: str, model: str, batch: list[list[str]], api_key: str | None = None,
                  max_new_tokens: int = 40, timeout_s: float = 120.0) -> list[str]:
    """Fusion through an OpenAI-compatible ``/chat/completions`` endpoint (one request per clip).
    The key goes only over https or to loopback, and never across a redirect to another origin."""
    check_endpoint_secret(endpoint, api_key)
    opener = urllib.request.build_opener(_KeepSecretRedirects)
    out = []
    url = endpoint.rstrip("/") + "/chat/completions"
    for candidates in batch:
        listing = "\n".join(f"- {c}" for c in candidates)
        body = {"model": model, "temperature": 0, "max_tokens": max_new_tokens,
                "messages": [{"role": "user", "content": f"{FUSE_INSTRUCTION}\n{listing}\nAnswer with the caption only."}]}
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        with opener.open(req, timeout=timeout_s) as resp:
            reply = json.load(resp)
        out.append(clean_caption(reply["choices"][0]["message"]["content"]))
    return out
