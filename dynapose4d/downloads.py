"""Files off the hub: a resumable download and the SHA-256 recorded beside it, checked on every later use.

`fetch_file` downloads through `<target>.part` and, once the file is complete, writes
`<target>.sha256` (sha256sum's format). `recorded_checksum_differs` is how a run or a
second download notices a file damaged since (a disk error, a half-finished copy onto a
cluster): its digest no longer matches the record.
"""

import hashlib
from pathlib import Path

from .errors import DynaPoseError, first_line


def fetch_file(url: str, target: Path, name: str) -> None:
    """`url` into `target`, through `<target>.part`: a rerun asks only for the bytes still missing.

    A `target` already present is kept, unless it no longer matches its recorded checksum:
    then it is downloaded again.
    """
    import requests
    from tqdm import tqdm

    if target.exists():
        if not recorded_checksum_differs(target):
            return
        print(f"{name}: {target} no longer matches the checksum recorded at download; downloading it again")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    try:
        with requests.get(url, headers={"Range": f"bytes={have}-"} if have else {}, stream=True, timeout=60) as reply:
            reply.raise_for_status()
            have = have if reply.status_code == 206 else 0  # a server that ignores Range sends it all again
            size = int(reply.headers.get("content-length", 0))
            with (
                open(partial, "ab" if have else "wb") as file,
                tqdm(total=have + size or None, initial=have, unit="B", unit_scale=True, desc=name) as bar,
            ):
                for chunk in reply.iter_content(chunk_size=1 << 20):
                    bar.update(file.write(chunk))
    except requests.RequestException as error:
        raise DynaPoseError(f"{name}: downloading {url} failed ({first_line(error)}); rerun to resume") from None
    received = partial.stat().st_size
    if size and received != have + size:  # the connection ended quietly: a short file must never count as present
        raise DynaPoseError(f"{name}: {url} stopped after {received} of {have + size} bytes; rerun to resume")
    partial.rename(target)
    checksum_record(target).write_text(f"{sha256(target)}  {target.name}\n")


def checksum_record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def recorded_checksum_differs(path: Path) -> bool:
    """True when `path` has a recorded SHA-256 and its bytes no longer match it; False without a record."""
    record = checksum_record(path)
    if not record.is_file():
        return False
    recorded = record.read_text().split(maxsplit=1)
    return not recorded or recorded[0].lower() != sha256(path)
