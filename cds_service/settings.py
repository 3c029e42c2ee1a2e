"""Service settings, from environment variables prefixed ``PGX_CDS_`` (see docs/operations.md)."""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
from functools import lru_cache
from importlib import resources
from importlib import util as import_util
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The databases the service supports, by SQLAlchemy backend: the driver, how a URL names it,
#: the Python module the driver needs and how to get that.
DATABASES = {
    "sqlite": ("pysqlite", "sqlite:///", "sqlite3", "this Python was built without it"),
    "postgresql": (
        "psycopg",
        "postgresql+psycopg://",
        "psycopg",
        "pip install 'pgx-pain-cds[postgres]'",
    ),
}
DATABASE_EXAMPLES = (
    "sqlite:////path/to/feedback.sqlite3 or postgresql+psycopg://user:password@host/database"
)


#: The public CDS Hooks sandbox: named among the default origins of an unauthenticated
#: (testing) service, so Chrome's private-network check lets it reach a tester's machine.
PUBLIC_SANDBOX = "https://sandbox.cds-hooks.org"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pgx-cds"


def default_workers() -> int:
    """The CPU cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a container limited to 2 CPUs on a 64-core node gets 2 workers, not 64)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(cores, 64))


def shipped_dir(name: str) -> Path:
    """A data folder that ships inside the package (``knowledge``, ``sandbox``).

    An installed wheel has it as ``cds_service/<name>_files`` (see pyproject.toml); a source
    checkout (editable install) reads the folder at the top of the repository.
    """
    package = Path(str(resources.files("cds_service")))
    installed = package / f"{name}_files"
    return installed if installed.is_dir() else package.parent / name


def default_knowledge_dir() -> Path:
    return shipped_dir("knowledge")


class Settings(BaseSettings):
    # Errors never repeat the value: the database URL may hold a password.
    model_config = SettingsConfigDict(
        env_prefix="PGX_CDS_", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{default_data_dir() / 'feedback.sqlite3'}",
        description="SQLAlchemy URL of the feedback database (SQLite file or PostgreSQL).",
    )
    database_password: SecretStr | None = Field(
        default=None,
        description="The database password, apart from the URL (as it is, no URL-encoding: "
        "'@', ':' and '/' are fine); it replaces any password in PGX_CDS_DATABASE_URL.",
    )
    knowledge_dir: Path = Field(
        default_factory=default_knowledge_dir,
        description="Folder with the knowledge files (recommendations, genes, drug codes).",
    )
    site_codes: Path | None = Field(
        default=None,
        description="JSON file mapping the site's local result codes to gene and result kind.",
    )
    site_config: Path | None = Field(
        default=None,
        description="JSON file with the site's alerting policy: per drug or drug-gene on, off "
        "or silent; global silent mode; indicator overrides; pre-test cards; active hooks; "
        "local result codes (see knowledge/site-config.example.json).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Days to keep card log and feedback rows; `pgx-cds purge` deletes older "
        "ones. Unset: kept until purged with --days.",
    )
    trusted_issuers: dict[str, str] = Field(
        default_factory=dict,
        description='CDS clients allowed to call, as JSON {"iss": "JWKS URL"}; when set, every '
        "call needs a valid client JWT. Empty: no client authentication (testing only).",
    )
    public_url: str | None = Field(
        default=None,
        description="The service's public base URL (e.g. https://cds.example.org) when behind a "
        "proxy; JWT audiences are checked against it.",
    )
    fhir_servers: str = Field(
        default="",
        description="FHIR server base URLs the service may query, comma-separated "
        "(a request naming another gets 403). Required with PGX_CDS_TRUSTED_ISSUERS (unless "
        "every issuer has its own list); empty without them allows any server except "
        "link-local and cloud-metadata addresses (sandbox and testing only).",
    )
    issuer_fhir_servers: dict[str, list[str]] = Field(
        default_factory=dict,
        description='FHIR server base URLs per trusted issuer, as JSON {"iss": ["URL", ...]}; '
        "a call authenticated as that issuer may query only these (instead of "
        "PGX_CDS_FHIR_SERVERS).",
    )
    fhir_timeout: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="Seconds to wait for the EHR's FHIR server per socket read.",
    )
    fhir_budget: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description="Seconds in total for all FHIR reads of one hook call; past it the data "
        "counts as unavailable (412, or the cards that can be given without it).",
    )
    fhir_max_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        description="Largest FHIR response read (bytes); a larger one counts as unavailable.",
    )
    fhir_max_pages: int = Field(
        default=5,
        ge=1,
        le=50,
        description="How many search result pages (next links) to follow at most.",
    )
    worklist_budget: float = Field(
        default=1800.0,
        gt=0,
        le=86400,
        description="`pgx-cds worklist`: seconds in total for a run (each single FHIR read "
        "stays within PGX_CDS_FHIR_TIMEOUT and PGX_CDS_FHIR_BUDGET); `--budget` overrides it.",
    )
    worklist_max_pages: int = Field(
        default=200,
        ge=1,
        le=100_000,
        description="`pgx-cds worklist`: pages of 100 a search may have at most (the searches "
        "for all active orders of a drug are long); `--max-pages` overrides it.",
    )
    hash_key: SecretStr | None = Field(
        default=None,
        description="Key of the keyed hashes of patient and order ids in the card log: at least "
        "32 random bytes written as hex or base64 (`openssl rand -hex 32`); older keys follow "
        "it, comma-separated, while rows hashed with them are still checked (rotation). "
        "Required (or PGX_CDS_HASH_KEY_FILE) with PGX_CDS_TRUSTED_ISSUERS; unset without "
        "them: a random key kept in the database (testing only).",
    )
    hash_key_file: Path | None = Field(
        default=None,
        description="File holding PGX_CDS_HASH_KEY's value (a mounted secret): the current key "
        "first, older ones after it, one a line.",
    )
    shc_key: Path | None = Field(
        default=None,
        description="File holding the SMART Health Card issuer's private key (a P-256 JWK, "
        "or a JWK Set whose first private key signs and whose other keys stay listed), e.g. "
        "a mounted Secret. Unset: one key made once and kept in the database.",
    )
    smart_client_id: str | None = Field(
        default=None,
        description="The client id the EHR registered the patient-card SMART app under; set "
        "(with PGX_CDS_PUBLIC_URL), the service serves the app's EHR launch at /smart/launch "
        "and the patient-view card links to it.",
    )
    feedback_per_minute: int = Field(
        default=600,
        ge=1,
        description="Feedback items stored per client a minute at most (counted in the "
        "database, across replicas); more is a 429.",
    )
    feedback_unknown_per_hour: int = Field(
        default=100,
        ge=1,
        description="Feedback items per client an hour about cards the card log does not know "
        "(yet: a card another replica is still writing) at most; more is a 429.",
    )
    replay_fallback: Literal["pod", "refuse"] = Field(
        default="pod",
        description="While the database is unreachable: `pod` checks client-JWT replays in a "
        "file shared by the pod's workers (a token may then pass once per replica); "
        "`refuse` answers authenticated calls 503 instead.",
    )
    allow_insecure_http: bool = Field(
        default=False,
        description="With client authentication, allow http:// key-set and FHIR URLs on hosts "
        "other than this machine (loopback is always allowed); logged at start. Never in "
        "production: keys and patient data would cross the network in clear.",
    )
    guidelines: str = Field(
        default="cpic",
        description="The guideline sets the service advises by, in order, comma-separated: "
        "cpic, dpwg (e.g. dpwg or dpwg,cpic). For each drug and result the first set with a "
        "recommendation (an explicit 'no action' included) decides the card, and the card says "
        "where another listed set advises differently. The site file's 'guidelines' wins.",
    )
    pretest_drugs: str = Field(
        default="",
        description="Drugs that get a pre-test card when ordered with no result on file for "
        "their gene, comma-separated (codeine, tramadol, celecoxib, meloxicam); carbamazepine "
        "and oxcarbazepine (HLA-B*15:02) are on by default.",
    )
    patient_view_no_results_card: bool = Field(
        default=False,
        description="patient-view: show a 'no PGx results on file' card for a patient with no "
        "pharmacogenomic result (off: no card).",
    )
    cors_origins: str | None = Field(
        default=None,
        description="Allowed browser origins, comma-separated, or * for any (refused with "
        "PGX_CDS_TRUSTED_ISSUERS). Unset: without client authentication * and the public "
        "CDS Hooks sandbox by name (private-network approval); with it, none.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port on which `pgx-cds serve` answers GET /metrics (on --host), apart "
        "from the hook port. Unset: /metrics on the hook port, only without client "
        "authentication.",
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text, or json: one JSON object a line with a request id (for log shippers).",
    )
    migrate_on_start: bool = Field(
        default=True,
        description="Bring the database schema up to date at start (under a database lock); "
        "false: the site runs `pgx-cds db upgrade` itself and the service refuses an old schema.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address `pgx-cds serve` listens on (0.0.0.0: all; the container sets it).",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port `pgx-cds serve` listens on.")
    workers: int = Field(
        default_factory=lambda: default_workers(),
        ge=1,
        le=64,
        description="Worker processes of `pgx-cds serve` (default: one per CPU core).",
    )

    @model_validator(mode="after")
    def _password(self) -> Settings:
        """The URL with the separate password in it (encoded by SQLAlchemy, as a URL must
        hold it); every user of ``database_url`` then gets it."""
        if self.database_password is not None:
            from sqlalchemy.engine import make_url

            url = make_url(self.database_url).set(
                password=self.database_password.get_secret_value()
            )
            self.database_url = url.render_as_string(hide_password=False)
        return self

    @model_validator(mode="after")
    def _audience_checked(self) -> Settings:
        self._audience()
        return self

    def _audience(self) -> None:
        if self.trusted_issuers and not self.public_url:
            raise ValueError(
                "PGX_CDS_PUBLIC_URL is required with PGX_CDS_TRUSTED_ISSUERS: JWT audiences are "
                "checked against the service's public URL, never the request's Host header"
            )
        self.check_fhir_allowlist()
        self.hash_keys()  # (ValueError naming what is wrong)
        self.check_transport()
        if self.trusted_issuers and "*" in self.cors_origin_set:
            raise ValueError(
                "PGX_CDS_CORS_ORIGINS=* is refused with PGX_CDS_TRUSTED_ISSUERS: name the EHR's "
                "browser origins (https://ehr.example.org), or leave it unset for none"
            )
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError("PGX_CDS_METRICS_PORT must differ from PGX_CDS_PORT")

    @property
    def cors_origin_set(self) -> frozenset[str]:
        """The browser origins allowed to call ("*": any); unset, none with client
        authentication, and without it any, the public CDS Hooks sandbox named (so a tester's
        Chrome may let it reach a service on their own machine: private-network approval
        goes only to a named origin)."""
        if self.cors_origins is None:
            return frozenset() if self.trusted_issuers else frozenset({"*", PUBLIC_SANDBOX})
        return frozenset(o.strip() for o in self.cors_origins.split(",") if o.strip())

    def check_transport(self) -> None:
        """With client authentication, key sets and FHIR servers must be https:// (an
        http:// one on this machine's loopback, or with ``allow_insecure_http``, passes):
        ValueError naming the first that is not."""
        if not self.trusted_issuers or self.allow_insecure_http:
            return
        urls = [("key set (JWKS) URL", u) for u in self.trusted_issuers.values()]
        urls += [("FHIR server", u) for u in self.fhir_server_list()]
        urls += [("FHIR server", u) for us in self.issuer_fhir_servers.values() for u in us]
        for what, url in urls:
            if insecure_http(url):
                raise ValueError(
                    f"the {what} {url!r} is http://: with PGX_CDS_TRUSTED_ISSUERS only https:// "
                    "(or http:// on this machine's loopback) is accepted; "
                    "PGX_CDS_ALLOW_INSECURE_HTTP=true allows it (testing only)"
                )

    def check(self) -> None:
        """The checks across settings, again (settings made with ``model_copy`` skip them)."""
        self._audience()

    def check_fhir_allowlist(self) -> None:
        """With client authentication, the FHIR servers must be listed (ValueError if not)."""
        unlisted = [i for i in self.trusted_issuers if not self.issuer_fhir_servers.get(i)]
        if unlisted and not self.fhir_server_list():
            raise ValueError(
                "PGX_CDS_FHIR_SERVERS (or PGX_CDS_ISSUER_FHIR_SERVERS for every trusted issuer) "
                "is required with PGX_CDS_TRUSTED_ISSUERS: an authenticated service must not "
                "send requests (with the EHR's token) to any server a caller names"
            )

    def hash_keys(self) -> list[bytes]:
        """The card log's hashing keys, the current one first (``[]``: none configured, the
        key kept in the database is used). ValueError when a key is too short or not
        random-looking, when both settings are given, or when client authentication is on
        and no key is configured (a key kept in the database it protects is no protection)."""
        if self.hash_key is not None and self.hash_key_file is not None:
            raise ValueError("set PGX_CDS_HASH_KEY or PGX_CDS_HASH_KEY_FILE, not both")
        if self.hash_key_file is not None:
            text, where = _read_key_file(self.hash_key_file), "PGX_CDS_HASH_KEY_FILE"
        elif self.hash_key is not None:
            text, where = self.hash_key.get_secret_value(), "PGX_CDS_HASH_KEY"
        else:
            text, where = "", ""
        keys = [k for k in re.split(r"[\s,]+", text) if k]
        if where and not keys:
            raise ValueError(f"{where} holds no key")
        if not keys and self.trusted_issuers:
            raise ValueError(
                "PGX_CDS_HASH_KEY (or PGX_CDS_HASH_KEY_FILE) is required with "
                "PGX_CDS_TRUSTED_ISSUERS: the card log's patient hashes must not be keyed by a "
                "key kept in the same database (make one with `openssl rand -hex 32`)"
            )
        for position, key in enumerate(keys):
            problem = hash_key_problem(key)
            if problem:
                which = "the key" if position == 0 else f"older key {position}"
                raise ValueError(f"{where}: {which} {problem}")
        # the key's text is the HMAC key (as before: a key set earlier hashes alike)
        return [k.encode("ascii") for k in keys]

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str) -> str:
        problem = database_url_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and (not _is_http_url(value) or urlsplit(value).query):
            raise ValueError(
                f"{value!r} is not an http(s) URL with a host (and no query), e.g. "
                "https://cds.example.org: JWT audiences are checked against it"
            )
        return value

    @field_validator("fhir_servers")
    @classmethod
    def _fhir_servers(cls, value: str) -> str:
        _require_http_urls([u.strip() for u in value.split(",") if u.strip()], "FHIR server")
        return value

    @field_validator("issuer_fhir_servers")
    @classmethod
    def _issuer_fhir_servers(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for issuer, urls in value.items():
            _require_http_urls(urls, "FHIR server", issuer)
        return value

    @field_validator("trusted_issuers")
    @classmethod
    def _trusted_issuers(cls, value: dict[str, str]) -> dict[str, str]:
        for issuer, jwks in value.items():
            if len(issuer) > 255:
                raise ValueError(f"the issuer {issuer[:40]!r}… is longer than 255 characters")
            _require_http_urls([jwks], "key set (JWKS) URL", issuer)
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("guidelines")
    @classmethod
    def _guidelines(cls, value: str) -> str:
        sets = [g.strip().lower() for g in value.split(",") if g.strip()]
        if not sets or any(g not in ("cpic", "dpwg") for g in sets) or len(set(sets)) < len(sets):
            raise ValueError("must list cpic and/or dpwg, in order, each once (e.g. dpwg,cpic)")
        return ",".join(sets)

    @property
    def guideline_list(self) -> tuple[str, ...]:
        return tuple(self.guidelines.split(","))

    @property
    def pretest_drug_set(self) -> frozenset[str]:
        return frozenset(d.strip().lower() for d in self.pretest_drugs.split(",") if d.strip())

    def fhir_server_list(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.fhir_servers.split(",") if u.strip()]

    def fhir_server_allowed(self, url: str, issuer: str | None = None) -> bool:
        """May a call have us query ``url``? With ``issuer`` (the authenticated caller):
        its own list if it has one, else the global one. Without: any configured list."""
        url = url.rstrip("/")
        own = self.issuer_fhir_servers.get(issuer) if issuer else None
        if own:
            return url in [u.rstrip("/") for u in own]
        allowed = self.fhir_server_list()
        if issuer is None:
            allowed += [u.rstrip("/") for urls in self.issuer_fhir_servers.values() for u in urls]
        if not allowed:
            return not self.trusted_issuers  # no lists: any server, in unauthenticated mode only
        return url in allowed

    def fhir_server_listed(self, url: str, issuer: str | None = None) -> bool:
        """Is ``url`` on a list the operator wrote (not merely allowed for want of a list)?"""
        has_list = bool(self.fhir_server_list() or any(self.issuer_fhir_servers.values()))
        return has_list and self.fhir_server_allowed(url, issuer)


def insecure_http(url: str) -> bool:
    """Is ``url`` plain http:// to a host other than this machine's loopback?"""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment


