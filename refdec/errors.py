"""Error classes of spec clause 11.2.

Each error names the spec clause whose check failed, what was found, and where
(a byte offset in the stream, or a member/layer of the model file). The CLI
prints str(error) and exits with status 2.
"""

from __future__ import annotations


class RefdecError(Exception):
    """Base of every error that refdec reports for invalid input."""

    clause = "11.2"
    group = "input"

    def __init__(self, message: str, *, offset: int | None = None, where: str | None = None):
        self.message = message
        self.offset = offset
        self.where = where
        super().__init__(str(self))

    @property
    def name(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        # A stream error names its byte offset; a model error the file (and member or layer) at fault.
        loc = f" at byte {self.offset}" if self.offset is not None else f" in {self.where}" if self.where else ""
        return f"{self.name} (clause {self.clause}){loc}: {self.message}"


class BitstreamError(RefdecError):
    group = "header"
    clause = "6.2"


class TruncatedHeader(BitstreamError):
    pass


class BadMagic(BitstreamError):
    pass


class UnsupportedVersion(BitstreamError):
    pass


class ReservedFieldSet(BitstreamError):
    pass


class ZeroDimension(BitstreamError):
    pass


class DimensionsTooLarge(BitstreamError):
    pass


class PayloadTooShort(BitstreamError):
    pass


class PayloadPastEnd(BitstreamError):
    pass


class TrailingData(BitstreamError):
    pass


class RateIndexOutOfRange(BitstreamError):
    pass


class ModelError(RefdecError):
    group = "model"
    clause = "9.4"


class UnknownModel(ModelError):
    clause = "6.2"


class ModelFormatError(ModelError):
    pass


class ModelShapeError(ModelError):
    pass


class ModelValueError(ModelError):
    pass


class AccumulatorOverflowRisk(ModelError):
    clause = "9.5"


class PayloadError(RefdecError):
    group = "payload"


class InvalidRangeState(PayloadError):
    clause = "8.3"


class PayloadTruncated(PayloadError):
    clause = "8.3"


class TrailingPayloadBytes(PayloadError):
    clause = "8.5"


class EscapeTooLong(PayloadError):
    clause = "7.10"


class LatentOutOfRange(PayloadError):
    clause = "7.10"


ALL_ERRORS = {cls.__name__: cls for cls in (
    TruncatedHeader, BadMagic, UnsupportedVersion, ReservedFieldSet, ZeroDimension,
    DimensionsTooLarge, PayloadTooShort, PayloadPastEnd, TrailingData, RateIndexOutOfRange,
    UnknownModel, ModelFormatError, ModelShapeError, ModelValueError, AccumulatorOverflowRisk,
    InvalidRangeState, PayloadTruncated, TrailingPayloadBytes, EscapeTooLong, LatentOutOfRange,
)}
