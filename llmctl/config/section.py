"""The base of every recipe section: unknown keys and non-finite numbers are errors."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    # allow_inf_nan=False: YAML's .inf / .nan (and "inf" / "nan" strings) would otherwise pass the
    # range checks of some fields and turn every weight into nan a few steps into training.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
