"""The OpenAPI document: FastAPI's, plus the two prediction routes the hot path answers.

The hot path is not a FastAPI route, so its routes are described here, from the same Pydantic
models a FastAPI route would use, and merged into the document ``/docs`` shows.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from predserve.serving.admin import ERROR_TEXT
from predserve.serving.errors import ErrorBody
from predserve.serving.predictions import BATCH_ROUTE, GET_ROUTE
from predserve.store import MAX_ID_BYTES

REF = "#/components/schemas/{model}"


class Prediction(BaseModel):
    model: str
    id: str
    snapshot: int
    prediction: dict[str, Any] = Field(description="the prediction columns exported for this id")
    stale: bool | None = Field(None, description="present and true when the snapshot is older than the model's max_age "
                                                 "(the response then also carries X-Predserve-Stale: true)")
    default: bool | None = Field(None, description="present and true when this is the model's fallback prediction")


class BatchGetRequest(BaseModel):
    ids: list[str] = Field(description="ids to look up, at most the server's batch limit (default 1000)")


class BatchGetResponse(BaseModel):
    model: str
    snapshot: int
    stale: bool | None = Field(None, description="present and true when the snapshot is older than the model's max_age")
    results: list[dict[str, Any]] = Field(description="one entry per requested id, in request order: a Prediction, "
                                                      "or {id, error} for an id the snapshot does not hold")


MODEL_PARAMETER = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the model name"}
ID_PARAMETER = {"name": "entity_id", "in": "path", "required": True, "description": "the id to look up, e.g. a user id",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES}}
STALE_HEADER = {"X-Predserve-Stale": {"description": "true when the snapshot is older than the model's max_age",
                                      "schema": {"type": "string", "enum": ["true"]}}}


def _response(schema: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}}
    if headers:
        response["headers"] = headers
    return response


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    return {"200": ok, **{str(code): _response("ErrorBody", ERROR_TEXT[code]) for code in codes}}


def prediction_paths() -> dict[str, Any]:
    """The OpenAPI path items of the two prediction routes."""
    return {
        GET_ROUTE: {"get": {
            "summary": "Get the prediction for one id", "operationId": "get_prediction", "tags": ["predictions"],
            "parameters": [MODEL_PARAMETER, ID_PARAMETER],
            "responses": _responses(_response("Prediction", "the stored prediction", STALE_HEADER), 400, 401, 403, 404, 503),
        }},
        BATCH_ROUTE: {"post": {
            "summary": "Get the predictions for many ids", "operationId": "batch_get_predictions", "tags": ["predictions"],
            "parameters": [MODEL_PARAMETER],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": REF.format(model="BatchGetRequest")}}}},
            "responses": _responses(_response("BatchGetResponse", "results in request order", STALE_HEADER),
                                    400, 401, 403, 404, 408, 413, 503),
        }},
    }


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document of its own routes with the prediction routes first (cached on the app)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema["paths"] = {**prediction_paths(), **schema.get("paths", {})}
        _, definitions = models_json_schema(
            [(model, "validation") for model in (Prediction, BatchGetRequest, BatchGetResponse, ErrorBody)], ref_template=REF)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(definitions.get("$defs", {}))
        app.openapi_schema = schema
    return app.openapi_schema