def _require_http_urls(urls: list[str], what: str, issuer: str = "") -> None:
    for url in urls:
        if not _is_http_url(url):
            whose = f" of issuer {issuer!r}" if issuer else ""
            raise ValueError(f"the {what} {url!r}{whose} is not an http(s) URL with a host")


def describe_database(url: str) -> str:
    """The database as a log line or an error may name it: its kind, host, port and name (or
    SQLite's file), never who logs in or with what. Split at the last '@', as the connection
    does: a password written with a bare '@' in it (not URL-encoded) shows none of itself."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a database URL)"
    if scheme.startswith("sqlite"):
        return f"{scheme}://{rest}"
    location = rest.split("?", 1)[0]
    netloc, slash, path = location.partition("/")
    host = netloc.rpartition("@")[2]
    return f"{scheme}://{host}{slash}{path}"


#: The shortest hashing key accepted, in bytes (HMAC-SHA256's own key size).
MIN_HASH_KEY_BYTES = 32
MAX_KEY_FILE_BYTES = 64 * 1024


def hash_key_problem(key: str) -> str | None:
    """What makes ``key`` unfit to key the card log's hashes (None: fit). It must be hex or
    base64 of at least 32 bytes that look random: patient ids are few enough to hash them
    all, so a guessable key gives them back."""
    if re.fullmatch(r"[0-9a-fA-F]+", key) and len(key) % 2 == 0:
        raw = bytes.fromhex(key)
    elif re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", key):
        padded = key.replace("-", "+").replace("_", "/").rstrip("=")
        try:
            raw = base64.b64decode(padded + "=" * (-len(padded) % 4), validate=True)
        except ValueError:
            return "is not hex or base64"
    else:
        return "is not hex or base64 (make one with `openssl rand -hex 32`)"
    if len(raw) < MIN_HASH_KEY_BYTES:
        return (
            f"is {len(raw)} byte(s); at least {MIN_HASH_KEY_BYTES} random bytes are needed "
            "(`openssl rand -hex 32`)"
        )
    if len(set(raw)) < 16:  # 32 random bytes have about 30 distinct values
        return "does not look random (too few distinct bytes); make one with `openssl rand -hex 32`"
    return None


def _read_key_file(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"PGX_CDS_HASH_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ValueError(f"PGX_CDS_HASH_KEY_FILE: {path} is larger than a key file can be")
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"PGX_CDS_HASH_KEY_FILE: {path} is not hex or base64 text") from None


def database_url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as the service's database, in words that never repeat it
    (it may hold a password); None when it is a supported database with its driver installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    netloc = url.partition("://")[2].split("/", 1)[0]
    if netloc.count("@") > 1:
        return (
            "the URL has more than one '@' before its host: a user name or password holding "
            "'@' must be URL-encoded (%40), or give the password as PGX_CDS_DATABASE_PASSWORD"
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"not a database URL; use {DATABASE_EXAMPLES}"
    backend = parsed.get_backend_name()
    if backend == "postgres":
        return "SQLAlchemy does not know postgres://; write postgresql+psycopg://"
    if backend not in DATABASES:
        return f"{backend} databases are not supported; use {DATABASE_EXAMPLES}"
    driver, scheme, module, get_it = DATABASES[backend]
    if parsed.get_driver_name() != driver:  # the dialect's default when the URL names none
        return f"the {backend} driver {parsed.get_driver_name()} is not supported; use {scheme}"
    if import_util.find_spec(module) is None:
        return f"the {backend} driver {module} is not installed ({get_it})"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
