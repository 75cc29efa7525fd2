"""Response bodies of the admin and console routes, as Pydantic models: the OpenAPI document
describes them and FastAPI checks every answer against them (so, for one, a service account's
key hash can never leave the server). A snapshot's profile, drift (with its verdicts) and the
model's timeline events are the store's records (``predserve.store.reports``); their shapes:
docs/pipeline.md."""

from __future__ import annotations

from pydantic import BaseModel, Field

from predserve.store.reports import DriftReport, Event, Profile


# ---- models -------------------------------------------------------------------------------------
class ModelSummary(BaseModel):
    model: str
    snapshot: int = Field(description="the current snapshot")
    created_at: float
    published_at: float | None
    rows: int
    age_seconds: float = Field(description="seconds since the current snapshot was published")
    max_age: float | None = Field(description="seconds after which the snapshot is stale (null: never)")
    stale: bool
    last_event: Event | None = Field(description="the newest entry of the model's timeline")
    updates_since_publish: int = Field(description="updates (predserve push, predserve stream) applied to the current "
                                                   "snapshot since it was published or rolled back to")


class ModelList(BaseModel):
    models: list[ModelSummary]


class HistoryEntry(BaseModel):
    snapshot: int
    state: str = Field(description="published, finished or writing")
    rows: int
    created_at: float
    published_at: float | None
    current: bool
    profile: Profile | None = Field(description="its prediction columns' distributions (null before profiles)")
    drift: DriftReport | None = Field(description="its drift against the snapshot it replaced, each column with the "
                                                  "verdicts of the drift gates and the limits they used (null for a "
                                                  "first snapshot)")


class ModelDetail(ModelSummary):
    schema_: list[tuple[str, str]] | None = Field(alias="schema", description="(column, type) of the prediction columns")
    history: list[HistoryEntry] = Field(description="the snapshots the store keeps, oldest first")
    events: list[Event] = Field(description="the model's timeline, newest first (the last 100 events)")


# ---- service accounts ---------------------------------------------------------------------------
class AccountView(BaseModel):
    name: str
    key_id: str = Field(description="the public part of the key (psk_<key_id>_...), never the key")
    roles: dict[str, list[str]] = Field(description='role -> models it covers ("*": all)')
    created_at: float


class AccountList(BaseModel):
    service_accounts: list[AccountView]


# ---- console ------------------------------------------------------------------------------------
class Session(BaseModel):
    auth: bool = Field(description="false when the server runs with --no-auth")
    account: str | None = Field(description="the admin account the key belongs to")
    worker: int = Field(description="the pid of the worker process that answered")
    workers: int = Field(description="worker processes of this server")
    store: str


class TrafficFigures(BaseModel):
    requests: int
    rate: float = Field(description="requests per second")
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float | None = Field(description="share of 5xx answers")
    client_error_rate: float | None = Field(description="share of 4xx answers")


class TrafficSeries(BaseModel):
    route: str = Field(description='the route template ("*": every prediction route)')
    model: str = Field(description='the model ("*": every model; "(unknown)": names this server has not served)')
    prediction: bool = Field(description="a prediction route (or their sum)")
    points: list[tuple[int, int, int, int, float | None, float | None]] = Field(
        description="one per second: [unix second, requests, 4xx, 5xx, p50 ms, p99 ms]")
    last_minute: TrafficFigures


class TrafficWorkers(BaseModel):
    answered_by: int = Field(description="pid of the worker that answered")
    configured: int = Field(description="worker processes of this server")
    reporting: list[int] = Field(description="pids whose samples are included (the others had not written yet)")


class Traffic(BaseModel):
    now: int
    seconds: int
    workers: TrafficWorkers
    series: list[TrafficSeries]


class Lookup(BaseModel):
    model: str
    id: str
    snapshot: int
    found: bool = Field(description="the snapshot holds this id (else the body is the model's default, or null)")
    stale: bool
    read_ms: float = Field(description="the store read, as measured by the server")
    body: dict | None = Field(description="the stored prediction body, as GET .../predictions/{id} returns it")
