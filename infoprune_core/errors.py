"""Errors a user can act on. Each message says what was wrong and what is accepted."""


class InfoPruneError(Exception):
    """Base class of every error the pipeline raises on bad input or an unreachable goal."""


class UnsupportedModelError(InfoPruneError):
    pass


class SourceError(InfoPruneError):
    """The model source is missing, malformed, unsafe (pickle-only weights) or unreachable."""


class CalibrationError(InfoPruneError):
    pass


class BudgetError(InfoPruneError):
    """The requested budget is out of range or cannot be reached."""


class ArtifactError(InfoPruneError):
    pass
