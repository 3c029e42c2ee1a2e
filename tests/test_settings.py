"""Settings a hospital's IT gets wrong in practice: database passwords with URL characters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from cds_service.cli import main
from cds_service.settings import Settings, describe_database

PASSWORD = "p@ss/w:rd?#%"


def test_the_password_as_its_own_setting_needs_no_url_encoding():
    settings = Settings(
        database_url="postgresql+psycopg://pgx@db.example.org:5432/pgx_cds",
        database_password=PASSWORD,
    )
    url = make_url(settings.database_url)
    assert url.password == PASSWORD
    assert (url.username, url.host, url.port, url.database) == (
        "pgx",
        "db.example.org",
        5432,
        "pgx_cds",
    )
    # what the driver is handed
    assert create_engine(settings.database_url).url.password == PASSWORD


def test_the_separate_password_replaces_one_in_the_url():
    settings = Settings(
        database_url="postgresql+psycopg://pgx:old@db/pgx_cds", database_password="new"
    )
    assert make_url(settings.database_url).password == "new"


def test_an_unencoded_at_sign_is_refused_without_showing_the_password(monkeypatch, capsys):
    monkeypatch.setenv("PGX_CDS_DATABASE_URL", "postgresql+psycopg://pgx:se@cret@db:5432/pgx")
    with pytest.raises(ValidationError):
        Settings()
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err
    assert "PGX_CDS_DATABASE_URL" in err and "%40" in err and "PGX_CDS_DATABASE_PASSWORD" in err
    assert "se@cret" not in err and "cret" not in err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://pgx:s3cret@db:5432/pgx?sslmode=require",
            "postgresql+psycopg://db:5432/pgx",
        ),
        ("postgresql+psycopg://pgx:se@cret@db/pgx", "postgresql+psycopg://db/pgx"),
        ("postgresql+psycopg://pgx@db/pgx", "postgresql+psycopg://db/pgx"),
        ("sqlite:////data/feedback.sqlite3", "sqlite:////data/feedback.sqlite3"),
    ],
)
def test_a_database_is_named_by_where_it_is_never_by_who_logs_in(url, shown):
    assert describe_database(url) == shown
