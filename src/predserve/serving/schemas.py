"""Response bodies of the admin and console routes, as Pydantic models: the OpenAPI document
describes them and FastAPI checks every answer against them (so, for one, a service account's
key hash can never leave the server). Profile and drift shapes: docs/pipeline.md."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


# ---- snapshots: profiles and drift (written by the export, predserve.pipeline.profile/drift) ----
class ColumnProfile(BaseModel):
    """One prediction column's distribution in a snapshot; which fields are present depends on ``kind``."""

    kind: Literal["probabilities", "categorical", "numeric", "other"]
    nulls: int = Field(description="rows where the column is NULL (NaN and ±Inf count as NULL)")
    values: dict[str, int] | None = Field(None, description="categorical: counts of the most frequent values")
    other: int | None = Field(None, description="categorical: rows holding any other value")
    labels: dict[str, list[int]] | None = Field(
        None, description="probabilities: per label, counts of its probability in `bins` equal bins of [0, 1]")
    low: float | None = Field(None, description="numeric: the smallest value (null when every value is NULL)")
    high: float | None = Field(None, description="numeric: the largest value")
    counts: list[int] | None = Field(None, description="numeric: counts in equal bins from low to high "
                                                       "(one count when low == high)")


class Profile(BaseModel):
    version: int
    bins: int = Field(description="bins per histogram")
    rows: int
    columns: dict[str, ColumnProfile]


class ColumnDrift(BaseModel):
    metric: Literal["jensen_shannon", "l_infinity"]
    distance: float = Field(description="Jensen-Shannon divergence (numeric, probabilities) or L-infinity distance "
                                        "(categorical, other), between 0 and 1")
    value: str | None = Field(None, description="categorical: the value where the distance is largest")
    label: str | None = Field(None, description="probabilities: the label whose distance is the column's")
    changed: float | None = Field(None, description="labels (categorical, or integer with few values) and other "
                                                    "columns: fraction of the sampled ids in both snapshots whose value changed")
    moved: float | None = Field(None, description="numeric and probabilities: fraction of the sampled ids whose value "
                                                  "moved by more than the tolerance times the column's spread")
    spread: float | None = Field(None, description="numeric: the standard deviation of the old snapshot's sampled values")
    mean_abs_change: float | None = Field(None, description="numeric and probabilities: mean absolute change over "
                                                            "the sampled ids")
    metadata: str | None = Field(None, description="why the column is reported but not gated (constant in both "
                                                   "snapshots, named by --metadata-columns, a date or timestamp)")
    gated: list[str] | None = Field(None, description="the figures that gate: distance, changed, moved")


class SampleFigures(BaseModel):
    ids: int
    in_both: int
    appeared: int
    disappeared: int


class Drift(BaseModel):
    baseline: int = Field(description="the snapshot compared with (current when this one was exported)")
    columns: dict[str, ColumnDrift]
    sample: SampleFigures | None = None


# ---- the model timeline (predserve.store.base.ModelState.record) --------------------------------
class RefusingGate(BaseModel):
    gate: str = Field(description="e.g. prediction_drift, changed_labels, row_count_drop")
    detail: str = Field(description="the figure and the limit, as the export printed them")


class Event(BaseModel):
    time: float = Field(description="Unix time")
    event: Literal["published", "rolled_back", "refused"]
    snapshot: int = Field(description="the snapshot published, rolled back to, or refused")
    previous: int | None = Field(description="the snapshot current before (for a refusal: the one that kept serving)")
    rows: int | None = None
    gates: list[RefusingGate] | None = Field(None, description="refused: the gates that refused it")
    overridden: list[str] | None = Field(None, description="published: gates that failed and were overridden "
                                                           "(e.g. --allow-drift)")
    replayed: int | None = Field(None, description="published or rolled back: updates made meanwhile (while its "
                                                   "export ran, or since it stopped being current) replayed into it")


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
    drift: Drift | None = Field(description="its drift against the snapshot it replaced (null for a first snapshot)")


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
