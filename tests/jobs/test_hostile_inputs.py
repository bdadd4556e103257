"""Hostile inputs the domain refuses on its own: archives (truncated, bombs, pickle weights), configs that
imply absurd models (refused before anything is allocated), and webhook targets inside the network
(SSRF: loopback, private, link-local, metadata, IPv4 hidden in IPv6, names resolving there, redirects)."""

from __future__ import annotations

import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from infoprune_jobs.archive import ArchiveRejected, extract_model_archive
from infoprune_jobs.sources import ModelConfigRejected, check_model_config, estimate_parameters
from infoprune_jobs.webhooks import WebhookRejected, check_webhook_url, deliver
from tests.archives import tgz

LIMITS = {"max_bytes": 1_000_000, "max_members": 20, "max_parameters": 10_000_000_000}
ABSURD_CONFIGS = [
    {"model_type": "bert", "hidden_size": 10**9},
    {"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 10**6},
    {"model_type": "bert", "hidden_size": 768, "vocab_size": 10**12},
    {"model_type": "llava", "text_config": {"hidden_size": 10**6, "num_hidden_layers": 10**3}},
    {"model_type": "mixtral", "hidden_size": 4096, "num_local_experts": 10**5, "num_hidden_layers": 32},
    {"model_type": "gpt2", "n_embd": 10**7, "n_layer": 10**4},
]


def _extract(tmp_path: Path, data: bytes, **limits: Any) -> list[tuple[str, int]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "upload").write_bytes(data)
    return extract_model_archive(tmp_path / "upload", tmp_path / "out", **{**LIMITS, **limits})


MODEL = {"config.json": b'{"model_type": "bert", "hidden_size": 32}', "model.safetensors": b"\0" * 64}


@pytest.mark.parametrize("cut", [0.0005, 0.3, 0.6, 0.95])
def test_truncated_archives_are_refused(tmp_path: Path, cut: float) -> None:
    big = {**MODEL, "model.safetensors": bytes(range(256)) * 400}
    data = tgz(big)
    with pytest.raises(ArchiveRejected):
        _extract(tmp_path, data[: int(len(data) * cut)])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in big.items():
            zf.writestr(name, content)
    with pytest.raises(ArchiveRejected):
        _extract(tmp_path / "zip", buf.getvalue()[: int(len(buf.getvalue()) * cut)])


def test_corrupt_and_encrypted_archives_are_refused_not_crashes(tmp_path: Path) -> None:
    data = bytearray(tgz({**MODEL, "model.safetensors": bytes(range(256)) * 400}))
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # flipped bytes inside the deflate stream
    with pytest.raises(ArchiveRejected, match="corrupt"):
        _extract(tmp_path / "flip", bytes(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in MODEL.items():
            zf.writestr(name, content)
    encrypted = bytearray(buf.getvalue())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = -1
        while (at := encrypted.find(signature, at + 1)) >= 0:
            encrypted[at + flag_at] |= 0x1  # "encrypted": Python asks for a password
    with pytest.raises(ArchiveRejected, match="corrupt"):
        _extract(tmp_path / "enc", bytes(encrypted))


def test_gzip_tar_bomb_stops_at_the_limit_without_writing_it(tmp_path: Path) -> None:
    data = tgz({**MODEL, "weights.safetensors": b"\0" * 50_000_000})  # 50 MB of zeros: ~50 KB compressed
    assert len(data) < 100_000
    with pytest.raises(ArchiveRejected, match="size limit"):
        _extract(tmp_path, data)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= LIMITS["max_bytes"] + (1 << 20)  # at most one chunk past the limit


@pytest.mark.parametrize(
    "name", ["model.pt", "model.PTH", "m.ckpt", "w.pkl", "w.pickle", "w.npy", "w.npz", "w.joblib", "tf_model.h5"]
)
def test_pickle_only_weights_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArchiveRejected, match="safetensors"):
        _extract(tmp_path, tgz({"config.json": MODEL["config.json"], name: b"\x80\x04K\x01."}))


@pytest.mark.parametrize("config", ABSURD_CONFIGS)
def test_archive_with_an_absurd_config_is_refused(tmp_path: Path, config: dict[str, Any]) -> None:
    with pytest.raises(ArchiveRejected, match="parameters"):
        _extract(tmp_path, tgz({**MODEL, "config.json": json.dumps(config).encode()}))


def test_config_checks(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    tiny = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64, "vocab_size": 100}
    assert estimate_parameters(tiny) < 100_000
    llava_7b = {
        "model_type": "llava",
        "text_config": {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 11008, "vocab_size": 32064},
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "intermediate_size": 4096},
    }
    assert 6e9 < estimate_parameters(llava_7b) < 8e9
    path.write_text(json.dumps(llava_7b))
    check_model_config(path, 10_000_000_000)
    with pytest.raises(ModelConfigRejected, match="parameters"):
        check_model_config(path, 1_000_000_000)
    for bad in (b"[1, 2]", b"{not json", b"[" * 100_000, b'{"a": "' + b"x" * (2 << 20) + b'"}'):
        path.write_bytes(bad)
        with pytest.raises(ModelConfigRejected):
            check_model_config(path, 10**12)
    path.write_text('{"hidden_size": true, "num_hidden_layers": "1e9", "vocab_size": 1e400}')
    check_model_config(path, 10**12)  # nonsense types are ignored here; the loader refuses them later


def test_core_loader_refuses_an_absurd_config_before_allocating(tmp_path: Path) -> None:
    import resource

    from infoprune_core.errors import SourceError
    from infoprune_core.modeling import load_model

    (tmp_path / "config.json").write_text(
        json.dumps(
            {"model_type": "bert", "architectures": ["BertModel"], "hidden_size": 10**6, "num_attention_heads": 1}
        )
    )
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SourceError, match="parameters"):
        load_model(tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing was allocated


# -- webhooks ------------------------------------------------------------------------------------
INTERNAL = [
    "http://127.0.0.1/h",
    "http://127.9.9.9:8080/h",
    "http://10.0.0.1/h",
    "http://172.16.5.4/h",
    "http://192.168.1.1/h",
    "http://100.64.0.1/h",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest",
    "http://[::1]/h",
    "http://[::]/h",
    "http://0.0.0.0/h",
    "http://[::ffff:127.0.0.1]/h",
    "http://[::ffff:169.254.169.254]/h",
    "http://[64:ff9b::a9fe:a9fe]/h",
    "http://[2002:7f00:1::1]/h",
    "http://[fe80::1]/h",
    "http://224.0.0.1/h",
    "http://2130706433/h",
    "http://0x7f.1/h",
    "http://127.1/h",
    "http://localhost./h",
    "https://metadata.google.internal/computeMetadata/v1/",
    "http://printer.local/h",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_webhook_targets_inside_the_network_are_refused(url: str) -> None:
    with pytest.raises(WebhookRejected):
        check_webhook_url(url, allow_private=False, resolve=True, strict=False)
    assert check_webhook_url(url.replace(".local/", ".example/"), allow_private=True) is not None


def test_names_resolving_inside_are_refused_and_public_ones_pass() -> None:
    host = socket.gethostname()
    if all(not a.startswith(("127.", "10.", "172.", "192.168.")) for a in _addresses(host)):
        pytest.skip(f"{host} does not resolve to an internal address here")
    with pytest.raises(WebhookRejected, match="private"):
        check_webhook_url(f"https://{host}/hook", allow_private=False, resolve=True, strict=False)
    assert check_webhook_url("https://93.184.215.14/hook", allow_private=False, resolve=True) == ["93.184.215.14"]
    assert check_webhook_url("https://[2606:4700::1111]/h", allow_private=False, resolve=True) == ["2606:4700::1111"]
    # a name that does not resolve (yet) may be submitted; delivery looks again and refuses it then
    assert check_webhook_url("https://nothere.invalid/h", allow_private=False, resolve=True, strict=False) == []
    with pytest.raises(WebhookRejected, match="resolve"):
        check_webhook_url("https://nothere.invalid/h", allow_private=False, resolve=True)
    for bad in ("http://[::1/h", "http://example.com:99999/h", "gopher://example.com/", "http:///h"):
        with pytest.raises(WebhookRejected):
            check_webhook_url(bad, allow_private=True)


def _addresses(host: str) -> set[str]:
    try:
        return {str(i[4][0]) for i in socket.getaddrinfo(host, 80)}
    except OSError:
        return set()


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.server.seen.append((self.path, self.headers.get("host")))  # type: ignore[attr-defined]
        self.rfile.read(int(self.headers.get("content-length", 0)))
        redirect = self.server.redirect  # type: ignore[attr-defined]
        self.send_response(307 if redirect else 204)
        if redirect:
            self.send_header("Location", redirect)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[HTTPServer]]:
    started = []
    for _ in range(2):
        server = HTTPServer(("127.0.0.1", 0), _Recorder)
        server.seen, server.redirect = [], None  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def test_delivery_refuses_internal_targets_and_never_follows_redirects(servers: list[HTTPServer]) -> None:
    hook, inner = servers
    secret = "whsec_" + "A" * 32
    ok, detail = deliver(f"http://127.0.0.1:{hook.server_port}/h", secret, "job.done", {}, msg_id="m", attempts=1)
    assert not ok and "private" in detail and hook.seen == []  # refused by default: nothing was sent
    # allowed (closed network): delivered to the address vetted, with the original Host header
    ok, _ = deliver(
        f"http://localhost:{hook.server_port}/h", secret, "job.done", {}, msg_id="m", attempts=1, allow_private=True
    )
    assert ok and hook.seen == [("/h", f"localhost:{hook.server_port}")]
    hook.redirect = f"http://127.0.0.1:{inner.server_port}/metadata"  # type: ignore[attr-defined]
    ok, detail = deliver(
        f"http://127.0.0.1:{hook.server_port}/h", secret, "job.done", {}, msg_id="m", attempts=1, allow_private=True
    )
    assert not ok and "307" in detail and inner.seen == []
