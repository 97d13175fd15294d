"""Verification codes: random, stored only as a hash bound to the method, sent as a job."""

from __future__ import annotations

from datetime import timedelta

import pytest

from router.directory import verification
from schemas import EmailJob, SmsJob, WebhookJob
from tests.conftest import T0, make_method


def test_codes_are_six_digits_and_vary() -> None:
    codes = {verification.new_code() for _ in range(50)}
    assert all(len(c) == 6 and c.isdigit() for c in codes) and len(codes) > 40


def test_a_hash_matches_only_its_code_and_its_method() -> None:
    stored = verification.hash_code("m1", "123456")
    assert verification.code_matches("m1", " 123456 ", stored)
    assert not verification.code_matches("m1", "123457", stored)
    assert not verification.code_matches("m2", "123456", stored)
    assert "123456" not in stored


@pytest.mark.parametrize(
    ("transport", "job_type"), [("email", EmailJob), ("sms", SmsJob), ("webhook", WebhookJob)]
)
def test_the_job_carries_the_code_to_the_method(transport: str, job_type: type) -> None:
    method = make_method("m1", transport=transport)
    job = verification.verification_job(method, "493027", T0 + timedelta(minutes=15), T0)
    assert isinstance(job, job_type)
    assert job.purpose == "verification"
    assert job.to == method.value
    carried = job.body if isinstance(job, WebhookJob) else job.text
    assert carried is not None and "493027" in carried
    if isinstance(job, SmsJob | EmailJob):
        assert "15 minutes" in job.text
