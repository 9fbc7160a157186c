"""The dashboard's serving function (llm_platform.web.static_site) on a site built into a temporary folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from llm_platform.web.static_site import CONTENT_SECURITY_POLICY, IMMUTABLE, REVALIDATE, Site

PAGE = '<!doctype html><html><head><base href="/"><script src="assets/app.js?v=x"></script></head></html>'


@pytest.fixture
def site(tmp_path: Path) -> Site:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(PAGE)
    (tmp_path / "assets" / "app.js").write_text("console.log('hi')")
    (tmp_path / "assets" / "app.css").write_text("body{}")
    (tmp_path / "assets" / "notes.txt").write_text("not a site file")
    return Site(tmp_path)


def event(resource: str, request_path: str | None = None, query: dict | None = None) -> dict:
    return {
        "resource": resource,
        "path": resource,
        "httpMethod": "GET",
        "queryStringParameters": query,
        "requestContext": {"path": request_path or resource, "stage": "prod"},
    }


def test_given_the_page_when_asked_at_the_root_then_it_is_html_that_is_never_cached_stale(site: Site) -> None:
    response = site.respond(event("/"))
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert response["headers"]["Cache-Control"] == REVALIDATE
    assert response["headers"]["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response["headers"]["X-Frame-Options"] == "DENY"
    assert '<base href="/">' in response["body"]


@pytest.mark.parametrize(
    ("request_path", "base"),
    [("/prod/", "/prod/"), ("/prod", "/prod/"), ("/", "/"), ("/v2/dashboard", "/v2/dashboard/"), ("//evil", "/")],
)
def test_given_a_stage_or_base_path_then_the_page_resolves_its_urls_under_it(
    site: Site, request_path: str, base: str
) -> None:
    # On AWS requestContext.path carries the stage (/prod/); relative asset and API URLs must resolve under it
    body = site.respond(event("/", request_path))["body"]
    assert f'<base href="{base}">' in body and body.count("<base ") == 1


def test_given_an_asset_with_its_current_version_then_it_may_be_cached_for_a_year(site: Site) -> None:
    version = hashlib.sha256(b"console.log('hi')").hexdigest()[:16]
    current = site.respond(event("/assets/app.js", query={"v": version}))
    assert current["statusCode"] == 200 and current["body"] == "console.log('hi')"
    assert current["headers"]["Content-Type"] == "text/javascript; charset=utf-8"
    assert current["headers"]["Cache-Control"] == IMMUTABLE
    assert current["headers"]["X-Content-Type-Options"] == "nosniff"
    # An old or missing version must be revalidated: it names different bytes
    for query in ({"v": "0" * 16}, None):
        assert site.respond(event("/assets/app.js", query=query))["headers"]["Cache-Control"] == REVALIDATE
    assert site.respond(event("/assets/app.css"))["headers"]["Content-Type"] == "text/css; charset=utf-8"


def test_given_a_file_that_is_not_part_of_the_site_then_it_is_not_served(site: Site) -> None:
    for resource in ("/assets/notes.txt", "/assets/missing.js", "/index.html"):
        response = site.respond(event(resource))
        assert response["statusCode"] == 404, resource
        assert json.loads(response["body"])["error"]["code"] == "route_not_found"


def test_given_a_deployment_without_the_built_site_then_it_says_so_in_the_error_format(tmp_path: Path) -> None:
    response = Site(tmp_path / "site").respond(event("/"))
    assert response["statusCode"] == 503
    assert response["headers"]["Content-Type"] == "application/json"
    assert json.loads(response["body"])["error"] == {
        "code": "dashboard_not_built",
        "message": "The dashboard is not built: run `make dashboard`.",
    }
