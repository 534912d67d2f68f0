"""Paths and file access in the data lake, a local folder or `s3://bucket/prefix` alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

MANIFEST_NAME = "_manifest.json"


def partition_folder_name(partition_key: str) -> str:
    """Hadoop paths cannot hold ':' (hourly keys are `YYYY-MM-DD-HH:00`), so it becomes '_'."""
    return partition_key.replace(":", "_")


@dataclass(frozen=True)
class Lake:
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://") or self.uri.startswith("s3a://")

    def _join(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *parts])

    def raw_table(self, table: str) -> str:
        return self._join("raw", table)

    def results_dir(self, segment_type: str, partition_key: str) -> str:
        return self._join("segments", segment_type, partition_folder_name(partition_key))

    def segment_type_dir(self, segment_type: str) -> str:
        return self._join("segments", segment_type)

    @staticmethod
    def for_spark(uri: str) -> str:
        """Spark reaches S3 through the s3a connector."""
        return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri

    def filesystem(self) -> tuple[pafs.FileSystem, str]:
        """The pyarrow filesystem and the root path inside it."""
        uri = self.uri.replace("s3a://", "s3://", 1)
        if "://" not in uri:
            return pafs.LocalFileSystem(), uri
        return pafs.FileSystem.from_uri(uri)

    def _path_in_fs(self, uri: str) -> tuple[pafs.FileSystem, str]:
        fs, root = self.filesystem()
        relative = uri[len(self.uri.rstrip("/")) :].lstrip("/")
        return fs, f"{root.rstrip('/')}/{relative}" if relative else root

    def write_json(self, uri: str, document: dict[str, Any]) -> None:
        fs, path = self._path_in_fs(uri)
        with fs.open_output_stream(path) as out:
            out.write(json.dumps(document, indent=2, sort_keys=True).encode())

    def read_json(self, uri: str) -> dict[str, Any]:
        fs, path = self._path_in_fs(uri)
        with fs.open_input_stream(path) as source:
            return json.loads(source.read())

    def exists(self, uri: str) -> bool:
        fs, path = self._path_in_fs(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def modified_at(self, uri: str) -> float | None:
        """POSIX time of the last write, or None where nothing is."""
        fs, path = self._path_in_fs(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound or info.mtime is None:
            return None
        return info.mtime.timestamp()

    def parquet_files(self, uri: str, smallest_first: bool = False) -> list[str]:
        """Data files of a Spark output folder as paths inside `filesystem()`: by name, or by size
        (then name), from the one listing either way."""
        fs, path = self._path_in_fs(uri)
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        files = sorted((i for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")), key=lambda i: i.path)
        if smallest_first:
            files.sort(key=lambda i: i.size or 0)  # stable: by name among files of one size
        return [i.path for i in files]

    def child_folders(self, uri: str) -> list[str]:
        fs, path = self._path_in_fs(uri)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def delete_folder(self, uri: str) -> None:
        fs, path = self._path_in_fs(uri)
        fs.delete_dir(path)
