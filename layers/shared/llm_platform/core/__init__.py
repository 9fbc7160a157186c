"""The floor under ``data`` and ``domain``: what the platform stores (``entities``) and the clock it stores
time by (``clock``). Imports nothing else of the platform, so both layers above may use it."""
