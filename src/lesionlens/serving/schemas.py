"""Request and response schemas: what the OpenAPI docs at /docs show."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ViewDecision(BaseModel):
    score: float = Field(description="summed probability of the view's positive classes")
    positive: bool
    rule: dict = Field(description='{"criterion": "argmax"} or the operating point: threshold, criterion, target')


class ModelRef(BaseModel):
    name: str
    architecture: str
    version: str = Field(description="the bundle's creation time and the sha256 of its weights")
    runtime: str


class Timing(BaseModel):
    decode_ms: float = Field(description="checking, decoding and resizing the upload(s)")
    model_ms: float = Field(description="waiting for and running the model")
    total_ms: float


class Heatmap(BaseModel):
    class_: str = Field(alias="class", description="the class whose activation map is shown (the top class)")
    method: str
    png_base64: str = Field(description="PNG of the network's input view with the map blended over it")


class Prediction(BaseModel):
    filename: str | None
    top_class: str
    top_probability: float
    probabilities: dict[str, float]
    decision: dict[str, ViewDecision] = Field(description="malignant / melanoma, where the classes define them")
    decision_basis: str
    model: ModelRef
    timing: Timing
    heatmap: Heatmap | None = None
    disclaimer: str


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class BatchItem(BaseModel):
    filename: str | None
    prediction: Prediction | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]


class Health(BaseModel):
    status: str
