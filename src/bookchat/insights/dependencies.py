"""How the insights routes reach their service, and the query parameters they share."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from fastapi import Depends, Query
from pydantic import BeforeValidator

from bookchat.core.errors import ValidationFailed
from bookchat.core.openapi import MAX_OFFSET
from bookchat.dependencies import ContainerDep
from bookchat.insights.service import DateRange, InsightsService

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DEFAULT_DAYS = 30
MAX_DAYS = 366


def iso_date(value: object) -> object:
    """Only `YYYY-MM-DD`: Pydantic alone would also read `0` as 1970-01-01 (a timestamp)."""
    if isinstance(value, str) and not ISO_DATE.fullmatch(value):
        raise ValueError("must be an ISO date, YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(iso_date)]


async def get_insights_service(container: ContainerDep) -> InsightsService:
    return container.insights


InsightsServiceDep = Annotated[InsightsService, Depends(get_insights_service)]


async def date_range(
    start: Annotated[
        IsoDate | None,
        Query(description="First UTC day (ISO date), included; default 29 days before `end`."),
    ] = None,
    end: Annotated[
        IsoDate | None, Query(description="Last UTC day (ISO date), included; default today.")
    ] = None,
) -> DateRange:
    """The range asked for: the last 30 days ending today by default, at most 366 days."""
    last = end or dt.datetime.now(dt.UTC).date()
    if last == dt.date.max:
        # Its end (the next midnight) is past what a datetime can hold.
        raise ValidationFailed(
            "end must be before 9999-12-31",
            details=[{"loc": ["query", "end"], "msg": "too late", "type": "value_error"}],
        )
    first = start or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ValidationFailed(
            f"start ({first.isoformat()}) is after end ({last.isoformat()})",
            details=[
                {"loc": ["query", "start"], "msg": "must not be after end", "type": "value_error"}
            ],
        )
    period = DateRange(first, last)
    if period.days > MAX_DAYS:
        raise ValidationFailed(
            f"the range spans {period.days} days; at most {MAX_DAYS} are allowed",
            details=[
                {
                    "loc": ["query", "start"],
                    "msg": f"at most {MAX_DAYS} days from start to end",
                    "type": "value_error",
                }
            ],
        )
    return period


DateRangeDep = Annotated[DateRange, Depends(date_range)]
Limit = Annotated[int, Query(ge=1, le=100, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
