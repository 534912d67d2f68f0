"""The pinned Elasticsearch release: the JDK to run it with, and its download, check and unpacking.

The distribution is the `integ-test-zip` build from Maven Central, copied from `~/.m2` when Maven
already has it, and checked against a pinned SHA-512 before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

from devtools.local_services.layout import Layout
from devtools.local_services.service import ServiceError
from devtools.local_services.system import run_checked

log = logging.getLogger(__name__)

ES = "Elasticsearch"
ES_VERSION = "8.19.21"
ES_MAVEN_GROUP = "org.elasticsearch.distribution.integ-test-zip"
ES_MAVEN_ARTIFACT = "elasticsearch"
ES_ZIP_NAME = f"elasticsearch-{ES_VERSION}.zip"
ES_ZIP_SHA512 = (
    "cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d"
    "4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd"
)
MAVEN_TIMEOUT_S = 900
# ES 8.19 runs on Java 17 and later; 25 is the newest major it was tried on here.
ES_MIN_JAVA = 17
ES_PREFERRED_MIN_JAVA = 21
ES_MAX_TESTED_JAVA = 25
JVM_ROOT = Path("/usr/lib/jvm")
ENV_ES_JAVA_HOME = "SEGMENTATION_ES_JAVA_HOME"


def es_home(layout: Layout) -> Path:
    return layout.es_dir / f"elasticsearch-{ES_VERSION}"


# --- The JDK -----------------------------------------------------------------------------------


def java_major(java_home: Path) -> int | None:
    """The JDK's major version, from its `release` file, else from `java -version`."""
    try:
        match = re.search(r'^JAVA_VERSION="(\d+)', (java_home / "release").read_text(), re.MULTILINE)
        if match:
            return int(match.group(1))
    except OSError:
        pass
    try:
        out = subprocess.run([str(java_home / "bin" / "java"), "-version"],
                             capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8" is Java 8


def choose_java_home(jvm_root: Path = JVM_ROOT) -> tuple[Path, int]:
    """The JDK to run Elasticsearch with: `$SEGMENTATION_ES_JAVA_HOME` if set, else the newest
    JDK under /usr/lib/jvm whose major is within ES 8.19's tested range (21+ preferred, then 17+)."""
    override = os.environ.get(ENV_ES_JAVA_HOME)
    if override:
        return _java_home_from_override(override)
    candidates = _jdks_under(jvm_root)
    for low, high in ((ES_PREFERRED_MIN_JAVA, ES_MAX_TESTED_JAVA), (ES_MIN_JAVA, ES_MAX_TESTED_JAVA),
                      (ES_MIN_JAVA, 10_000)):
        fitting = [(major, str(home)) for home, major in candidates.items() if low <= major <= high]
        if fitting:
            major, home = max(fitting)
            if major > ES_MAX_TESTED_JAVA:
                log.warning("using Java %d for %s %s, newer than tested (%d)", major, ES, ES_VERSION, ES_MAX_TESTED_JAVA)
            return Path(home), major
    found = ", ".join(f"{home} (Java {major})" for home, major in candidates.items()) or "none"
    raise ServiceError(
        f"{ES}: no JDK {ES_MIN_JAVA}+ under {jvm_root} (found: {found}); install one "
        f"(apt-get install -y openjdk-17-jdk-headless) or set {ENV_ES_JAVA_HOME}"
    )


def _java_home_from_override(override: str) -> tuple[Path, int]:
    home = Path(override)
    major = java_major(home) if (home / "bin" / "java").is_file() else None
    if major is None:
        raise ServiceError(f"{ES}: {ENV_ES_JAVA_HOME}={override} is not a JDK (no working bin/java)")
    if major < ES_MIN_JAVA:
        raise ServiceError(
            f"{ES}: {ENV_ES_JAVA_HOME}={override} is Java {major}; {ES} {ES_VERSION} needs {ES_MIN_JAVA}+"
        )
    return home, major


def _jdks_under(jvm_root: Path) -> dict[Path, int]:
    """Each distinct JDK under `jvm_root` (symlinks resolved) and its major version."""
    found: dict[Path, int] = {}
    if not jvm_root.is_dir():
        return found
    for entry in sorted(jvm_root.iterdir()):
        home = entry.resolve()
        if home in found or not (home / "bin" / "java").is_file():
            continue
        major = java_major(home)
        if major is not None:
            found[home] = major
    return found


# --- The distribution --------------------------------------------------------------------------


def install_elasticsearch(layout: Layout) -> None:
    """Unpack the verified distribution into `es_home(layout)` unless it is there already."""
    home = es_home(layout)
    if (home / "bin" / "elasticsearch").is_file():
        return
    zip_path = fetch_distribution(layout)
    log.info("extracting %s to %s", zip_path.name, home)
    layout.es_dir.mkdir(parents=True, exist_ok=True)
    extract_zip(zip_path, layout.es_dir, home.name)


def fetch_distribution(layout: Layout) -> Path:
    """The verified distribution zip in the downloads cache (from ~/.m2, else through Maven)."""
    layout.downloads.mkdir(parents=True, exist_ok=True)
    target = layout.downloads / ES_ZIP_NAME
    if target.is_file():
        verify_sha512(target, ES_ZIP_SHA512)
        return target
    m2_copy = _m2_zip_path()
    if m2_copy.is_file():
        log.info("copying %s from the local Maven repository", ES_ZIP_NAME)
        verify_sha512(m2_copy, ES_ZIP_SHA512)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(m2_copy, partial)
        os.replace(partial, target)
    else:
        _download_with_maven(layout.downloads)
        if not target.is_file():
            raise ServiceError(f"{ES}: Maven finished but {target} is missing")
    verify_sha512(target, ES_ZIP_SHA512)
    return target


def _m2_zip_path() -> Path:
    return (
        Path.home() / ".m2" / "repository" / Path(*ES_MAVEN_GROUP.split("."))
        / ES_MAVEN_ARTIFACT / ES_VERSION / ES_ZIP_NAME
    )


def _download_with_maven(downloads: Path) -> None:
    if shutil.which("mvn") is None:
        raise ServiceError(
            f"{ES}: Maven (mvn) is needed to download the {ES} {ES_VERSION} distribution; "
            f"install it (apt-get install -y maven) or put {ES_ZIP_NAME} in {downloads}"
        )
    coordinates = f"{ES_MAVEN_GROUP}:{ES_MAVEN_ARTIFACT}:{ES_VERSION}:zip"
    log.info("downloading %s %s with Maven", ES, ES_VERSION)
    run_checked(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={coordinates}", f"-DoutputDirectory={downloads}"],
        what=f"download {coordinates} with Maven",
        service=ES,
        timeout=MAVEN_TIMEOUT_S,
    )


def sha512_of(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha512").hexdigest()


def verify_sha512(path: Path, expected: str) -> None:
    actual = sha512_of(path)
    if actual.lower() != expected.lower():
        raise ServiceError(
            f"{ES}: checksum mismatch for {path}: expected SHA-512 {expected.lower()}, "
            f"got {actual}. The file is corrupt or not the pinned release; delete it and run "
            "`segmentation services up` again."
        )


def extract_zip(zip_path: Path, dest_parent: Path, top: str) -> None:
    """Extract `zip_path` (whose entries all live under `top/`) to `dest_parent/top`, atomically:
    into a staging folder first, moved into place only once complete."""
    staging = dest_parent / f".{top}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _extract_into(zip_path, staging)
        extracted = staging / top
        if not (extracted / "bin" / "elasticsearch").is_file():
            raise ServiceError(f"{ES}: {zip_path} does not contain {top}/bin/elasticsearch")
        os.replace(extracted, dest_parent / top)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_into(zip_path: Path, staging: Path) -> None:
    """Unzip keeping the files' modes (zipfile.extractall drops them, and bin/ must stay executable)."""
    root = staging.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            out = (staging / info.filename).resolve()
            if not out.is_relative_to(root):
                raise ServiceError(f"{ES}: refusing to extract {info.filename!r} outside {staging}")
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, out.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.chmod(out, (info.external_attr >> 16) & 0o777 or 0o644)
