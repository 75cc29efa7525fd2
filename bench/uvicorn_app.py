"""predserve's ASGI app for uvicorn, for bench/serve.py's server comparison only.

`predserve serve` hands the configuration to its workers as an object; uvicorn can only
import a factory by name, so this one reads the store and key file from BENCH_STORE / BENCH_IAM.
"""

import os

from predserve.serving import ServeConfig, ServingApp, create_app


def create() -> ServingApp:
    return create_app(ServeConfig(os.environ["BENCH_STORE"], iam_path=os.environ["BENCH_IAM"], read_timeout=1.0))
