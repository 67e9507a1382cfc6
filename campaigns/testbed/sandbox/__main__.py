"""``python -m campaigns.testbed.sandbox --port N [--config file.json]`` (what ``campaigns sandbox`` runs)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from campaigns.ports import port_problem
from campaigns.testbed.sandbox.config import SandboxConfig, SandboxConfigError, load_config
from campaigns.testbed.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m campaigns.testbed.sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--config", help="JSON file with initial sandbox config")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("DISPATCHER_PROVIDER_API_KEY") or None,
        help="the API key to accept (default: DISPATCHER_PROVIDER_API_KEY, else the config's)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config) if args.config else SandboxConfig()
        if args.api_key:
            config = config.model_copy(update={"api_key": args.api_key})
    except (SandboxConfigError, OSError) as exc:
        print(f"error: invalid --config: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = port_problem(args.host, args.port)
    if problem is not None:
        option = "--host" if problem.startswith("cannot resolve") else "--port"
        print(f"error: invalid value for '{option}': {problem}", file=sys.stderr)
        raise SystemExit(2)
    logging.basicConfig(level=logging.INFO)
    serve(args.host, args.port, config)


if __name__ == "__main__":
    main()
