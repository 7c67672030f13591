"""The Delta Lake jars for local mode: fetched once from Maven Central into a cache.

The `delta-spark` wheel carries Python code only; the JVM side is two jars
(`delta-spark_<spark major.minor>_2.13` and `delta-storage`). Set-up copies them
into a local cache folder (from `~/.m2` when Maven already has them, else from
Maven Central with the published SHA-1 checked), so that every later run works
offline. On a cluster or on Databricks the jars come from `--packages` or the
runtime instead, and this module is not used.

Run as `python -m instructlake.core.jars` to fill the cache (the Makefile does).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

import pyspark

DELTA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
MAVEN_REPO = "https://repo1.maven.org/maven2"
DEFAULT_CACHE = "~/.cache/instructlake/jars"


def spark_major_minor() -> str:
    return ".".join(pyspark.__version__.split(".")[:2])


def delta_artifacts() -> list[tuple[str, str, str]]:
    """(group, artifact, version) of every jar local mode needs."""
    return [
        ("io.delta", f"delta-spark_{spark_major_minor()}_{SCALA_VERSION}", DELTA_VERSION),
        ("io.delta", "delta-storage", DELTA_VERSION),
    ]


def delta_package_coordinates() -> str:
    """The `--packages` value for spark-submit on a cluster."""
    return ",".join(":".join(a) for a in delta_artifacts()[:1])


def cache_dir(configured: str | None = None) -> Path:
    raw = configured or os.environ.get("INSTRUCTLAKE_JARS_DIR") or DEFAULT_CACHE
    return Path(os.path.expanduser(raw))


def jar_name(artifact: str, version: str) -> str:
    return f"{artifact}-{version}.jar"


def cached_jars(configured: str | None = None) -> list[Path]:
    """Paths of the cached jars; raises FileNotFoundError naming what is missing."""
    folder = cache_dir(configured)
    paths = [folder / jar_name(a, v) for _, a, v in delta_artifacts()]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            "Delta Lake jars are missing from the local jar cache: "
            + ", ".join(str(p) for p in missing)
            + ". Run `make setup` (or `python -m instructlake.core.jars`) once with network access "
            "to Maven Central, or set INSTRUCTLAKE_JARS_DIR to a folder that holds them."
        )
    return paths


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out)


def fetch(configured: str | None = None, repo: str | None = None) -> list[Path]:
    """Fill the cache; a no-op for jars already there. Returns the jar paths."""
    folder = cache_dir(configured)
    folder.mkdir(parents=True, exist_ok=True)
    repo = (repo or os.environ.get("MAVEN_REPO_URL") or MAVEN_REPO).rstrip("/")
    m2 = Path.home() / ".m2" / "repository"
    out = []
    for group, artifact, version in delta_artifacts():
        target = folder / jar_name(artifact, version)
        out.append(target)
        if target.is_file():
            continue
        rel = f"{group.replace('.', '/')}/{artifact}/{version}/{jar_name(artifact, version)}"
        local = m2 / rel
        with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as tmp:
            tmp_path = Path(tmp.name)
        try:
            if local.is_file():
                shutil.copyfile(local, tmp_path)
                print(f"jars: copied {local.name} from {m2}")
            else:
                print(f"jars: downloading {repo}/{rel}")
                _download(f"{repo}/{rel}", tmp_path)
                with urllib.request.urlopen(f"{repo}/{rel}.sha1", timeout=60) as resp:
                    expected = resp.read().decode().split()[0].strip()
                actual = _sha1(tmp_path)
                if actual != expected:
                    raise RuntimeError(
                        f"checksum mismatch for {rel}: expected sha1 {expected}, got {actual}"
                    )
            tmp_path.chmod(0o644)
            os.replace(tmp_path, target)
        finally:
            tmp_path.unlink(missing_ok=True)
    return out


if __name__ == "__main__":
    for p in fetch(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"jars: {p}")
