"""Data-root lookup, local file search and the checked, mirrored download."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import platformdirs
import pytest

from analogtrain.data import paths
from analogtrain.errors import DataError


def _closed_port_url(name: str = "") -> str:
    """An http URL on localhost whose port has nothing listening (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/{name}"


@pytest.fixture
def payload(tmp_path: Path) -> tuple[Path, str, str]:
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    data = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, spans several read chunks
    src.write_bytes(data)
    return src, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


def test_root_order_explicit_then_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path / "env"))
    assert paths.data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert paths.data_root() == tmp_path / "env"
    monkeypatch.setenv(paths.ENV_VAR, "  ")  # blank counts as unset
    assert paths.data_root() == Path(platformdirs.user_cache_dir("analogtrain"))
    monkeypatch.delenv(paths.ENV_VAR)
    assert paths.data_root() == Path(platformdirs.user_cache_dir("analogtrain"))
    assert paths.dataset_dir("mnist", tmp_path) == tmp_path / "mnist"


def test_data_dir_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.data_root("~/d") == tmp_path / "d"


def test_find_file_prefers_subfolder_but_accepts_root(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    (tmp_path / "f.txt").write_text("root")
    assert paths.find_file("f.txt", "mnist", tmp_path) == tmp_path / "f.txt"
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "f.txt").write_text("sub")
    assert paths.find_file("f.txt", "mnist", tmp_path) == tmp_path / "mnist" / "f.txt"
    assert paths.find_file("nope.txt", "mnist", tmp_path) is None
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert paths.find_file("f.txt", "mnist") == tmp_path / "mnist" / "f.txt"


def test_download_from_file_url_with_progress(payload, tmp_path, capfd):
    src, sha, _ = payload
    dest = tmp_path / "out" / "blob.bin"
    got = paths.download([src.as_uri()], dest, sha256=sha, progress=True)
    assert got == dest and dest.read_bytes() == src.read_bytes()
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left behind
    err = capfd.readouterr().err
    assert "blob.bin" in err  # the tqdm bar names the file


def test_download_md5_and_mirror_fallback(payload, tmp_path):
    src, _, md5 = payload
    dest = tmp_path / "blob.bin"
    missing = (tmp_path / "nowhere" / "blob.bin").as_uri()
    paths.download([missing, _closed_port_url("blob.bin"), src.as_uri()], dest, md5=md5, progress=False)
    assert dest.read_bytes() == src.read_bytes()


def test_download_rejects_wrong_checksum_and_leaves_nothing(payload, tmp_path):
    src, _, _ = payload
    dest = tmp_path / "d" / "blob.bin"
    with pytest.raises(DataError) as ei:
        paths.download([src.as_uri()], dest, sha256="0" * 64, progress=False)
    msg = str(ei.value)
    assert "blob.bin" in msg and "sha256 mismatch" in msg and str(dest.parent) in msg
    assert "\n" not in msg
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_offline_download_names_file_and_folder(tmp_path):
    dest = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    urls = [_closed_port_url("train-images-idx3-ubyte.gz"), (tmp_path / "missing.gz").as_uri()]
    with pytest.raises(DataError) as ei:
        paths.download(urls, dest, sha256="0" * 64, progress=False, timeout=5)
    msg = str(ei.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg
    assert f"put the original file in {dest.parent}" in msg
    assert "\n" not in msg
    assert not dest.exists()


def test_fetch_file_no_download_gives_clear_error(tmp_path):
    with pytest.raises(DataError) as ei:
        paths.fetch_file("x.gz", "mnist", mirrors=[], sha256="0" * 64, data_dir=tmp_path,
                         download_missing=False, what="MNIST")
    msg = str(ei.value)
    assert "MNIST file x.gz not found in" in msg and str(tmp_path / "mnist") in msg
    assert "download=True" in msg


def test_fetch_file_downloads_into_subfolder_and_verifies_local(payload, tmp_path):
    src, sha, _ = payload
    root = tmp_path / "root"
    mirror = src.parent.as_uri()  # base URL without trailing slash is accepted
    got = paths.fetch_file("blob.bin", "things", mirrors=[mirror], sha256=sha, data_dir=root, progress=False)
    assert got == root / "things" / "blob.bin"
    # a second call finds it locally; a damaged local copy fails its check with the fix
    got.write_bytes(b"damaged")
    with pytest.raises(DataError, match=r"blob.bin in .*things fails its SHA-256 check.*delete it"):
        paths.fetch_file("blob.bin", "things", mirrors=[mirror], sha256=sha, data_dir=root)
    # verify=False accepts it as is
    assert paths.fetch_file("blob.bin", "things", mirrors=[], sha256=sha, data_dir=root, verify=False) == got


def test_verify_checksum_returns_digest(payload):
    src, sha, md5 = payload
    assert paths.verify_checksum(src, sha256=sha) == sha
    assert paths.verify_checksum(src, md5=md5) == md5
    with pytest.raises(DataError, match="MD5"):
        paths.verify_checksum(src, md5="f" * 32)
