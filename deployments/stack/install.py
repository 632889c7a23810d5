"""Everything the stack needs that is not a Python package: a JDK >= 24, Trino and the Iceberg
REST catalog server from Maven Central, and PostgreSQL from Debian.

Downloads go through Maven's own client into the shared cache (STACK_CACHE_DIR); an artifact
already in the cache is never fetched again, and Trino is unpacked there once per machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

from deployments.stack.config import StackConfig

MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
TRINO_MIN_JAVA = 24
KNOWN_JDKS = (
    Path("/usr/lib/jvm/temurin-25-jdk-amd64"),
    Path("/usr/lib/jvm/temurin-24-jdk-amd64"),
    Path("/usr/lib/jvm/java-25-openjdk-amd64"),
    Path("/usr/lib/jvm/java-24-openjdk-amd64"),
)


class StackError(RuntimeError):
    """The stack cannot be installed or started; the message says what to do."""


# --- Java ------------------------------------------------------------------------------------


def java_major(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    output = subprocess.run(
        [str(java), "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "(\d+)', output)
    return int(match.group(1)) if match else None


def find_java(config: StackConfig) -> Path:
    """A JDK home whose `java` is version >= 24 (Trino 476's minimum)."""
    candidates: list[Path] = []
    if config.java_home:
        candidates.append(config.java_home)
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]))
    candidates.extend(KNOWN_JDKS)
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path).resolve().parent.parent)
    seen: list[str] = []
    for home in candidates:
        major = java_major(home)
        if major is not None and major >= TRINO_MIN_JAVA:
            return home
        seen.append(f"{home} ({'no java' if major is None else f'Java {major}'})")
    raise StackError(
        f"Trino {config.trino_version} needs Java >= {TRINO_MIN_JAVA}; found none. Looked at: "
        + ", ".join(seen)
        + ". Install a JDK 24+ (e.g. Temurin 25) and set STACK_JAVA_HOME to its folder."
    )


# --- Maven Central ---------------------------------------------------------------------------


def maven_artifact(config: StackConfig, coordinates: str, file_name: str) -> Path:
    """Fetch `group:artifact:version[:type[:classifier]]` into the cache, once."""
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    target = config.cache_dir / file_name
    if target.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"Maven (`mvn`) is needed to download {coordinates}: install it "
            "(Debian: apt-get install maven) or put the file at " + str(target)
        )
    print(f"stack: downloading {coordinates} from Maven Central ...", flush=True)
    partial = config.cache_dir / "downloading"
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={coordinates}",
            f"-DoutputDirectory={partial}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    fetched = partial / file_name
    if result.returncode != 0 or not fetched.exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise StackError(
            f"could not download {coordinates} with Maven (exit {result.returncode}); check "
            "that Maven Central is reachable (mvn settings, proxy). Maven said:\n" + "\n".join(tail)
        )
    fetched.replace(target)  # atomic within the cache folder: no half-written artifact
    shutil.rmtree(partial, ignore_errors=True)
    return target


def trino_home(config: StackConfig) -> Path:
    """Trino server (core tarball) with the Iceberg plugin, unpacked once in the cache."""
    version = config.trino_version
    home = config.cache_dir / f"trino-server-{version}"
    if (home / ".complete").exists():
        return home
    core = maven_artifact(
        config,
        f"io.trino:trino-server-core:{version}:tar.gz",
        f"trino-server-core-{version}.tar.gz",
    )
    plugin = maven_artifact(
        config, f"io.trino:trino-iceberg:{version}:zip", f"trino-iceberg-{version}.zip"
    )
    print(f"stack: unpacking Trino {version} into {home} ...", flush=True)
    staging = config.cache_dir / f"unpacking-trino-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(core) as archive:
        archive.extractall(staging, filter="data")
    unpacked = staging / f"trino-server-core-{version}"
    with zipfile.ZipFile(plugin) as archive:
        archive.extractall(unpacked / "plugin")  # noqa: S202  # from Maven Central, checksummed
    (unpacked / "plugin" / f"trino-iceberg-{version}").rename(unpacked / "plugin" / "iceberg")
    launcher = unpacked / "bin" / "launcher"
    launcher.chmod(0o755)
    for binary in (unpacked / "bin").glob("*/bin/launcher"):
        binary.chmod(0o755)
    (unpacked / ".complete").write_text(version)
    shutil.rmtree(home, ignore_errors=True)
    unpacked.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    return home


def trino_cli_jar(config: StackConfig) -> Path:
    version = config.trino_version
    return maven_artifact(
        config,
        f"io.trino:trino-cli:{version}:jar:executable",
        f"trino-cli-{version}-executable.jar",
    )


def iceberg_rest_jar(config: StackConfig) -> Path:
    version = config.iceberg_rest_version
    return maven_artifact(
        config, f"org.apache.iceberg:iceberg-open-api:{version}", f"iceberg-open-api-{version}.jar"
    )


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The folder with `initdb` and `pg_ctl`; installs Debian's postgresql when it is missing
    and we are root (the CI case), else says how to install it."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found and shutil.which("pg_ctl"):
        return Path(str(shutil.which("pg_ctl"))).parent
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        print("stack: installing PostgreSQL (apt-get install postgresql) ...", flush=True)
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        ):
            result = subprocess.run(command, capture_output=True, text=True, env=apt_env)
            if result.returncode != 0:
                raise StackError(f"`{' '.join(command)}` failed: {result.stderr.strip()[-500:]}")
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise StackError(
            "PostgreSQL (>= 14, with contrib) is needed for the Prefect server: install it "
            "(Debian: apt-get install postgresql) and retry"
        )
    return found[-1].parent  # the newest installed major version
