"""Where the database is: --db, then JOBDB_URL, then the nearest jobdb.toml, then a default."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from jobdb.config import (
    CONFIG_FILE,
    DEFAULT_SQLITE_FILE,
    ENV_VAR,
    display_url,
    parse_url,
    resolve_url,
)
from jobdb.errors import BadInput, ConfigError

PG = "postgresql+psycopg://alice:s3cret@dbhost:5433/jobs"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with no JOBDB_URL and no jobdb.toml above it."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    assert not any((p / CONFIG_FILE).exists() for p in (folder, *folder.parents))
    monkeypatch.chdir(folder)
    return folder


def _write_toml(folder: Path, url: str) -> Path:
    path = folder / CONFIG_FILE
    path.write_text(f'url = "{url}"\n')
    return path


# --------------------------------------------------------------------------
# the lookup order


def test_default_is_a_sqlite_file_in_the_working_directory(project: Path) -> None:
    resolved = resolve_url()
    assert resolved.source == "default"
    assert resolved.url.get_backend_name() == "sqlite"
    assert Path(resolved.url.database or "") == project / DEFAULT_SQLITE_FILE


def test_explicit_cwd_is_used_for_the_default(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    resolved = resolve_url(cwd=other)
    assert Path(resolved.url.database or "") == other / DEFAULT_SQLITE_FILE


def test_toml_in_the_working_directory_beats_the_default(project: Path) -> None:
    path = _write_toml(project, "sqlite:////data/jobs.sqlite")
    resolved = resolve_url()
    assert resolved.source == str(path)
    assert resolved.url.database == "/data/jobs.sqlite"


def test_nearest_toml_in_a_parent_is_found(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_toml(project.parent, "sqlite:////far/away.sqlite")
    near = _write_toml(project, "sqlite:////near/by.sqlite")
    deep = project / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    resolved = resolve_url()
    assert resolved.source == str(near)
    assert resolved.url.database == "/near/by.sqlite"


def test_env_beats_toml(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_toml(project, "sqlite:////from/toml.sqlite")
    monkeypatch.setenv(ENV_VAR, "sqlite:////from/env.sqlite")
    resolved = resolve_url()
    assert resolved.source == ENV_VAR
    assert resolved.url.database == "/from/env.sqlite"


def test_empty_env_is_ignored(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    assert resolve_url().source == "default"


def test_cli_beats_env_and_toml(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_toml(project, "sqlite:////from/toml.sqlite")
    monkeypatch.setenv(ENV_VAR, "sqlite:////from/env.sqlite")
    resolved = resolve_url("sqlite:////from/cli.sqlite")
    assert resolved.source == "--db"
    assert resolved.url.database == "/from/cli.sqlite"


def test_relative_sqlite_path_in_toml_is_relative_to_the_toml(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_toml(project, "sqlite:///runs/jobdb.sqlite")
    sub = project / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    resolved = resolve_url()
    assert Path(resolved.url.database or "") == project / "runs" / "jobdb.sqlite"


def test_absolute_sqlite_path_in_toml_is_kept(project: Path) -> None:
    _write_toml(project, "sqlite:////abs/jobdb.sqlite")
    assert resolve_url().url.database == "/abs/jobdb.sqlite"


def test_postgres_url_in_toml(project: Path) -> None:
    _write_toml(project, PG)
    url = resolve_url().url
    assert url.get_backend_name() == "postgresql"
    assert (url.host, url.port, url.database, url.password) == ("dbhost", 5433, "jobs", "s3cret")


# --------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "content",
    [
        'url = "sqlite:///x.sqlite',  # unterminated string
        "url = ",
        "[[[",
    ],
    ids=["unterminated", "no-value", "brackets"],
)
def test_bad_toml_is_a_config_error(project: Path, content: str) -> None:
    (project / CONFIG_FILE).write_text(content)
    with pytest.raises(ConfigError, match="cannot read it as TOML") as info:
        resolve_url()
    assert info.value.exit_code == 2
    assert str(project / CONFIG_FILE) in str(info.value)


@pytest.mark.parametrize(
    "content",
    ['database = "sqlite:///x.sqlite"\n', 'url = ""\n', "url = 5\n", ""],
    ids=["other-key", "empty", "not-a-string", "empty-file"],
)
def test_toml_without_a_url_is_a_config_error(project: Path, content: str) -> None:
    (project / CONFIG_FILE).write_text(content)
    with pytest.raises(ConfigError, match='expected a key url = "<database URL>"') as info:
        resolve_url()
    assert info.value.exit_code == 2
    assert isinstance(info.value, BadInput)


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "oracle+oracledb://u@h/db", "mssql+pyodbc://u@h/db"]
)
@pytest.mark.parametrize("where", ["--db", "env", "toml"])
def test_unsupported_backend_is_a_config_error(
    project: Path, monkeypatch: pytest.MonkeyPatch, url: str, where: str
) -> None:
    cli = None
    if where == "--db":
        cli = url
    elif where == "env":
        monkeypatch.setenv(ENV_VAR, url)
    else:
        _write_toml(project, url)
    with pytest.raises(ConfigError, match="unsupported database") as info:
        resolve_url(cli)
    assert info.value.exit_code == 2
    assert make_url(url).get_backend_name() in str(info.value)


def test_not_a_url_is_a_config_error_without_the_password(project: Path) -> None:
    raw = "post gres://alice:s3cret@dbhost/jobs"
    with pytest.raises(ConfigError, match="not a database URL") as info:
        resolve_url(raw)
    assert info.value.exit_code == 2
    assert "s3cret" not in str(info.value)
    assert info.value.hint is not None
    assert "postgresql+psycopg://" in info.value.hint


def test_bad_port_is_a_config_error(project: Path) -> None:
    with pytest.raises(ConfigError):
        resolve_url("postgresql://alice:s3cret@dbhost:notaport/jobs")


# --------------------------------------------------------------------------
# drivers and display


@pytest.mark.parametrize("raw", ["postgresql://u@h/db", "postgresql+psycopg://u@h/db"])
def test_plain_postgresql_gets_the_psycopg3_driver(raw: str) -> None:
    url = parse_url(raw, "--db")
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.host, url.database) == ("u", "h", "db")


def test_other_postgresql_drivers_are_kept() -> None:
    assert parse_url("postgresql+psycopg2://u@h/db", "--db").drivername == "postgresql+psycopg2"


def test_display_url_hides_the_password_of_a_url_object() -> None:
    url = make_url(PG)
    shown = display_url(url)
    assert "s3cret" not in shown
    assert shown == "postgresql+psycopg://alice:***@dbhost:5433/jobs"
    assert url.password == "s3cret"  # the URL itself is unchanged


def test_display_url_hides_the_password_of_a_string() -> None:
    assert display_url(PG) == "postgresql+psycopg://alice:***@dbhost:5433/jobs"


def test_display_url_without_a_password_is_unchanged() -> None:
    assert display_url("sqlite:////tmp/x.sqlite") == "sqlite:////tmp/x.sqlite"
    assert display_url(URL.create("postgresql+psycopg", "bob", None, "h", 1, "d")) == (
        "postgresql+psycopg://bob@h:1/d"
    )


@pytest.mark.parametrize(
    "raw",
    ["post gres://alice:s3cret@dbhost/jobs", "://alice:s3cret@dbhost/jobs"],
    ids=["space-in-scheme", "no-scheme"],
)
def test_display_url_hides_the_password_of_an_unparseable_string(raw: str) -> None:
    shown = display_url(raw)
    assert "s3cret" not in shown
    assert "alice:***@dbhost/jobs" in shown


def test_display_url_hides_the_password_without_a_scheme() -> None:
    assert "s3cret" not in display_url("alice:s3cret@dbhost/jobs")


def test_display_url_survives_a_bad_port() -> None:
    assert "s3cret" not in display_url("postgresql://alice:s3cret@dbhost:notaport/jobs")
