"""Two FHS processes sharing one Redis behave as one FHS (issue 2, DESIGN §3)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from tests.fhs.conftest import LocalIdP, RunningFHS


async def test_two_replicas_on_one_redis_share_state_keys_and_the_operator_secret(
    tmp_path: Path, idp: LocalIdP, redis_server: str
) -> None:
    store_url = f"{redis_server}?prefix=replicas{uuid.uuid4().hex[:8]}"
    async with RunningFHS(tmp_path / "one", idp, store_url) as one:
        # replicas share the operator secret (compose mounts one data volume; here: a copy of the file)
        (tmp_path / "two" / "fhs-a").mkdir(parents=True)
        shutil.copy(
            tmp_path / "one" / "fhs-a" / "operator.secret", tmp_path / "two" / "fhs-a" / "operator.secret"
        )
        async with RunningFHS(tmp_path / "two", idp, store_url) as two:
            assert (await one.client.get("/.well-known/jwks.json")).json() == (
                await two.client.get("/.well-known/jwks.json")
            ).json(), "both replicas sign with the same keys"
            # the operator secret written by the first replica works at the second
            granted = await two.client.post(
                "/operator/v1/fedadmins", headers=one.operator, json=one.key("alice")
            )
            assert granted.status_code == 201, granted.text
            created = await one.client.post(
                "/member/v1/federations", headers=one.member("alice"), json={"name": "shared"}
            )
            assert created.status_code == 201, created.text
            seen = await two.client.get(
                f"/member/v1/federations/{created.json()['id']}", headers=two.member("alice")
            )
            assert seen.status_code == 200 and seen.json()["name"] == "shared"
            forged = {"Authorization": "Bearer fhsop_" + "x" * 43}
            refused = await two.client.get("/operator/v1/status", headers=forged)
            assert refused.status_code == 401
            assert refused.json()["error"]["message"] == "the operator credential is not valid for this FHS"
