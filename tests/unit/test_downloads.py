"""Where a downloaded attachment lands: a file path, an existing directory, or a path
written as a directory ("inbox/"), which is created when missing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from turnlog.services.app.values import Attachment, FileError, FileUpload

URL = "mem://files/1"


class MemoryFiles:
    """A file store holding one file."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def ours(self, url: str) -> bool:
        return url.startswith("mem://")

    async def download(self, url: str, path: Path) -> Path:
        await asyncio.to_thread(path.write_bytes, self.data)
        return path


def attachment(name: str = "report.csv") -> Attachment:
    return Attachment(name=name, url=URL, store=MemoryFiles(b"a,b\n"))


async def test_a_path_ending_in_a_slash_is_a_directory_created_when_missing(
    tmp_path: Path,
) -> None:
    saved = await attachment().download(f"{tmp_path}/inbox/")
    assert saved == tmp_path / "inbox" / "report.csv"
    assert saved.read_bytes() == b"a,b\n"
    assert (tmp_path / "inbox").is_dir()


async def test_nested_missing_directories_are_created(tmp_path: Path) -> None:
    saved = await attachment().download(f"{tmp_path}/a/b/")
    assert saved == tmp_path / "a" / "b" / "report.csv"


async def test_a_relative_directory_is_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    upload = FileUpload(name="export.csv", url=URL, store=MemoryFiles(b"x"))
    saved = await upload.download("inbox/")
    assert saved == Path("inbox/export.csv")
    assert (tmp_path / "inbox" / "export.csv").read_bytes() == b"x"


async def test_an_existing_directory_keeps_the_file_name(tmp_path: Path) -> None:
    saved = await attachment().download(tmp_path)
    assert saved == tmp_path / "report.csv"


async def test_a_path_without_a_slash_that_is_no_directory_is_the_file(tmp_path: Path) -> None:
    saved = await attachment().download(str(tmp_path / "copy.csv"))
    assert saved == tmp_path / "copy.csv"
    assert saved.read_bytes() == b"a,b\n"


async def test_the_file_name_never_leaves_the_directory(tmp_path: Path) -> None:
    saved = await attachment("../../escaped.csv").download(f"{tmp_path}/inbox/")
    assert saved == tmp_path / "inbox" / "escaped.csv"
    with pytest.raises(FileError, match="is no file name"):
        await attachment("..").download(f"{tmp_path}/inbox/")
