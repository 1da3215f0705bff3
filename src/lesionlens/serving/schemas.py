"""Request and response schemas: what the OpenAPI docs at /docs show."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lesionlens.config import BodySite, Sex
from lesionlens.evaluation.measurements import LesionMeasurements


class ViewDecision(BaseModel):
    score: float = Field(description="summed probability of the view's positive classes")
    positive: bool
    rule: dict = Field(description='{"criterion": "argmax"} or the operating point: threshold, criterion, target')


class ModelRef(BaseModel):
    name: str
    architecture: str
    version: str = Field(description="the bundle's creation time and the sha256 of its weights")
    runtime: str
    digest: str = Field(description="the bundle's content digest: its name in a model registry, and what stored "
                                    "cases record as the answering model")


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
    case_id: str | None = Field(None, description="the stored case, when the server keeps predictions (--store-predictions)")


class SegmentTiming(Timing):
    mask_ms: float = Field(description="the mask at the image's size, its outline and its measurements")


class MaskRule(BaseModel):
    threshold: float = Field(description="a pixel is lesion where its probability is at least this (the card's)")
    keep_largest: bool = Field(description="only the largest 8-connected region is kept")
    fill_holes: bool = Field(description="holes inside the lesion are filled")
    resized: str = Field(description="how the network's square map was brought to the image's size")


class Segmentation(BaseModel):
    filename: str | None
    lesion: bool = Field(description="whether a lesion was found; false (no pixel reached the threshold) is an "
                                     "answer, not an error, and comes without outline and measurements")
    width: int = Field(description="the uploaded image's width (upright, after its EXIF orientation): the mask's")
    height: int
    mask_png_base64: str = Field(description="8-bit greyscale PNG of the image's size: 255 on the lesion, 0 elsewhere")
    outline: list[list[tuple[int, int]]] = Field(
        description="the mask's outline as closed polygons: [x, y] pixel corners in the image's coordinates (x to "
                    "the right, y down; the first vertex is not repeated), the lesion on the right of each (outer "
                    "boundaries clockwise on the screen, holes anticlockwise); only the corners where it turns")
    measurements: LesionMeasurements | None = Field(
        description="lesionlens.evaluation.measurements: area, perimeter, compactness and solidity (border), "
                    "asymmetry about both principal axes, maximum Feret diameter, the dermoscopic colours; the _mm "
                    "fields when mm_per_pixel was given")
    mask_rule: MaskRule
    model: ModelRef
    timing: SegmentTiming
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


class Ready(Health):
    model_digest: str | None = Field(None, description="the digest of the model answering now")
    registry_seq: int | None = Field(None, description="serving from a registry: the promotion log's length "
                                                       "that the served aliases come from")


class QualityProblem(BaseModel):
    code: str = Field(description="blurry, too_dark, too_light, low_information, too_small or odd_aspect")
    message: str = Field(description="what to tell the person holding the camera")


class CaseResponse(Prediction):
    case_id: str = Field(description="the stored case; GET /v1/cases/{case_id} with a labeller's token")
    created: bool = Field(description="false when this request_id was seen before: nothing new was stored, and "
                                      "the first answer is returned")
    quality: list[QualityProblem] = Field(description="image-quality problems; empty when the photo is usable")


class LabelIn(BaseModel):
    label: str = Field(max_length=64, description="one of the model's classes")
    source: str = Field("single_reader", max_length=16,
                        description="how the label was established: histo, confocal, follow_up, consensus, "
                                    "single_reader (an adjudication given as single_reader is recorded as consensus)")
    note: str | None = Field(None, max_length=2000)


class LabelOut(BaseModel):
    id: int
    case_id: str
    label: str
    source: str
    reader: str
    created_at: str
    note: str | None = None


class Settled(BaseModel):
    status: str = Field(description="unlabelled; agreed (every reader's newest label is the same: one reader is "
                                    "enough); disagreement (needs an adjudicator); adjudicated (the newest "
                                    "adjudication decides)")
    label: str | None
    source: str | None
    adjudicator: str | None = None
    note: str | None = Field(None, description="the adjudicator's note")
    current: list[LabelOut] = Field(description="each reader's newest label")


class CaseOut(BaseModel):
    case_id: str
    created_at: str
    origin: str
    image_url: str
    width: int
    height: int
    metadata: dict
    partition: str | None
    model_version: str
    model_digest: str | None = Field(description="the answering model's digest; null for cases stored before it "
                                                 "was recorded")
    top_class: str
    probabilities: dict[str, float]
    decision: dict
    quality: list[QualityProblem]
    settlement: Settled


class QueueEntry(BaseModel):
    case: CaseOut
    usefulness: float
    reasons: list[str]


class QueueResponse(BaseModel):
    reader: str
    classes: list[str]
    total: int = Field(description="cases waiting, before the limit")
    items: list[QueueEntry]


class PairAgreementOut(BaseModel):
    reader_a: str
    reader_b: str
    cases: int = Field(description="cases both readers labelled")
    agreement: float | None = Field(description="share of those with the same label")
    kappa: float | None = Field(description="Cohen's kappa; null where undefined")


class AgreementResponse(BaseModel):
    pairs: list[PairAgreementOut]


class Whoami(BaseModel):
    name: str
    role: str


class CaseForm(BaseModel):
    """The metadata fields of POST /v1/cases (multipart form fields beside the file); all optional."""

    request_id: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$",
                                   description="the client's id for this submission; a retry with the same id "
                                               "returns the stored case instead of storing it again")
    age: int | None = Field(None, ge=0, le=120, description="years")
    sex: Sex | None = None
    site: BodySite | None = Field(None, description="body site, in HAM10000's `localization` vocabulary")
    patient_id: str | None = Field(None, max_length=128, description="pseudonymous: never a name or record number")
    lesion_id: str | None = Field(None, max_length=128, description="pseudonymous id of the lesion, for follow-up photos")
    consent_research: bool = Field(False, description="the patient agreed to research use; only such cases are "
                                                      "ever exported for training")
    consent_version: str | None = Field(None, max_length=32, description="the consent form's version")
    device: str | None = Field(None, max_length=128, description="camera or dermatoscope")
    app_version: str | None = Field(None, max_length=64)
