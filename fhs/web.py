"""Small web adapters shared by the routers."""

from __future__ import annotations

from fastapi import Response

from fhs.proxy.service import ProxiedResponse

SET_BY_SERVER = {"content-length", "transfer-encoding", "connection"}


def proxied_response(result: ProxiedResponse) -> Response:
    """A FastAPI response carrying a proxied answer (repeated headers kept, length set by the server)."""
    response = Response(content=result.body, status_code=result.status_code)
    for name, value in result.headers:
        if name.lower() not in SET_BY_SERVER:
            response.headers.append(name, value)
    return response
