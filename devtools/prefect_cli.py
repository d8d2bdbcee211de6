"""Several Prefect CLI commands in one interpreter: ``exportflow serve``'s set-up steps.

``python -m devtools.prefect_cli <command> [+ <command> ...]`` runs each ``prefect <command>``
in turn (``+`` between them), stopping at the first that fails, with its exit code. Against
one ``prefect`` process per step, Prefect's import (~2.5 s on two busy cores) is paid once,
and its API clients share one TLS context (``core.tls``: ``prefect deploy --all`` alone built
50 of them, 1.6 s of its 9.5 s).
"""

from __future__ import annotations

import sys

SEPARATOR = "+"


def commands(argv: list[str]) -> list[list[str]]:
    """``argv`` split at each ``+`` into the commands' tokens (empty commands dropped)."""
    split: list[list[str]] = [[]]
    for token in argv:
        if token == SEPARATOR:
            split.append([])
        else:
            split[-1].append(token)
    return [tokens for tokens in split if tokens]


def main(argv: list[str] | None = None) -> int:
    from prefect.cli import app

    from core import tls

    tls.share_prefects()
    for tokens in commands(sys.argv[1:] if argv is None else argv):
        sys.argv = ["prefect", *tokens]
        try:
            app()
        except SystemExit as done:
            code = done.code
            if code not in (None, 0):
                print(f"prefect {' '.join(tokens)}: failed", file=sys.stderr)
                return code if isinstance(code, int) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
