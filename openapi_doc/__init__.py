"""Dev tooling, never deployed: the OpenAPI 3.1 document of the whole API (``openapi.json``), built from the
code by ``make openapi`` (``bin/generate-openapi``). ``document`` puts it together from the handlers'
routes; ``inference`` is the static description of the proxy's ``/v1``."""
